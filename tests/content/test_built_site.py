"""The built pages show exactly the figures loracalc computes (strict MkDocs build of the real site)."""
from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from .helpers import PAGES, tokens

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(built_site):
    """The strict build shared by the site tests (tests/conftest.py)."""
    return built_site


def built_html(site: Path, page: str) -> str:
    path = site / ("index.html" if page == "index.md" else page[:-3] + "/index.html")
    return path.read_text(encoding="utf-8")


def visible_text(page_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page_html))


@pytest.mark.parametrize("page", PAGES)
def test_no_token_survives(site, page):
    assert "{{" not in built_html(site, page).replace("{{{", ""), f"{page}: an unreplaced figure token"


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_the_computed_figures(site, page):
    from lora_course import figures

    raw = built_html(site, page)
    text = " ".join(visible_text(raw).split())
    for kind, name in tokens(page):
        if kind == "fig":
            value = figures.render_figure(name)
            if "\\" in value:  # LaTeX: arithmatex keeps the source, escaped
                assert html.escape(value, quote=False) in raw or value in raw, (page, name)
            else:
                assert " ".join(value.split()) in text, f"{page}: fig.{name} = {value!r} not shown"
        else:
            body = figures.render_table(name)
            # Markdown emphasis and code marks are not visible text: `x` renders as <code>x</code>
            cells = [c.strip().strip("*").replace("`", "") for line in body.splitlines() if line.startswith("|")
                     for c in line.strip("|").split("|")]
            for cell in cells:
                if cell and not set(cell) <= set("-: "):
                    # a cell may hold inline HTML (a link, a line break): compare what the reader sees of it
                    # (or a Markdown link, whose text is what shows)
                    shown = " ".join(visible_text(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell)).split())
                    assert shown in text, f"{page}: table.{name} cell {cell!r} not shown"



# The site counts memory in decimal GB (said once, on the home page). Binary units appear only where a page
# explains the difference (a card's usable bytes, also in GiB) or quotes a tool's own output or message.
BINARY_UNIT = re.compile(r"\b\d[\d,.]*\s?(KiB|MiB|GiB|TiB)\b")
EXPLAINS_BINARY = re.compile(r"(= \d[\d.,]* GiB usable|\d[\d.,]* GiB\)|\(\d[\d.,]* GiB|binary units|"
                             r"\d+ MiB context|\d[\d.,]* GiB, which is)")


def test_memory_is_in_decimal_units_outside_code_and_explained_conversions(site):
    problems = {}
    for path in sorted(site.rglob("*.html")):
        raw = re.sub(r"<(code|pre|script|style)\b.*?</\1>", " ", path.read_text(encoding="utf-8"), flags=re.S)
        text = EXPLAINS_BINARY.sub(" ", " ".join(visible_text(raw).split()))
        found = [m.group(0) for m in BINARY_UNIT.finditer(text)]
        if found:
            problems[str(path.relative_to(site))] = found[:5]
    assert not problems, problems


def test_no_page_repeats_an_element_id(site):
    """Two controls sharing an id (the calculator's "CPU offload" label once focused another select) break labels,
    anchors and the table of contents."""
    import collections

    repeated = {}
    for path in sorted(site.rglob("*.html")):
        ids = collections.Counter(re.findall(r'\sid="([^"]+)"', path.read_text(encoding="utf-8")))
        twice = sorted(k for k, n in ids.items() if n > 1)
        if twice:
            repeated[str(path.relative_to(site))] = twice[:5]
    assert not repeated, repeated
