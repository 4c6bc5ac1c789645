"""loracalc against peak memory that others measured on real GPUs and published.

``data/published_memory.json`` holds each published point as its source gives it: the source and the file
and commit it was read from, the settings in words, the measured number with its unit (GiB, decimal GB
or bytes) and which statistic it is (allocated, active, reserved, or unspecified), and, where loracalc
can express the run, the ``estimate_memory`` settings that do. Points it cannot express say why.

Allocated and active peaks are compared with the estimate's allocated peak; reserved figures with the
allocated peak plus the allocator's reserve (the needed-on-the-card total without the CUDA context and
paged state, neither of which ``memory_reserved`` counts).
"""
from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import loracalc
from loracalc.memory import CUDA_CONTEXT_BYTES

from .registry import figure, table

DATA_FILE = os.path.join(os.path.dirname(__file__), "data", "published_memory.json")
ALLOCATED = ("allocated", "active")     # statistics compared with the allocated peak
BOUND_PERCENT = 10.0                    # the goal for every expressible allocated / active point


def _load() -> dict:
    with open(DATA_FILE, encoding="utf-8") as f:
        return json.load(f)


def records() -> list[dict]:
    return _load()["records"]


@dataclass(frozen=True)
class Point:
    rec: dict
    measured_bytes: int
    predicted_bytes: int

    @property
    def error_percent(self) -> float:
        return 100.0 * (self.predicted_bytes - self.measured_bytes) / self.measured_bytes


def architecture(rec: dict):
    lc = rec["loracalc"]
    if lc.get("config"):
        return loracalc.model_from_config({k: v for k, v in lc["config"].items() if not k.startswith("_")},
                                          name=rec["id"])
    return loracalc.get_model(lc["model"])


def predict(rec: dict) -> int:
    """loracalc's figure for the statistic this record reports."""
    est = loracalc.estimate_memory(architecture(rec), **rec["loracalc"]["settings"])
    if rec["quantity"] in ALLOCATED:
        return est.allocated_peak_bytes
    managed = sum(t.bytes for t in est.terms if t.pool == "managed")
    return est.total_bytes - CUDA_CONTEXT_BYTES - managed


def points(quantities=ALLOCATED) -> list[Point]:
    return [Point(r, int(r["measured"]["bytes"]), predict(r)) for r in records()
            if r["expressible"] and r["quantity"] in quantities]


def _fmt_measured(r: dict) -> str:
    m = r["measured"]
    if m["unit"] in ("bytes", "GiB", "GB"):  # one unit on the site: decimal GB (the source's own unit is in its file)
        return f"{m['bytes'] / 1e9:,.2f} GB"
    return f"{m['value']:,} {m['unit']}"


def _source(r: dict) -> str:
    return r["source"]


def _row(p: Point) -> str:
    r = p.rec
    return (f"| {_source(r)} | {r['settings_text']} | {_fmt_measured(r)} {r['quantity']} | "
            f"{p.predicted_bytes / 1e9:,.2f} GB | {p.error_percent:+.1f}% |")


_HEAD = ("| source | settings | measured | loracalc | error |\n"
         "|---|---|--:|--:|--:|")


@table("published_memory")
def published_memory_table() -> str:
    rows = [_row(p) for p in points()]
    return _HEAD + "\n" + "\n".join(rows)


@table("published_memory_reserved")
def published_memory_reserved_table() -> str:
    rows = [_row(p) for p in points(("reserved",))]
    return _HEAD + "\n" + "\n".join(rows)


@table("published_memory_unexpressed")
def published_memory_unexpressed_table() -> str:
    rows = ["| source | run | why loracalc does not express it |", "|---|---|---|"]
    rows += [f"| {_source(r)} | {r['settings_text']} | {r['why_not']} |" for r in records() if not r["expressible"]]
    return "\n".join(rows)


@table("published_sources")
def published_sources_table() -> str:
    """Where each source's numbers were read: file and commit, one line per distinct citation."""
    seen: dict[str, list[str]] = {}
    for r in records():
        cites = seen.setdefault(r["source"], [])
        if r["citation"] not in cites:
            cites.append(r["citation"])
    rows = ["| source | read from |", "|---|---|"]
    for src, cites in seen.items():
        # a code span keeps file names and quotes as they are written
        rows += [f"| {src} | `{c.replace('|', '/').replace('`', '')}` |" for c in cites]
    return "\n".join(rows)


def _errors() -> list[float]:
    return [abs(p.error_percent) for p in points()]


