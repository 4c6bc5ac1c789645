"""Offline: the service worker keeps pages and Python, so a widget page works with the network cut."""
from __future__ import annotations

import pytest

from site_support import wait_python
from test_python_bridge import expected, page_with

pytestmark = pytest.mark.browser

PYTHON_CACHED = """async () => {
    if (!navigator.serviceWorker.controller) return false;
    for (const name of await caches.keys()) {
        const cache = await caches.open(name);
        if (await cache.match(new URL('assets/pyodide/pyodide.asm.wasm', location.origin + '/').href)) return true;
    }
    return false;
}"""


def test_widget_page_works_with_the_network_cut(context, site_url, built_site):
    path = page_with(built_site, 'data-widget="rank_trick"')
    page = context.new_page()
    page.goto(site_url + path)
    wait_python(page)
    # the service worker took over and stored Python (it is registered, and asked to, once Python is
    # ready). Polled with evaluate, which awaits the promise (wait_for_function would take it as truthy).
    for _ in range(120):
        if page.evaluate(PYTHON_CACHED):
            break
        page.wait_for_timeout(250)
    else:
        pytest.fail("the service worker did not store Pyodide within 30 s")
    context.set_offline(True)
    try:
        page.reload()
        wait_python(page)
        widget = page.locator('[data-widget="rank_trick"]')
        widget.locator('#rt-d').fill("2048")
        want = expected("rank_trick", {"preset": "custom", "d": "2048", "r": "8"})["full_params"]
        page.wait_for_function("(el) => el.textContent === %r" % want,
                               arg=widget.locator('[data-output="full_params"]').element_handle())
        # another page, never visited in this session, comes from the install-time cache
        page.goto(site_url)
        assert page.locator("h1").count() >= 1
    finally:
        context.set_offline(False)
