"""Widget registry: one Python function per interactive widget on the site.

A widget is declared in a page as ``<div data-widget="NAME">`` with named inputs and
``data-output="KEY"`` targets. The browser (Pyodide worker) and the build-time prerender both call
``call(NAME, inputs)``; the function registered under NAME takes the inputs as keyword arguments
(strings, as read from the form) and returns ``{KEY: value}`` for the page's output targets.

Contract of ``call`` (the only entry point JavaScript uses), always plain JSON:
    {"ok": true,  "outputs": {KEY: str | number | bool | list | dict, ...}}
    {"ok": false, "field": "<input name or null>", "message": "<one line for the reader>"}
    (with "waiting": true when the input is simply not given yet: the page shows a prompt, not an error)
A ``LoraCalcError`` becomes the second form; any other exception is a bug and is reported as
``{"ok": false, "field": null, "message": "internal error: ..."}`` rather than a traceback.
"""
from __future__ import annotations

from typing import Any

from . import hub_config, memory_calculator, nf4_explorer, quiz, rank_trick, serving_memory  # noqa: F401  (each registers)
from ._common import AwaitingInput
from .registry import WIDGETS, widget  # noqa: F401  (re-exported)


def call(name: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run widget NAME on the form's inputs; always returns the plain-JSON contract above."""
    fn = WIDGETS.get(name)
    if fn is None:
        return {"ok": False, "field": None, "message": f"unknown widget {name!r}; known: {', '.join(sorted(WIDGETS))}"}
    try:
        outputs = fn(**{str(k): v for k, v in (inputs or {}).items()})
    except ValueError as exc:
        if not hasattr(exc, "field"):  # only LoraCalcError (a ValueError with .field/.message) is the reader's error
            return {"ok": False, "field": None, "message": f"internal error: {type(exc).__name__}: {exc}"}
        result = {"ok": False, "field": exc.field or None, "message": getattr(exc, "message", str(exc))}
        if isinstance(exc, AwaitingInput):
            result["waiting"] = True  # a prompt for an input not given yet, not an error
        return result
    except Exception as exc:  # a bug in a widget: report it in one line, never a traceback on the page
        return {"ok": False, "field": None, "message": f"internal error: {type(exc).__name__}: {exc}"}
    return {"ok": True, "outputs": outputs}


def call_json(name: str, inputs_json: str) -> str:
    """``call`` with JSON in and out: what the browser's worker uses (no object conversion across the bridge)."""
    import json

    return json.dumps(call(name, json.loads(inputs_json or "{}")), allow_nan=False)


# ---------------------------------------------------------------- runnable code examples
# What a run may print onto the page: past these, the rest is counted ("N more lines hidden"), not shown,
# so a loop that prints 100,000 lines costs the page a short box instead of a 1.8-million-pixel one.
MAX_OUTPUT_LINES = 200
MAX_OUTPUT_CHARS = 20_000


def cap_output(text: str, max_lines: int = MAX_OUTPUT_LINES, max_chars: int = MAX_OUTPUT_CHARS) -> tuple[str, int]:
    """TEXT cut to its first MAX_LINES lines (and MAX_CHARS characters); returns (shown, lines hidden)."""
    lines = text.splitlines(keepends=True)
    shown = lines[:max_lines]
    kept = "".join(shown)
    if len(kept) > max_chars:
        kept = kept[:max_chars]
        if not kept.endswith("\n"):
            kept += "\n"
    hidden = len(lines) - kept.count("\n") if len(lines) > kept.count("\n") else 0
    return kept, hidden


def run_code(source: str) -> dict[str, Any]:
    """Run a page's code example the way a notebook cell runs.

    Returns ``{"stdout": str, "hidden_lines": int, "value": repr of the last expression or None,
    "error": traceback text or None}``; stdout is capped (``cap_output``) and ``hidden_lines`` counts the rest.
    Each run gets a fresh namespace; the traceback shows only the reader's code (frames named ``<example>``).
    """
    import ast
    import contextlib
    import io
    import traceback

    out = io.StringIO()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    value = None
    error = None
    try:
        tree = ast.parse(source, filename="<example>", mode="exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(tree, "<example>", "exec"), namespace)
            if last is not None:
                result = eval(compile(ast.Expression(last.value), "<example>", "eval"), namespace)
                if result is not None:
                    value = repr(result)
    except BaseException as exc:  # noqa: BLE001 - the reader's code may raise anything, SystemExit included
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<example>"]
        lines = ["Traceback (most recent call last):\n"] if frames else []
        lines += traceback.format_list(frames)
        lines += traceback.format_exception_only(type(exc), exc)
        error = "".join(lines)
    stdout, hidden = cap_output(out.getvalue())
    return {"stdout": stdout, "hidden_lines": hidden, "value": value, "error": error}


def run_code_json(source: str) -> str:
    import json

    return json.dumps(run_code(source))
