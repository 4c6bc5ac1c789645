"""Progress through the core path in the sidebar (assets/js/progress.js): kept in localStorage, re-attached on
instant navigation, named for screen readers, and cleared on request."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

LABEL = ".md-sidebar--primary .lc-progress label"


def _label(page) -> str:
    page.wait_for_selector(LABEL)
    return page.locator(LABEL).inner_text()


def test_core_pages_read_are_counted_marked_and_cleared(page, site_url):
    page.goto(site_url)
    page.evaluate("localStorage.removeItem('loracalc-core-read-v1')")
    page.reload()
    total = int(_label(page).split(" of ")[1].split()[0])
    assert _label(page) == f"Core path: 1 of {total} pages read"       # the home page is on the core path
    # instant navigation through the sidebar: the script re-attaches to the new page and sidebar
    page.locator(".md-nav--primary a.md-nav__link[href$='gpu-memory/']").first.click()
    page.wait_for_url("**/gpu-memory/")
    # null-safe: during instant navigation the sidebar is replaced, and a throwing predicate fails the wait
    page.wait_for_function(f"() => (document.querySelector('{LABEL}')?.textContent || '').includes('2 of')")
    link = page.locator(".md-nav--primary a.md-nav__link[href$='gpu-memory/']").first
    assert "(read)" in link.inner_text()
    assert page.locator(".md-sidebar--primary progress").evaluate("p => [p.value, p.max]") == [2, total]
    # an optional page is not on the path: no mark on its link, and visiting it changes nothing
    refs = page.locator(".md-nav--primary a.md-nav__link[href$='references/']").first
    assert refs.locator(".lc-read-mark").count() == 0
    page.goto(site_url + "references/")
    assert _label(page) == f"Core path: 2 of {total} pages read"
    page.goto(site_url + "qlora/")  # a full load keeps what was read (localStorage)
    assert _label(page) == f"Core path: 3 of {total} pages read"
    page.locator(".lc-progress-reset").click()
    assert _label(page) == f"Core path: 0 of {total} pages read"
    assert not page.js_errors
