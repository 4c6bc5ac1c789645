"""The site's Python in a real Chromium: worker boot, widgets, runnable examples, runaway code, status."""
from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from site_support import wait_python

pytestmark = pytest.mark.browser


def page_with(site: Path, marker: str) -> str:
    """The site-relative path of the first built page whose HTML contains MARKER."""
    for html in sorted(site.rglob("index.html")):
        if marker in html.read_text():
            rel = html.parent.relative_to(site).as_posix()
            return "" if rel == "." else rel + "/"
    pytest.skip(f"no built page contains {marker!r} yet")


def expected(name: str, inputs: dict) -> dict:
    """The widget's outputs computed by loracalc in this test process (the browser must show the same)."""
    from lora_course.widgets import call

    result = call(name, inputs)
    assert result["ok"], result
    return result["outputs"]


def test_worker_boots_and_status_says_ready(page, site_url, built_site):
    page.goto(site_url + page_with(built_site, 'data-widget="rank_trick"'))
    assert page.text_content(".lc-py-status") == "Python: starts when you use a calculator"  # not before a touch
    wait_python(page)
    assert page.text_content(".lc-py-status") == "Python: ready"
    assert page.evaluate("loracalcPython.call('rank_trick', {d: '512', r: '4'})") == {
        "ok": True, "outputs": expected("rank_trick", {"d": "512", "r": "4"})}
    assert page.js_errors == []


def test_widget_updates_after_an_input_change_and_keeps_output_on_error(page, site_url, built_site):
    page.goto(site_url + page_with(built_site, 'data-widget="rank_trick"'))
    widget = page.locator('[data-widget="rank_trick"]')
    want_default = expected("rank_trick", {"preset": "custom", "d": "4096", "r": "8"})["full_params"]
    assert widget.locator('[data-output="full_params"]').text_content() == want_default  # prerendered
    wait_python(page)
    widget.locator('#rt-d').fill("1024")
    want = expected("rank_trick", {"preset": "custom", "d": "1024", "r": "8"})
    out = widget.locator('[data-output="lora_params"]')
    page.wait_for_function("(el) => el.textContent === %r" % want["lora_params"], arg=out.element_handle())
    assert widget.locator('[data-output="ratio"]').text_content() == want["ratio"]
    # a bad rank: the engine's message next to the field, the last good numbers stay, the field is marked
    widget.locator('#rt-r').fill("5000")
    slot = widget.locator('[data-error-for="r"]')
    page.wait_for_function("(el) => el.textContent.length > 0", arg=slot.element_handle())
    from lora_course.widgets import call
    assert slot.text_content() == call("rank_trick", {"preset": "custom", "d": "1024", "r": "5000"})["message"]
    assert out.text_content() == want["lora_params"]
    assert widget.locator('#rt-r').get_attribute("aria-invalid") == "true"
    # fixing it clears the message
    widget.locator('#rt-r').fill("8")
    page.wait_for_function("(el) => el.textContent === ''", arg=slot.element_handle())
    assert page.js_errors == []


def test_run_button_prints_output(page, site_url, built_site):
    from lora_course.widgets import run_code

    page.goto(site_url + page_with(built_site, 'class="lc-runnable"'))
    wait_python(page)
    box = page.locator(".lc-runnable").first
    source = box.locator(".lc-editor").input_value()
    box.locator("button.lc-run").click()
    output = box.locator(".lc-run-output")
    page.wait_for_function("(el) => !el.hidden && el.textContent !== 'Running\u2026'", arg=output.element_handle())
    want = run_code(source)
    assert want["error"] is None
    assert want["stdout"].strip() and want["stdout"].strip() in output.text_content()
    # an edited example: the last expression's value and a traceback
    box.locator(".lc-editor").fill("print('hello from Pyodide')\n1 / 0")
    box.locator("button.lc-run").click()
    page.wait_for_function("(el) => el.textContent.includes('ZeroDivisionError')", arg=output.element_handle())
    assert "hello from Pyodide" in output.text_content()


