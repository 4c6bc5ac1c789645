"""The card-level memory (loracalc.allocator): the caching allocator's rounding rules, read from
c10/cuda/CUDACachingAllocator.cpp (torch 2.x: kMinBlockSize 512, kSmallSize 1 MiB, kSmallBuffer 2 MiB,
kLargeBuffer 20 MiB, kMinLargeAlloc 10 MiB, kRoundLarge 2 MiB), the two fitted constants, and the whole
estimate against published runs that measured both the allocated peak and what nvidia-smi saw."""
from __future__ import annotations

import statistics

import pytest

import loracalc
from loracalc import allocator
from loracalc.errors import LoraCalcError

MiB = 2**20


@pytest.mark.parametrize("n, block", [(1, 512), (512, 512), (513, 1024), (3 * MiB + 1, 3 * MiB + 512)])
def test_requests_round_to_512_bytes(n, block):
    assert allocator.block_bytes(n) == block


@pytest.mark.parametrize("n, segment", [
    (100, 2 * MiB), (MiB, 2 * MiB),                   # small pool: 2 MiB segments
    (MiB + 1, 20 * MiB), (10 * MiB - 1, 20 * MiB),    # 1 to 10 MiB: a 20 MiB segment
    (10 * MiB, 10 * MiB), (10 * MiB + 1, 12 * MiB),   # from 10 MiB: its own size, rounded up to 2 MiB
    (1000 * MiB + 5, 1002 * MiB)])
def test_segment_sizes(n, segment):
    assert allocator.segment_bytes(n) == segment


def test_rounding_of_persistent_tensors():
    # two 8 MiB tensors share one 20 MiB segment (4 MiB left over); a 33 MiB tensor takes 34 MiB; two 100-byte
    # tensors take two 512-byte blocks of one 2 MiB segment
    sizes = [8 * MiB, 8 * MiB, 33 * MiB, 100, 100]
    assert allocator.rounding_bytes(sizes) == 4 * MiB + MiB + (2 * MiB - 200)


def test_fitted_constants_are_the_fit():
    """The engine's constants equal a refit on the recorded pairs (they cannot drift from their evidence)."""
    from lora_course import allocator_evidence as ev
    k, c0 = ev.fit([p for p in ev.load() if ev.usable(p)])
    assert (k, c0) == (allocator.FRAGMENTATION, allocator.WORKSPACE_BYTES)


def test_card_total_against_nvidia_smi():
    """fms-acceleration's runs (A100 80GB): the engine's needed-on-the-card total against each run's nvidia-smi
    peak, end to end (allocated peak predicted too). In sample: the allocator's constants were fitted on these
    runs' differences (test_held_out_fits is the out-of-sample check). Goal of issue 27: median within 8%; none beyond 15%."""
    from lora_course.published import card_pairs
    errors = [c.card_error for c in card_pairs()]
    assert len(errors) >= 20
    assert statistics.median(abs(e) for e in errors) <= 8.0
    assert max(abs(e) for e in errors) <= 15.0


def test_held_out_fits():
    """Fitted on one kind of run, the rule predicts the other: full-logits runs -> Liger runs and back, within the
    issue's 8% median (the full-logits side includes full fine-tunes and 70B runs a few GB below the card's size)."""
    from lora_course.allocator_evidence import holdout
    for held in ("a100_80gb", "a100_80gb_liger"):
        errors = holdout(held)[2]
        assert len(errors) >= 10 and statistics.median(errors) <= 8.0 and max(errors) <= 20.0


def test_reserved_points_median():
    from lora_course.published import points
    errors = [abs(p.error_percent) for p in points(("reserved",))]
    assert statistics.median(errors) <= 8.0


def test_largest_transient_is_the_loss_at_large_vocabularies():
    """Llama-3.1-8B, 4 x 4,096 tokens: transformers' loss makes a 4 B x 16,384 x 128,256 fp32 log-softmax, far
    above the MLP's 2 B x 16,384 x 14,336; Liger's fused loss removes it, leaving the MLP's."""
    from loracalc.memory import settings_of
    run = settings_of("llama-3.1-8b", method="lora", batch_size=4, seq_len=4096, loss="full")
    assert allocator.largest_transient(run)[0] == 4 * 16384 * 128256
    run = settings_of("llama-3.1-8b", method="lora", batch_size=4, seq_len=4096, loss="fused_linear")
    assert allocator.largest_transient(run)[0] == 2 * 16384 * 14336


def test_expandable_segments_drop_the_fragmentation():
    base = dict(method="lora", batch_size=4, seq_len=4096)
    plain = loracalc.estimate_memory("llama-3.1-8b", **base)
    exp = loracalc.estimate_memory("llama-3.1-8b", expandable_segments=True, **base)
    assert plain.allocated_peak_bytes == exp.allocated_peak_bytes
    assert plain.total_bytes - exp.total_bytes == int(allocator.FRAGMENTATION * 4 * 16384 * 128256)


def test_expandable_segments_bad_value():
    with pytest.raises(LoraCalcError, match="expandable_segments"):
        loracalc.estimate_memory("llama-3.1-8b", expandable_segments="maybe")
