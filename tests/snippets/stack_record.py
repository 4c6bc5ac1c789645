"""Measure peft's DoRA on tiny models and the losses' algorithms (CPU), and record the bytes into tests/snippets/data/stack_measured.json,
which the fast tests in test_dora_recorded.py and test_losses_recorded.py ask the engine to predict again.

The measurements are those of the slow tests in test_memory_stacks.py, with the same helpers:

* ``transient``: the most live bytes inside each adapted module's DoraLinearLayer.forward (the profiler's
  allocation events), per module name, for lora / qlora / lora_8bit, fp32 or bf16 adapters, with or without
  autocast, and in the backward's recomputation under gradient checkpointing;
* ``saved``: the bytes autograd keeps for backward (saved_tensors_hooks) with DoRA minus without, for a few
  targets, methods, adapter dtypes, dropouts and checkpointing; and the magnitude vectors' values and bytes
  (parameters, gradients and AdamW's moments after one step);
* ``loss``: the loss's peak and saved bytes for each loss the engine knows (stack_losses.py's algorithms),
  on two vocabulary / tokens / hidden shapes.

Regenerate (about a minute on two cores; rows keep their own versions and date):

    OMP_NUM_THREADS=1 PYTHONPATH=snippets .venv/bin/python -m tests.snippets.stack_record

or ``RECORD_STACKS=1 .venv/bin/python -m pytest tests/snippets/test_memory_stacks.py -m slow -k stack_records``,
which measures every recorded row again and compares it with the file (and rewrites the file when asked).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "stack_measured.json"
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gpu_labs"))

# what is measured; each (kind, settings) is one row of the file
TRANSIENT = [
    # method, adapter dtype, autocast, gradient checkpointing (peaks in backward's recomputation)
    ("lora", "fp32", False, False), ("lora", "bf16", False, False), ("qlora", "fp32", False, False),
    ("qlora", "bf16", False, False), ("lora_8bit", "fp32", False, False), ("lora_8bit", "bf16", False, False),
    ("lora", "fp32", True, False), ("qlora-paper", "bf16", True, False),
    ("lora", "fp32", False, True), ("qlora", "fp32", False, True),
]
# a wider MLP (down_proj 1024 -> 128): under autocast with fp32 adapters the identity, its bf16 copy and B A
# (while lora_B runs) outweigh the weight-sized tensors at the sum
WIDE = {"intermediate_size": 1024}
TRANSIENT_WIDE = [("lora", "fp32", True, False)]
SAVED = [
    # method, adapter dtype, targets, dropout, gradient checkpointing
    ("lora", "fp32", "q,v", 0.0, False), ("lora", "fp32", "q,v", 0.1, False),
    ("lora", "bf16", "all-linear", 0.0, False), ("lora", "bf16", "all-linear", 0.1, False),
    ("lora", "fp32", "all-linear", 0.1, False), ("qlora", "fp32", "gate,up,down", 0.1, False),
    ("qlora", "bf16", "o", 0.1, False), ("qlora", "fp32", "q,v", 0.0, False),
    ("lora", "fp32", "q,v", 0.1, True), ("qlora", "fp32", "q,v", 0.1, True), ("lora", "bf16", "q,v", 0.0, True),
]
BATCH, SEQ = 2, 64


def versions() -> dict:
    import bitsandbytes
    import peft
    import torch
    import transformers
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "bitsandbytes": bitsandbytes.__version__}


@contextlib.contextmanager
def _cuda_autocast_meaning():
    """peft's bitsandbytes layers ask torch.is_autocast_enabled() (CUDA's autocast); on CPU it is pointed at
    the CPU's autocast, which is what the GPU sees (as test_dora_transient_under_autocast does)."""
    import torch
    real = torch.is_autocast_enabled
    torch.is_autocast_enabled = lambda *device: real(*(device or ("cpu",)))
    try:
        yield
    finally:
        torch.is_autocast_enabled = real


