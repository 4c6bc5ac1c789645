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
    g = loracalc.get_gpu(name)
    assert g.memory_gb == gb and g.memory_bytes == gb * 10**9
    assert g.source.startswith("https://") and g.bf16
    assert g.to_dict()["memory_bytes"] == gb * 10**9 and loracalc.get_gpu(g) is g


def test_fits_at_the_edge():
    cap = 24 * 10**9
    assert "rtx-4090" in fits(cap) and "rtx-4090" not in fits(cap + 1)
    assert fits(cap) == [g.name for g in loracalc.list_gpus() if g.memory_gb >= 24]
    assert fits(0) == [g.name for g in loracalc.list_gpus()]
    assert fits(10**15) == []
    assert headroom_bytes(cap - 5, "rtx-4090") == 5 and headroom_bytes(cap + 5, "RTX-4090 ") == -5


def test_list_is_smallest_first():
    sizes = [g.memory_gb for g in loracalc.list_gpus()]
    assert sizes == sorted(sizes) and len(sizes) == len(set(g.name for g in loracalc.list_gpus()))


@pytest.mark.parametrize("bad", ["tpu", "", None, 24])
def test_unknown_gpu(bad):
    with pytest.raises(LoraCalcError) as e:
        loracalc.get_gpu(bad)
    assert e.value.field == "gpu"
