"""Where the course's figures and tables are registered: two dictionaries and their decorators.

A module that provides figures imports only this registry; ``figures.py`` imports every such module
by name (one explicit list) and renders from here, so no module needs to import its importer back.
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