def measure_transient(method: str, adapter: str, autocast: bool, gc: bool, model_dir: str,
                      overrides: dict | None = None) -> dict[str, int]:
    import torch
    from tests.snippets import test_memory_stacks as stacks
    if overrides:
        tiny = stacks.DORA_TINY
        stacks.DORA_TINY = {**tiny, **overrides}
        try:
            return measure_transient(method, adapter, autocast, gc, os.path.join(model_dir, "wide"))
        finally:
            stacks.DORA_TINY = tiny
    from tests.snippets.test_memory_stacks import (DORA_TINY, _dora_forward_peaks, _dora_model,
                                                   _qlora_paper_model)
    ids = torch.randint(0, DORA_TINY["vocab_size"], (1, 4), generator=torch.Generator().manual_seed(0))
    if method == "qlora-paper":
        path = os.path.join(model_dir, "paper")
        if not os.path.exists(os.path.join(path, "config.json")):
            from transformers import AutoConfig, AutoModelForCausalLM
            AutoModelForCausalLM.from_config(AutoConfig.for_model(**DORA_TINY),
                                             dtype=torch.bfloat16).save_pretrained(path)
        model = _qlora_paper_model(path, False, dora=True)
    else:
        model = _dora_model(model_dir, method, "all-linear", adapter, gc=gc)

    def run():
        if gc:
            loss = model(input_ids=ids, labels=ids).loss
            return _dora_forward_peaks(model, loss.backward)
        if autocast:
            def step():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    model(input_ids=ids, labels=ids)
            with _cuda_autocast_meaning() if method == "qlora-paper" else contextlib.nullcontext():
                return _dora_forward_peaks(model, step)
        return _dora_forward_peaks(model, lambda: model(input_ids=ids, labels=ids))
    return dict(sorted(run().items()))


