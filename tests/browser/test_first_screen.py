"""The home page's first screen orients a newcomer (issue 30): who the module is for, what it assumes, what
the reader will be able to do, one duration and Start, all above the fold on a laptop and on a phone; the
widgets come after the words that explain them; no course or module numbering that the site does not have."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

FIRST_SCREEN = """() => {
    const inner = document.querySelector('.md-content__inner');
    const seen = [];
    for (const el of inner.querySelectorAll('p, dt, dd, h1, a.md-button')) {
        const box = el.getBoundingClientRect();
        if (box.height && box.bottom <= innerHeight) seen.push([el.tagName, el.innerText.trim()]);
    }
    return seen;
}"""


@pytest.mark.parametrize("width,height,mobile", [(1280, 800, False), (390, 844, True)])
def test_the_first_screen_says_who_what_how_long_and_start(browser, site_url, width, height, mobile):
    ctx = browser.new_context(viewport={"width": width, "height": height}, is_mobile=mobile, has_touch=mobile)
    page = ctx.new_page()
    page.goto(site_url)
    seen = page.evaluate(FIRST_SCREEN)
    ctx.close()
    terms = [text for tag, text in seen if tag == "DT"]
    assert terms == ["For", "Assumes", "You will be able to"], seen
    assert all(text for tag, text in seen if tag == "DD") and len([1 for tag, _ in seen if tag == "DD"]) == 3
    assert any(tag == "A" and text.startswith("Start") for tag, text in seen), seen
    durations = [text for _, text in seen if re.search(r"\bminutes?\b|\bhours?\b", text)]
    assert len(durations) == 1, durations


def test_the_widgets_come_after_the_words_that_explain_them(page, site_url):
    page.goto(site_url)
    order = page.evaluate("""() => {
        const y = (el) => el.getBoundingClientRect().top + scrollY;
        const figure = document.querySelector('.lc-figure');
        const widget = document.querySelector('[data-widget]');
        return [y(figure), y(widget)];
    }""")
    assert order[0] < order[1]


def test_no_course_or_module_numbering_anywhere(built_site):
    found = [str(p.relative_to(built_site)) for p in built_site.rglob("*.html")
             if re.search(r"Course 3|Module 10\b|of 14(?![\d.,])", p.read_text())]
    assert not found, found