def test_runaway_code_is_stopped_and_widgets_keep_working(page, site_url, built_site):
    path = page_with(built_site, 'class="lc-runnable"')
    page.goto(site_url + path)
    wait_python(page)
    box = page.locator(".lc-runnable").first
    box.locator(".lc-editor").fill("while True:\n    pass")
    started = time.monotonic()
    box.locator("button.lc-run").click()
    output = box.locator(".lc-run-output")
    # a loaded machine can only make the stop come later, so the bound that holds is the lower one: the page's
    # 10 s limit started after our clock did; how late it may come is left to the wait's own timeout
    page.wait_for_function("(el) => el.textContent.startsWith('Stopped')", arg=output.element_handle(), timeout=60_000)
    stopped_after = time.monotonic() - started
    assert stopped_after >= 9.5, stopped_after
    assert "10 s" in output.text_content()
    wait_python(page)  # the fresh worker
    assert page.evaluate("loracalcPython.restarts") == 1
    # code runs again, and a widget call works
    box.locator(".lc-editor").fill("sum(range(10))")
    box.locator("button.lc-run").click()
    page.wait_for_function("(el) => el.textContent.trim() === '45'", arg=output.element_handle())
    assert page.evaluate("loracalcPython.call('rank_trick', {d: '64', r: '1'})")["ok"] is True


def test_instant_navigation_keeps_one_worker(page, site_url, built_site):
    """Material swaps pages without reloading: the worker and Pyodide are loaded once per visit."""
    wasm = []
    page.on("request", lambda r: wasm.append(r.url) if r.url.endswith(".wasm") else None)
    first = page_with(built_site, 'data-widget="rank_trick"')
    page.goto(site_url + first)
    wait_python(page)
    ready_ms = page.evaluate("loracalcPython.readyMs")
    # a link in the sidebar to another page, clicked as a reader would
    link = page.locator(".md-sidebar--primary a.md-nav__link[href]:not(.md-nav__link--active)").first
    target = link.evaluate("(a) => a.href")
    link.click()
    page.wait_for_url(target)
    # a round trip through the bridge after the swap: a second worker would have fetched Pyodide before answering
    assert page.evaluate("loracalcPython.call('rank_trick', {d: '64', r: '1'})")["ok"] is True
    assert page.evaluate("loracalcPython.readyMs") == ready_ms  # same bridge, same worker
    assert len(wasm) == 1, wasm


def test_pages_without_widgets_download_no_pyodide(page, site_url, built_site):
    plain = None
    for html in sorted(built_site.rglob("index.html")):
        text = html.read_text()
        if "data-widget" not in text and "lc-runnable" not in text:
            plain = html.parent.relative_to(built_site).as_posix()
            break
    if plain is None:
        pytest.skip("every page has a widget")
    urls = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(site_url + ("" if plain == "." else plain + "/"))
    # networkidle: no request for 500 ms after the page's scripts ran, which is when a widget script would fetch
    page.wait_for_load_state("networkidle")
    assert not [u for u in urls if "/assets/pyodide/" in u or "snippets.zip" in u]
    assert page.locator(".lc-py-status").count() == 0


def test_file_url_shows_prerendered_numbers_and_how_to(page, built_site):
    from lora_course.widgets import call

    path = page_with(built_site, 'data-widget="rank_trick"')
    page.goto((built_site / path / "index.html").resolve().as_uri())
    wait_python(page, "failed")
    widget = page.locator('[data-widget="rank_trick"]')
    want = call("rank_trick", {"preset": "custom", "d": "4096", "r": "8"})["outputs"]
    assert widget.locator('[data-output="full_params"]').text_content() == want["full_params"]
    # read from disk nothing is broken: a calm badge and an info box that says what works and how to get more
    assert page.text_content(".lc-py-status") == "Python: off (read from a file)"
    assert page.get_attribute(".lc-py-status", "data-state") == "off"
    assert "info" in page.get_attribute(".lc-py-notice", "class").split()
    notice = page.text_content(".lc-py-notice")
    assert "file://" in notice and "scripts/serve" in notice
    assert "Every number on this page is correct for the inputs shown" in notice
    # an input changed here cannot be computed: the outputs are marked as for the built-in inputs
    widget.locator("#rt-r").fill("64")
    page.wait_for_function("() => document.querySelector('[data-widget=rank_trick]').dataset.state === 'stale'")
    assert "Not updated: Python is not running here" in widget.locator("[data-state-note]").first.text_content()
    assert widget.locator('[data-output="full_params"]').text_content() == want["full_params"]


def test_a_broken_saved_state_is_ignored(context, site_url, built_site):
    """data-persist: a stored state that is not JSON (or not an object) is dropped; the page works."""
    path = page_with(built_site, "data-persist=")
    import re
    key = re.search(r'data-persist="([^"]+)"', (built_site / path / "index.html").read_text()).group(1)
    page = context.new_page()
    page.goto(site_url)
    page.evaluate("([k]) => localStorage.setItem(k, '{not json')", [key])
    page.goto(site_url + path)
    wait_python(page)
    page.wait_for_function("([k]) => localStorage.getItem(k) === null", arg=[key])
    assert not page.locator('[data-persist] [data-error-for=""]').first.text_content()
