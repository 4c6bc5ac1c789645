"""Every family the labs support, trained for real on CPU: a tiny random model of each (built offline from
transformers' config classes) goes through QLoRA training, adapter reload, serving and merging."""

from __future__ import annotations

import json

import pytest
from lab_helpers import labkit, run_lab

from gpu_labs import labmodels

FAMILIES = list(labmodels.FAMILIES)

# The names peft gives each family's layers under all-linear, read from transformers' modelling code:
# GPT-2 keeps Conv1D layers named c_attn/c_proj/c_fc, Phi-3 fuses qkv_proj and gate_up_proj, the MoE
# adapts its attention by module and its experts as fused parameters.
EXPECTED_MODULES = {
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "qwen3": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "gemma3_text": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "olmo2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "phi3": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
    "gpt2": {"c_attn", "c_proj", "c_fc"},
    "qwen3_moe": {"q_proj", "k_proj", "v_proj", "o_proj"},
}


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory):
    """One tiny model and one 3-step QLoRA run per family, shared by the tests below."""
    root = tmp_path_factory.mktemp("families")
    runs = {}
    for family in FAMILIES:
        model = labkit.build_tiny_model(root / f"tiny-{family}", family=family, chat_template=True)
        out = root / f"run-{family}"
        proc = run_lab("qlora_finetune.py", "--model", model, "--max-steps", 3, "--batch-size", 2, "--grad-accum", 1,
                       "--lr", "1e-2", "--output-dir", out)
        runs[family] = (model, out, proc.stdout)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_with_its_own_module_names(family_runs, family):
    model, out, stdout = family_runs[family]
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    targets = config["target_modules"]
    names = {t.rsplit(".", 1)[-1] for t in (targets if isinstance(targets, list) else [targets])}
    assert names == EXPECTED_MODULES[family]
    if family == "qwen3_moe":
        assert {"gate_up_proj", "down_proj"} <= set(config["target_parameters"])
        assert config["lora_dropout"] == 0 and "dropout 0: peft's wrapper" in stdout
    results = json.loads((out / "adapter" / "run_settings.json").read_text())["results"]
    assert results["steps"] == 3 and 0 < results["trainable_params"] < results["total_params"]
    assert "Traceback" not in stdout and "chat template" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_adapter_reloads_serves_and_merges(family_runs, family, tmp_path):
    model, out, _ = family_runs[family]
    served = run_lab("serve_adapters.py", "--base", model, "--adapter", f"a={out / 'adapter'}",
                     "--max-new-tokens", 3, "--switch-repeats", 5)
    assert "routed by adapter" in served.stdout
    merged = run_lab("merge_export.py", "--adapter", out / "adapter", "--output", tmp_path / "merged", "--dtype", "fp32")
    report = json.loads((tmp_path / "merged" / "merge_report.json").read_text())
    # fp32 merge: merged logits equal base + adapter up to float rounding.
    assert report["logit_check"]["relative"] < 1e-5 and "saved the merged model" in merged.stdout


@pytest.mark.slow
def test_gpt2_rejects_llama_names_and_lists_its_own(family_runs):
    model, _, _ = family_runs["gpt2"]
    proc = run_lab("qlora_finetune.py", "--model", model, "--targets", "q,v", "--max-steps", 1, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "no module named q, v" in last and "c_attn, c_fc, c_proj" in last


@pytest.mark.slow
def test_gpt2_accepts_its_real_names(family_runs, tmp_path):
    model, _, _ = family_runs["gpt2"]
    out = tmp_path / "run"
    run_lab("qlora_finetune.py", "--model", model, "--targets", "c_attn", "--rank", 4, "--max-steps", 1,
            "--batch-size", 2, "--grad-accum", 1, "--output-dir", out)
    settings = json.loads((out / "adapter" / "run_settings.json").read_text())
    # c_attn maps 64 -> 192 (q, k, v fused) in each of 2 layers: 2 * 4 * (64 + 192) LoRA weights.
    assert settings["results"]["trainable_params"] == 2 * 4 * (64 + 192)


@pytest.mark.slow
@pytest.mark.parametrize("flags, message", [
    (["--dropout", "0.1"], "lora.ParamWrapper, which supports no dropout. Use --dropout 0"),
    (["--use-dora"], "--use-dora: peft cannot apply it to this model's fused MoE expert weights"),
    (["--method", "lora", "--init", "olora"], "--init olora: peft cannot apply it"),
])
def test_moe_expert_limits_are_refused_in_one_line(family_runs, flags, message):
    """Without these checks peft raises ValueError (dropout, DoRA) or AttributeError (OLoRA) deep inside
    get_peft_model; the lab says which flag and what to do instead, before loading the weights."""
    model, _, _ = family_runs["qwen3_moe"]
    proc = run_lab("qlora_finetune.py", "--model", model, *flags, "--max-steps", 1, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "full log" not in proc.stderr
    assert message in proc.stderr
