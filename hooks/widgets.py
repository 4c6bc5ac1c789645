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
"""
from __future__ import annotations

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
    for widget in soup.find_all(attrs={"data-widget": True}):
        name = widget["data-widget"]
        result = widgets.call(name, form_inputs(widget))
        if not result.get("ok"):
            raise PluginError(f"{where}: widget {name!r} fails on its default inputs: "
                              f"{result.get('field') or '-'}: {result.get('message')}")
        fill_outputs(soup, widget, result["outputs"])
        widget["data-prerendered"] = ""
    for block in soup.select("div.runnable.highlight"):
        wrapper = soup.new_tag("div", attrs={"class": "lc-runnable", "data-runnable": ""})
        block.wrap(wrapper)
        note = soup.new_tag("p", attrs={"class": "lc-run-note"})
        note.string = "Runnable example: it becomes editable with a Run button once Python has loaded."
        wrapper.append(note)
        output = soup.new_tag("pre", attrs={"class": "lc-run-output", "aria-live": "polite", "hidden": ""})
        wrapper.append(output)
    return str(soup)


def on_page_content(html: str, page, config, files) -> str:
    return prerender(html, page.file.src_uri)
