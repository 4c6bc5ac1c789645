"""The GPU memory page keeps the teaching core and the validation material lives on "How we know the numbers":
what is on which page, the core page's size (issue 28: under about 1,500 words of prose, at most 5 tables), and a
figure never becoming a Markdown list marker at the start of a line."""
from __future__ import annotations

import re

import pytest

from .helpers import DOCS, TOKEN, page_text, tokens
from .test_shape import all_pages, nav_pages

CORE = "gpu-memory.md"
VALIDATION = "how-we-know.md"

# The teaching core: where memory goes, bytes per trained parameter, proportions, the 70B figures, the calculator.
CORE_TOKENS = {("fig", "adamw_bytes"), ("fig", "nf4_bytes_per_param"), ("table", "memory_70b_corrected"),
               ("table", "memory_70b_qlora_48gb"), ("fig", "full_70b_range"), ("fig", "full_70b_total"),
               ("fig", "lora_70b_total"), ("fig", "qlora_70b_weights_range"), ("fig", "qlora_65b_script_total")}
# The validation material that moved: family coverage, activation and probe checks, the three stacks, published
# comparisons, what cannot be expressed, where the numbers were read.
MOVED_TABLES = {"family_coverage", "family_activation_check", "memory_probe", "recipes_llama_8b", "recipes_llama_70b",
                "published_memory", "published_memory_reserved", "published_memory_unexpressed", "published_sources"}
MOVED_FIGURES = {"family_activation_worst", "published_points", "published_median_error", "published_worst_error",
                 "published_within_bound", "published_unexpressed"}


def _body(name: str) -> str:
    text = page_text(name)
    return text[text.index("\n---\n", 4) + 5:]


def prose_words(name: str) -> int:
    """Words a reader reads on the page, outside tables, code, included widgets and front matter; a figure token
    counts as one word."""
    text = re.sub(r"```.*?```", " ", _body(name), flags=re.S)
    lines = [ln for ln in text.splitlines()
             if not ln.lstrip().startswith("|") and "--8<--" not in ln and not TOKEN.fullmatch(ln.strip())]
    text = TOKEN.sub("X", "\n".join(lines))
    text = re.sub(r"\$[^$]+\$", "X", text)          # an inline formula reads as one term
    return len(re.findall(r"[A-Za-z0-9][\w'’.,%×–-]*", text))


def markdown_tables(name: str) -> int:
    body = _body(name)
    typed = len(re.findall(r"^\|.*\|\n\|[ :|-]+\|$", body, re.M))
    return typed + sum(1 for kind, _ in tokens(name) if kind == "table")


def test_the_memory_page_keeps_the_teaching_core():
    found = set(tokens(CORE))
    assert CORE_TOKENS <= found, CORE_TOKENS - found
    assert '--8<-- "snippets/widgets/memory-calculator.html"' in page_text(CORE)
    for heading in ("## Four places the memory goes", '### The bytes behind "AdamW doubles the memory"',
                    "## Why the proportions change", "## Calculate it", "## The 70B figures, corrected"):
        assert heading in page_text(CORE), heading


def test_the_validation_material_moved_and_was_not_lost():
    core = {name for kind, name in tokens(CORE)}
    moved = {name for kind, name in tokens(VALIDATION)}
    assert MOVED_TABLES <= moved and MOVED_FIGURES <= moved, (MOVED_TABLES | MOVED_FIGURES) - moved
    assert not (MOVED_TABLES | MOVED_FIGURES) & core
    assert "How we know the numbers" in page_text(CORE) and f"({VALIDATION})" in page_text(CORE)


def test_the_validation_page_sits_beside_the_evidence_and_is_optional():
    nav = nav_pages()
    assert nav[nav.index("evidence.md") + 1] == VALIDATION
    text = page_text(VALIDATION)
    assert "core: true" not in text.split("\n---\n", 1)[0]


def test_the_memory_page_is_short():
    from lora_course.widgets import call

    assert prose_words(CORE) < 1500
    # the calculator's own tables count too (its prerendered default state is what a reader first sees)
    result = call("memory_calculator", {})
    assert result["ok"], result
    widget_tables = sum(str(v).count("<table") for v in result["outputs"].values())
    assert markdown_tables(CORE) + widget_tables <= 5


START_FIGURE = re.compile(r"^\s*(?:[-*+]\s+)?\{\{\s*fig\.([A-Za-z0-9_]+)\s*\}\}(\S*)")


@pytest.mark.parametrize("rel", [p for p in all_pages() if "{{" in (DOCS / p).read_text(encoding="utf-8")])
def test_no_figure_becomes_a_list_marker(rel, figures_module):
    """A line that starts with a figure followed by '.' or ')' and a space reads as an ordered list item once the
    figure is a number ("6. A count above ..." swallowed the 6 on the multi-GPU page)."""
    in_code = False
    for line in page_text(rel).splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        m = None if in_code else START_FIGURE.match(line)
        if m:
            rendered = figures_module.render_figure(m.group(1)) + line[m.end(1):].split("}}", 1)[1]
            assert not re.match(r"\d+[.)](\s|$)", rendered.strip()), f"{rel}: {line.strip()!r}"