def measure_saved(method: str, adapter: str, targets: str, dropout: float, gc: bool, model_dir: str) -> dict:
    """Saved-for-backward bytes with DoRA minus without: at the end of the forward (``live``) and the peak
    over forward and backward (``peak``, which under checkpointing is the recomputed layer's)."""
    import torch
    import memory_measure as mm
    from tests.snippets.test_memory_stacks import DORA_TINY, _dora_model
    ids = torch.randint(0, DORA_TINY["vocab_size"], (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    got = {}
    for dora in (True, False):
        model = _dora_model(model_dir, method, targets, adapter, gc=gc, dora=dora, dropout=dropout)
        torch.manual_seed(0)
        tracker = mm.SavedTensorTracker(mm.storage_ptrs(model))
        with tracker.hooks():
            loss = model(input_ids=ids, labels=ids).loss
            live = tracker.live
            loss.backward()
        got[dora] = (live, tracker.peak)
        if dora:
            mags = magnitude_bytes(model)
    return {"live": got[True][0] - got[False][0], "peak": got[True][1] - got[False][1], **mags}


def magnitude_bytes(model) -> dict:
    """After backward and one torch.optim.AdamW step: how many magnitude values peft made, and the bytes of
    their parameters, gradients and AdamW moments (exp_avg, exp_avg_sq; the 0-dim step counters left out)."""
    import torch
    mags = [p for n, p in model.named_parameters() if "lora_magnitude_vector" in n]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    opt.step()
    moments = sum(opt.state[p][k].nbytes for p in mags for k in ("exp_avg", "exp_avg_sq"))
    return {"magnitudes": sum(p.numel() for p in mags),
            "magnitude_bytes": sum(p.nbytes + p.grad.nbytes for p in mags) + moments}


LOSS_SHAPES = [(2048, 256, 64), (3000, 196, 96)]     # vocabulary, tokens, hidden (196: not a multiple of 8 chunks)


def measure_losses(V: int, T: int, H: int) -> dict[str, int]:
    """The losses of stack_losses.py (transformers' own loss; torchtune's chunked loss, eager and compiled;
    Liger's and Cut Cross-Entropy's algorithms in torch ops) on bf16 inputs: the profiler's peak of forward and
    backward, and the bytes autograd saves (the output layer's weight excluded), as test_memory_stacks.py's
    loss tests measure them."""
    import torch
    import torch.nn.functional as F
    from transformers.loss.loss_utils import ForCausalLMLoss
    from tests.snippets.stack_losses import _CutCrossEntropy, _FusedLinearCE, peak_bytes, saved_bytes
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, H, generator=g).to(torch.bfloat16).requires_grad_()
    w = torch.randn(V, H, generator=g).to(torch.bfloat16)
    y = torch.randint(0, V, (T,), generator=g)

    def full():
        logits = (x @ w.t()).unsqueeze(0)             # the model's bf16 logits, alive through backward
        ForCausalLMLoss(logits, y.unsqueeze(0), vocab_size=V).backward()
        return logits

    def chunked(n=8):
        logits = [c @ w.t() for c in x.chunk(n)]
        loss = sum(F.cross_entropy(c.float(), t, reduction="sum") for c, t in zip(logits, y.chunk(n))) / T
        del logits
        return loss

    ce = torch.compile(lambda c, t: F.cross_entropy(c.float(), t, reduction="sum"))
    logits = (x @ w.t()).detach().requires_grad_()
    return {"full_peak": peak_bytes(full), "chunked_peak": peak_bytes(lambda: chunked().backward()),
            "chunked_saved": saved_bytes(chunked, exclude=[w]),
            "compiled_chunk_saved_less_labels": saved_bytes(lambda: ce(logits, y)) - 8 * T,
            "fused_linear_saved": saved_bytes(lambda: _FusedLinearCE.apply(x, w, y), exclude=[w]),
            "fused_linear_peak": peak_bytes(lambda: _FusedLinearCE.apply(x, w, y).backward()),
            "cce_saved": saved_bytes(lambda: _CutCrossEntropy.apply(x * 1, w, y), exclude=[w]),
            "cce_peak": peak_bytes(lambda: _CutCrossEntropy.apply(x * 1, w, y).backward())}


def wide_rows(tmp: str, stamp: dict) -> list[dict]:
    return [{"kind": "transient", "method": method, "adapter": adapter, "autocast": autocast,
             "gradient_checkpointing": gc, "targets": "all-linear", "rank": 8, "tokens": 4, "config_overrides": WIDE,
             "measured_bytes": measure_transient(method, adapter, autocast, gc, tmp, WIDE), **stamp}
            for method, adapter, autocast, gc in TRANSIENT_WIDE]


def measure_all() -> dict:
    import torch
    torch.set_num_threads(1)
    # oneDNN's matmul scratch buffers depend on the CPU's instruction set (avx512_bf16 or not): without it the
    # allocations are the tensors alone, the same on every CPU
    with torch.backends.mkldnn.flags(enabled=False):
        return _measure_all()


def _measure_all() -> dict:
    import torch
    from tests.snippets.test_memory_stacks import DORA_TINY
    stamp = {**versions(), "date": dt.date.today().isoformat(), "device": "cpu"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, adapter, autocast, gc in TRANSIENT:
            rows.append({"kind": "transient", "method": method, "adapter": adapter, "autocast": autocast,
                         "gradient_checkpointing": gc, "targets": "all-linear", "rank": 8, "tokens": 4,
                         "measured_bytes": measure_transient(method, adapter, autocast, gc, tmp), **stamp})
        rows += wide_rows(tmp, stamp)
        for method, adapter, targets, dropout, gc in SAVED:
            rows.append({"kind": "saved", "method": method, "adapter": adapter, "targets": targets,
                         "lora_dropout": dropout, "gradient_checkpointing": gc, "rank": 8, "batch_size": BATCH,
                         "seq_len": SEQ, "autocast": False,
                         "measured_bytes": measure_saved(method, adapter, targets, dropout, gc, tmp), **stamp})
    for V, T, H in LOSS_SHAPES:
        rows.append({"kind": "loss", "vocab": V, "tokens": T, "hidden": H, "logits_dtype": "bfloat16",
                     "measured_bytes": measure_losses(V, T, H), **stamp})
    config = {k: v for k, v in DORA_TINY.items() if k != "max_position_embeddings"}
    return {"about": "peft DoRA and the losses measured on CPU by tests/snippets/stack_record.py (regenerate: python -m "
                     "tests.snippets.stack_record); test_dora_recorded.py and test_losses_recorded.py ask the engine again",
            "config": config, "rows": rows}


def write(data: dict) -> None:
    OUT.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    write(measure_all())
    print(f"wrote {OUT}")
