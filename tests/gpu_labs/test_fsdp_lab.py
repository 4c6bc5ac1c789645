"""The QLoRA lab under `accelerate launch --config_file gpu_labs/accelerate_fsdp_qlora.yaml` with two gloo
processes: real FSDP2 sharding through accelerate's own prepare(), sharded checkpoints that survive a
SIGKILL of every process, a resumed run that repeats the killed run's steps exactly, and one normal peft
adapter at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab_helpers import LABS, REPO, lab_env, labkit

from gpu_labs import distributed

pytestmark = pytest.mark.slow

STEPS = 6


def command(model, out):
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(LABS / "accelerate_fsdp_qlora.yaml"), "--num_processes", "2",
            "--main_process_port", str(distributed.free_port()),
            str(LABS / "qlora_finetune.py"), "--model", str(model), "--method", "qlora", "--quant-storage", "bf16",
            "--max-steps", str(STEPS), "--save-every", "2", "--lr", "1e-2", "--batch-size", "2", "--grad-accum", "1",
            "--seq-len", "64", "--output-dir", str(out)]


def descendants(pid: int) -> list[int]:
    """Every process below pid (torch's elastic agent starts the ranks in their own process groups, so a
    signal to the launcher's group does not reach them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def read_log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_fsdp_run_killed_resumes_and_saves_one_adapter(tiny_model, tmp_path):
    out = tmp_path / "run"
    env = lab_env() | {"GPU_LABS_TEST_STEP_DELAY_S": "1.5"}
    proc = subprocess.Popen(command(tiny_model, out), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 400
    log_path = out / "train_log.jsonl"
    while not (log_path.exists() and len(log_path.read_text().splitlines()) >= 3
               and labkit.is_complete(out / "checkpoints" / "step-000002")):
        assert proc.poll() is None, proc.communicate()[1][-4000:]
        assert time.monotonic() < deadline, "the FSDP run never reached step 3"
        time.sleep(0.1)
    # SIGKILL to the launcher and both ranks at once, as a lost machine would do
    for pid in [*descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    first_stdout, _ = proc.communicate()
    assert "per GPU on 2 GPUs with full-shard" in first_stdout
    killed = read_log(out)
    assert not (out / "adapter").exists()
    ckpt = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*")
               if labkit.is_complete(p))
    assert 2 <= ckpt < STEPS
    # every rank wrote its own shard of the model and of AdamW's state (torch.distributed.checkpoint files,
    # one folder each, as accelerate's save_fsdp_model / save_fsdp_optimizer lay them out)
    folders = {}
    for shard in (out / "checkpoints" / f"step-{ckpt:06d}").glob("*/*.distcp"):
        folders.setdefault(shard.parent.name, []).append(shard.name)
    assert len(folders) == 2 and all(len(names) == 2 for names in folders.values()), folders

    rerun = subprocess.run(command(tiny_model, out), cwd=REPO, env=lab_env(), capture_output=True, text=True,
                           timeout=500)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert f"(step {ckpt})" in rerun.stdout
    resumed = read_log(out)
    assert [row["step"] for row in resumed] == list(range(1, STEPS + 1))
    # the steps the killed run finished after its checkpoint come out the same from the restored shards
    redone = [row for row in killed if row["step"] > ckpt]
    assert redone, "kill came before any step past the checkpoint"
    assert [row["loss"] for row in resumed if row["step"] in {r["step"] for r in redone}] == \
        pytest.approx([row["loss"] for row in redone], abs=1e-4)
    assert [row["lr"] for row in resumed[:len(killed)]] == [row["lr"] for row in killed]

    # measured per rank after training, next to the prediction: equal
    ranks = json.loads((out / "adapter" / "run_settings.json").read_text())["results"]["ranks"]
    assert len(ranks["measured"]) == 2
    for m in ranks["measured"]:
        assert m["params"] == ranks["predicted"]["params"]
        assert m["optimizer"] == ranks["predicted"]["optimizer"]
        assert m["quant_stats"] > 0         # QLoRA really ran: 4-bit statistics on every rank

    # one adapter, whole (not a shard), that peft loads like any other
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from safetensors.torch import load_file

    saved = load_file(out / "adapter" / "adapter_model.safetensors")
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, out / "adapter")
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert sum(t.numel() for t in saved.values()) == sum(p.numel() for p in lora.values())
    assert all(t.shape[0] == cfg["r"] or t.shape[1] == cfg["r"] for t in saved.values())
    assert not any(p.name.endswith(".distcp") for p in (out / "adapter").iterdir())
