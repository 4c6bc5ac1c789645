"""Each mistake a user can make stops the lab early with a message that names the problem and the fix."""

from __future__ import annotations

import pytest
from lab_helpers import labkit, run_lab


def fail(*args):
    proc = run_lab("qlora_finetune.py", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_line_that_is_not_json_names_file_and_line(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"instruction": "a", "response": "b"}\n\n{"instruction": "c", "response": "d"\n')
    message = fail("--model", "unused", "--dataset", data)
    assert f"{data}:3: not valid JSON" in message


def test_missing_field_names_file_line_and_the_option_to_rename(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"instruction": "a", "response": "b"}\n{"instruction": "c", "answer": "d"}\n')
    message = fail("--model", "unused", "--dataset", data)
    assert f"{data}:2: missing or empty text field 'response'" in message
    assert "answer" in message and "--response-field" in message


def test_renamed_fields_are_accepted(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"q": "c", "a": "d"}\n')
    assert labkit.load_instruction_jsonl(data, "q", "a") == [{"instruction": "c", "response": "d"}]


def test_non_positive_rank_fails_before_loading_anything():
    assert "--rank 0" in fail("--model", "unused", "--rank", "0")


@pytest.mark.slow
def test_target_module_the_model_does_not_have(tiny_model):
    message = fail("--model", tiny_model, "--targets", "q,query_key_value")
    assert "no module named query_key_value" in message
    assert "q_proj" in message and "down_proj" in message  # the real names are listed


@pytest.mark.slow
def test_rank_above_the_layer_width(tiny_model):
    # The tiny model's k_proj maps 64 -> 32 features (2 KV heads x 16): no update of rank 48 exists.
    message = fail("--model", tiny_model, "--targets", "q,k,v", "--rank", "48")
    assert "--rank 48 is larger than k_proj allows" in message and "64 -> 32" in message


@pytest.mark.slow
def test_paged_optimizer_without_cuda(tiny_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    message = fail("--model", tiny_model, "--optimizer", "paged_adamw_8bit")
    assert "needs a CUDA GPU" in message and "--optimizer adamw" in message


def test_oom_message_says_what_to_change():
    import argparse

    from gpu_labs import prediction

    class Estimate:
        total_bytes = 30 * 2**30

    args = argparse.Namespace(batch_size=8, grad_accum=2, gradient_checkpointing=False, seq_len=2048,
                              optimizer="adamw", method="lora", rank=64)
    message = prediction.oom_message(args, Estimate(), "step 1")
    assert "at step 1" in message and "32.21 GB" in message   # 30 x 2^30 bytes, in the course's decimal GB
    for fix in ("--batch-size 4 --grad-accum 4", "--gradient-checkpointing", "--seq-len 1024",
                "--optimizer paged_adamw_8bit", "--method qlora", "--rank 32"):
        assert fix in message


@pytest.mark.slow
def test_model_that_cannot_be_found(tmp_path):
    message = fail("--model", tmp_path / "no-such-model", "--max-steps", "1")
    assert "could not read the config of --model" in message and "local folder with config.json" in message


def test_memory_probe_names_what_model_it_takes(tmp_path):
    proc = run_lab("memory_probe.py", "--model", tmp_path / "no-such-model", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "python -m loracalc models" in proc.stderr
    (tmp_path / "config.json").write_text("{not json")
    proc = run_lab("memory_probe.py", "--model", tmp_path, check=False)  # a model folder: its config.json is read
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{tmp_path / 'config.json'}: could not read it as JSON" in proc.stderr


def test_the_labs_memory_estimate_counts_dora_when_use_dora_is_on():
    # --use-dora adds DoRA's weight-norm temporaries to a step (peft builds them from weight-sized copies);
    # the estimate printed beside the measured peak must be the engine's estimate for that same run.
    from gpu_labs import prediction, qlora_finetune

    import loracalc

    config = loracalc.get_model("llama-3.1-8b").raw_config
    args = qlora_finetune.build_parser().parse_args(["--model", "x", "--method", "qlora"])
    plain, _ = prediction.predict_memory(config, args)
    args.use_dora = True
    dora, _ = prediction.predict_memory(config, args)
    expected = loracalc.estimate_memory(
        loracalc.model_from_config(config), method="qlora", rank=args.rank, targets=args.targets,
        batch_size=args.batch_size, seq_len=args.seq_len, gradient_checkpointing=args.gradient_checkpointing,
        optimizer=args.optimizer, lora_dropout=args.dropout or 0.0, dora=True)
    assert dora.total_bytes == expected.total_bytes > plain.total_bytes


def test_the_lab_predicts_tokens_per_second_on_a_catalog_gpu_and_says_why_not_elsewhere():
    import argparse

    import loracalc
    from loracalc.speed import estimate_time

    from gpu_labs import prediction

    config = loracalc.get_model("llama-3.1-8b").to_dict()["config"]
    args = argparse.Namespace(method="qlora", rank=16, targets="all-linear", batch_size=4, seq_len=512,
                              gradient_checkpointing=True, optimizer="adamw", compute_dtype="bf16")
    speed, why = prediction.predict_speed(config, args, "NVIDIA H100 80GB HBM3")
    want = estimate_time("llama-3.1-8b", "h100-80gb", method="qlora", rank=16, batch_size=4, seq_len=512)
    assert speed == want.tokens_per_second and "H100" in why
    assert prediction.predict_speed(config, args, None)[0] is None
    none, why = prediction.predict_speed(config, args, "Tesla T4")
    assert none is None and "Tesla T4" in why and "loracalc gpus" in why
