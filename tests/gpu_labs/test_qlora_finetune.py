"""End to end on CPU: QLoRA with bitsandbytes NF4 on a tiny Llama, loaded through from_pretrained."""

from __future__ import annotations

import importlib
import json
import math
import time

import pytest
from lab_helpers import labkit, run_lab


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_loss_falls_on_the_shipped_dataset(trained_adapter):
    losses = [row["loss"] for row in read_log(trained_adapter)]
    assert len(losses) == 30
    # Measured, not copied: the first steps sit near ln(vocab) of an untrained model; 30 QLoRA steps
    # on 60 examples must bring the average clearly down.
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first > math.log(512) - 0.5
    assert last < first - 0.5, (first, last)


@pytest.mark.slow
def test_adapter_files_and_settings_are_saved(trained_adapter):
    adapter = trained_adapter / "adapter"
    for name in ("adapter_model.safetensors", "adapter_config.json", "run_settings.json", labkit.COMPLETE_MARKER):
        assert (adapter / name).is_file(), name
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["lora_alpha"] == 32
    settings = json.loads((adapter / "run_settings.json").read_text())
    assert settings["settings"]["lr"] == 1e-2 and settings["results"]["steps"] == 30
    # 2 layers x 7 linear layers, each r * (in + out): q 64+64, k 64+32, v 64+32, o 64+64,
    # gate 64+128, up 64+128, down 128+64 (hidden 64, kv 2 heads x 16, MLP 128) -> 16 * 1024 * 2.
    assert settings["results"]["trainable_params"] == 2 * 16 * (128 + 96 + 96 + 128 + 192 + 192 + 192)


@pytest.mark.slow
def test_adapter_reloads_with_the_same_outputs(tiny_model, trained_adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    torch.set_num_threads(1)
    results = json.loads((trained_adapter / "adapter" / "run_settings.json").read_text())["results"]
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, quantization_config=bnb, dtype=torch.float32)
    # the lab scores with bitsandbytes' training kernel (on an AVX512-BF16 CPU its eval kernel differs by ~1e-4)
    from gpu_labs import labmodels
    model = PeftModel.from_pretrained(labmodels.keep_training_kernel(base), trained_adapter / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(trained_adapter / "adapter")
    examples = labkit.tokenize_pairs(labkit.load_instruction_jsonl(labkit.DEFAULT_DATASET), tokenizer, 512)
    reloaded = labkit.probe_loss(model, examples, tokenizer.pad_token_id)
    assert reloaded == pytest.approx(results["probe_loss"]["adapter"], abs=1e-5)
    # ...and the adapter matters: without it the same examples score worse.
    with model.disable_adapter():
        assert labkit.probe_loss(model, examples, tokenizer.pad_token_id) > reloaded + 0.3


@pytest.mark.parametrize("script", ["qlora_finetune", "serve_adapters", "merge_export", "trl_sft"])
def test_help_is_instant_and_every_option_has_help(script):
    started = time.perf_counter()
    proc = run_lab(f"{script}.py", "--help")
    assert time.perf_counter() - started < 3.0  # importing torch alone takes longer than this
    assert "usage:" in proc.stdout
    module = importlib.import_module(f"gpu_labs.{script}")
    for action in module.build_parser()._actions:
        assert action.help, action.option_strings


def test_real_shapes_have_the_published_parameter_counts():
    """The random-weight stand-ins the GPU checks use must have the real models' sizes: the model cards
    give 1.23B (Llama-3.2-1B) and 8.03B (Llama-3.1-8B) parameters."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    counts = {}
    for shape, config in labkit.REAL_SHAPES.items():
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(LlamaConfig(**config))
        counts[shape] = sum(p.numel() for p in model.parameters())
    assert 1.23e9 <= counts["llama-3.2-1b"] < 1.24e9
    assert 8.03e9 <= counts["llama-3.1-8b"] < 8.04e9
