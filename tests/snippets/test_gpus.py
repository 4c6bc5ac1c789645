"""The GPU catalog against the vendors' nominal memory sizes, and the fit rule at its edge."""
from __future__ import annotations

import json

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


# ------------------------------------------------------------------ the hardware people own
# Each reading as its public printout shows it, with the unit the printout uses (written here from the source,
# not from the catalog): ROCm's PyTorch prints total_memory in MiB as CUDA's does, rocminfo prints KiB, llama.cpp
# printed Metal's recommendedMaxWorkingSetSize in MiB labelled "MB" until late 2023 and in 10^6 bytes after.
MIB, GIB = 2**20, 2**30
PRINTED = {
    "rx-9070-xt": (16304 * MIB, "https://github.com/ROCm/ROCm/issues/5040"),         # total_memory=16304MB
    "rx-7900-xt": (20464 * MIB, "https://github.com/ROCm/ROCm/issues/4437"),         # total_memory=20464MB
    "rx-7900-xtx": (24560 * MIB, "https://github.com/ROCm/ROCm/issues/5040"),        # total_memory=24560MB
    "radeon-pro-w7900": (50315264 * 1024, "https://github.com/ROCm/ROCm/issues/5181"),  # pool 50315264 KB
    "mac-8gb": (5726.63e6, "https://github.com/h2oai/h2ogpt/issues/1359"),            # 5726.63 MB (10^6 B)
    "mac-16gb": (10922.67 * MIB, "https://github.com/abetlen/llama-cpp-python/issues/687"),  # 10922.67 "MB" (MiB)
    "mac-32gb": (21845.34 * MIB, "https://github.com/ggml-org/llama.cpp/pull/2011"),  # 21845.34 "MB" (MiB)
    "mac-48gb": (40_200_896_512, "https://github.com/utensils/mold/issues/1542"),      # 40,200,896,512 bytes
    "mac-96gb": (73728.00 * MIB, "https://github.com/ggml-org/llama.cpp/issues/3213"),  # 73728,00 "MB" (MiB)
    "mac-128gb": (107.52 * GIB, "https://github.com/antirez/ds4/pull/893"),           # 107.52 GiB
}


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_owned_cards_read_their_cited_printout(name):
    printed, url = PRINTED[name]
    g = loracalc.get_gpu(name)
    assert url in g.usable_source
    # a reading printed to two decimals is known to half its last digit (0.005 MiB, 0.005 GiB, 5,000 B)
    last = 0.005 * (GIB if name == "mac-128gb" else MIB) if isinstance(printed, float) else 0
    last = 5_000 if name == "mac-8gb" else last
    assert abs(g.memory_bytes - printed) <= last, (name, g.memory_bytes, printed)
    assert g.to_dict()["vendor"] == ("Apple" if name.startswith("mac") else "AMD")


def test_mac_readings_are_the_share_macos_gives_the_gpu():
    """Metal keeps part of a Mac's memory for the system: two thirds on the 8 to 32 GB Macs in 2023 logs, three
    quarters on the 96 GB one, more on macOS 26 (the 48 and 128 GB readings). The MiB readings are two thirds of
    the memory to the printed digit, which is how their unit is known."""
    for name in ("mac-16gb", "mac-32gb"):
        g = loracalc.get_gpu(name)
        assert abs(g.memory_bytes - 2 / 3 * g.memory_gb * GIB) < 0.01 * MIB
    assert loracalc.get_gpu("mac-96gb").memory_bytes == 3 * 96 * GIB // 4
    for g in loracalc.list_gpus():
        assert g.unified == (g.vendor == "Apple")
        if g.unified:
            assert 0.6 < g.memory_bytes / (g.memory_gb * GIB) < 0.9, g.name


def test_radeon_readings_match_rocminfo():
    """ROCm's PyTorch reports the GPU pool rocminfo prints, so the W7900's rocminfo reading is of the same kind as
    the others: a 7900 XTX's rocminfo pool, 'Size: 25149440(0x17fc000) KB' in
    https://github.com/ROCm/ROCm/issues/4056, is the 24560 MiB its PyTorch printout shows."""
    assert 25149440 * 1024 == loracalc.get_gpu("rx-7900-xtx").memory_bytes


def _settings(**over):
    return loracalc.estimate_memory("llama-3.1-8b", **over).settings


def test_what_a_mac_cannot_run_follows_the_locked_bitsandbytes_and_torch():
    """The limits are the installed packages' own: bitsandbytes 0.50.2 registers its 4-bit kernels for MPS and its
    8-bit optimizer update for no MPS or device-generic backend; torch lists MPS among the fused-optimizer devices."""
    import torch

    import bitsandbytes.backends.mps.ops  # noqa: F401  registers the MPS kernels (no Apple GPU needed)
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    def has(op, key):
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"bitsandbytes::{op}", key)

    assert has("quantize_4bit", "MPS") and has("gemm_4bit", "MPS")
    assert not has("optimizer_update_8bit_blockwise", "MPS")
    assert not has("optimizer_update_8bit_blockwise", "CompositeExplicitAutograd")
    assert has("int8_linear_matmul", "CompositeExplicitAutograd")       # LLM.int8 runs, generically
    assert "mps" in _get_fused_kernels_supported_devices()              # fused AdamW runs on a Mac

    from loracalc.gpus import cannot_run, cautions
    qlora = _settings(method="qlora", optimizer="adamw")
    assert cannot_run("mac-32gb", qlora) == []                          # QLoRA runs on a Mac
    assert [lim.what for lim in cautions("mac-32gb", qlora)] == ["bitsandbytes NF4 on MPS"]
    for opt in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw"):
        assert cannot_run("mac-32gb", _settings(optimizer=opt)), opt
        assert cannot_run("h100-80gb", _settings(optimizer=opt)) == []
        assert cannot_run("rx-7900-xtx", _settings(optimizer=opt)) == []
    fa2 = _settings(method="lora", attention="flash_attention_2")
    assert [lim.what for lim in cannot_run("mac-128gb", fa2)] == ["FlashAttention-2"]
    assert cannot_run("rx-7900-xtx", fa2) == [] and [lim.what for lim in cautions("rx-7900-xtx", fa2)] == [
        "FlashAttention-2 on Radeon"]
    assert cannot_run("mi300x", fa2) == [] and cautions("mi300x", fa2) == []


