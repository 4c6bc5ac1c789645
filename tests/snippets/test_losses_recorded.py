"""Recompute, don't replay: the losses' bytes measured on CPU (tests/snippets/stack_record.py: transformers'
own loss and stack_losses.py's torch-op versions of torchtune's, Liger's and Cut Cross-Entropy's algorithms;
the slow ``test_stack_records_remeasured`` measures them again), predicted again by the engine's loss_bytes,
without importing torch. Bounds and tolerances are those of test_memory_stacks.py's loss tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from loracalc.losses import loss_bytes

DATA = json.loads((Path(__file__).resolve().parent / "data" / "stack_measured.json").read_text())
ROWS = [r for r in DATA["rows"] if r["kind"] == "loss"]
LOGITS = 2          # bf16 logits and input, as recorded


def _id(r: dict) -> str:
    return f"V{r['vocab']}-T{r['tokens']}-H{r['hidden']}"


def test_two_shapes_recorded():
    assert len(ROWS) == 2 and all(r["logits_dtype"] == "bfloat16" and r["torch"] for r in ROWS)
    assert any(r["tokens"] % 8 for r in ROWS)        # chunks of unequal length


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_full_logits_loss_peak(row):
    """transformers' ForCausalLMLoss: the logits, the fp32 log-softmax and its gradients, within 3%."""
    V, T, H, m = row["vocab"], row["tokens"], row["hidden"], row["measured_bytes"]
    assert loss_bytes("full", V, T, H, LOGITS, LOGITS)[0] == pytest.approx(m["full_peak"], rel=0.03)


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_chunked_loss_peak(row):
    """torchtune's chunked loss in 8 chunks, eager: within 3% of the profiler's peak."""
    V, T, H, m = row["vocab"], row["tokens"], row["hidden"], row["measured_bytes"]
    assert loss_bytes("chunked", V, T, H, LOGITS, LOGITS, chunks=8)[0] == pytest.approx(m["chunked_peak"], rel=0.03)


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_compiled_chunk_saves_16_bit_logits_and_two_fp32_per_token(row):
    """torch.compile'd cross-entropy on one chunk: what it saves (the int64 labels left out) is the engine's
    term less the chunk's 16-bit gradient that backward writes, to the byte."""
    V, T, H, m = row["vocab"], row["tokens"], row["hidden"], row["measured_bytes"]
    predicted = loss_bytes("chunked_compiled", V, T, H, LOGITS, LOGITS, chunks=1)[0]
    assert predicted - LOGITS * V * T == m["compiled_chunk_saved_less_labels"]


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_fused_linear_saves_the_input_gradient(row):
    """Liger's algorithm saves only the input's gradient (16-bit); its peak adds one chunk of logits, whose rows
    are next_pow2(tokens / ceil(vocab / hidden)); the torch ops' fp32 chunk temporaries and the backward's copy
    of the gradient are this version's own (Triton avoids them), so the measured peak lies between."""
    V, T, H, m = row["vocab"], row["tokens"], row["hidden"], row["measured_bytes"]
    predicted = loss_bytes("fused_linear", V, T, H, LOGITS, LOGITS)[0]
    rows = 1 << max(0, (-(-T // -(-V // H)) - 1).bit_length())
    assert m["fused_linear_saved"] == LOGITS * H * T
    assert predicted - LOGITS * rows * V == m["fused_linear_saved"]
    assert predicted <= m["fused_linear_peak"] <= 1.02 * (predicted + 3 * 4 * rows * V + LOGITS * H * T)
    # an output layer that trains adds its fp32 weight gradient, computed in the same pass
    assert loss_bytes("fused_linear", V, T, H, LOGITS, LOGITS, head_trainable=True)[0] == predicted + 4 * V * H


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_cut_cross_entropy(row):
    """Cut Cross-Entropy saves the input, the int64 targets and an fp32 log-sum-exp per token (the engine
    counts the input and the lse); at the peak the input's gradient joins them, with this version's fp32
    accumulator and one block of 256 as extra work."""
    V, T, H, m = row["vocab"], row["tokens"], row["hidden"], row["measured_bytes"]
    predicted = loss_bytes("cce", V, T, H, LOGITS, LOGITS)[0]
    assert m["cce_saved"] - 8 * T == predicted - LOGITS * H * T
    block_work = 4 * H * T + 3 * 4 * 256 * T
    assert predicted <= m["cce_peak"] + 8 * T <= predicted + block_work + 8 * T + 2 * H * T
