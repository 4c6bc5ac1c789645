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
from loracalc.hub import MAX_CONFIG_CHARS  # noqa: F401  (the engine's limit, also for a file from the Hub)


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


# ---------------------------------------------------------------- a reader's config.json, and in a link
# A config.json the reader pasted or dropped is read here (in the browser, by Pyodide) and never sent anywhere.
# A shareable link keeps it as one compact token: "1." + base64url (no padding) of zlib-compressed compact JSON.
# Compact JSON of the parsed object, not the pasted text, so the same config gives the same link however it
# was formatted; the page then shows it re-indented, and the engine reads the same dict either way.
CONFIG_TOKEN_PREFIX = "1."        # the format's version: a later format can still read, or refuse, old links
# The longest token a link carries: with the rest of the address it stays under the 8 kB request line that
# common web servers accept (nginx's large_client_header_buffers default, Apache's LimitRequestLine).
MAX_TOKEN_CHARS = 6_000
# MAX_CONFIG_CHARS (imported above): the longest config.json read (text, or a token's unpacked JSON). The page
# reads at most this many bytes (+1) of a dropped file: its data-max-bytes says the same number.


class AwaitingInput(LoraCalcError):
    """Not a mistake: an input the reader has not given yet (an empty config.json box just chosen).

    The page shows the message as a prompt, not as an error, and leaves the outputs as they were."""


def parse_config(raw: Any) -> dict:
    """A pasted config.json's text -> the parsed object, or the one-line reason it cannot be one."""
    import json

    text_ = text(raw)
    if not text_:
        raise AwaitingInput("config", "Paste a model's config.json here, drop the file here or choose it "
                                      "(or choose a preset)")
    if len(text_) > MAX_CONFIG_CHARS:
        raise LoraCalcError("config", f"config.json is {len(text_):,} characters; a model's config.json is a few kB "
                                      f"(at most {MAX_CONFIG_CHARS:,} are read): is it the right file?")
    try:
        data = json.loads(text_)
    except ValueError as exc:
        msg = getattr(exc, "msg", None)
        where = f" at line {exc.lineno}, column {exc.colno}" if hasattr(exc, "lineno") else ""
        raise LoraCalcError("config", f"config.json is not valid JSON ({msg or exc}{where})") from None
    except RecursionError:
        raise LoraCalcError("config", "config.json is not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise LoraCalcError("config", "config.json must be a JSON object ({...})")
    return data


def config_model(data: dict):
    """The engine's architecture for a parsed config.json, named as ``loracalc --config FILE`` names it."""
    import loracalc

    try:
        return loracalc.model_from_config(data)
    except LoraCalcError as exc:
        raise LoraCalcError("config", exc.message) from None


def config_token(data: dict) -> str:
    """The link token for a parsed config.json ("" when it would be longer than MAX_TOKEN_CHARS)."""
    import base64
    import json
    import zlib

    compact = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    packed = base64.urlsafe_b64encode(zlib.compress(compact, 9)).rstrip(b"=").decode("ascii")
    token = CONFIG_TOKEN_PREFIX + packed
    return token if len(token) <= MAX_TOKEN_CHARS else ""


def config_from_token(token: Any) -> dict:
    """The config.json a link's token holds, or one line saying why the token cannot be read."""
    import base64
    import binascii
    import json
    import zlib

    t = text(token)
    again = "paste or drop the config.json again"
    if len(t) > MAX_TOKEN_CHARS:
        raise LoraCalcError("config", f"the link's config.json is {len(t):,} characters long; a link holds at most "
                                      f"{MAX_TOKEN_CHARS:,}: {again}")
    if not t.startswith(CONFIG_TOKEN_PREFIX):
        raise LoraCalcError("config", f"the link's config.json is not in a format this page reads (it should start "
                                      f"with {CONFIG_TOKEN_PREFIX!r}): {again}")
    body = t[len(CONFIG_TOKEN_PREFIX):]
    damaged = f"the link's config.json is damaged or cut short (was the link copied whole?): {again}"
    try:
        packed = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
        unpack = zlib.decompressobj()
        raw = unpack.decompress(packed, MAX_CONFIG_CHARS + 1)
    except (binascii.Error, ValueError, zlib.error):
        raise LoraCalcError("config", damaged) from None
    if len(raw) > MAX_CONFIG_CHARS or unpack.unconsumed_tail:
        raise LoraCalcError("config", f"the link's config.json unpacks to more than {MAX_CONFIG_CHARS:,} characters: "
                                      f"{again}")
    if not unpack.eof or unpack.unused_data:
        raise LoraCalcError("config", damaged)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise LoraCalcError("config", damaged) from None
    if not isinstance(data, dict):
        raise LoraCalcError("config", damaged)
    return data


def model_source(model: Any, config: Any, config_z: Any = "", changed: Any = "",
                 default: str = "llama-3.1-8b") -> tuple[str, dict | None, dict[str, Any]]:
    """What a widget's Model select, config box and a link's config token ask for.

    Returns (model name, the parsed config.json or None, outputs for the page). A token (a link being opened)
    fills the config box; text typed, pasted or dropped into the box chooses "config" as the model. The
    outputs hold ``_set`` (form values to show), ``_url`` (the link's parameters instead of the form's: the
    raw config never, its token only while the model is "config", "" drops a parameter) and ``config_link``
    (one line on whether the link keeps the config).
    """
    import json

    name = text(model) or default
    token = text(config_z)
    shown: dict[str, str] = {}
    if token:
        data = config_from_token(token)
        name = "config"
        shown = {"model": "config", "config": json.dumps(data, indent=2, ensure_ascii=False)}
    elif text(changed) == "config" and text(config):
        name = "config"
        shown = {"model": "config"}
        data = parse_config(config)
    elif name == "config":
        data = parse_config(config)
    else:
        data = None
    outputs: dict[str, Any] = {"_url": {"config": "", "config_z": ""}, "config_link": ""}
    if shown:
        outputs["_set"] = shown
    if data is not None:
        kept = config_token(data)
        outputs["_url"]["config_z"] = kept
        outputs["config_link"] = (
            f"The page's address keeps this config.json, compressed to {len(kept):,} characters." if kept else
            f"This config.json is too large for a link (over {MAX_TOKEN_CHARS:,} characters compressed): "
            "the address keeps the other settings only.")
    return name, data, outputs
