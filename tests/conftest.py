"""Session fixtures shared by the site and browser tests: the built site, a local server, Chromium.

The site is built once per session (``mkdocs build --strict`` into a temporary folder) unless
``LC_SITE_DIR`` points at a build already made (scripts/test builds ``site/`` first and sets it).
``LC_MKDOCS_CONFIG`` picks another config file (default ``mkdocs.yml``). Importable helpers are in
site_support.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from site_support import CHROMIUM, CHROMIUM_ARGS, ROOT, build_site

SNIPPETS = ROOT / "snippets"
# Subprocesses (the CLI, the labs, the site build) import this checkout's snippets/ too, not an editable
# install that may point at another checkout sharing the same virtual environment.
os.environ["PYTHONPATH"] = os.pathsep.join([str(SNIPPETS), *filter(None, [os.environ.get("PYTHONPATH")])])


def pytest_sessionstart(session):
    import loracalc

    where = Path(loracalc.__file__).resolve()
    if SNIPPETS.resolve() not in where.parents:
        raise pytest.UsageError(f"the tests imported loracalc from {where}, not from this checkout's {SNIPPETS}: "
                                "run pytest from the repository root (pyproject.toml sets pythonpath)")


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
