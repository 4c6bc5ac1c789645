"""Measuring tools and loss algorithms for test_memory_stacks.py, in their own module so that collecting the
fast test set never imports torch.

Liger's fused linear cross-entropy and Cut Cross-Entropy need a GPU (Triton) and torchtune is not installed
here, so their algorithms are written in torch ops, following each project's source.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# one thread, whatever ran before: with more, CPU kernels take per-thread work buffers that the peak-memory
# measurements would count (the Liger check failed when this module ran first in a fresh process)
torch.set_num_threads(1)


def peak_bytes(fn) -> int:
    """Largest live CPU bytes allocated while ``fn`` runs (allocations before it are not counted)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cur = best = 0
    # the raw allocation events, each with its own time (the op-level view folds frees into enclosing ops)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    for e in sorted(events, key=lambda e: e.start_ns()):
        cur += e.nbytes()
        best = max(best, cur)
    return best


def saved_bytes(fn, exclude=()) -> int:
    """Bytes autograd saved for backward while ``fn`` ran (each storage once; ``exclude``: parameters)."""
    seen, ex = {}, {t.untyped_storage().data_ptr() for t in exclude}

    def pack(t):
        p = t.untyped_storage().data_ptr()
        if p not in ex:
            seen[p] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


V, T, H = 2048, 256, 64        # small enough to run in well under a second, vocabulary >> hidden as in real models




def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, H, generator=g).to(torch.bfloat16).requires_grad_()
    w = torch.randn(V, H, generator=g).to(torch.bfloat16)
    y = torch.randint(0, V, (T,), generator=g)
    return x, w, y


def _torchtune_chunked(x, w, y, n):
    """torchtune's CEWithChunkedOutputLoss: the output layer applied per chunk (a list of bf16 chunks), each
    chunk upcast and cross-entropied on its own, the list deleted before backward (as its recipes do)."""
    logits = [c @ w.t() for c in x.chunk(n)]
    loss = sum(F.cross_entropy(c.float(), t, reduction="sum") for c, t in zip(logits, y.chunk(n))) / T
    del logits
    return loss


class _FusedLinearCE(torch.autograd.Function):
    """Liger's fused linear cross-entropy (liger_kernel/ops/fused_linear_cross_entropy.py) in torch ops:
    tokens in chunks of next_pow2(T / ceil(V / H)); each chunk's logits are formed, turned into their
    gradient, and multiplied back into the input's gradient during forward; only that gradient is saved."""

    @staticmethod
    def forward(ctx, x, w, y):
        n_tok = x.shape[0]
        inc = -(-w.shape[0] // x.shape[1])
        rows = 1 << max(0, (-(-n_tok // inc) - 1).bit_length())
        grad_x = torch.empty_like(x)
        loss = torch.zeros((), dtype=torch.float32)
        for s in range(0, n_tok, rows):
            logits = x[s:s + rows] @ w.t()                   # bf16, one chunk
            # Liger's Triton kernel does the next lines in place in `logits`, in registers; torch ops need
            # fp32 temporaries of one chunk (counted apart in the test)
            lf = logits.float()
            lse = torch.logsumexp(lf, dim=-1)
            loss += (lse - lf.gather(1, y[s:s + rows, None])[:, 0]).sum()
            g = torch.softmax(lf, dim=-1)
            del lf
            g[torch.arange(g.shape[0]), y[s:s + rows]] -= 1
            grad_x[s:s + rows] = (g / n_tok).to(x.dtype) @ w
        ctx.save_for_backward(grad_x)
        ctx.rows = rows
        return loss / n_tok

    @staticmethod
    def backward(ctx, grad_out):
        (grad_x,) = ctx.saved_tensors
        return grad_x * grad_out.to(grad_x.dtype), None, None


class _CutCrossEntropy(torch.autograd.Function):
    """Cut Cross-Entropy (Wijmans et al. 2024, apple/ml-cross-entropy) in torch ops: forward computes each
    token's log-sum-exp block by block over the vocabulary and saves the input, the targets and that lse;
    backward recomputes logits a block at a time and accumulates the input's gradient."""

    @staticmethod
    def forward(ctx, x, w, y, block=256):
        lse = torch.full((x.shape[0],), -float("inf"))
        for s in range(0, w.shape[0], block):
            lse = torch.logaddexp(lse, torch.logsumexp((x @ w[s:s + block].t()).float(), dim=-1))
        correct = (x.float() * w[y].float()).sum(-1)
        ctx.save_for_backward(x, w, y, lse)
        ctx.block = block
        return (lse - correct).mean()

    @staticmethod
    def backward(ctx, grad_out):
        x, w, y, lse = ctx.saved_tensors
        gx = torch.zeros(x.shape, dtype=torch.float32)
        for s in range(0, w.shape[0], ctx.block):
            p = torch.exp((x @ w[s:s + ctx.block].t()).float() - lse[:, None])
            gx += p @ w[s:s + ctx.block].float()
        gx -= w[y].float()
        return (gx * grad_out / x.shape[0]).to(x.dtype), None, None, None
