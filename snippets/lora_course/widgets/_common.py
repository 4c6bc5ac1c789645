"""Helpers shared by the widget functions: reading form strings, formatting, small SVG pieces.

Widget inputs arrive as strings, exactly as the form holds them. Parsing goes through the engine's
own validators (``loracalc.errors``) so a widget shows the same message the terminal prints;
every number a widget shows comes from ``loracalc``; this module only formats it.
Standard library only: the same file runs in CPython and in Pyodide.
"""
from __future__ import annotations

import math
from html import escape
from typing import Any

from loracalc.errors import LoraCalcError, as_bool, as_choice, as_int


def preset(value: Any, default: str):
    """The engine's model preset named by a form's ``model`` field (blank: DEFAULT)."""
    from loracalc import models

    name = text(value) or default
    if name not in models.list_models():
        raise LoraCalcError("model", f"model must be one of the presets (got {name!r})")
    return models.get_model(name)


def text(value: Any) -> str:
    """The form value as a stripped string (None and missing become "")."""
    return "" if value is None else str(value).strip()


def on_off(value: Any, field: str) -> bool:
    """A select with values "on" / "off" (the engine's validator, which also takes true/false)."""
    return as_bool(text(value), field)


def choice(value: Any, field: str, allowed: dict[str, Any] | list[str], default: str | None = None,
           what: str | None = None) -> str:
    """One of ``allowed`` (the engine's validator); an empty form value means ``default`` when one is given."""
    return as_choice(text(value) or (default or ""), field, allowed, what)


# ---------------------------------------------------------------- formatting
def fmt_int(n: int | float) -> str:
    """65536 -> "65,536"."""
    return f"{int(round(n)):,}"


def fmt_pct(p: float, digits: int = 3) -> str:
    """A percentage with enough significant digits to be non-zero when the value is."""
    _finite(p)
    if p == 0:
        return "0%"
    if p >= 1:
        return f"{p:.2f}%"
    # small percentages: show significant digits rather than 0.00%
    return f"{p:.{digits}g}%"


def fmt_ratio(x: float) -> str:
    """256.0 -> "256×", 1.5 -> "1.5×", 0.25 -> "0.25×"."""
    _finite(x)
    if abs(x - round(x)) < 1e-9:
        return f"{int(round(x)):,}×"
    if x >= 10:
        return f"{x:,.1f}×"
    return f"{x:.3g}×"


def fmt_bytes(n: float) -> str:
    """Bytes in decimal units: 1_500_000 -> "1.50 MB", as GPU spec sheets and the engine's GB use."""
    _finite(n)
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    x = float(n)
    i = 0
    while abs(x) >= 1000 and i < len(units) - 1:
        x /= 1000
        i += 1
    if i == 0:
        return f"{int(x)} B"
    return f"{x:.3g} {units[i]}" if x < 100 else f"{x:,.0f} {units[i]}"


def fmt_mb(n: float) -> str:
    """Bytes as MB (10^6) with two decimals, for small measured runs."""
    _finite(n)
    return f"{n / 1e6:,.2f} MB"


def fmt_gb(n: float, digits: int = 1) -> str:
    """Bytes as GB (10^9) with fixed decimals: the unit GPU capacities are quoted in."""
    _finite(n)
    return f"{n / 1e9:,.{digits}f} GB"


def _finite(x: float) -> None:
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        raise LoraCalcError("", f"internal: a computed value is not a finite number ({x!r})")


def esc(s: Any) -> str:
    return escape(str(s), quote=True)


def num(x: float) -> str:
    """A coordinate for SVG: short, finite."""
    _finite(x)
    return f"{x:.2f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------- parsing
def integer(value: Any, field: str, lo: int, hi: int, what: str | None = None) -> int:
    """A whole number in [lo, hi] from a form string: the engine's validator, so messages match the CLI."""
    return as_int(text(value), field, lo, hi, what)
