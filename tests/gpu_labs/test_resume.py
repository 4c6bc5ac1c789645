"""Killing a run and re-running the same command continues it: same steps, same learning rates,
same losses; a half-written checkpoint is skipped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from lab_helpers import LABS, REPO, lab_env, labkit, run_lab

pytestmark = pytest.mark.slow

STEPS = 12


def args(model, out):
    return ["--model", str(model), "--max-steps", str(STEPS), "--lr", "1e-2", "--save-every", "3",
            "--output-dir", str(out)]


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    run_lab("qlora_finetune.py", *args(tiny_model, out))
    return read_log(out)


def start_slow_run(model, out):
    env = lab_env() | {"GPU_LABS_TEST_STEP_DELAY_S": "0.4"}
    return subprocess.Popen([sys.executable, str(LABS / "qlora_finetune.py"), *args(model, out)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def assert_same_run(resumed, reference):
    assert [row["step"] for row in resumed] == list(range(1, STEPS + 1))
    assert [row["lr"] for row in resumed] == [row["lr"] for row in reference]
    # Same data order, optimizer state and dropout RNG: the losses after the resume match too.
    assert [row["loss"] for row in resumed] == pytest.approx([row["loss"] for row in reference], abs=1e-4)


def test_sigkill_then_rerun_continues_and_skips_a_half_written_checkpoint(tiny_model, reference, tmp_path):
    out = tmp_path / "run"
    proc = start_slow_run(tiny_model, out)
    wait_for(out / "checkpoints" / "step-000006", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "adapter").exists()
    done = len(read_log(out))
    assert 6 <= done < STEPS
    # What a save killed half-way would leave if it were not staged: a newer folder without the marker.
    fake = out / "checkpoints" / "step-000009"
    fake.mkdir()
    (fake / "optimizer.pt").write_bytes(b"\x80\x02truncated")

    rerun = run_lab("qlora_finetune.py", *args(tiny_model, out))
    assert "skipping" in rerun.stdout and "step-000009" in rerun.stdout
    assert "resuming from" in rerun.stdout and "(step 6)" in rerun.stdout
    assert_same_run(read_log(out), reference)
    assert json.loads((out / "adapter" / "run_settings.json").read_text())["results"]["steps"] == STEPS


def test_sigterm_saves_a_checkpoint_and_the_rerun_finishes(tiny_model, reference, tmp_path):
    out = tmp_path / "run"
    proc = start_slow_run(tiny_model, out)
    wait_for(out / "checkpoints" / "step-000003", proc)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopped by signal" in stdout
    stopped_at = len(read_log(out))
    assert labkit.is_complete(out / "checkpoints" / f"step-{stopped_at:06d}")

    rerun = run_lab("qlora_finetune.py", *args(tiny_model, out))
    assert f"(step {stopped_at})" in rerun.stdout
    assert_same_run(read_log(out), reference)


def test_changed_settings_refuse_to_resume(tiny_model, reference, tmp_path):
    out = tmp_path / "run"
    run_lab("qlora_finetune.py", *args(tiny_model, out)[:-2], "--max-steps", "3", "--output-dir", out)
    proc = run_lab("qlora_finetune.py", *args(tiny_model, out)[:-2], "--max-steps", "3", "--lr", "5e-3",
                   "--output-dir", out, check=False)
    assert proc.returncode == 2
    assert "--lr was 0.01, now 0.005" in proc.stderr and "--no-resume" in proc.stderr
