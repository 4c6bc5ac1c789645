"""Which model families loracalc counts exactly, as recorded by ``scripts/family_coverage.py``.

``data/family_coverage.json`` holds the outcome of counting every family's config variants live with
transformers and peft on the meta device; ``{{ table.family_coverage }}`` shows it, and the script writes
the same table into the README.
"""
from __future__ import annotations

import json
import os

from .registry import figure, table

COVERAGE_FILE = os.path.join(os.path.dirname(__file__), "data", "family_coverage.json")
ACTIVATION_FILE = os.path.join(os.path.dirname(__file__), "data", "family_activation_check.json")


def _load() -> dict:
    with open(COVERAGE_FILE, encoding="utf-8") as f:
        return json.load(f)


@table("family_coverage")
def coverage_table() -> str:
    data = _load()
    head = ["model_type", "structure", "configs counted live", "exact", "refused", "wrong"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|--:|--:|--:|--:|"]
    for r in data["families"]:
        kind = {"mla": "latent attention (MLA)", "fused": "fused qkv"}.get(r["attention"], "q, k, v, o")
        if r["moe"]:
            kind += ", mixture of experts"
        lines.append(f"| `{r['model_type']}` | {kind} | {r['configs']} | {r['exact']} | {r['refused']} | "
                     f"{r['failed']} |")
    for w in data["wrappers"]:
        lines.append(f"| `{w['model_type']}` | multimodal wrapper, no vision spec | 1 | 0 | "
                     f"{1 if w['refused'] else 0} | {0 if w['refused'] else 1} |")
    n = sum(r["configs"] for r in data["families"])
    lines.append("")
    lines.append(f"Checked against {_checked_with(data)}: "
                 f"{n} configs, each compared on total parameters and on LoRA parameters at ranks 1, 4 and 16 "
                 "for several target sets (`scripts/family_coverage.py`). Vision-language wrappers "
                 + ", ".join(f"`{mt}`" for mt in _vision_wrappers())
                 + " are counted whole, vision tower and projector included (`loracalc/vision.py`, checked by "
                 "`scripts/model_type_coverage.py`). Any other `model_type` is refused in one line.")
    return "\n".join(lines)


def _vision_wrappers() -> list[str]:
    from loracalc.vision import WRAPPERS
    return sorted(WRAPPERS)


def _checked_with(data: dict) -> str:
    """The versions and dates the rows were counted with (each row carries its own since 2026-12-06)."""
    groups: dict[tuple, list[str]] = {}
    for r in data["families"]:
        key = (f"transformers {r.get('transformers', data['transformers'])} and peft {r.get('peft', data['peft'])}",
               r.get("date", data["date"]))
        groups.setdefault(key, []).append(r["model_type"])
    if len(groups) == 1:
        (libs, date), = groups
        return f"{libs} on {date}"
    return "; ".join(f"{libs} on {date} ({', '.join(mts)})" for (libs, date), mts in groups.items())


@figure("family_count")
def family_count() -> str:
    return str(len(_load()["families"]))


@table("family_activation_check")
def activation_table() -> str:
    """Estimated vs saved-for-backward bytes per family: LoRA, QLoRA and full fine-tuning, checkpointing off / on."""
    with open(ACTIVATION_FILE, encoding="utf-8") as f:
        data = json.load(f)
    cells: dict[str, dict] = {}
    for r in data["rows"]:
        key = f"{r['method']}-{'on' if r['gradient_checkpointing'] else 'off'}"
        cells.setdefault(r["model_type"], {})[key] = (f"{r['error_percent']:+.1f}%" if "error_percent" in r
                                                       else "not run")
    cols = ["lora-off", "lora-on", "qlora-off", "qlora-on", "full-off", "full-on"]
    lines = ["| model_type | LoRA | LoRA, checkpointing | QLoRA | QLoRA, checkpointing | full | full, checkpointing |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    for mt in sorted(cells):
        lines.append(f"| `{mt}` | " + " | ".join(cells[mt].get(c, "") for c in cols) + " |")
    st = data["settings"]
    lines.append("")
    lines.append(f"Estimate minus measurement, as a share of the measurement: one step in {st['dtype']}, batch "
                 f"{st['batch_size']} x {st['seq_len']} tokens, rank {st['rank']} on {st['targets']}; "
                 f"measured with {_measured_with(data['rows'])}.")
    return "\n".join(lines)


def _measured_with(rows: list[dict]) -> str:
    """The library versions and dates the rows were measured with (each row carries its own)."""
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        v = r["versions"]
        key = (f"torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}", r["date"][:10])
        groups.setdefault(key, []).append(r["model_type"])
    if len(groups) == 1:
        (libs, date), = groups
        return f"{libs} on {date}"
    return "; ".join(f"{libs} on {date} ({', '.join(sorted(set(mts)))})" for (libs, date), mts in groups.items())


@figure("family_activation_worst")
def family_activation_worst() -> str:
    """The largest estimate-vs-measurement gap of the activation check over the families the engine calls
    checked (the others' term is called rough wherever it is used), as a percentage."""
    from loracalc.families import ACTIVATIONS_CHECKED
    with open(ACTIVATION_FILE, encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    worst = max(abs(r["error_percent"]) for r in rows
                if "error_percent" in r and r["model_type"] in ACTIVATIONS_CHECKED)
    return f"{worst:.1f}%"


@figure("family_activation_rough")
def family_activation_rough() -> str:
    """The measured families whose activation term the engine calls rough, as inline code names."""
    from loracalc.families import ACTIVATIONS_CHECKED
    with open(ACTIVATION_FILE, encoding="utf-8") as f:
        rough = sorted({r["model_type"] for r in json.load(f)["rows"]} - set(ACTIVATIONS_CHECKED))
    return ", ".join(rough) if rough else "none"


# ------------------------------------------------------------- every model_type transformers ships (issue 26)
TYPES_FILE = os.path.join(os.path.dirname(__file__), "data", "model_type_coverage.json")


def _types() -> dict:
    with open(TYPES_FILE, encoding="utf-8") as f:
        return json.load(f)


@table("model_type_coverage")
def model_type_table() -> str:
    """Every text-generation and image-text-to-text model_type of the installed transformers: counted exactly,
    refused in one line, untested, or wrong (none), as ``scripts/model_type_coverage.py`` recorded it."""
    data = _types()
    rows = data["types"]
    c = data["counts"]
    lines = [f"Last run {data['date']} against transformers {data['transformers']} and peft {data['peft']} (each row "
             "says when it was checked): "
             f"{len(rows)} model types, **{c['exact']} counted exactly**, {c['refused']} refused in one line, "
             f"{c['untested']} untested, {c['wrong']} wrong (`scripts/model_type_coverage.py`).", ""]
    lines += ["| model_type | pipelines | state | configs counted live | checked |", "|---|---|---|--:|---|"]
    order = {"wrong": 0, "exact": 1, "untested": 2, "refused": 3}
    for r in sorted(rows, key=lambda r: (order[r["status"]], r["model_type"])):
        if r["status"] == "refused":
            continue
        state = r["status"] + (f" (its config.json says {r['counted_as']})" if r.get("counted_as") else "") + (
            f" ({r['whole']})" if r.get("whole") else "")
        stamp = r["checked_with"]   # each row's own versions and day (scripts/model_type_coverage.py)
        lines.append(f"| `{r['model_type']}` | {', '.join(r['pipelines']) or '—'} | {state} | "
                     f"{r.get('configs', 0)} | {stamp['date']} (transformers {stamp['transformers']}) |")
    refused = [r["model_type"] for r in rows if r["status"] == "refused"]
    lines += ["", f"Refused in one line ({len(refused)}): " + ", ".join(f"`{t}`" for t in refused) + "."]
    return "\n".join(lines)


@figure("model_types_exact")
def model_types_exact() -> str:
    return str(_types()["counts"]["exact"])
