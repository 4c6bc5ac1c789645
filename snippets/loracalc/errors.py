"""The one exception loracalc raises for bad input, and the validators that raise it."""
from __future__ import annotations

import math
from typing import Any


class LoraCalcError(ValueError):
    """Bad input: ``field`` names the input (``""`` when none applies), ``message`` says what is allowed.

    ``str(err)`` is one line, fit to print in a terminal or next to a form field.
    """

    def __init__(self, field: str, message: str):
        self.field = str(field or "")
        self.message = " ".join(str(message).split())
        super().__init__(f"{self.field}: {self.message}" if self.field else self.message)


def as_int(value: Any, field: str, lo: int, hi: int, what: str | None = None) -> int:
    """A whole number in [lo, hi] from an int, an integral float or a numeric string."""
    label = what or field
    rng = f"a whole number from {lo:,} to {hi:,}"
    if isinstance(value, bool) or value is None:
        raise LoraCalcError(field, f"{label} must be {rng} (got {value!r})")
    if isinstance(value, int):
        n = value
    else:
        if isinstance(value, str):
            text = value.strip().replace(",", "").replace("_", "")
            if not text:
                raise LoraCalcError(field, f"{label} is empty: give {rng}")
            try:
                n = int(text)
            except ValueError:
                try:
                    x = float(text)
                except ValueError:
                    raise LoraCalcError(field, f"{label} must be {rng} (got {value!r})") from None
                n = _integral(x, field, label, rng, value)
        elif isinstance(value, float):
            n = _integral(value, field, label, rng, value)
        else:
            raise LoraCalcError(field, f"{label} must be {rng} (got {type(value).__name__})")
    if n < lo or n > hi:
        raise LoraCalcError(field, f"{label} must be {rng} (got {n:,})")
    return n


def _integral(x: float, field: str, label: str, rng: str, raw: Any) -> int:
    if not math.isfinite(x):
        raise LoraCalcError(field, f"{label} must be {rng} (got {raw!r})")
    if x != int(x):
        raise LoraCalcError(field, f"{label} must be {rng} (got {raw!r}, not a whole number)")
    return int(x)


def as_float(value: Any, field: str, lo: float, hi: float, what: str | None = None) -> float:
    """A finite number in [lo, hi]."""
    label = what or field
    rng = f"a number from {lo:g} to {hi:g}"
    if isinstance(value, bool) or value is None:
        raise LoraCalcError(field, f"{label} must be {rng} (got {value!r})")
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise LoraCalcError(field, f"{label} must be {rng} (got {value!r})") from None
    if not math.isfinite(x) or x < lo or x > hi:
        raise LoraCalcError(field, f"{label} must be {rng} (got {value!r})")
    return x


def as_choice(value: Any, field: str, allowed, what: str | None = None) -> str:
    """One of ``allowed`` (a dict or a sequence of names), compared after stripping and lower-casing."""
    label = what or field
    text = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(text, str) or text not in allowed:
        raise LoraCalcError(field, f"{label} must be one of: {', '.join(allowed)} (got {value!r})")
    return text


def as_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("on", "true", "1", "yes"):
            return True
        if v in ("off", "false", "0", "no", ""):
            return False
    raise LoraCalcError(field, f"{field} must be true or false (got {value!r})")
