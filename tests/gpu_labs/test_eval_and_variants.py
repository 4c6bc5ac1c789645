"""Evaluation while training (held-out split, best adapter, overfitting warning) and peft's LoRA variants
passed through as flags."""

from __future__ import annotations

import json

import pytest
from lab_helpers import labkit, run_lab

from gpu_labs import trainer


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_warning_when_eval_rises_while_train_falls():
    tracker = trainer.EvalTracker()
    for loss in (3.0, 2.8):
        tracker.add_train(loss)
    assert tracker.add_eval(2.9) == (True, "")
    for loss in (2.5, 2.3):
        tracker.add_train(loss)
    improved, warning = tracker.add_eval(3.1)
    assert not improved and "eval loss rose 2.9000 -> 3.1000 while train loss fell 2.9000 -> 2.4000" in warning
    tracker.add_train(2.6)  # train loss rising too: no overfitting signal, just a bad stretch
    assert tracker.add_eval(3.3) == (False, "")


@pytest.mark.slow
def test_eval_loss_is_logged_and_the_best_adapter_kept(tiny_model, tmp_path):
    out = tmp_path / "run"
    proc = run_lab("qlora_finetune.py", "--model", tiny_model, "--max-steps", 8, "--eval-ratio", "0.2",
                   "--eval-every", 2, "--lr", "1e-2", "--batch-size", 4, "--grad-accum", 1, "--output-dir", out)
    assert "held out 12 of 60 examples" in proc.stdout
    log = read_log(out)
    evals = {row["step"]: row["eval_loss"] for row in log if "eval_loss" in row}
    assert sorted(evals) == [2, 4, 6, 8]
    best_step = min(evals, key=evals.get)
    best = json.loads((out / "best" / "best.json").read_text())
    assert best == {"step": best_step, "eval_loss": evals[best_step]}
    assert (out / "best" / "adapter_model.safetensors").is_file() and labkit.is_complete(out / "best")
    assert "eval=" in proc.stderr  # the progress bar shows it


@pytest.mark.slow
def test_dora_rslora_and_lora_plus_reach_peft(tiny_model, tmp_path):
    out = tmp_path / "run"
    run_lab("qlora_finetune.py", "--model", tiny_model, "--max-steps", 2, "--use-dora", "--use-rslora",
            "--lora-plus", 16, "--init", "gaussian", "--targets", "q,v", "--batch-size", 2, "--grad-accum", 1,
            "--output-dir", out)
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["use_dora"] is True and config["use_rslora"] is True and config["init_lora_weights"] == "gaussian"
    results = json.loads((out / "adapter" / "run_settings.json").read_text())["results"]
    # q: 64 -> 64 and v: 64 -> 32 in 2 layers; DoRA adds one magnitude per output feature.
    lora = 2 * 16 * ((64 + 64) + (64 + 32))
    assert results["trainable_params"] == lora + 2 * (64 + 32)
    # peft refuses mixed-adapter batches with DoRA; the serving lab routes by adapter and says why.
    served = run_lab("serve_adapters.py", "--base", tiny_model, "--adapter", f"dora={out / 'adapter'}",
                     "--max-new-tokens", 2, "--switch-repeats", 2)
    assert "mixed batch: skipped. peft does not support mixed adapter batches with DoRA (dora)" in served.stdout


@pytest.mark.slow
def test_lora_plus_gives_b_the_larger_learning_rate(tiny_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    optimizer = trainer.loraplus_optimizer(model, "adamw", lr=1e-3, weight_decay=0.0, ratio=16.0)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        if "lora_A" in name:
            assert lr_of[id(param)] == pytest.approx(1e-3)
        elif "lora_B" in name:
            assert lr_of[id(param)] == pytest.approx(16e-3)


@pytest.mark.slow
def test_olora_adapter_is_saved_for_the_original_base(tiny_model, tmp_path):
    """OLoRA changes the base weights at init; the saved adapter is converted to plain LoRA (rank 2r) so
    the merge lab, which loads the original base, reproduces the trained model."""
    out = tmp_path / "run"
    run_lab("qlora_finetune.py", "--model", tiny_model, "--method", "lora", "--init", "olora", "--rank", 4,
            "--targets", "q,v", "--max-steps", 3, "--lr", "1e-2", "--batch-size", 2, "--grad-accum", 1,
            "--output-dir", out)
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["init_lora_weights"] is True
    trained = json.loads((out / "adapter" / "run_settings.json").read_text())["results"]["probe_loss"]["adapter"]
    run_lab("merge_export.py", "--adapter", out / "adapter", "--output", tmp_path / "merged", "--dtype", "fp32")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    examples = labkit.tokenize_pairs(labkit.load_instruction_jsonl(labkit.DEFAULT_DATASET), tokenizer, 512)
    assert labkit.probe_loss(merged, examples, tokenizer.pad_token_id) == pytest.approx(trained, abs=1e-4)


@pytest.mark.parametrize("flags, message", [
    (["--init", "pissa"], "--method lora --init pissa"),
    (["--method", "full", "--use-dora"], "--method full trains every weight"),
    (["--method", "lora", "--init", "loftq"], "needs --method qlora"),
    (["--lora-plus", "0"], "must be positive"),
    (["--eval-ratio", "1"], "must be in [0, 1)"),
])
def test_impossible_variant_combinations_fail_before_loading(flags, message):
    proc = run_lab("qlora_finetune.py", "--model", "unused", *flags, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr
