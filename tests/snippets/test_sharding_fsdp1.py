"""FSDP1 (``FullyShardedDataParallel``, what accelerate wraps with unless told ``fsdp_version: 2``) against the
engine's sharded model, from two sources:

* a real measurement on a CPU (``fsdp1_hold_probe.py``, torch's own FSDP1 and FSDP2 on a one-rank gloo group):
  with reentrant checkpointing and a frozen layer flat parameter, every later layer's recompute input and its
  gradient are still alive at the backward of layer 0. The cause is in torch ``distributed/fsdp/_runtime_utils.py``:
  ``_register_post_backward_reshard_only_hook`` (a frozen flat parameter's reshard hook, registered with
  ``register_multi_grad_hook`` on the unit's inputs, whose closure keeps their gradient accumulators in
  ``autograd/graph.py``), removed only by ``_finalize_params`` when the whole backward ends;
* the published two-GPU runs of fms-acceleration (``scripts/benchmarks/refs/a100_80gb*.csv``; accelerate 1.0.1,
  torch 2.4.1, transformers 4.45 and 4.48 in ``refs/requirements*.txt``), read into
  ``lora_course/data/published_reserved_pairs.json`` by ``scripts/allocator_fit.py --extract``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import loracalc
from loracalc import LoraCalcError
from loracalc.sharding import estimate_sharded, fsdp1_retained_bytes, shard_estimate
from lora_course.allocator_evidence import load
from lora_course.published import (_below_capacity, fsdp1_extra_layer_inputs, sharded_pairs)

PROBE = os.path.join(os.path.dirname(__file__), "fsdp1_hold_probe.py")


@pytest.fixture(scope="module")
def held():
    proc = subprocess.run([sys.executable, PROBE, str(29500 + os.getpid() % 400)], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("layers", [4, 6])
def test_fsdp1_reentrant_with_frozen_layer_params_keeps_every_later_input_and_gradient(held, layers):
    assert held[f"fsdp1_peft_policy/{layers}/reentrant"] == {"inputs": layers - 1, "grads": layers - 1}


@pytest.mark.parametrize("how", ["none", "fsdp1_layer_units", "fsdp2"])
@pytest.mark.parametrize("mode", ["reentrant", "non-reentrant"])
def test_nothing_is_kept_without_all_three_conditions(held, how, mode):
    for layers in (4, 6):
        assert held[f"{how}/{layers}/{mode}"] == {"inputs": 0, "grads": 0}
    assert held["fsdp1_peft_policy/6/non-reentrant"] == {"inputs": 0, "grads": 0}


def test_the_engine_keeps_the_measured_gradients_beyond_the_incoming_one(held):
    # of the L-1 gradients alive at layer 0, one (layer 1's input gradient) is what layer 0's backward receives and
    # any backward holds; the others are FSDP1's, each tokens x hidden in the stream's dtype (bf16 here)
    arch = loracalc.get_model("mistral-7b")
    est = loracalc.estimate_memory(arch, method="lora", rank=16, targets="q,k,v,o", batch_size=2, seq_len=1024)
    extra = held["fsdp1_peft_policy/6/reentrant"]["grads"] - 1          # measured with 6 layers: L-2
    per_layer = 2 * arch.hidden_size * 2 * 1024
    assert fsdp1_retained_bytes(est, arch, "full-shard", 1, True) == (extra + arch.num_hidden_layers - 6) * per_layer
    for version, reentrant, strategy in ((2, True, "full-shard"), (1, False, "full-shard"), (1, True, "ddp")):
        assert fsdp1_retained_bytes(est, arch, strategy, version, reentrant) == 0
    full = loracalc.estimate_memory(arch, method="full", precision="bf16", batch_size=2, seq_len=1024)
    assert fsdp1_retained_bytes(full, arch, "full-shard", 1, True) == 0       # its layer flat parameters train


def _slope(rows: dict[int, dict]) -> float:
    lo, hi = min(rows), max(rows)
    return (rows[hi]["allocated_peak_bytes"] - rows[lo]["allocated_peak_bytes"]) / (hi - lo)


@pytest.mark.parametrize("framework", ["foak-fast-kernels-liger", "accelerated-peft-bnb-foak-liger"])
@pytest.mark.parametrize("model", ["mistral-7b", "llama-3.1-8b"])
def test_published_two_gpu_slope_exceeds_one_gpu_by_the_kept_gradients(framework, model):
    # the fms-acceleration Liger runs, same per-GPU batch on 1 and 2 GPUs: each extra sample costs 2 GPUs
    # (L-2) x 4,096 tokens x 4,096 hidden x 2 B more than one, which is what the engine adds per sample
    by_gpus: dict[int, dict[int, dict]] = {1: {}, 2: {}}
    for p in load():
        if p["framework"] == framework and p["model"] == model and p["expressible"] and _below_capacity(p):
            by_gpus[p["gpus"]][p["settings"]["batch_size"]] = p
    measured = _slope(by_gpus[2]) - _slope(by_gpus[1])
    two = by_gpus[2][min(by_gpus[2])]
    kw = {k: two[k] for k in ("fsdp_version", "reentrant", "mixed_precision")}
    kept = [estimate_sharded(model, 2, "full-shard", **kw, **{**two["settings"], "batch_size": b}).breakdown
            ["fsdp1_retained"] for b in (4, 8)]
    assert (kept[1] - kept[0]) / 4 == pytest.approx(measured, rel=0.002)


def test_published_full_finetune_needs_accelerates_fp32_upcast():
    # accelerate's prepare_model (accelerator.py, "Upcasted low precision parameters ... because mixed precision
    # turned on in FSDP") makes a bf16 full fine-tune's shards fp32 when the trainer turns mixed precision on: the
    # Liger scenarios pass bf16=True; scenarios.yaml's full-finetuning scenario does not
    for p in load():
        if p["gpus"] == 2 and p["expressible"] and p["settings"]["method"] == "full" and p["settings"]["batch_size"] in (2, 4):
            kw = {k: p[k] for k in ("fsdp_version", "reentrant", "mixed_precision")}
            sh = estimate_sharded(p["model"], 2, "full-shard", **kw, **p["settings"])
            alloc = sh.per_gpu_bytes - sh.breakdown["cuda_context"]
            if p["mixed_precision"]:
                assert alloc == pytest.approx(p["allocated_peak_bytes"], rel=0.02), p["id"]
                without = estimate_sharded(p["model"], 2, "full-shard", **{**kw, "mixed_precision": False},
                                           **p["settings"])
                assert without.per_gpu_bytes - without.breakdown["cuda_context"] < 0.6 * p["allocated_peak_bytes"]
            elif p["settings"]["batch_size"] == 2:
                assert alloc == pytest.approx(p["allocated_peak_bytes"], rel=0.02), p["id"]


def test_every_published_two_gpu_run_is_predicted_within_ten_percent_allocated():
    pairs = [c for c in sharded_pairs() if _below_capacity(c.pair)]
    assert len(pairs) >= 20
    worst = max(pairs, key=lambda c: abs(c.allocated_error))
    assert abs(worst.allocated_error) < 10, worst.pair["id"]


def test_the_page_figure_is_l_minus_2_for_the_32_layer_models():
    assert {float(x) for x in fsdp1_extra_layer_inputs().split(" and ")} == {32 - 2}
    assert loracalc.get_model("mistral-7b").num_hidden_layers == loracalc.get_model("llama-3.1-8b").num_hidden_layers == 32


def test_defaults_are_fsdp2_and_bad_versions_are_one_line_errors():
    est = loracalc.estimate_memory("llama-3.1-8b", method="lora")
    assert "fsdp1_retained" not in shard_estimate(est, "llama-3.1-8b", 2, "full-shard").breakdown
    for bad in (dict(fsdp_version=3), dict(fsdp_version="x"), dict(reentrant="maybe")):
        with pytest.raises(LoraCalcError) as e:
            shard_estimate(est, "llama-3.1-8b", 2, "full-shard", **bad)
        assert "\n" not in str(e.value)
