"""hooks/widgets.py: inline TeX in headings reaches the TOC and search as reading text; diagrams get a
minimum width at which their smallest label stays readable."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("widgets_hook", ROOT / "hooks" / "widgets.py")
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)


def test_inline_tex_becomes_plain_text():
    assert hook.plain_math(r"Rank \(r\)") == "Rank r"
    assert hook.plain_math(r"Alpha \(\alpha\)") == "Alpha α"
    assert hook.plain_math(r"\(\Delta W\) is \(B A\)") == "Δ W is B A"
    assert hook.plain_math("costs $5 and $6") == "costs $5 and $6"  # dollars are not math
    assert hook.plain_math(r"adds \(\frac{\alpha}{r} B A x\)") == "adds α/r B A x"
    assert hook.plain_math("shown as \\[\n  W x \\]") == "shown as W x"   # display math too (search snippets)


def test_diagrams_get_a_readable_minimum_width():
    html = '<svg class="lc-diagram" style="max-width: 36rem" viewBox="0 0 520 390"></svg>'
    out = hook.diagram_min_widths(html)
    # 13 px labels at 11 px or more: the drawing may shrink to 11/13 of its 520 units, 440 px
    assert "--lc-min-w: 440px" in out and "max-width: 36rem" in out
