"""The GPU catalog against the vendors' nominal memory sizes, and the fit rule at its edge."""
from __future__ import annotations

import pytest

import loracalc
from loracalc import LoraCalcError
from loracalc.gpus import fits, headroom_bytes

# Nominal memory in GB, as each vendor's product page (the catalog's `source`) states it; DGX B200 lists
# 1,440 GB for eight GPUs, 180 GB each.
VENDOR_GB = {"rtx-3090": 24, "rtx-4090": 24, "rtx-5090": 32, "l4": 24, "a10": 24, "rtx-a6000": 48, "l40s": 48,
             "a100-40gb": 40, "a100-80gb": 80, "h100-80gb": 80, "h200": 141, "b200": 180, "mi300x": 192}


@pytest.mark.parametrize("name, gb", sorted(VENDOR_GB.items()))
def test_catalog_memory_is_the_vendors(name, gb):
    """The capacity compared against is what CUDA reports as usable (totalGlobalMem), read from a cited
    printout. A card's memory is sold in binary GiB or decimal GB depending on the vendor, and the driver
    and ECC keep part of it back, so the usable bytes lie strictly below nominal x 2^30; no reading in the
    cited printouts loses as much as a tenth of the decimal size (the lowest, the L4's 22491 MiB, is 0.98
    of its 24 GB), so nominal x 0.9 x 10^9 is the floor. A MiB count taken as MB, or GiB counted as 2^30
    per nominal GB, falls outside the band; the exact bytes are checked against the cited count below."""
    g = loracalc.get_gpu(name)
    assert g.memory_gb == gb
    assert 0.9 * gb * 10**9 < g.memory_bytes < gb * 2**30, (name, g.memory_bytes)
    assert g.memory_bytes == g.usable_bytes           # every catalog card has its own reading, none falls back
    assert g.source.startswith("https://") and g.bf16
    # the reading is cited: a URL or a named public PyTorch printout, with the count the bytes come from
    assert g.usable_source.strip() and ("https://" in g.usable_source or "total_memory" in g.usable_source)
    if "MBytes (" in g.usable_source:                 # deviceQuery prints the exact byte count: it is this one
        assert f"({g.memory_bytes} bytes)" in g.usable_source
    else:                                             # PyTorch prints MiB (its 'MB' is 2^20 bytes)
        mib = int(g.usable_source.split("total_memory=")[1].split("MB")[0])
        assert g.memory_bytes == mib * 2**20
    d = g.to_dict()
    assert d["memory_bytes"] == g.memory_bytes and d["memory_gb"] == gb and loracalc.get_gpu(g) is g


def test_a_card_without_a_reading_falls_back_to_nominal_bytes():
    from loracalc.gpus import GPU
    assert GPU("x", "x", 24, True, "https://example.org/").memory_bytes == 24 * 10**9


def test_fits_at_the_edge():
    cap = loracalc.get_gpu("rtx-4090").memory_bytes
    assert "rtx-4090" in fits(cap) and "rtx-4090" not in fits(cap + 1)
    assert fits(cap) == [g.name for g in loracalc.list_gpus() if g.memory_bytes >= cap]
    # a nominal "24 GB" estimate does not fit a 24 GB card whose usable memory is less (the L4's, the A10's)
    assert "l4" not in fits(24 * 10**9) and "a10" not in fits(24 * 10**9) and "rtx-4090" in fits(24 * 10**9)
    assert fits(0) == [g.name for g in loracalc.list_gpus()]
    assert fits(10**15) == []
    assert headroom_bytes(cap - 5, "rtx-4090") == 5 and headroom_bytes(cap + 5, "RTX-4090 ") == -5


def test_list_is_smallest_first():
    sizes = [g.memory_bytes for g in loracalc.list_gpus()]
    assert sizes == sorted(sizes) and len(sizes) == len(set(g.name for g in loracalc.list_gpus()))


@pytest.mark.parametrize("bad", ["tpu", "", None, 24])
def test_unknown_gpu(bad):
    with pytest.raises(LoraCalcError) as e:
        loracalc.get_gpu(bad)
    assert e.value.field == "gpu"


@pytest.mark.parametrize("model, seq_len", [("llama-3.2-1b", 1024), ("llama-3.1-8b", 1024), ("qwen2.5-14b", 1024),
                                            ("llama-3.1-70b", 1024), ("llama-3.1-70b", 4096)])
def test_largest_batch_and_sequence_are_the_last_that_fit(model, seq_len):
    """Across the catalog: the search's answer fits and one more does not (0 when even 1 does not fit)."""
    from loracalc import estimate_memory, max_batch_size, max_seq_len
    from loracalc.memory import MAX_BATCH, MAX_SEQ
    seen = set()
    for g in loracalc.list_gpus():
        for method in ("qlora", "lora"):
            for key, search, top in (("batch_size", max_batch_size, MAX_BATCH), ("seq_len", max_seq_len, MAX_SEQ)):
                best = search(model, g, method=method, seq_len=seq_len) if key == "batch_size" else \
                    search(model, g, method=method)
                kw = {"method": method, **({"seq_len": seq_len} if key == "batch_size" else {})}
                fit = lambda v: estimate_memory(model, **{**kw, key: v}).total_bytes <= g.memory_bytes  # noqa: E731
                assert best == 0 and not fit(1) or fit(best) and (best == top or not fit(best + 1)), \
                    (g.name, method, key, best)
                seen.add(min(best, 3))
    if (model, seq_len) == ("llama-3.1-70b", 4096):
        assert {0, 1} <= seen          # the edges of the search: nothing fits, and exactly one fits


def test_an_estimate_exactly_the_size_of_the_gpu_fits():
    """A GPU holding exactly the estimate's bytes fits it: the search's answer is that batch, not one less."""
    from fractions import Fraction

    from loracalc import estimate_memory, max_batch_size
    from loracalc.gpus import GPU
    total = estimate_memory("llama-3.1-8b", batch_size=3, seq_len=1024).total_bytes
    exact = GPU("exact", "a GPU of exactly that size", Fraction(total, 10**9), True, "https://example.org/")
    assert exact.memory_bytes == total
    assert max_batch_size("llama-3.1-8b", exact, seq_len=1024) == 3
    assert headroom_bytes(total, exact) == 0
