"""The module pages: every page exists, every figure token resolves, diagrams are accessible,
and the headline numbers are never typed into the Markdown."""
from __future__ import annotations

import re

import pytest

from .helpers import PAGES, TOKEN, page_text, tokens


@pytest.mark.parametrize("page", PAGES)
def test_page_exists_with_a_title(page):
    text = page_text(page)
    assert re.search(r"^# \S", text, re.M), f"{page} has no top-level heading"


@pytest.mark.parametrize("page", PAGES)
def test_every_token_resolves(page, figures_module):
    for kind, name in tokens(page):
        render = figures_module.render_figure if kind == "fig" else figures_module.render_table
        out = render(name)
        assert isinstance(out, str) and out.strip(), f"{page}: {{{{ {kind}.{name} }}}} rendered empty"
        if kind == "table":
            lines = [ln for ln in out.strip().splitlines() if ln.startswith("|")]
            is_table = len(lines) >= 3 and set(lines[1].replace("|", "").strip()) <= set("-: ")
            # A table with no data yet (e.g. no measurements recorded) may say so in one emphasised line.
            is_note = "\n" not in out.strip() and out.strip().startswith("*")
            assert is_table or is_note, f"{page}: table.{name} is neither a Markdown table nor a note"
        else:
            assert "\n" not in out, f"{page}: fig.{name} must be inline text"


# Values from /work/shared/FACTS.md (checked with transformers + peft on the meta device, and in
# bitsandbytes 0.50). If one of these ever appears typed in a page, the page has bypassed loracalc.
TYPED_FORBIDDEN = ["65,536", "65536", "16,777,216", "16777216", "16.8M", "256", "4.127", "4.12695",
                   "3,407,872", "4,194,304", "41,943,040", "1.4 TB", "1.10", "1.27 TB", "36.4", "39.5"]


@pytest.mark.parametrize("page", PAGES)
def test_headline_numbers_only_via_tokens(page):
    text = TOKEN.sub("", page_text(page))
    text = re.sub(r"https?://\S+|arXiv:\d+\.\d+", "", text)  # citations are not figures
    for value in TYPED_FORBIDDEN:
        assert value not in text, f"{page} types {value!r}; use a {{{{ fig.NAME }}}} token"


SVG = re.compile(r"<svg\b.*?</svg>", re.S)


@pytest.mark.parametrize("page", PAGES)
def test_diagrams_are_accessible_and_themeable(page):
    for svg in SVG.findall(page_text(page)):
        head = svg[: svg.index(">") + 1]
        assert 'role="img"' in head
        labelled = re.search(r'aria-labelledby="([^"]+)"', head)
        assert labelled, "an SVG needs aria-labelledby pointing at its <title> and <desc>"
        for ident in labelled.group(1).split():
            assert re.search(rf'<(title|desc) id="{ident}">', svg), f"{page}: no <title>/<desc> with id {ident}"
        # Colours come from CSS classes (Material variables), so light and dark mode both read.
        assert not re.search(r'(fill|stroke)="#', svg), f"{page}: hard-coded colour in an SVG"
        assert "\n\n" not in svg, f"{page}: a blank line inside an SVG ends Markdown's raw HTML block"


def test_every_page_is_in_the_nav():
    from pathlib import Path

    nav = (Path(__file__).resolve().parents[2] / "mkdocs.yml").read_text(encoding="utf-8")
    for page in PAGES:
        assert re.search(rf":\s*{re.escape(page)}\s*$", nav, re.M), f"{page} missing from nav"
