"""Helpers for the content tests: the module pages and the figure tokens they use."""
from __future__ import annotations

import re
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# The module pages this area owns, in reading order (the nav of mkdocs.yml).
PAGES = [
    "index.md", "when-to-fine-tune.md", "rank-trick.md", "gpu-memory.md", "qlora.md",
    "training-recipe.md", "lora-in-the-wild.md", "knowledge-check.md", "complete.md", "references.md",
    "deep-dives/data-and-evaluation.md", "deep-dives/peft-variants.md", "deep-dives/kernels-moe-preference.md",
    "deep-dives/serving-and-merging.md", "deep-dives/current-practice.md", "how-we-know.md",
]

TOKEN = re.compile(r"\{\{\s*(fig|table)\.([A-Za-z0-9_]+)\s*\}\}")


def page_text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def tokens(name: str) -> list[tuple[str, str]]:
    return TOKEN.findall(page_text(name))
