"""Helpers the site and browser tests import: paths, the strict build, Chromium flags, waits.

They live here rather than in conftest.py because several test folders have a conftest.py of their
own, and ``from conftest import ...`` would pick whichever of them Python imported first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

CHROMIUM = os.environ.get("LC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]
PYTHON_READY_TIMEOUT_MS = 90_000  # Pyodide starts in 3-6 s on a shared 2-core machine; generous for CI


def build_site(dest: Path, *, offline: bool = False, strict: bool = True) -> subprocess.CompletedProcess:
    """Run ``mkdocs build`` into DEST; returns the finished process (check ``returncode`` and ``stderr``)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "SITE_DIR": str(dest)}
    if offline:
        env["OFFLINE"] = "true"
    config = os.environ.get("LC_MKDOCS_CONFIG", "mkdocs.yml")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--clean", "-f", config, "-d", str(dest)]
    if strict:
        cmd.append("--strict")
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def wait_python(page, state: str = "ready") -> None:
    """Start the page's Python, as a reader's first touch of a widget would (it does not start on its own),
    wait until the bridge settles and check it reached STATE."""
    page.wait_for_function(
        "window.loracalcPython && (window.loracalcPython.start(), ['ready', 'failed'].includes(window.loracalcPython.state))",
        timeout=PYTHON_READY_TIMEOUT_MS,
    )
    got = page.evaluate("[loracalcPython.state, loracalcPython.reason]")
    assert got[0] == state, f"Python is {got[0]}: {got[1]}"


def site_pages(site: Path) -> list[str]:
    """Every page of the built site as a path relative to its root ('' for the home page)."""
    pages = []
    for html in sorted(site.rglob("index.html")):
        rel = html.parent.relative_to(site).as_posix()
        pages.append("" if rel == "." else rel + "/")
    return pages


def click_next(page) -> str:
    """Click "Next" in the footer and wait until the next page is on screen (its own footer links back)."""
    here = page.evaluate("location.href.split('#')[0]")
    link = page.locator("a.md-footer__link--next")
    target = link.evaluate("a => a.href")
    link.click()
    page.wait_for_url(target)
    page.wait_for_function("(here) => document.querySelector('a.md-footer__link--prev')?.href === here", arg=here)
    return target
