"""loracalc's training-time model against throughput others measured and published.

``data/published_speed.json`` holds each published point with its source, the file and commit it was read
from, the settings in words, the measured tokens per second and, where loracalc can express the run, the
``estimate_time`` settings that do. Points marked ``calibrate`` set ``loracalc.speed.EFFICIENCY`` (one value
per stack, fitted by ``calibrate``); the others are held out, and the page reports every point.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass

import loracalc
from loracalc.speed import EFFICIENCY, estimate_time

from .registry import figure, table

DATA_FILE = os.path.join(os.path.dirname(__file__), "data", "published_speed.json")
GOAL_PERCENT = 20.0    # the goal for the median error


def records() -> list[dict]:
    with open(DATA_FILE, encoding="utf-8") as f:
        return json.load(f)["records"]


@dataclass(frozen=True)
class Point:
    rec: dict
    measured: float      # tokens per second, all GPUs together
    predicted: float

    @property
    def error_percent(self) -> float:
        return 100.0 * (self.predicted - self.measured) / self.measured


def _arch(lc: dict):
    if lc.get("config"):
        return loracalc.model_from_config({k: v for k, v in lc["config"].items() if not k.startswith("_")})
    return loracalc.get_model(lc["model"])


def litgpt_pairs() -> list[dict]:
    with open(DATA_FILE, encoding="utf-8") as f:
        return json.load(f)["litgpt_pairs"]


@dataclass(frozen=True)
class Ratio:
    """QLoRA's time over LoRA's for one model on one A10G, as LitGPT measured it and as loracalc predicts it."""

    rec: dict
    measured: float
    predicted: float

    @property
    def error_percent(self) -> float:
        return 100.0 * (self.predicted - self.measured) / self.measured


def ratios() -> list[Ratio]:
    out = []
    for r in litgpt_pairs():
        tps = [estimate_time(_arch(r[m]["loracalc"]), "a10", **r[m]["loracalc"]["settings"]).tokens_per_second
               for m in ("lora", "qlora")]
        out.append(Ratio(r, r["measured"]["qlora_minutes"] / r["measured"]["lora_minutes"], tps[0] / tps[1]))
    return out


@table("litgpt_qlora_ratio")
def litgpt_qlora_ratio_table() -> str:
    rows = ["| model (LitGPT config) | LoRA, minutes | QLoRA, minutes | QLoRA / LoRA, published | loracalc | error |",
            "|---|---|---|---|---|---|"]
    for q in ratios():
        m = q.rec["measured"]
        rows.append(f"| {q.rec['id'].split(':', 1)[1]} | {m['lora_minutes']:.2f} | {m['qlora_minutes']:.2f} | "
                    f"{q.measured:.2f} | {q.predicted:.2f} | {q.error_percent:+.1f}% |")
    return "\n".join(rows)


@figure("litgpt_ratio_median_error")
def litgpt_ratio_median_error() -> str:
    return f"{statistics.median(abs(q.error_percent) for q in ratios()):.1f}%"


@figure("litgpt_pairs")
def litgpt_pair_count() -> str:
    return f"{len(litgpt_pairs())}"


def predict(rec: dict, efficiency: dict | None = None) -> float:
    """loracalc's tokens per second (all GPUs) for this record's settings."""
    lc = rec["loracalc"]
    settings = dict(lc["settings"])
    est = estimate_time(loracalc.get_model(lc["model"]), **settings)
    if efficiency is None:
        return est.tokens_per_second
    # the matmul term scales as 1 / efficiency; the other terms do not depend on it
    sec = dict(est.seconds)
    sec["matmuls"] *= EFFICIENCY[est.stack] / efficiency[est.stack]
    return est.tokens_per_step / sum(sec.values())


def points(efficiency: dict | None = None) -> list[Point]:
    return [Point(r, r["measured"]["tokens_per_second"], predict(r, efficiency)) for r in records() if r["expressible"]]


def calibrate() -> dict[str, float]:
    """Per stack, the efficiency that makes the median log-ratio of predicted to measured tokens/s zero on the
    calibration points (bisection; the prediction falls as the efficiency falls)."""
    out = {}
    for stack in EFFICIENCY:
        cal = [r for r in records() if r.get("calibrate") and r["loracalc"]["settings"].get("stack") == stack]
        if not cal:
            out[stack] = EFFICIENCY[stack]
            continue
        lo, hi = 0.05, 1.0
        for _ in range(50):
            mid = (lo + hi) / 2
            eff = {**EFFICIENCY, stack: mid}
            med = statistics.median(math.log(predict(r, eff) / r["measured"]["tokens_per_second"]) for r in cal)
            lo, hi = (mid, hi) if med < 0 else (lo, mid)
        out[stack] = round((lo + hi) / 2, 3)
    return out


def _row(p: Point) -> str:
    r = p.rec
    cal = "yes" if r.get("calibrate") else ""
    return (f"| {r['settings_text']} | {r['source']} | {r['gpus']} | {p.measured:,.0f} | {p.predicted:,.0f} | "
            f"{p.error_percent:+.1f}% | {cal} |")


@table("published_speed")
def published_speed_table() -> str:
    head = ("| run (as the source states it) | source | GPUs | measured tokens/s | loracalc tokens/s | error | "
            "calibrated on it |\n|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(_row(p) for p in points())


@table("published_speed_unexpressed")
def published_speed_unexpressed_table() -> str:
    rows = [r for r in records() if not r["expressible"]]
    return "| run | source | why not predicted |\n|---|---|---|\n" + "\n".join(
        f"| {r['settings_text']} | {r['source']} | {r['why_not']} |" for r in rows)


def _errors() -> list[float]:
    return [p.error_percent for p in points()]


@figure("speed_points")
def speed_points() -> str:
    return f"{len(_errors())}"


@figure("published_unexpressed_speed")
def published_unexpressed_speed() -> str:
    return f"{sum(1 for r in records() if not r['expressible'])}"


@figure("speed_calibration_points")
def speed_calibration_points() -> str:
    return f"{sum(1 for r in records() if r.get('calibrate'))}"


@figure("speed_median_error")
def speed_median_error() -> str:
    return f"{statistics.median(abs(e) for e in _errors()):.1f}%"


@figure("speed_worst_error")
def speed_worst_error() -> str:
    return f"{max(_errors(), key=abs):+.1f}%"


@figure("speed_within_20")
def speed_within_20() -> str:
    return f"{sum(1 for e in _errors() if abs(e) <= GOAL_PERCENT)}"


@figure("speed_efficiency")
def speed_efficiency() -> str:
    return ", ".join(f"{k} {100 * v:.1f}%" for k, v in EFFICIENCY.items())


def _tps(**kw) -> float:
    return estimate_time(loracalc.get_model("llama-3.1-8b"), "a100-80gb", **kw).tokens_per_second


_BASE = dict(method="lora", rank=16, targets="all-linear", batch_size=4, seq_len=2048, gradient_checkpointing=True)


@table("speed_choices")
def speed_choices() -> str:
    """What each choice costs in time: Llama-3.1-8B on one A100 80GB, eager stack, from loracalc.speed."""
    base = _tps(**_BASE)
    rows = [("LoRA r16 all-linear, batch 4 x 2048, checkpointing (the reference)", _BASE),
            ("QLoRA instead of LoRA", {**_BASE, "method": "qlora"}),
            ("no gradient checkpointing", {**_BASE, "gradient_checkpointing": False}),
            ("rank 64 instead of 16", {**_BASE, "rank": 64}),
            ("sequences of 8192 instead of 2048", {**_BASE, "seq_len": 8192, "batch_size": 1}),
            ("full fine-tuning (pure bf16)", {**_BASE, "method": "full", "precision": "bf16"})]
    out = ["| choice | loracalc tokens/s | vs the reference |", "|---|---|---|"]
    for label, kw in rows:
        t = _tps(**kw)
        out.append(f"| {label} | {t:,.0f} | {100 * (t / base - 1):+.0f}% |")
    return "\n".join(out)


# one published change of setting, measured on both sides: (label, source text, record id before, record id after)
_CHANGES = (
    ("gradient checkpointing on", "torchtune, Llama-3.2-3B full, A100, 2 x 4096, compiled",
     "torchtune_flags:+chunked_ce", "torchtune_flags:+activation_checkpointing"),
    ("QLoRA instead of LoRA, 8,192 tokens per step", "torchtune, Llama-3.2-3B r64, A100, 2 x 4096, compiled",
     "torchtune_flags:lora", "torchtune_flags:qlora"),
    ("LoRA instead of full fine-tuning", "fms-acceleration, Mistral-7B, A100, 4 x 4096, checkpointing",
     "fms:none:Mistral-7B-v0.1:1gpu:bs4:full", "fms:none:Mistral-7B-v0.1:1gpu:bs4:lora"),
    ("batch 8 instead of 4", "fms-acceleration, Mistral-7B LoRA, A100, x 4096, checkpointing",
     "fms:none:Mistral-7B-v0.1:1gpu:bs4:lora", "fms:none:Mistral-7B-v0.1:1gpu:bs8:lora"),
)


@table("speed_choices_published")
def speed_choices_published() -> str:
    """Published changes of one setting: the measured change in tokens per second beside loracalc's."""
    by_id = {p.rec["id"]: p for p in points()}
    rows = ["| change | where it was measured | measured change in tokens/s | loracalc |", "|---|---|---|---|"]
    for label, where, a, b in _CHANGES:
        pa, pb = by_id[a], by_id[b]
        rows.append(f"| {label} | {where} | {100 * (pb.measured / pa.measured - 1):+.0f}% | "
                    f"{100 * (pb.predicted / pa.predicted - 1):+.0f}% |")
    q = next(x for x in ratios() if x.rec["id"] == "litgpt:llama-3.1-8b")
    rows.append(f"| QLoRA instead of LoRA, 512 to 1,024 tokens per micro-batch | LitGPT, Llama-3.1-8B, one A10G "
                f"(run time, same data) | {100 * (1 / q.measured - 1):+.0f}% | {100 * (1 / q.predicted - 1):+.0f}% |")
    return "\n".join(rows)
