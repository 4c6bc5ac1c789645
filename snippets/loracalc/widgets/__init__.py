"""Widget registry: one Python function per interactive widget on the site.

A widget is declared in a page as ``<div data-widget="NAME">`` with named inputs and
``data-output="KEY"`` targets. The browser (Pyodide worker) and the build-time prerender both call
``call(NAME, inputs)``; the function registered under NAME takes the inputs as keyword arguments
(strings, as read from the form) and returns ``{KEY: value}`` for the page's output targets.

Contract of ``call`` (the only entry point JavaScript uses), always plain JSON:
    {"ok": true,  "outputs": {KEY: str | number | bool | list | dict, ...}}
    {"ok": false, "field": "<input name or null>", "message": "<one line for the reader>"}
A ``LoraCalcError`` becomes the second form; any other exception is a bug and is reported as
``{"ok": false, "field": null, "message": "internal error: ..."}`` rather than a traceback.
"""
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