@figure("published_points")
def published_points() -> str:
    return f"{len(points())}"


@figure("published_unexpressed")
def published_unexpressed() -> str:
    return f"{sum(not r['expressible'] for r in records())}"


@figure("published_median_error")
def published_median_error() -> str:
    return f"{statistics.median(_errors()):.1f}%"


@figure("published_worst_error")
def published_worst_error() -> str:
    return f"{max(_errors()):.1f}%"


@figure("published_within_bound")
def published_within_bound() -> str:
    return f"{sum(e <= BOUND_PERCENT for e in _errors())} of {len(_errors())}"


# ------------------------------------------------------------------ the same runs under three recipes
# Each recipe with the loss and optimizer it ships with: peft + transformers (the full-logits loss, AdamW),
# the QLoRA paper's qlora.py (paged 32-bit AdamW), torchtune (chunked loss, activation offloading).
RECIPE_RUNS = {
    "Hugging Face peft": dict(recipe="peft", loss="full", optimizer="adamw"),
    "QLoRA paper (qlora.py)": dict(recipe="qlora-paper", loss="full", optimizer="paged_adamw"),
    "torchtune": dict(recipe="torchtune", loss="chunked", optimizer="adamw", activation_offload=True),
}
RUN = dict(method="qlora", rank=16, targets="all-linear", batch_size=1, seq_len=4096, gradient_checkpointing=True)


CALCULATOR_PAGE = "gpu-memory.md"   # the page the tables' links open (relative to docs/, where both pages live)


def calculator_query(model: str, settings: dict[str, Any], gpu: str) -> str:
    """The memory calculator's URL state for these settings (its form fields, as strings)."""
    form = {"model": model, "gpu": gpu}
    for k, v in settings.items():
        form[k] = ("on" if v else "off") if isinstance(v, bool) else str(v)
    return "?" + urlencode(form) + "#calculate-it"


def calculator_link(model: str, settings: dict[str, Any], gpu: str) -> str:
    """A Markdown link that opens the calculator's page with these settings (MkDocs keeps the query)."""
    return f"[open]({CALCULATOR_PAGE}{calculator_query(model, settings, gpu)})"


def _recipes(model: str, gpu: str) -> str:
    rows = ["| stack | weights | training state | activations, loss | allocated peak | on the card | calculator |",
            "|---|--:|--:|--:|--:|--:|---|"]
    for name, extra in RECIPE_RUNS.items():
        s = {**RUN, **extra}
        est = loracalc.estimate_memory(model, **s)
        by = {t.key: t.bytes for t in est.terms}
        weights = sum(v for k, v in by.items() if k.startswith("weights") or k == "kbit_upcast")
        train = sum(v for k, v in by.items() if k.startswith("adapter") or k.startswith("optimizer")
                    or k in ("gradients", "dora_magnitude"))
        act = sum(v for k, v in by.items() if k in ("activations", "recomputed", "logits", "dora_activations"))
        link = calculator_link(model, s, gpu)
        rows.append(f"| {name} | {weights / 1e9:,.1f} GB | {train / 1e9:,.2f} GB | {act / 1e9:,.1f} GB | "
                    f"{est.allocated_peak_bytes / 1e9:,.1f} GB | {est.total_bytes / 1e9:,.1f} GB | {link} |")
    return "\n".join(rows)


@table("recipes_llama_8b")
def recipes_llama_8b() -> str:
    return _recipes("llama-3.1-8b", "rtx-4090")


@table("recipes_llama_70b")
def recipes_llama_70b() -> str:
    return _recipes("llama-3.1-70b", "h100-80gb")


# ------------------------------------------------------------------ what the card holds (nvidia-smi) beside allocated


@dataclass(frozen=True)
class CardPair:
    pair: dict
    allocated_error: float      # engine's allocated peak vs the run's max_memory_allocated, %
    card_error: float           # engine's needed-on-the-card total vs the run's nvidia-smi peak, %


def card_pairs() -> list[CardPair]:
    """Published runs with both figures, predicted end to end by the engine (the fit uses only the difference)."""
    from .allocator_evidence import load, usable
    out = []
    for p in load():
        if not p["expressible"] or not usable(p):    # near the card's size the allocator's retry caps the figure
            continue
        est = loracalc.estimate_memory(loracalc.get_model(p["model"]), **p["settings"])
        out.append(CardPair(p, 100 * (est.allocated_peak_bytes - p["allocated_peak_bytes"]) / p["allocated_peak_bytes"],
                            100 * (est.total_bytes - p["nvidia_smi_bytes"]) / p["nvidia_smi_bytes"]))
    return out


