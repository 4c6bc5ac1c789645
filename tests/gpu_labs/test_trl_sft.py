"""The lab on transformers' Trainer against TRL's SFTTrainer: the same tiny model, adapter init, data order,
masking and hyperparameters give the same loss curve, and the adapter dtype each run trains is checked
(TRL converts a QLoRA adapter to bf16 when SFTTrainer is built; the lab keeps peft's fp32)."""

from __future__ import annotations

import json

import pytest
from lab_helpers import labkit, run_lab

# Step 1 runs on identical weights and batches (the learning rate is 0 during warmup's first step, and B = 0
# makes the adapter's dtype irrelevant), so the two losses may differ only by float summation order.
FIRST_STEP_TOLERANCE = 1e-4
# After that each optimizer step rounds differently. Measured on this run (transformers 5.25, TRL 1.16, CPU):
# with TRL's bf16 adapter the curves drift apart by about 1.4e-3 in 10 steps, with the adapter cast back to
# fp32 by about 1.5e-4. The tolerances sit well above those and far below the loss's own step-to-step swings
# (about 0.5); the fp32 one is ten times tighter, so the dtype is what the bf16 gap is made of.
CURVE_TOLERANCE = 1e-2
FP32_CURVE_TOLERANCE = 1e-3


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def results(run_dir):
    return json.loads((run_dir / "adapter" / "run_settings.json").read_text())["results"]


@pytest.mark.slow
def test_trl_sft_trainer_matches_the_lab_and_says_which_keeps_fp32_adapters(tmp_path):
    model = labkit.build_tiny_model(tmp_path / "tiny-chat", chat_template=True)
    # Dropout 0: the two draw dropout masks from the global RNG at different moments.
    same = ["--model", model, "--max-steps", 10, "--batch-size", 4, "--grad-accum", 1, "--lr", "1e-2",
            "--dropout", 0, "--seed", 7, "--rank", 8]
    run_lab("qlora_finetune.py", *same, "--output-dir", tmp_path / "lab")
    trl = run_lab("trl_sft.py", *same, "--output-dir", tmp_path / "trl")
    trl32 = run_lab("trl_sft.py", *same, "--keep-fp32-adapters", "--output-dir", tmp_path / "trl32")

    # The dtype of the trained adapter: 16,384 LoRA values (rank 8 on every linear layer of the tiny model).
    lab = results(tmp_path / "lab")
    assert lab["adapter_dtypes"] == {"float32": lab["trainable_params"]}
    trl_results, trl32_results = results(tmp_path / "trl"), results(tmp_path / "trl32")
    n = lab["trainable_params"]
    assert trl_results["adapter_dtypes_built"] == {"float32": n}
    assert trl_results["adapter_dtypes_after_sfttrainer"] == trl_results["adapter_dtypes_trained"] == {"bfloat16": n}
    assert "only the lab keeps float32 adapters" in trl.stdout
    assert trl32_results["adapter_dtypes_trained"] == {"float32": n}
    assert "both keep float32 adapters" in trl32.stdout

    ours, theirs, theirs32 = losses(tmp_path / "lab"), losses(tmp_path / "trl"), losses(tmp_path / "trl32")
    assert len(ours) == len(theirs) == len(theirs32) == 10
    differences = [abs(a - b) for a, b in zip(ours, theirs)]
    differences32 = [abs(a - b) for a, b in zip(ours, theirs32)]
    print(f"lab {ours}\ntrl {theirs}\ntrl fp32 {theirs32}\nlargest |difference| bf16 adapter {max(differences):.2e}, "
          f"fp32 adapter {max(differences32):.2e}")
    assert differences[0] < FIRST_STEP_TOLERANCE and differences32[0] < FIRST_STEP_TOLERANCE
    assert max(differences) < CURVE_TOLERANCE
    assert max(differences32) < FP32_CURVE_TOLERANCE
    # The curves move: a comparison of two flat lines would prove nothing.
    assert max(ours) - min(ours) > 0.5
    assert (tmp_path / "trl" / "adapter" / "adapter_model.safetensors").is_file() and "steps/s" in trl.stdout
