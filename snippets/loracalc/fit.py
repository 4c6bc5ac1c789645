"""What fits: the largest batch size and sequence length whose estimate fits on a GPU.

Both search ``estimate_memory`` (doubling, then bisection), so they follow every term the memory
model has, for presets and for a reader's own config alike. "Fits" means the estimate's needed-on-the-card
total (allocated peak, allocator reserve, CUDA context, paged optimizer state left on the card) is at
most the GPU's usable bytes as CUDA reports them (``gpus.GPU.memory_bytes``).
"""
from __future__ import annotations

from .gpus import get_gpu
from .memory import MAX_BATCH, MAX_SEQ, estimate_memory


def _largest(key: str, hi: int, model, gpu, settings) -> int:
    cap = get_gpu(gpu).memory_bytes

    def ok(v: int) -> bool:
        return estimate_memory(model, **{**settings, key: v}).total_bytes <= cap

    if not ok(1):
        return 0
    lo, step = 1, 1
    while lo < hi:                       # double until it no longer fits, then bisect
        nxt = min(hi, lo + step)
        if not ok(nxt):
            hi = nxt - 1
            break
        lo, step = nxt, step * 2
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def max_batch_size(model, gpu, **settings) -> int:
    """Largest batch size whose estimate fits on ``gpu`` (0 if batch 1 does not)."""
    settings.pop("batch_size", None)
    return _largest("batch_size", MAX_BATCH, model, gpu, settings)


def max_seq_len(model, gpu, **settings) -> int:
    """Largest sequence length whose estimate fits on ``gpu`` (0 if one token does not)."""
    settings.pop("seq_len", None)
    return _largest("seq_len", MAX_SEQ, model, gpu, settings)
