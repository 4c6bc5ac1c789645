"""Recompute, don't replay: every committed measurement is predicted again by the engine as it is now.

The labs' memory probe (gpu_labs/memory_probe.py) recorded what autograd really saved for backward and
what the parameters, gradients and optimizer state really took (torch 2.13, transformers 5.24, peft 0.21,
bitsandbytes 0.50 on CPU). These tests ignore the estimate written beside each measurement and ask the
engine again, so an engine change that moves a term fails here at once, not at the next probe run.

Tolerances sit just above the worst error measured when the data was recorded:
* without gradient checkpointing the estimate matched within 0.068%: allowed 0.1%;
* with checkpointing (autograd keeps a few small tensors per recomputed layer the model leaves out)
  within 1.16%: allowed 1.5%.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import loracalc
from loracalc.memory import activation_bytes

DATA = Path(__file__).resolve().parents[2] / "snippets" / "lora_course" / "data"
ACTIVATION = json.loads((DATA / "activation_check.json").read_text())
PROBE = json.loads((DATA / "measured_memory.json").read_text())

REL_TOL = {False: 0.001, True: 0.015}     # keyed by gradient checkpointing


def _row_id(r: dict) -> str:
    return (f"{r['model']}-{r['method']}-b{r['batch_size']}-s{r['seq_len']}-"
            f"{'gc' if r['gradient_checkpointing'] else 'nogc'}-{r['attention']}")


def test_activation_check_covers_every_family_and_setting():
    rows = ACTIVATION["rows"]
    assert len(rows) >= 90
    assert {ACTIVATION["shapes"][r["model"]]["model_type"] for r in rows} >= {"llama", "qwen2", "qwen3", "gemma2"}
    assert {r["method"] for r in rows} == {"full", "lora", "qlora"}
    assert {r["attention"] for r in rows} == {"sdpa", "eager"}


@pytest.mark.parametrize("row", ACTIVATION["rows"], ids=_row_id)
def test_activation_bytes_recomputed_against_autograd(row):
    """Bytes autograd saved for backward (saved_tensors_hooks, peak over the step), asked of the engine again."""
    arch = loracalc.model_from_config(ACTIVATION["shapes"][row["model"]], name=row["model"])
    est = activation_bytes(arch, method=row["method"], rank=ACTIVATION["rank"],
                           targets=loracalc.parse_targets(ACTIVATION["targets"]), batch_size=row["batch_size"],
                           seq_len=row["seq_len"], gradient_checkpointing=row["gradient_checkpointing"],
                           attention=row["attention"])["saved_total"]
    assert est == pytest.approx(row["measured_bytes"], rel=REL_TOL[row["gradient_checkpointing"]])


def _probe_id(r: dict) -> str:
    s = r["settings"]
    return f"{s['method']}-b{s['batch_size']}-s{s['seq_len']}-{'gc' if s['gradient_checkpointing'] else 'nogc'}"


@pytest.mark.parametrize("rec", PROBE["records"], ids=_probe_id)
def test_memory_probe_recomputed(rec):
    """The probe's CPU runs: parameter, gradient and optimizer bytes exactly, saved-for-backward and the sum
    within the tolerance above. The probe's full fine-tuning is pure bf16 (precision="bf16")."""
    arch = loracalc.model_from_config(PROBE["config"])
    s, measured = rec["settings"], rec["measured"]
    est = loracalc.estimate_memory(arch, method=s["method"], rank=s["rank"], targets=s["targets"],
                                   batch_size=s["batch_size"], seq_len=s["seq_len"],
                                   gradient_checkpointing=s["gradient_checkpointing"], optimizer=s["optimizer"],
                                   attention=s["attention"], precision="bf16", cuda_overhead=False).breakdown
    weights = sum(est.get(k, 0) for k in ("weights", "weights_4bit", "weights_16bit", "kbit_upcast", "adapter"))
    grads = est.get("gradients", 0) + est.get("adapter_grads", 0)
    assert weights == measured["parameter_bytes"]
    assert grads == measured["gradient_bytes"]
    assert est["optimizer"] == measured["optimizer_state_bytes"]
    saved = activation_bytes(arch, method=s["method"], rank=s["rank"], targets=tuple(s["targets"]),
                             batch_size=s["batch_size"], seq_len=s["seq_len"],
                             gradient_checkpointing=s["gradient_checkpointing"],
                             attention=s["attention"])["saved_total"]
    tol = REL_TOL[s["gradient_checkpointing"]]
    assert saved == pytest.approx(measured["saved_for_backward_peak_bytes"], rel=tol)
    assert weights + grads + est["optimizer"] + saved == pytest.approx(measured["peak_bytes"], rel=tol)