@table("published_card_pairs")
def published_card_pairs_table() -> str:
    rows = ["| run (fms-acceleration, A100 80GB, 4,096-token sequences) | allocated: measured | loracalc | "
            "nvidia-smi: measured | loracalc | error |", "|---|--:|--:|--:|--:|--:|"]
    for c in card_pairs():
        p = c.pair
        est_alloc = p["allocated_peak_bytes"] * (1 + c.allocated_error / 100)
        est_card = p["nvidia_smi_bytes"] * (1 + c.card_error / 100)
        s = p["settings"]
        run = (f"{p['model']} {s['method']}, {p['framework']}, batch {s['batch_size']}, "
               f"{'Liger fused loss' if s['loss'] == 'fused_linear' else 'full-logits loss'}")
        rows.append(f"| {run} | {p['allocated_peak_bytes'] / 1e9:,.2f} GB | {est_alloc / 1e9:,.2f} GB "
                    f"({c.allocated_error:+.1f}%) | {p['nvidia_smi_bytes'] / 1e9:,.2f} GB | {est_card / 1e9:,.2f} GB | "
                    f"{c.card_error:+.1f}% |")
    return "\n".join(rows)


# ------------------------------------------------------------------ the same files' runs on two GPUs (FSDP)


def sharded_pairs() -> list[CardPair]:
    """The two-GPU runs, predicted per GPU by ``loracalc.sharding`` with the FSDP the runs used (each pair says:
    FSDP1, reentrant checkpointing, whether the trainer turned mixed precision on)."""
    out = []
    for p in _sharded_records():
        sh = loracalc.estimate_sharded(p["model"], p["gpus"], p["strategy"], fsdp_version=p["fsdp_version"],
                                       reentrant=p["reentrant"], mixed_precision=p["mixed_precision"], **p["settings"])
        alloc = sh.per_gpu_bytes - sh.breakdown.get("cuda_context", 0)
        out.append(CardPair(p, 100 * (alloc - p["allocated_peak_bytes"]) / p["allocated_peak_bytes"],
                            100 * (sh.per_gpu_bytes - p["nvidia_smi_bytes"]) / p["nvidia_smi_bytes"]))
    return out


def _sharded_records() -> list[dict]:
    from .allocator_evidence import load
    return [p for p in load() if p["gpus"] > 1 and p["expressible"]]


def _below_capacity(p: dict) -> bool:
    from .allocator_evidence import usable
    return usable({**p, "gpus": 1})     # the same margin as the one-GPU pairs: near the card the figure is capped


@table("published_sharded_pairs")
def published_sharded_pairs_table() -> str:
    rows = ["| run (fms-acceleration, 2 x A100 80GB, FSDP FULL_SHARD, 4,096-token sequences) | allocated per GPU: "
            "measured | loracalc | nvidia-smi per GPU: measured | loracalc |", "|---|--:|--:|--:|--:|"]
    for c in sharded_pairs():
        p, s = c.pair, c.pair["settings"]
        est_alloc = p["allocated_peak_bytes"] * (1 + c.allocated_error / 100)
        est_card = p["nvidia_smi_bytes"] * (1 + c.card_error / 100)
        run = (f"{p['model']} {s['method']}, {p['framework']}, batch {s['batch_size']} per GPU, "
               f"{'Liger fused loss' if s['loss'] == 'fused_linear' else 'full-logits loss'}")
        capped = "" if _below_capacity(p) else " (near the card's size: left out of the figures)"
        rows.append(f"| {run}{capped} | {p['allocated_peak_bytes'] / 1e9:,.2f} GB | {est_alloc / 1e9:,.2f} GB "
                    f"({c.allocated_error:+.1f}%) | {p['nvidia_smi_bytes'] / 1e9:,.2f} GB | {est_card / 1e9:,.2f} GB "
                    f"({c.card_error:+.1f}%) |")
    return "\n".join(rows)


def _sharded_errors(which: str) -> list[float]:
    return [getattr(c, which) for c in sharded_pairs() if _below_capacity(c.pair)]


@figure("sharded_pairs_count")
def sharded_pairs_count() -> str:
    return f"{len(_sharded_errors('allocated_error'))}"


@figure("sharded_allocated_median_error")
def sharded_allocated_median_error() -> str:
    return f"{statistics.median(abs(e) for e in _sharded_errors('allocated_error')):.1f}%"


