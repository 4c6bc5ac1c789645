"""Figures for the GPU memory page's section on Macs and Radeon cards, all read from ``loracalc.gpus``.

Standard library only: this module is imported in Pyodide too.
"""
from __future__ import annotations

import loracalc
from loracalc import gpus

from .registry import figure


def _share(name: str) -> str:
    """A Mac's usable bytes (Metal's recommendedMaxWorkingSetSize) as a share of the memory it is sold with, in
    the binary gigabytes Apple's sizes are."""
    g = loracalc.get_gpu(name)
    return f"{100 * g.memory_bytes / (g.memory_gb * 2**30):.0f}%"


@figure("mac_small_usable")
def mac_small_usable() -> str:
    g = loracalc.get_gpu("mac-16gb")
    return f"{g.memory_bytes / 1e9:,.1f} GB of a {g.memory_gb} GB Mac ({_share(g.name)})"


@figure("mac_large_share")
def mac_large_share() -> str:
    g = loracalc.get_gpu("mac-128gb")
    return f"{_share(g.name)} of a {g.memory_gb} GB one"


@figure("mps_watermark_ratio")
def mps_watermark_ratio() -> str:
    return f"{gpus.MPS_HIGH_WATERMARK_RATIO}"


@figure("mac_cannot_run")
def mac_cannot_run() -> str:
    whats = [lim.what for lim in gpus.PLATFORMS["mps"].limits if lim.blocks]
    return ", ".join(whats[:-1]) + " and " + whats[-1]


@figure("radeon_usable")
def radeon_usable() -> str:
    g = loracalc.get_gpu("rx-7900-xtx")
    return f"{g.memory_bytes / 1e9:,.1f} GB on the {g.display_name.removeprefix('AMD ')}"
