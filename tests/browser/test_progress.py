"""Progress through the core path in the sidebar (assets/js/progress.js): a page counts once its end has been
on screen, the knowledge check once its questions are answered; kept in localStorage, re-attached on instant
navigation, named for screen readers, and cleared on request."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

LABEL = ".md-sidebar--primary .lc-progress label"


def _label(page) -> str:
    page.wait_for_selector(LABEL)
    return page.locator(LABEL).inner_text()


def _wait_label(page, text: str) -> None:
    # null-safe: during instant navigation the sidebar is replaced, and a throwing predicate fails the wait
    page.wait_for_function(f"() => (document.querySelector('{LABEL}')?.textContent || '') === {text!r}")


def _to_the_end(page) -> None:
    page.wait_for_selector(".lc-page-end", state="attached")
    page.evaluate("document.querySelector('.lc-page-end').scrollIntoView()")


def test_a_page_counts_when_its_end_is_reached_not_when_it_opens(page, site_url):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(site_url)
    page.evaluate("localStorage.removeItem('loracalc-core-read-v1')")
    page.reload()
    total = int(_label(page).split(" of ")[1].split()[0])
    assert _label(page) == f"Core path: 0 of {total} pages read"      # opened, not read
    # clicking through the core pages in the sidebar without reading them counts nothing
    for slug in ("when-to-fine-tune", "rank-trick", "training-recipe", "knowledge-check"):
        page.locator(f".md-nav--primary a.md-nav__link[href$='{slug}/']").first.click()
        page.wait_for_url(f"**/{slug}/")
    page.wait_for_timeout(500)
    assert _label(page) == f"Core path: 0 of {total} pages read"
    # reading to the end of a page counts it, and the sidebar marks its link
    page.goto(site_url + "gpu-memory/")
    _to_the_end(page)
    _wait_label(page, f"Core path: 1 of {total} pages read")
    link = page.locator(".md-nav--primary a.md-nav__link[href$='gpu-memory/']").first
    assert "(read)" in link.inner_text()
    assert page.locator(".md-sidebar--primary progress").evaluate("p => [p.value, p.max]") == [1, total]
    # instant navigation through the sidebar: the script re-attaches to the new page and sidebar
    page.locator(".md-nav--primary a.md-nav__link[href$='qlora/']").first.click()
    page.wait_for_url("**/qlora/")
    _to_the_end(page)
    _wait_label(page, f"Core path: 2 of {total} pages read")
    # an optional page is not on the path: no mark on its link, and reading it changes nothing
    refs = page.locator(".md-nav--primary a.md-nav__link[href$='references/']").first
    assert refs.locator(".lc-read-mark").count() == 0
    page.goto(site_url + "references/")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_timeout(300)
    assert _label(page) == f"Core path: 2 of {total} pages read"
    page.locator(".lc-progress-reset").click()
    assert _label(page) == f"Core path: 0 of {total} pages read"
    assert not page.js_errors


def test_the_knowledge_check_counts_when_answered(page, site_url):
    page.goto(site_url + "knowledge-check/")
    page.evaluate("localStorage.clear()")
    page.reload()
    total = int(_label(page).split(" of ")[1].split()[0])
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # reaching its end is not answering it
    page.wait_for_timeout(500)
    assert _label(page) == f"Core path: 0 of {total} pages read"
    quiz = page.locator('[data-widget="quiz"]')
    questions = quiz.locator("fieldset").count()
    assert questions >= 2
    for i in range(1, questions + 1):
        quiz.locator(f'input[name="q{i}"]').first.check()
        page.wait_for_function(f"() => document.querySelector('[data-widget=quiz] [data-output=progress]')"
                               f".textContent.startsWith('{i} of')", timeout=90_000)
        if i < questions:
            assert _label(page) == f"Core path: 0 of {total} pages read"
    _wait_label(page, f"Core path: 1 of {total} pages read")
    assert not page.js_errors
