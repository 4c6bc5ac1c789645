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
from loracalc.gpus import find_gpu
from loracalc.memory import persistent_sizes, settings_of

from .registry import figure

DATA = os.path.join(os.path.dirname(__file__), "data", "published_reserved_pairs.json")

CAPACITY_MARGIN = 8e9      # bytes the card keeps free in a run the fit trusts (see usable)


def usable(p: dict) -> bool:
    """One GPU, with room left on the card for one more of the step's largest blocks and at least CAPACITY_MARGIN:
    nearer its size, a block that does not fit makes the allocator free its cache and retry instead of growing,
    so the figure is capped."""
    card = find_gpu(p["gpu"])
    room = card.memory_bytes - p["nvidia_smi_bytes"]
    return p.get("gpus", 1) == 1 and room > max(CAPACITY_MARGIN, features(p)[0])


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
