"""Fixtures and helpers for the widgets' real-browser tests (marker ``browser``).

The site is built once per session (or taken from ``LC_SITE_DIR`` when set), served by the
platform's ``scripts/serve_site.py`` on a free local port, and driven with Debian's Chromium through
Playwright (all three are tests/conftest.py's session fixtures). Outputs on the page are compared
with ``lora_course.widgets.call`` run in this process.
"""
from __future__ import annotations

import pytest

READY_TIMEOUT_MS = 90_000


# The site, its server and Chromium are the session's (tests/conftest.py: built_site, site_url,
# browser): one build (or LC_SITE_DIR), one server, one Playwright per test run.
@pytest.fixture
def wpage(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()


# ------------------------------------------------------------------------------------------- helpers
def open_page(page, base_url: str, path: str, query: str = "") -> None:
    page.goto(base_url + path + query)
    page.wait_for_function("() => window.loracalcPython && (window.loracalcPython.start(), window.loracalcPython.state === 'ready')",
                           timeout=READY_TIMEOUT_MS)


def widget(page, name: str, index: int = 0):
    return page.locator(f'[data-widget="{name}"]').nth(index)


READ_INPUTS_JS = """(w) => {
  const v = {};
  w.querySelectorAll('input[name], select[name], textarea[name]').forEach(el => {
    if (el.closest('[data-widget]') !== w || el.disabled) return;
    const t = (el.type || '').toLowerCase();
    if (['button', 'submit', 'reset'].includes(t)) return;
    if (t === 'range') { if (!(el.name in v)) v[el.name] = el.value; return; }  // a typed twin wins
    if (t === 'radio') { if (el.checked) v[el.name] = el.value; else if (!(el.name in v)) v[el.name] = ''; }
    else if (t === 'checkbox') v[el.name] = el.checked ? el.value : '';
    else v[el.name] = el.value;
  });
  return v;
}"""

# For each output element: does it show exactly `expected` (text, or HTML parsed the way the page parses it)?
MISMATCHES_JS = """(w, expected) => {
  const bad = [];
  w.querySelectorAll('[data-output]').forEach(el => {
    if (el.closest('[data-widget]') !== w) return;
    const key = el.dataset.output;
    if (!(key in expected)) return;
    const want = String(expected[key]);
    if (el.hasAttribute('data-html')) {
      // the same DOM (attribute order aside: the build's HTML serializer may reorder them)
      const probe = document.createElement(el.tagName);
      probe.innerHTML = want;
      const a = el.childNodes, b = probe.childNodes;
      const same = a.length === b.length && Array.from(a).every((n, i) => n.isEqualNode(b[i]));
      if (!same) bad.push([key, el.innerHTML.slice(0, 300), probe.innerHTML.slice(0, 300)]);
    } else if (el.textContent !== want) bad.push([key, el.textContent, want]);
  });
  return bad;
}"""


def read_inputs(page, name: str, index: int = 0) -> dict:
    return widget(page, name, index).evaluate(READ_INPUTS_JS)


def mismatches(page, name: str, expected: dict, index: int = 0) -> list:
    return widget(page, name, index).evaluate(MISMATCHES_JS, expected)


def stamp(page, name: str, index: int = 0) -> str:
    return widget(page, name, index).get_attribute("data-updated") or ""


def wait_updated(page, name: str, before: str, index: int = 0, timeout: int = 15_000) -> None:
    """Until the widget has finished a successful update after ``before`` (its data-updated stamp)."""
    page.wait_for_function(
        """([n, i, before]) => { const w = document.querySelectorAll(`[data-widget="${n}"]`)[i];
             return w.dataset.updated && w.dataset.updated !== before && !w.hasAttribute('aria-busy')
                    && !w.hasAttribute('data-computing'); }""",
        arg=[name, index, before], timeout=timeout)


def wait_error(page, name: str, field: str, index: int = 0, timeout: int = 15_000, containing: str = "") -> str:
    """The field's error message once shown (and, with `containing`, once it holds that text)."""
    slot = widget(page, name, index).locator(f'[data-error-for="{field}"]')
    page.wait_for_function("([el, part]) => el.textContent.trim().length > 0 && el.textContent.includes(part)",
                           arg=[slot.element_handle(), containing], timeout=timeout)
    return slot.text_content()


def set_field(page, name: str, field: str, value: str, index: int = 0) -> None:
    el = widget(page, name, index).locator(f'[name="{field}"]:not([type="range"])').first
    # a field behind a closed disclosure ("More settings", "Several GPUs"): open it as a reader would
    box = el.locator("xpath=ancestor::details[1]")
    if box.count() and not box.evaluate("d => d.open"):
        box.locator("xpath=./summary").click()
    tag = el.evaluate("e => e.tagName.toLowerCase()")
    if tag == "select":
        el.select_option(value)
    else:
        el.fill(value)


def expected(name: str, inputs: dict) -> dict:
    from lora_course.widgets import call

    result = call(name, inputs)
    assert result["ok"], result
    return result["outputs"]
