"""The module's knowledge check, read from ``data/quiz.json`` with its numbers filled in.

The questions, options and explanations are data; every number in them is written as a
``{figure_name}`` placeholder and filled from the course's figure registry when the questions are read,
so a quiz answer cannot drift from what the rest of the site computes.

``questions()`` returns a list of dicts::

    {"id": str, "kind": "scenario" | "concept", "page": "rank-trick.md", "prompt": str,
     "section": "rank-trick.md#the-parameter-arithmetic",   # where a reader goes to reread
     "section_title": str,
     "options": [{"id": "a", "text": str, "correct": bool, "explanation": str}, ...],
     "answer": "b"}                    # the id of the one correct option

A *scenario* describes a run or a deployment (what the log says, what the model does) and asks what went
wrong or what to do; a *concept* asks about an idea directly.

The list is a pool: one knowledge check shows ``per_check()`` of them, chosen by ``check_set(k)``.

Standard library only: the same file runs in CPython and in Pyodide.
"""
from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from .registry import FIGURES, figure

DATA_PATH = Path(__file__).resolve().parent / "data" / "quiz.json"
KINDS = ("scenario", "concept")


def _error(message: str) -> Exception:
    from loracalc import LoraCalcError  # the engine's one documented exception

    return LoraCalcError("quiz", message)


def _raw() -> dict[str, Any]:
    with open(DATA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def placeholders(text: str) -> list[str]:
    """Names of the ``{figure}`` placeholders in ``text``."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


def _fill(text: str, cache: dict[str, str]) -> str:
    # The package's __init__ imported every figure module (figures.py), so the registry is complete.
    for name in placeholders(text):
        if name not in cache:
            if name not in FIGURES:
                raise _error(f"quiz placeholder {{{name}}} is not a known figure")
            cache[name] = FIGURES[name]()
    return text.format_map(cache)


def questions() -> list[dict[str, Any]]:
    """The questions with every placeholder filled; raises LoraCalcError on malformed data."""
    data = _raw()
    cache: dict[str, str] = {}
    out = []
    for q in data["questions"]:
        options = []
        for opt in q["options"]:
            options.append({
                "id": opt["id"],
                "text": _fill(opt["text"], cache),
                "correct": bool(opt["correct"]),
                "explanation": _fill(opt["explanation"], cache),
            })
        correct = [o["id"] for o in options if o["correct"]]
        if len(correct) != 1:
            raise _error(f"question {q['id']!r} must have exactly one correct option")
        kind = q.get("kind", "concept")
        if kind not in KINDS:
            raise _error(f"question {q['id']!r} has kind {kind!r}; use one of {', '.join(KINDS)}")
        out.append({
            "id": q["id"],
            "kind": kind,
            "page": q.get("page", ""),
            "section": q.get("section", q.get("page", "")),
            "section_title": q.get("section_title", ""),
            "prompt": _fill(q["prompt"], cache),
            "options": options,
            "answer": correct[0],
        })
    return out


def pass_mark() -> int:
    """Score the module asks the reader to aim for, out of the ``per_check()`` questions one check shows."""
    return int(_raw().get("pass_mark", 4))


def per_check() -> int:
    """How many questions one knowledge check shows (the page has that many slots)."""
    return int(_raw().get("per_check", 5))


def set_count() -> int:
    """How many different checks the pool gives before they repeat."""
    n, k = len(_raw()["questions"]), per_check()
    return -(-n // k)


def check_set(index: int) -> list[int]:
    """Pool positions shown by check number ``index``: ``per_check()`` consecutive questions, wrapping around,
    so every question appears once the reader has gone through ``set_count()`` checks."""
    n, k = len(_raw()["questions"]), per_check()
    start = (index % set_count()) * k
    return [(start + i) % n for i in range(k)]


@figure("quiz_pass_mark")
def quiz_pass_mark() -> str:
    return str(pass_mark())


@figure("quiz_question_count")
def quiz_question_count() -> str:
    """Questions in one check (the pool is larger: see quiz_pool_size)."""
    return str(per_check())


@figure("quiz_pool_size")
def quiz_pool_size() -> str:
    return str(len(_raw()["questions"]))


@figure("quiz_scenario_count")
def quiz_scenario_count() -> str:
    """Questions in the pool that describe a run and ask for a diagnosis or a decision."""
    return str(sum(q.get("kind") == "scenario" for q in _raw()["questions"]))


@figure("quiz_set_count")
def quiz_set_count() -> str:
    return str(set_count())
