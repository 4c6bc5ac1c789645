"""The library versions every number was checked with: read from ``requirements/lock.txt`` (pip-compile's
output, refreshed by ``scripts/lock``) and ``package.json`` (the pinned Pyodide), never typed.

``{{ table.verified_versions }}`` shows them on the References page, ``hooks/build_info.py`` stamps them
into ``assets/build.json``, and ``scripts/lock`` writes the same table into the README.
"""
from __future__ import annotations

import json
import os
import re

from .registry import table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCK_FILE = os.path.join(ROOT, "requirements", "lock.txt")
PACKAGE_JSON = os.path.join(ROOT, "package.json")

# the libraries the site's numbers are claims about, and what each one is checked for
CHECKED = (
    ("torch", "autograd's saved tensors, the optimizers' state, the memory probe"),
    ("transformers", "parameter counts on the meta device, activations per family, the labs"),
    ("peft", "LoRA counts and what all-linear matches, adapters in the labs"),
    ("bitsandbytes", "NF4 code book and stored bytes, the 4-bit matmul's saved tensors"),
    ("accelerate", "multi-GPU runs (FSDP2, DDP) and per-rank bytes"),
    ("trl", "the SFTTrainer lab"),
    ("datasets", "the labs' data"),
    ("mkdocs-material", "the site"),
)


def locked_versions(path: str = LOCK_FILE) -> dict[str, str]:
    """``{distribution name (lower case, dashes): exact version}`` from a pip-compile lock."""
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
            if m:
                pins[re.sub(r"[._-]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def pyodide_version(path: str = PACKAGE_JSON) -> str:
    with open(path, encoding="utf-8") as f:
        return json.load(f)["dependencies"]["pyodide"]


def verified() -> dict[str, str]:
    """The checked libraries and their locked versions, Pyodide last."""
    pins = locked_versions()
    return {**{name: pins[name] for name, _ in CHECKED}, "pyodide": pyodide_version()}


@table("verified_versions")
def versions_table() -> str:
    pins = verified()
    lines = ["| library | version | what it is checked for |", "|---|---|---|"]
    lines += [f"| {name} | {pins[name]} | {what} |" for name, what in CHECKED]
    lines.append(f"| pyodide | {pins['pyodide']} | the calculators and examples in the browser |")
    lines.append("")
    lines.append("These are the exact versions in `requirements/lock.txt`, which `scripts/setup` installs and the "
                 "tests run against; torch is its CPU build there and a CUDA build on a GPU. A newer release "
                 "is taken on purpose: `scripts/drift` shows what moves first.")
    return "\n".join(lines)


README_START, README_END = "<!-- versions:start -->", "<!-- versions:end -->"


def write_readme(path: str = os.path.join(ROOT, "README.md")) -> bool:
    """Rewrite the README's block between its markers from the lock; True when it changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = head + README_START + "\n" + versions_table() + "\n" + README_END + tail
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text
