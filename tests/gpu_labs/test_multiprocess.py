"""The fine-tune script under torchrun with two CPU processes (gloo): accelerate wraps the model in DDP
and shards the batches, and a step sees the same examples as one process with twice the accumulation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from lab_helpers import LABS, REPO, lab_env, run_lab

from gpu_labs import distributed

pytestmark = pytest.mark.slow


def common(model):
    # No dropout, so the two runs differ only in how the work is split.
    return ["--model", str(model), "--max-steps", "4", "--lr", "1e-2", "--batch-size", "2", "--dropout", "0"]


def results(out):
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    final = json.loads((out / "adapter" / "run_settings.json").read_text())["results"]
    return [row["loss"] for row in log], final["probe_loss"]["adapter"]


def test_two_gloo_processes_match_one_process(tiny_model, tmp_path):
    two = tmp_path / "two"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(distributed.free_port()), str(LABS / "qlora_finetune.py"), *common(tiny_model),
                           "--grad-accum", "3", "--output-dir", str(two)],
                          cwd=REPO, env=lab_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on cpu:0 x2" in proc.stdout and "2 processes" in proc.stdout

    one = tmp_path / "one"
    run_lab("qlora_finetune.py", *common(tiny_model), "--grad-accum", "6", "--output-dir", one)
    losses_two, probe_two = results(two)
    losses_one, probe_one = results(one)
    assert len(losses_two) == 4
    assert losses_two == pytest.approx(losses_one, abs=1e-4)
    assert probe_two == pytest.approx(probe_one, abs=1e-4)
