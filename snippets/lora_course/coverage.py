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
        lines.append(f"| `{w['model_type']}` | multimodal wrapper | 1 | 0 | {1 if w['refused'] else 0} | "
                     f"{0 if w['refused'] else 1} |")
    n = sum(r["configs"] for r in data["families"])
    lines.append("")
    lines.append(f"Checked {data['date']} against transformers {data['transformers']} and peft {data['peft']}: "
                 f"{n} configs, each compared on total parameters and on LoRA parameters at ranks 1, 4 and 16 "
                 "for several target sets (`scripts/family_coverage.py`). Any other `model_type` is refused "
                 "in one line.")
    return "\n".join(lines)


@figure("family_count")
def family_count() -> str:
    return str(len(_load()["families"]))
