"""Session fixtures shared by the site and browser tests: the built site, a local server, Chromium.

The site is built once per session (``mkdocs build --strict`` into a temporary folder) unless
``LC_SITE_DIR`` points at a build already made (scripts/test builds ``site/`` first and sets it).
``LC_MKDOCS_CONFIG`` picks another config file (default ``mkdocs.yml``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    """The built site's folder (index.html at its top)."""
    given = os.environ.get("LC_SITE_DIR")
    if given and (Path(given) / "index.html").exists():
        return Path(given)
    dest = tmp_path_factory.mktemp("site")
    proc = build_site(dest)
    if proc.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}")
    return dest


@pytest.fixture(scope="session")
def site_url(built_site) -> str:
    """http://127.0.0.1:PORT/ serving the built site (a free port, .wasm as application/wasm)."""
    from serve_site import start

    server = start(built_site)
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/setup (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.js_errors = errors  # tests may assert no uncaught script errors
    yield pg


def wait_python(page, state: str = "ready") -> None:
    """Wait until the page's Python bridge settles and check it reached STATE."""
    page.wait_for_function(
        "window.loracalcPython && ['ready', 'failed'].includes(window.loracalcPython.state)",
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
