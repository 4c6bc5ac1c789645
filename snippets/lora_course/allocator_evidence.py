"""The allocator's two constants, fitted on published pairs (``scripts/allocator_fit.py`` rebuilds the pairs).

Each pair is one fms-acceleration run with torch's ``max_memory_allocated`` and the peak of nvidia-smi's
``memory.used`` (less the reading before it started). The fit: ``nvidia-smi - allocated - rounding =
WORKSPACE_BYTES + FRAGMENTATION x largest transient``, least squares; the largest transient and the rounding come
from the engine (``loracalc.allocator``).
"""
from __future__ import annotations

import json
import os
import statistics

import loracalc
from loracalc import allocator
from loracalc.memory import persistent_sizes, settings_of

from .registry import figure

DATA = os.path.join(os.path.dirname(__file__), "data", "published_reserved_pairs.json")
CSV_FILES = ("a100_80gb", "a100_80gb_liger")     # full-logits runs; Liger (fused loss) runs
CAPACITY_MARGIN = 8e9


def usable(p: dict) -> bool:
    """One GPU, and below the card's capacity."""
    return p.get("gpus", 1) == 1 and p["nvidia_smi_bytes"] < 80e9 * 0.9313 - CAPACITY_MARGIN   # 80 GiB card: keep runs 8 GB below it


def features(p: dict) -> tuple[int, int]:
    """(largest transient block, rounding of the persistent tensors) for one pair, from the engine."""
    run = settings_of(loracalc.get_model(p["model"]), **p["settings"])
    return allocator.largest_transient(run)[0], allocator.rounding_bytes(persistent_sizes(run))


def fit(pairs: list[dict]) -> tuple[float, int]:
    xs, ys = [], []
    for p in pairs:
        big, rnd = features(p)
        xs.append(big)
        ys.append(p["nvidia_smi_bytes"] - p["allocated_peak_bytes"] - rnd)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return round(k, 2), int(round(my - round(k, 2) * mx, -6)) // 2**20 * 2**20


def load() -> list[dict]:
    with open(DATA, encoding="utf-8") as f:
        return json.load(f)["pairs"]


def holdout(held: str) -> tuple[float, int, list[float]]:
    """Fit without one file's pairs and predict them: (k, fixed bytes, absolute % errors)."""
    pairs = [p for p in load() if usable(p)]
    train = [p for p in pairs if p["id"].split(":")[1] != held]
    k, c0 = fit(train)
    errors = []
    for p in pairs:
        if p["id"].split(":")[1] == held:
            big, rnd = features(p)
            pred = p["allocated_peak_bytes"] + rnd + c0 + k * big
            errors.append(abs(100 * (pred - p["nvidia_smi_bytes"]) / p["nvidia_smi_bytes"]))
    return k, c0, errors


@figure("allocator_holdout_liger")
def allocator_holdout_liger() -> str:
    return f"{statistics.median(holdout('a100_80gb_liger')[2]):.1f}%"


@figure("allocator_holdout_full")
def allocator_holdout_full() -> str:
    return f"{statistics.median(holdout('a100_80gb')[2]):.1f}%"


@figure("allocator_capacity_margin")
def allocator_capacity_margin() -> str:
    return f"{CAPACITY_MARGIN / 1e9:.0f} GB"
