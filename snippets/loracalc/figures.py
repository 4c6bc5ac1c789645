"""Named figures and tables the prose quotes, so no page types a number by hand.

A page writes ``{{ fig.NAME }}`` (an inline figure) or ``{{ table.NAME }}`` (a Markdown table);
the build hook ``hooks/figures.py`` replaces them with what the functions registered here return,
and an unknown name fails the build. Modules register with the decorators below; this module
imports them at the bottom so one import collects every figure.
"""
from __future__ import annotations

from typing import Callable

FIGURES: dict[str, Callable[[], str]] = {}
TABLES: dict[str, Callable[[], str]] = {}


def figure(name: str):
    """Register ``fn() -> str`` as the inline figure ``{{ fig.name }}``."""
    def register(fn: Callable[[], str]) -> Callable[[], str]:
        if name in FIGURES:
            raise ValueError(f"figure {name!r} registered twice")
        FIGURES[name] = fn
        return fn
    return register


def table(name: str):
    """Register ``fn() -> str`` (a Markdown table) as ``{{ table.name }}``."""
    def register(fn: Callable[[], str]) -> Callable[[], str]:
        if name in TABLES:
            raise ValueError(f"table {name!r} registered twice")
        TABLES[name] = fn
        return fn
    return register


def render_figure(name: str) -> str:
    _collect()
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; known: {', '.join(sorted(FIGURES))}")
    return FIGURES[name]()


def render_table(name: str) -> str:
    _collect()
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
    return TABLES[name]()


def _collect() -> None:
    # Each of these modules registers its figures when imported.
    from . import headline, prose, measured, evidence  # noqa: F401
