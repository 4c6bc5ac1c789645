"""Every page, every widget: only the local server is ever contacted, nothing 404s, axe finds nothing."""
from __future__ import annotations

from urllib.parse import urlparse

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from site_support import site_pages, wait_python

pytestmark = pytest.mark.browser


def use_every_widget(page) -> int:
    """Change every input of every widget on the page once (as a reader would) and press its buttons."""
    used = 0
    radio_groups = set()
    # settings behind a disclosure ("More settings") are opened as a reader would, so they are used too
    closed = page.locator("details[data-more]:not([open]) > summary")
    for _ in range(closed.count()):     # each click opens one, so the closed set shrinks: always the first
        closed.first.click()
    for w in range(page.locator("[data-widget]").count()):
        widget = page.locator("[data-widget]").nth(w)
        fields = widget.locator("input[name]:not([type=hidden]), select[name], textarea[name]")
        for i in range(fields.count()):
            field = fields.nth(i)
            if not field.is_visible() or field.is_disabled():
                continue
            kind = field.evaluate("(el) => el.tagName.toLowerCase() + ':' + (el.type || '')")
            if kind.startswith("select"):
                values = field.evaluate("(el) => [...el.options].map(o => o.value)")
                current = field.input_value()
                other = next((v for v in values if v != current), current)
                field.select_option(other)
                # back to where it was: each choice is tried on its own, so two valid choices never stack into
                # a combination the engine rightly refuses (full fine-tuning with DoRA, say)
                field.select_option(current)
            elif kind == "input:radio":
                group = (w, field.get_attribute("name"))
                if group in radio_groups or field.evaluate("(el) => !!el.closest('[inert]')"):
                    continue  # one choice per group (a quiz question locks once answered)
                radio_groups.add(group)
                field.check()
            elif kind == "input:checkbox":
                field.click()
            elif kind == "input:range":
                field.press("ArrowRight")
            else:
                field.fill(field.input_value())
                field.press("End")
                field.dispatch_event("input")
            used += 1
        # a click can re-render a widget's buttons (the quiz's next question): count again each time, and a button
        # that went away between the two checks is skipped rather than waited for
        buttons = widget.locator("button[data-action], button[data-copy]")
        b = 0
        while b < buttons.count():
            button = buttons.nth(b)
            try:
                if button.is_visible() and button.is_enabled(timeout=2_000):
                    button.click(timeout=5_000)
                    used += 1
            except PlaywrightTimeout:
                pass
            b += 1
    return used


def test_every_page_and_widget_contacts_only_the_local_server(context, site_url, built_site):
    origin = urlparse(site_url).netloc
    requests, failures = [], []
    context.on("request", lambda r: requests.append(r.url))
    context.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    used = 0
    for path in site_pages(built_site):
        page.goto(site_url + path)
        if page.locator("[data-widget], [data-runnable]").count():
            wait_python(page)
            used += use_every_widget(page)
            for r in range(page.locator("button.lc-run").count()):
                page.locator("button.lc-run").nth(r).click()
                page.wait_for_function("(i) => document.querySelectorAll('.lc-run-output')[i].textContent !== 'Running\u2026'",
                                       arg=r, timeout=15_000)
            # every widget shows no error after its defaults were re-sent
            shown = [t for t in page.locator('[data-error-for]').all_text_contents() if t.strip()]
            assert not shown, (path, shown)
        page.wait_for_load_state("networkidle")
    foreign = sorted({u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
                      and urlparse(u).netloc != origin})
    assert not foreign, foreign
    assert not failures, failures
    assert not errors, errors
    assert len(requests) > 20


def test_axe_finds_no_violations_on_any_page(browser, site_url, built_site):
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    report = {}
    for scheme in ("light", "dark"):  # the palette follows the reader's system setting by default
        context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        for path in site_pages(built_site):
            page.goto(site_url + path)
            if scheme == "light" and page.locator("[data-widget], [data-runnable]").count():
                wait_python(page)  # checked once with the live editors and widgets in place
            page.wait_for_timeout(200)
            results = axe.run(page)
            if results.violations_count:
                report[f"{path or '/'} ({scheme})"] = results.generate_report()
        context.close()
    assert not report, "\n\n".join(f"{k}\n{v}" for k, v in report.items())
