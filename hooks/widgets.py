"""Prerender the page's widgets and mark up its runnable code blocks, at build time.

Widgets: for every ``<div data-widget="NAME">`` the hook reads the default inputs from the markup
(the ``value`` / ``selected`` / ``checked`` the HTML declares, read exactly as the browser script reads a
form), calls ``lora_course.widgets.call(NAME, defaults)`` (the function Pyodide calls later) and writes the
outputs into the ``data-output`` elements: text, or HTML where the element has ``data-html``. So the right
numbers are on screen at first paint, without JavaScript and from file://. A widget whose defaults fail
fails the build.

Runnable blocks: a fence written ```` ```{.python .runnable} ```` is wrapped in ``<div class="lc-runnable">``
with an output area; ``assets/js/widgets.js`` turns it into an editor with a Run button once Python is ready.
Other code blocks are not touched.

Each prerendered widget also carries ``data-rendered-for`` (the inputs its outputs are for), so the page can
tell when the form shows other inputs (a shared link, a browser restoring a form) and mark the outputs pending.

Table of contents and search: inline math in a heading (``## Rank $r$``) reaches the TOC and the search
index as raw TeX (``Rank \\(r\\)``); both get a plain-text version (``Rank r``, ``Alpha α``) instead.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from bs4 import BeautifulSoup
from mkdocs.exceptions import PluginError

SNIPPETS = Path(__file__).resolve().parent.parent / "snippets"
if str(SNIPPETS) not in sys.path:
    sys.path.insert(0, str(SNIPPETS))
# MkDocs puts sys.path back as it was once a hook module has loaded, so the packages are bound now, from this
# checkout's snippets/; an import at render time would find whichever copy an installed .pth points at.
import lora_course.widgets  # noqa: E402,F401
from loracalc.choices import CHOICES, GROUPS  # noqa: E402


def form_inputs(widget) -> dict[str, str]:
    """The inputs of a widget element as strings, keyed by ``name`` (the same rules as widgets.js)."""
    values: dict[str, str] = {}
    typed: set[str] = set()  # a slider sharing a typed field's name defers to that field
    for el in widget.find_all(["input", "select", "textarea"]):
        name = el.get("name")
        if not name or el.has_attr("disabled"):
            continue
        if el.name == "select":
            options = el.find_all("option")
            chosen = [o for o in options if o.has_attr("selected")] or options[:1]
            values[name] = chosen[0].get("value", chosen[0].get_text()) if chosen else ""
        elif el.name == "textarea":
            values[name] = el.get_text()
        else:
            kind = (el.get("type") or "text").lower()
            if kind in ("button", "submit", "reset", "file", "image"):
                continue
            if kind == "range":
                if name not in typed:
                    values[name] = el.get("value", "")
            elif kind == "radio":
                if el.has_attr("checked"):
                    values[name] = el.get("value", "on")
                else:
                    values.setdefault(name, "")
            elif kind == "checkbox":
                values[name] = (el.get("value", "on") if el.has_attr("checked") else "")
            else:
                values[name] = el.get("value", "")
                typed.add(name)
    return values


def fill_choices(soup: BeautifulSoup, where: str = "<page>") -> None:
    """Give every ``<select data-choices="SETTING">`` the engine's options for that setting
    (``loracalc.choices.CHOICES``, the table the CLI's help reads too), with ``data-default`` selected;
    ``data-only="a,b"`` keeps a subset, in the engine's order."""
    for sel in soup.select("select[data-choices]"):
        setting = sel["data-choices"]
        if setting not in CHOICES:
            raise PluginError(f"{where}: <select data-choices={setting!r}>: the engine has no such setting "
                              f"(it has {', '.join(CHOICES)})")
        table = CHOICES[setting]
        only = [v.strip() for v in sel.get("data-only", "").split(",") if v.strip()]
        unknown = [v for v in only + [sel.get("data-default", "")] if v and v not in table]
        if unknown:
            raise PluginError(f"{where}: <select data-choices={setting!r}>: {', '.join(unknown)} is not one of "
                              f"the engine's choices ({', '.join(table)})")
        default = sel.get("data-default")
        sel.clear()
        groups = GROUPS.get(setting, {})
        parent, label = sel, None
        for value in (v for v in table if not only or v in only):
            if groups and groups[value] != label:   # a new group (the GPUs by vendor)
                label = groups[value]
                parent = soup.new_tag("optgroup", attrs={"label": label})
                sel.append(parent)
            option = soup.new_tag("option", attrs={"value": value})
            option.string = table[value]
            if value == default:
                option["selected"] = ""
            parent.append(option)


def fill_outputs(soup: BeautifulSoup, widget, outputs: dict) -> None:
    for el in widget.find_all(attrs={"data-output": True}):
        if el.find_parent(attrs={"data-widget": True}) is not widget:
            continue  # belongs to a widget nested inside this one
        key = el["data-output"]
        if key not in outputs:
            continue
        value = outputs[key]
        if value is None:
            value = ""
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif not isinstance(value, str):
            value = str(value)
        el.clear()
        if el.has_attr("data-html"):
            fragment = BeautifulSoup(value, "html.parser")
            for child in list(fragment.contents):
                el.append(child)
        else:
            el.string = value


def prerender(html: str, where: str = "<page>") -> str:
    if "data-widget" not in html and "runnable" not in html:
        return html
    from lora_course import widgets

    soup = BeautifulSoup(html, "html.parser")
    fill_choices(soup, where)
    for widget in soup.find_all(attrs={"data-widget": True}):
        name = widget["data-widget"]
        result = widgets.call(name, form_inputs(widget))
        if not result.get("ok"):
            raise PluginError(f"{where}: widget {name!r} fails on its default inputs: "
                              f"{result.get('field') or '-'}: {result.get('message')}")
        fill_outputs(soup, widget, result["outputs"])
        widget["data-prerendered"] = ""
        widget["data-rendered-for"] = json.dumps(form_inputs(widget), sort_keys=True)
    for block in soup.select("div.runnable.highlight"):
        wrapper = soup.new_tag("div", attrs={"class": "lc-runnable", "data-runnable": ""})
        block.wrap(wrapper)
        note = soup.new_tag("p", attrs={"class": "lc-run-note"})
        note.string = ("Runnable example: with JavaScript on, this code can be edited and run here, in your "
                       "browser; without it, it is shown as text.")
        wrapper.append(note)
        output = soup.new_tag("pre", attrs={"class": "lc-run-output", "aria-live": "polite", "hidden": ""})
        wrapper.append(output)
    return str(soup)


# ---------------------------------------------------------------- TeX in headings -> plain text
_TEX_SYMBOLS = {"alpha": "α", "beta": "β", "gamma": "γ", "Delta": "Δ", "delta": "δ", "lambda": "λ", "eta": "η",
                "theta": "θ", "sigma": "σ", "times": "×", "cdot": "·", "approx": "≈", "le": "≤", "ge": "≥",
                "to": "→", "rightarrow": "→", "sqrt": "√", "top": "ᵀ"}
_INLINE_TEX = re.compile(r"\\[(\[](.+?)\\[)\]]", re.S)  # arithmatex (generic): inline \( ... \), display \[ ... \]


def tex_to_text(tex: str) -> str:
    """Simple inline TeX as reading text: ``\\alpha`` -> α, ``W_{0}`` -> W0, braces dropped."""
    out = re.sub(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"\1/\2", tex)  # a simple fraction reads a/b
    out = re.sub(r"\\([A-Za-z]+)", lambda m: _TEX_SYMBOLS.get(m.group(1), m.group(1)), out)
    out = re.sub(r"\\frac\s*", "", out)
    return re.sub(r"[{}_^]", "", out).replace("\\,", " ").strip()


def plain_math(text: str) -> str:
    """Every inline TeX span of TEXT (``\\(...\\)``) replaced by ``tex_to_text`` of it."""
    return _INLINE_TEX.sub(lambda m: tex_to_text(m.group(1)), text)


def _plain_toc(items) -> None:
    for item in items:
        item.title = plain_math(item.title)
        _plain_toc(item.children)


# The smallest text a diagram draws (diagrams.css: .lc-small) and the least it may render at on a phone.
DIAGRAM_SMALLEST_PX = 13
READABLE_PX = 11


def diagram_min_widths(html: str) -> str:
    """Give each ``svg.lc-diagram`` a minimum drawn width (CSS ``--lc-min-w``) at which its smallest text
    stays READABLE_PX or more; narrower screens scroll the figure sideways instead of shrinking it."""
    if "lc-diagram" not in html:
        return html
    soup = BeautifulSoup(html, "html.parser")
    for svg in soup.select("svg.lc-diagram"):
        try:
            width = float((svg.get("viewbox") or svg.get("viewBox") or "").split()[2])
        except (IndexError, ValueError):
            continue
        min_px = -(-width * READABLE_PX // DIAGRAM_SMALLEST_PX)  # ceiling
        style = svg.get("style", "").rstrip("; ")
        svg["style"] = (style + "; " if style else "") + f"--lc-min-w: {int(min_px)}px"
    return str(soup)


def on_page_content(html: str, page, config, files) -> str:
    if page.toc:
        _plain_toc(page.toc)
    return diagram_min_widths(prerender(html, page.file.src_uri))


def _plain_index(index: dict) -> dict:
    for doc in index.get("docs", []):
        for key in ("title", "text"):
            if isinstance(doc.get(key), str):
                doc[key] = plain_math(doc[key])
    return index


def on_post_build(config) -> None:
    """The search index (and the offline build's copy of it in a script) without raw TeX."""
    site = Path(config["site_dir"]) / "search"
    as_json = site / "search_index.json"
    if as_json.exists():
        as_json.write_text(json.dumps(_plain_index(json.loads(as_json.read_text())), ensure_ascii=False))
    as_js = site / "search_index.js"
    if as_js.exists():
        text = as_js.read_text()
        head, sep, body = text.partition("=")
        try:
            data = json.loads(body.strip().rstrip(";"))
        except ValueError:
            return  # not the shape this hook knows; left as it is
        as_js.write_text(head + sep + " " + json.dumps(_plain_index(data), ensure_ascii=False) + ";")
