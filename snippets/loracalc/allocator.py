"""What the card holds beyond the allocated peak: PyTorch's caching allocator and the CUDA context.

``torch.cuda.max_memory_allocated`` counts tensors; ``max_memory_reserved`` (and nvidia-smi, which adds the CUDA
context) counts the segments the caching allocator took from the driver to hold them. The rules are those of
``c10/cuda/CUDACachingAllocator.cpp`` (torch 2.x, default settings):

* every request is rounded up to a multiple of 512 bytes;
* a request of at most 1 MiB is served from 2 MiB segments, one of 1 to 10 MiB from a 20 MiB segment, a larger
  one from a segment of its own size rounded up to 2 MiB; a cached free block is split to serve a smaller
  request, and freed blocks stay cached (never returned to the driver unless ``empty_cache`` is called or an
  allocation fails);
* so what a run reserves is its tensors' rounding plus the free blocks it cannot reuse: when a step asks for a
  block larger than any cached free block (the loss's vocabulary-sized tensors, one layer's widest activation,
  a dequantized weight), a new segment is taken, and the segments such blocks leave behind are split by later,
  smaller tensors. Measured pairs (nvidia-smi peak and ``max_memory_allocated`` of the same runs) put that
  fragmentation at about ``FRAGMENTATION`` times the step's largest transient block, with a fixed
  ``WORKSPACE_BYTES`` beside it (cuBLAS workspaces, kernels' scratch, the allocator's first segments).
* ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` maps one growing segment in 2 MiB pages, so a new large
  block extends the segment instead of leaving a hole: the fragmentation term drops (PyTorch's documentation
  of the setting); rounding to pages remains.

``FRAGMENTATION`` and ``WORKSPACE_BYTES`` are fitted (``lora_course.allocator_evidence``, printed by
``scripts/allocator_fit.py``) on the published
fms-acceleration pairs in ``lora_course/data/published_reserved_pairs.json`` (single GPU runs that stayed below
the card's capacity); ``tests/snippets/test_allocator.py`` refits them and fails when the constants drift.
"""
from __future__ import annotations

import math

from .families import is_4bit
from .losses import largest_loss_block

MIN_BLOCK = 512                  # kMinBlockSize: every request rounds up to a multiple of 512 bytes
SMALL_REQUEST = 1 << 20          # kSmallSize: up to 1 MiB from the small pool
SMALL_SEGMENT = 2 << 20          # kSmallBuffer: the small pool's segments
MID_SEGMENT = 20 << 20           # kLargeBuffer: requests of 1 to 10 MiB share 20 MiB segments
LARGE_REQUEST = 10 << 20         # kMinLargeAlloc: from 10 MiB a request gets a segment of its own
LARGE_ROUND = 2 << 20            # kRoundLarge: ... rounded up to 2 MiB

CUDA_CONTEXT_BYTES = 512 * 2**20  # the CUDA context and its kernels (lazy loading), not counted by torch
# --8<-- [start:fit]
FRAGMENTATION = 1.25             # x the step's largest transient block (fitted; scripts/allocator_fit.py)
WORKSPACE_BYTES = 1_690_304_512  # fixed, context included (fitted; scripts/allocator_fit.py)
# --8<-- [end:fit]


def block_bytes(n: int) -> int:
    """What one tensor of ``n`` bytes occupies in its segment."""
    return max(MIN_BLOCK, -(-n // MIN_BLOCK) * MIN_BLOCK)


def segment_bytes(n: int) -> int:
    """The segment the allocator takes from the driver when no cached block can serve ``n`` bytes."""
    if n <= SMALL_REQUEST:
        return SMALL_SEGMENT
    if n < LARGE_REQUEST:
        return MID_SEGMENT
    return -(-n // LARGE_ROUND) * LARGE_ROUND


def rounding_bytes(sizes: list[int]) -> int:
    """Bytes the allocator reserves beyond ``sizes`` (tensors that live through the run, allocated one after
    another): each large tensor's segment rounding, the small and mid-sized ones packed into their pools' segments."""
    small = sum(block_bytes(n) for n in sizes if n <= SMALL_REQUEST)
    mid = sum(block_bytes(n) for n in sizes if SMALL_REQUEST < n < LARGE_REQUEST)
    large = sum(segment_bytes(n) - n for n in sizes if n >= LARGE_REQUEST)
    pack = (math.ceil(small / SMALL_SEGMENT) * SMALL_SEGMENT - sum(n for n in sizes if n <= SMALL_REQUEST)
            + math.ceil(mid / MID_SEGMENT) * MID_SEGMENT - sum(n for n in sizes if SMALL_REQUEST < n < LARGE_REQUEST))
    return large + pack


def largest_transient(run) -> tuple[int, str]:
    """The largest single tensor a training step allocates and frees again, and what it is.

    Candidates: the loss's vocabulary-sized block (its fp32 log-softmax under transformers' full-logits loss,
    one chunk's under a chunked loss, the fused loss's chunk of rows), one layer's widest activation (the MLP's
    intermediate, ``tokens x intermediate``), a quantized weight dequantized to 16 bits, eager attention's score
    matrix."""
    arch, T = run.arch, run.tokens
    V, h = arch.vocab_size, arch.hidden_size
    out: list[tuple[int, str]] = []
    loss_block = largest_loss_block(run.loss, V, T, h, run.logits_b, run.loss_chunks)
    if loss_block:
        out.append(loss_block)
    inter = max([r.d_out for r in arch.records if r.kind == "linear" and r.reads in ("mlp_in",) and r.role == "mlp"]
                or [getattr(arch, "intermediate_size", 0) or 4 * h])
    act_b = 2 if run.autocast or run.s == 2 else run.s
    out.append((act_b * inter * T, f"one layer's MLP intermediate, {act_b} B x {T:,} tokens x {inter:,}"))
    if run.quantized or run.base_format != "bf16":
        # the weights load_in_4bit (or the base's format) quantizes: the output layer only when the recipe does
        every = run.stack.quantizes_every_linear or run.base_format != "bf16"
        w = max([r.d_out * r.d_in for r in arch.records if is_4bit(r, arch.family, every)]
                + ([V * h] if run.head_quantized else []), default=0)
        out.append((2 * w, f"a quantized weight dequantized to 16 bits, 2 B x {w:,}"))
    if run.attention == "eager":
        heads = arch.num_attention_heads
        S = run.seq_len
        out.append((4 * run.batch_size * heads * S * S,
                    f"eager attention's fp32 scores, 4 B x {run.batch_size} x {heads} heads x {S:,}^2"))
    return max(out)


def reserve_bytes(run, persistent_sizes: list[int], expandable: bool = False) -> tuple[int, str]:
    """The card's memory beyond the allocated peak (CUDA context included), and the formula as text."""
    rnd = rounding_bytes(persistent_sizes)
    big, what = largest_transient(run)
    frag = 0 if expandable else int(FRAGMENTATION * big)
    text = (f"{WORKSPACE_BYTES:,} B fixed (context and workspaces) + {rnd:,} B rounding (the stored tensors' "
            "blocks)")
    if expandable:
        text += ", no fragmentation term (expandable segments)"
    else:
        text += f" + {FRAGMENTATION} x {big:,} B fragmentation ({what})"
    return WORKSPACE_BYTES + rnd + frag, text
