"""Python once per visit, wherever the site is served, and only when the reader needs it.

The build is served by a plain static server (no help from scripts/serve_site.py) on a random port and
under a path prefix, an address that is not the build's site_url: instant navigation must still keep
one page and one Pyodide worker for the whole walk, and a reader who only reads downloads no Pyodide.
"""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from site_support import click_next, wait_python

pytestmark = pytest.mark.browser

PREFIX = "course/lora/"


class _Plain(http.server.SimpleHTTPRequestHandler):
    # Only what any static host does: the right types for the wasm and the module scripts.
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript"}

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def prefixed_url(built_site, tmp_path_factory):
    root = tmp_path_factory.mktemp("prefixed")
    (root / PREFIX).parent.mkdir(parents=True)
    (root / PREFIX.rstrip("/")).symlink_to(Path(built_site).resolve(), target_is_directory=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Plain, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{PREFIX}"
    server.shutdown()


def _pyodide_requests(page) -> list[str]:
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url) if "/assets/pyodide/" in r.url else None)
    return urls


def test_reading_a_widget_page_downloads_no_pyodide_and_a_touch_starts_it(page, prefixed_url):
    pyodide = _pyodide_requests(page)
    page.goto(prefixed_url + "rank-trick/")
    badge = page.locator(".lc-py-status")
    assert badge.get_attribute("data-state") == "idle"
    assert badge.inner_text() == "Python: starts when you use a calculator"
    page.mouse.wheel(0, 3000)         # reading: scrolling past the widgets is not touching them
    page.wait_for_timeout(1500)
    assert pyodide == [] and page.evaluate("loracalcPython.state") == "idle"
    page.locator('[data-widget="rank_trick"] #rt-d').focus()   # the first touch
    page.wait_for_function("() => document.querySelector('.lc-py-status').dataset.state !== 'idle'")
    assert badge.inner_text().startswith("Python: starting")
    page.wait_for_function("() => loracalcPython.state === 'ready'", timeout=90_000)
    assert any(u.endswith("pyodide.asm.wasm") for u in pyodide)
    assert not page.js_errors


def test_walking_pages_under_a_prefix_on_a_random_port_starts_python_once(page, prefixed_url):
    pyodide = _pyodide_requests(page)
    loads: list[str] = []
    page.on("load", lambda: loads.append(page.url))
    page.goto(prefixed_url + "rank-trick/")
    wait_python(page)
    ready_ms = page.evaluate("loracalcPython.readyMs")
    page.evaluate("window.__samePage = true")   # gone if a link reloads the page instead of swapping it
    page.evaluate("location.hash = '#' + document.querySelector('h2[id]').id")  # an anchor on this page
    visited = []
    for _ in range(4):                         # "Next" in the footer, as a reader goes through the module
        click_next(page)
        visited.append(page.url)
        assert "#" not in page.url, f"the previous page's anchor stayed in the address: {page.url}"
    assert all(u.startswith(prefixed_url) for u in visited)
    assert page.evaluate("window.__samePage === true"), "a page change reloaded the page (instant navigation off)"
    # widget pages on the way answer from the same worker, which loaded Pyodide once
    assert page.evaluate("loracalcPython.call('rank_trick', {d: '64', r: '1'})")["ok"] is True
    assert page.evaluate("loracalcPython.readyMs") == ready_ms
    assert sum(u.endswith("pyodide.asm.wasm") for u in pyodide) == 1, pyodide
    assert len(loads) == 1, loads
    assert not page.js_errors
