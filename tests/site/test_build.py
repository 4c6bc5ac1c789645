"""The built site: strict build, figures replaced, widgets prerendered, nothing from another host."""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from site_support import ROOT, build_site

pytestmark = pytest.mark.slow

# Places where a built file makes the browser load something: src/href of scripts, styles, images,
# frames and icons, srcset, CSS url() and @import. <a href> links a reader may click are not loads, and
# URLs inside JavaScript (comments, licence banners) are checked at run time by tests/browser, which
# records every request while visiting every page.
EXTERNAL = r"(?:https?:)?//(?!127\.0\.0\.1|localhost)[^\s\"'()]+"
LOADS_HTML = [
    re.compile(r"<(?:script|img|iframe|source|audio|video|embed|track|input)\b[^>]*\bsrc=[\"']?" + EXTERNAL, re.I),
    re.compile(r"<link\b(?![^>]*rel=[\"']?(?:canonical|alternate)\b)[^>]*\bhref=[\"']?" + EXTERNAL, re.I),
    re.compile(r"\bsrcset=[\"'][^\"']*" + EXTERNAL, re.I),
    re.compile(r"url\(\s*[\"']?" + EXTERNAL, re.I),
    re.compile(r"@import\s+(?:url\()?[\"']?" + EXTERNAL, re.I),
    re.compile(r"<(?:image|use)\b[^>]*\bhref=[\"']?" + EXTERNAL, re.I),
]
LOADS_CSS = LOADS_HTML[3:5]


def _fetched_urls(path: Path, text: str) -> list[str]:
    """Absolute URLs to another host that a built HTML or CSS file would make the browser load."""
    patterns = LOADS_HTML if path.suffix == ".html" else LOADS_CSS
    return [m.group(0)[:120] for p in patterns for m in p.finditer(text)]


def test_strict_build_passes(built_site):
    assert (built_site / "index.html").exists()
    assert (built_site / "assets" / "pyodide" / "pyodide.asm.wasm").stat().st_size > 1_000_000
    assert (built_site / "assets" / "vendor" / "katex" / "katex.min.js").exists()


def test_pyodide_is_the_pinned_version(built_site):
    import json

    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["pyodide"]
    assert (built_site / "assets" / "pyodide" / "VERSION").read_text().strip() == pinned
    copied = (built_site / "assets" / "pyodide" / "pyodide.asm.wasm").read_bytes()
    assert copied == (ROOT / "node_modules" / "pyodide" / "pyodide.asm.wasm").read_bytes()


def test_snippets_zip_holds_both_packages_sources(built_site):
    with zipfile.ZipFile(built_site / "assets" / "snippets.zip") as zf:
        names = set(zf.namelist())
        sources = [*(ROOT / "snippets" / "loracalc").rglob("*.py"), *(ROOT / "snippets" / "lora_course").rglob("*.py")]
        assert len(sources) > 20
        for path in sources:
            if "__pycache__" in path.parts:
                continue
            arc = path.relative_to(ROOT / "snippets").as_posix()
            assert arc in names, arc
            assert zf.read(arc) == path.read_bytes(), f"{arc} differs from the source file"


def test_no_file_loads_anything_from_another_host(built_site):
    offenders = {}
    for path in built_site.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".css"):
            urls = _fetched_urls(path, path.read_text(errors="replace"))
            if urls:
                offenders[path.relative_to(built_site).as_posix()] = urls[:5]
    assert not offenders, offenders


def test_no_page_has_an_unreplaced_placeholder(built_site):
    for html in built_site.rglob("*.html"):
        text = re.sub(r"<(code|pre)\b.*?</\1>", "", html.read_text(), flags=re.S)
        assert not re.search(r"\{\{\s*(fig|table)\.", text), html


def test_widgets_are_prerendered(built_site):
    """Every data-output of every widget holds text (or HTML) in the built page, before any script runs."""
    from bs4 import BeautifulSoup

    found = 0
    for html in built_site.rglob("*.html"):
        soup = BeautifulSoup(html.read_text(), "html.parser")
        for widget in soup.select("[data-widget]"):
            found += 1
            assert widget.has_attr("data-prerendered"), (html, widget["data-widget"])
            filled = [el for el in widget.select("[data-output]") if el.get_text(strip=True) or el.find(True)]
            assert filled, f"{html}: widget {widget['data-widget']} has no prerendered output"
    assert found >= 1


def test_offline_variant_builds_for_file_urls(tmp_path):
    """OFFLINE=true: Material's offline plugin (search index inlined), instant navigation off."""
    proc = build_site(tmp_path / "offline", offline=True, strict=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = (tmp_path / "offline" / "index.html").read_text()
    assert "navigation.instant" not in index
    assert (tmp_path / "offline" / "search" / "search_index.js").exists()