@figure("sharded_allocated_worst_error")
def sharded_allocated_worst_error() -> str:
    return f"{max(_sharded_errors('allocated_error'), key=abs):+.1f}%"


@figure("sharded_card_median_error")
def sharded_card_median_error() -> str:
    return f"{statistics.median(abs(e) for e in _sharded_errors('card_error')):.1f}%"


@figure("sharded_card_worst_error")
def sharded_card_worst_error() -> str:
    return f"{max(_sharded_errors('card_error'), key=abs):+.1f}%"


def _one_gpu_twins() -> list[tuple[dict, dict]]:
    """(one-GPU pair, two-GPU pair) of the same scenario, settings and per-GPU batch, both below the card's size
    (TRL skips the kbit preparation of a sharded QLoRA run, so a two-GPU baseline run is no twin of its one-GPU run)."""
    from .allocator_evidence import load
    def key(p: dict, gpus: int) -> tuple[str, str]:
        # an id names the scenario, not the method: full and LoRA runs of one framework share it
        return (p["id"].rsplit(":", 1)[0] if gpus > 1 else p["id"]), p["settings"]["method"]

    ones = {key(p, 1): p for p in load() if p["gpus"] == 1}
    return [(ones[key(p, 2)], p) for p in _sharded_records()
            if key(p, 2) in ones and ones[key(p, 2)]["settings"] == p["settings"] and _below_capacity(p)
            and _below_capacity(ones[key(p, 2)])]


@figure("fsdp1_extra_layer_inputs")
def fsdp1_extra_layer_inputs() -> str:
    """How many bf16 layer inputs (tokens x hidden x 2 bytes) each extra sample adds on two GPUs beyond one:
    the difference of the two slopes of allocated peak over batch, from the published Liger LoRA runs."""
    by_bs = {}
    for one, two in _one_gpu_twins():
        if one["framework"] == "foak-fast-kernels-liger" and one["settings"]["method"] == "lora":
            by_bs.setdefault(one["model"], {})[one["settings"]["batch_size"]] = (one, two)
    out = set()
    for model, rows in by_bs.items():
        lo, hi = min(rows), max(rows)
        arch = loracalc.get_model(model)
        unit = 2 * arch.hidden_size * rows[lo][0]["settings"]["seq_len"]
        slope = [(rows[hi][k]["allocated_peak_bytes"] - rows[lo][k]["allocated_peak_bytes"]) / (hi - lo) for k in (0, 1)]
        out.add(f"{(slope[1] - slope[0]) / unit:.1f}")
    return " and ".join(sorted(out))


@figure("sharded_extra_reserve")
def sharded_extra_reserve() -> str:
    """What two GPUs kept beyond their allocated peak, less what one GPU kept at the same per-GPU batch."""
    d = [(two["nvidia_smi_bytes"] - two["allocated_peak_bytes"]) - (one["nvidia_smi_bytes"] - one["allocated_peak_bytes"])
         for one, two in _one_gpu_twins()]
    return f"{min(d) / 1e9:.1f} GB to {max(d) / 1e9:.1f} GB"


@figure("card_pairs_count")
def card_pairs_count() -> str:
    return f"{len(card_pairs())}"


@figure("card_pairs_median_error")
def card_pairs_median_error() -> str:
    return f"{statistics.median(abs(c.card_error) for c in card_pairs()):.1f}%"


@figure("card_pairs_worst_error")
def card_pairs_worst_error() -> str:
    return f"{max((c.card_error for c in card_pairs()), key=abs):+.1f}%"


@figure("reserved_median_error")
def reserved_median_error() -> str:
    return f"{statistics.median(abs(p.error_percent) for p in points(('reserved',))):.1f}%"


@figure("allocator_fragmentation")
def allocator_fragmentation() -> str:
    from loracalc.allocator import FRAGMENTATION
    return f"{FRAGMENTATION}"


@figure("allocator_workspace")
def allocator_workspace() -> str:
    from loracalc.allocator import WORKSPACE_BYTES
    return f"{WORKSPACE_BYTES / 1e9:.2f} GB"


@figure("card_pairs_fused_lora_range")
def card_pairs_fused_lora_range() -> str:
    """How far under the measured allocated peak the engine is on QLoRA runs with fms-acceleration's fused LoRA
    kernels (expressed as peft's own layers)."""
    e = [-c.allocated_error for c in card_pairs() if "foak" in c.pair["framework"] and c.pair["settings"]["method"] == "qlora"]
    return f"{min(e):.0f}% to {max(e):.0f}%"
