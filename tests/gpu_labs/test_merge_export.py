"""Merging an adapter into a 16-bit base: the saved merged model computes what base + adapter computes."""

from __future__ import annotations

import json

import pytest
from lab_helpers import labkit, run_lab

pytestmark = pytest.mark.slow


def test_fp32_merge_matches_base_plus_adapter(tiny_model, trained_adapter, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    proc = run_lab("merge_export.py", "--adapter", trained_adapter / "adapter", "--output", out, "--dtype", "fp32")
    assert "Why not merge into the 4-bit base?" in proc.stdout
    report = json.loads((out / "merge_report.json").read_text())
    assert report["logit_check"]["relative"] <= 1e-5
    assert not (out / "adapter_config.json").exists()  # an ordinary model folder, no peft needed

    # Independent of the script: base + adapter through peft vs the saved folder through transformers.
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(out)
    examples = labkit.tokenize_pairs(labkit.load_instruction_jsonl(labkit.DEFAULT_DATASET)[:8], tokenizer, 512)
    batch = labkit.pad_collate(tokenizer.pad_token_id)(examples)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        plain = base(**inputs).logits
        expected = PeftModel.from_pretrained(base, trained_adapter / "adapter").eval()(**inputs).logits
        merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)(**inputs).logits
    assert torch.allclose(merged, expected, atol=1e-4, rtol=0)
    assert (merged - plain).abs().max() > 0.1  # the adapter really changed the model


def test_bf16_merge_passes_its_stated_tolerance(trained_adapter, tmp_path):
    out = tmp_path / "merged-bf16"
    proc = run_lab("merge_export.py", "--adapter", trained_adapter / "adapter", "--output", out)
    report = json.loads((out / "merge_report.json").read_text())
    assert report["dtype"] == "bf16" and report["logit_check"]["relative"] <= report["tolerance"]
    # The adapter came from QLoRA, so the script also compares with the NF4 model as trained.
    assert "NF4 base + adapter" in proc.stdout
    nf4 = report["nf4_merge_error"]
    assert nf4["mean_abs_rounding_error"] > 0 and nf4["relative_error_of_update"] > 0


def test_dequantized_merge_reproduces_the_model_as_trained(trained_adapter, tmp_path):
    # A QLoRA adapter was trained on the NF4 weights; merged into those weights dequantized (transformers'
    # model.dequantize()) it is the trained model up to rounding, while a merge into the original 16-bit
    # checkpoint is off by the base's NF4 rounding error.
    out = tmp_path / "merged-dq"
    proc = run_lab("merge_export.py", "--adapter", trained_adapter / "adapter", "--output", out, "--dtype", "fp32",
                   "--merge-into", "dequantized")
    report = json.loads((out / "merge_report.json").read_text())
    assert report["merge_into"] == "dequantized" and report["logit_check"]["relative"] <= 1e-5
    gaps = report["gap_to_trained"]
    assert gaps["dequantized"]["relative"] <= 1e-4 and gaps["dequantized"]["top1_agreement"] == 1.0
    assert gaps["original"]["max_abs_diff"] > 100 * gaps["dequantized"]["max_abs_diff"]
    assert "merged into the NF4 base dequantized" in proc.stdout and "merged into the original" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config   # an ordinary 16-bit model folder


def test_dequantized_merge_refuses_an_adapter_not_trained_on_nf4(trained_adapter, tmp_path):
    import shutil

    plain = tmp_path / "adapter"
    shutil.copytree(trained_adapter / "adapter", plain)
    (plain / "run_settings.json").unlink()   # nothing says this adapter saw an NF4 base
    proc = run_lab("merge_export.py", "--adapter", plain, "--output", tmp_path / "out", "--merge-into", "dequantized",
                   check=False)
    assert proc.returncode == 2 and "--merge-into original" in proc.stderr and "Traceback" not in proc.stderr
