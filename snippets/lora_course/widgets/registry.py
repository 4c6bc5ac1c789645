"""The widget registry: widget NAME -> its function. Widget modules register here with ``@widget``;
the package's ``__init__`` imports each of them by name (one explicit list)."""
from __future__ import annotations

from typing import Any, Callable

WIDGETS: dict[str, Callable[..., dict[str, Any]]] = {}


def widget(name: str):
    """Register ``fn(**inputs) -> {output_key: value}`` as widget NAME."""
    def register(fn):
        if name in WIDGETS:
            raise ValueError(f"widget {name!r} registered twice")
        WIDGETS[name] = fn
        return fn
    return register