def test_fits_leaves_out_cards_that_cannot_run_the_settings():
    est = loracalc.estimate_memory("llama-3.1-8b", method="qlora", optimizer="paged_adamw_8bit")
    by_memory, runnable = fits(est.total_bytes), fits(est.total_bytes, est.settings)
    assert "mac-32gb" in by_memory and "mac-32gb" not in runnable
    assert [n for n in by_memory if not n.startswith("mac-")] == runnable


def test_catalog_groups_by_vendor():
    from loracalc.gpus import vendors
    groups = vendors()
    assert list(groups) == ["NVIDIA", "AMD", "Apple"]
    assert sorted(g.name for gs in groups.values() for g in gs) == sorted(loracalc.gpus.GPUS)
    assert {g.name for g in groups["AMD"]} == {"rx-9070-xt", "rx-7900-xt", "rx-7900-xtx", "radeon-pro-w7900", "mi300x"}


def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "loracalc", *args], capture_output=True, text=True, timeout=60)


def test_cli_says_what_a_mac_cannot_run():
    p = _cli("memory", "--model", "llama-3.1-8b", "--gpu", "mac-32gb", "--method", "qlora")
    assert p.returncode == 0, p.stderr
    assert "with care on Mac 32 GB (M1 Max), bitsandbytes NF4 on MPS" in p.stdout
    assert "mac-32gb: fits;" in p.stdout and "recommendedMaxWorkingSetSize" in p.stdout
    p = _cli("memory", "--model", "llama-3.1-8b", "--gpu", "mac-32gb", "--method", "qlora", "--optimizer", "adamw_8bit")
    assert p.returncode == 0, p.stderr
    assert "Mac 32 GB (M1 Max) cannot run 8-bit optimizers" in p.stdout
    assert "mac-32gb: cannot run these settings (above); in memory it fits;" in p.stdout
    fits_line = next(line for line in p.stdout.splitlines() if line.startswith("fits on: "))
    assert "mac-" not in fits_line and "rx-7900-xtx" in fits_line
    j = json.loads(_cli("memory", "--model", "llama-3.1-8b", "--gpu", "mac-32gb", "--optimizer", "adamw_8bit",
                        "--json").stdout)
    assert j["gpu"]["runs"] is False and j["gpu"]["fits"] is True


def test_cli_gpus_lists_the_owned_cards():
    p = _cli("gpus")
    assert p.returncode == 0, p.stderr
    row = next(line for line in p.stdout.splitlines() if line.startswith("mac-16gb "))
    assert "11,453,249,618" in row and "Metal (PyTorch MPS)" in row and "8-bit optimizers" in row
    row = next(line for line in p.stdout.splitlines() if line.startswith("rx-7900-xtx "))
    assert "25,753,026,560" in row and "ROCm (Radeon)" in row
    gs = {g["name"]: g for g in json.loads(_cli("gpus", "--json").stdout)["gpus"]}
    assert gs["mac-16gb"]["unified_memory"] is True and gs["h100-80gb"]["limits"] == []


def test_cli_several_gpus_keeps_the_limits():
    p = _cli("memory", "--model", "llama-3.1-8b", "--gpus", "2", "--gpu", "rx-7900-xt", "--attention",
             "flash_attention_2")
    assert p.returncode == 0, p.stderr
    assert "with care on AMD Radeon RX 7900 XT, FlashAttention-2 on Radeon" in p.stdout
    j = json.loads(_cli("memory", "--model", "llama-3.1-8b", "--gpus", "2", "--gpu", "mac-96gb", "--optimizer",
                        "adamw_8bit", "--json").stdout)
    assert j["gpu"]["runs"] is False and any("cannot run 8-bit optimizers" in line for line in j["gpu"]["limits"])


@pytest.mark.parametrize("printed,card", [
    # names as torch.cuda.get_device_name() prints them (the catalog's usable-bytes sources quote several)
    ("NVIDIA H100 80GB HBM3", "h100-80gb"), ("NVIDIA A100-SXM4-40GB", "a100-40gb"), ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
    ("NVIDIA A10G", "a10"), ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("NVIDIA L40S", "l40s"), ("NVIDIA L4", "l4"),
    ("NVIDIA H200", "h200"), ("AMD Instinct MI300X", "mi300x"), ("Radeon RX 7900 XTX", "rx-7900-xtx"),
    ("AMD Radeon RX 7900 XT", "rx-7900-xt"), ("Tesla T4", None), ("NVIDIA A100", None), ("", None)])
def test_a_device_name_finds_its_catalog_card_or_none(printed, card):
    from loracalc.gpus import find_gpu

    got = find_gpu(printed)
    assert (got.name if got else None) == card
