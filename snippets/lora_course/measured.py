"""Measured training memory, written by the labs' memory probe (``gpu_labs/memory_probe.py``).

``data/measured_memory.json`` holds predicted vs measured records with the hardware, library versions
and date; ``data/activation_check.json`` the activation estimate against the bytes autograd saved.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from .registry import table

DATA = os.path.join(os.path.dirname(__file__), "data")
MEMORY_FILE = os.path.join(DATA, "measured_memory.json")
ACTIVATION_FILE = os.path.join(DATA, "activation_check.json")
_KEYS = ("method", "rank", "targets", "batch_size", "seq_len", "gradient_checkpointing", "optimizer", "attention")


def _load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Record:
    model: str
    settings: dict
    device: str          # "cuda" or "cpu"
    gpu: str             # where it ran, in words
    peak_bytes: int      # CUDA: max_memory_reserved; CPU: parameters + gradients + optimizer + saved peak
    predicted_bytes: int
    raw: dict


def records() -> list[Record]:
    data = _load(MEMORY_FILE)
    out = []
    for r in data.get("records", []):
        try:
            out.append(Record(r["model"], r["settings"], r["device"], r["hardware"], int(r["measured"]["peak_bytes"]),
                              int(r["predicted"]["peak_bytes"]), r))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def models() -> dict:
    """The model(s) the memory probe measured (a tiny Llama on CPU), by name, built from the config.json
    it recorded; empty when the file has no config or records more than one model."""
    from loracalc import model_from_config
    cfg = _load(MEMORY_FILE).get("config")
    names = {r.model for r in records()}
    if not isinstance(cfg, dict) or len(names) != 1:
        return {}
    name = names.pop()
    return {name: model_from_config(cfg, name=name)}


def _norm(settings: dict) -> dict:
    from loracalc import parse_targets
    s = {k: settings.get(k) for k in _KEYS}
    try:
        s["targets"] = list(parse_targets(s["targets"])) if s["targets"] is not None else None
        if s["targets"] == ["all-linear"]:      # the probe's models are Llama-shaped: all-linear is these seven
            from loracalc.models import LINEAR_MODULES
            s["targets"] = list(LINEAR_MODULES)
    except ValueError:
        s["targets"] = None
    return s


def lookup(model: Any = None, **settings) -> Record | None:
    """The measured record for this model and these settings, or None when the probe did not run them."""
    from loracalc import Architecture
    name = model.name if isinstance(model, Architecture) else model
    want = _norm(settings)
    for r in records():
        if r.model == name and _norm(r.settings) == want:
            return r
    return None


def _gb(n: float) -> str:
    return f"{n / 1e9:,.3f} GB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


@table("memory_probe")
def memory_probe_table() -> str:
    data = _load(MEMORY_FILE)
    recs = records()
    if not recs:
        return "*No measurements yet: run `python gpu_labs/memory_probe.py` to record them.*"
    rows = ["| model | method | batch × seq | checkpointing | predicted | measured | error | where |",
            "|---|---|--:|---|--:|--:|--:|---|"]
    for r in recs:
        s = r.settings
        err = 100 * (r.predicted_bytes - r.peak_bytes) / r.peak_bytes if r.peak_bytes else 0.0
        fmt = _mb if r.peak_bytes < 1e9 else _gb
        rows.append(f"| {r.model} | {s['method']} | {s['batch_size']} × {s['seq_len']:,} | "
                    f"{'on' if s['gradient_checkpointing'] else 'off'} | {fmt(r.predicted_bytes)} | "
                    f"{fmt(r.peak_bytes)} | {err:+.1f}% | {r.gpu} |")
    v = data.get("versions", {})
    meta = ", ".join(f"{k} {v[k]}" for k in sorted(v))
    return "\n".join(rows) + f"\n\n*Measured {data.get('date', '?')}; {meta}. {data.get('what', '')}*"


@table("activation_check")
def activation_check_table() -> str:
    data = _load(ACTIVATION_FILE)
    rows_in = data.get("rows", [])
    if not rows_in:
        return "*No activation check yet: run `python gpu_labs/memory_probe.py --activation-check`.*"
    rows = ["| model | method | batch | seq_len | checkpointing | attention | estimate | saved for backward | error |",
            "|---|---|--:|--:|---|---|--:|--:|--:|"]
    for r in rows_in:
        rows.append(f"| {r.get('model', '')} | {r['method']} | {r['batch_size']} | {r['seq_len']:,} | "
                    f"{'on' if r['gradient_checkpointing'] else 'off'} | {r['attention']} | "
                    f"{_mb(r['estimated_bytes'])} | {_mb(r['measured_bytes'])} | {r['error_percent']:+.1f}% |")
    worst = max(abs(r["error_percent"]) for r in rows_in)
    v = data.get("versions", {})
    meta = ", ".join(f"{k} {v[k]}" for k in sorted(v))
    shapes = "; ".join(
        f"{name}: {m.get('model_type', 'llama')}, hidden {m['hidden_size']}, {m['num_hidden_layers']} layers, "
        f"{m['num_attention_heads']} heads / "
        f"{m['num_key_value_heads']} kv heads, vocabulary {m['vocab_size']:,}" for name, m in data.get("shapes", {}).items())
    return ("\n".join(rows) + f"\n\n*Largest error {worst:.1f}% over {len(rows_in)} runs. Models: {shapes}. "
            f"Measured {data.get('date', '?')} on {data.get('hardware', '?')}; {meta}.*")
