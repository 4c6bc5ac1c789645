"""A 390 px phone, light and dark (issue 30): no page scrolls sideways as a whole; a drawn figure either fits
the screen or sits in a box that says it scrolls sideways; the text of the site's drawn diagrams renders at
11 px or more."""
from __future__ import annotations

import re

import pytest

from site_support import site_pages

pytestmark = pytest.mark.browser

READABLE_PX = 11

# Per page: the document's own width, figures that neither fit nor say they scroll, and diagram text smaller
# than READABLE_PX (its font size times the SVG's drawn scale: getScreenCTM's a).
CHECK = """(readable) => {
    const vw = document.documentElement.clientWidth;
    const cut = [];
    for (const fig of document.querySelectorAll('.md-typeset .lc-figure, .md-typeset svg.lc-diagram, .md-typeset .lc-svg-box svg')) {
        if (fig.closest('[hidden], details:not([open])') || !fig.getClientRects().length) continue;
        const box = fig.getBoundingClientRect();
        if (box.right <= vw + 1 && box.left >= -1) continue;
        const scroller = fig.closest('.lc-sideways');
        const cue = scroller && scroller.previousElementSibling;
        if (!(cue && cue.classList.contains('lc-sideways-cue') && cue.getClientRects().length)) {
            cut.push((fig.id || fig.className.baseVal || fig.className || fig.tagName) + ' ' + Math.round(box.width) + 'px');
        }
    }
    const small = [];
    for (const t of document.querySelectorAll('.md-typeset svg text')) {   // diagrams and widgets' drawings
        if (!t.getClientRects().length || !t.textContent.trim()) continue;
        const m = t.getScreenCTM();
        const size = parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b);
        if (size < readable - 0.05) small.push(t.textContent.trim().slice(0, 30) + ' ' + size.toFixed(1) + 'px');
    }
    return {width: document.scrollingElement.scrollWidth, vw, cut, small: small.slice(0, 5)};
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_a_phone_or_says_it_scrolls(browser, site_url, built_site, scheme):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                              color_scheme=scheme)
    page = ctx.new_page()
    problems = {}
    for path in site_pages(built_site):
        page.goto(site_url + path)
        page.wait_for_timeout(150)  # the sideways check runs once the page is attached
        got = page.evaluate(CHECK, READABLE_PX)
        bad = []
        if got["width"] > got["vw"] + 1:
            bad.append(f"the page is {got['width']} px wide on a {got['vw']} px screen")
        if got["cut"]:
            bad.append(f"cut off without a scroll cue: {got['cut']}")
        if got["small"]:
            bad.append(f"drawn text under {READABLE_PX} px: {got['small']}")
        if bad:
            problems[path or "/"] = bad
    ctx.close()
    assert not problems, problems


def test_a_wide_figure_says_it_scrolls_and_scrolls(browser, site_url):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.goto(site_url + "qlora/")
    figure = page.locator(".lc-figure").first
    page.wait_for_function("(f) => f.classList.contains('lc-sideways')", arg=figure.element_handle())
    assert "scroll sideways" in page.locator(".lc-figure.lc-sideways").first.evaluate(
        "f => f.previousElementSibling.textContent")
    scrolled = figure.evaluate("f => { f.scrollLeft = 1000; return f.scrollLeft; }")
    assert scrolled > 0
    ctx.close()


# Drawn charts shown as images (<img src="....svg">): the text inside the file, at the size the image is shown.
SHOWN_IMAGES = """() => [...document.querySelectorAll('.md-typeset img')]
    .filter(img => img.getClientRects().length && /\\.svg$/.test(img.currentSrc.split(/[#?]/)[0]))
    .map(img => ({src: img.currentSrc.split(/[#?]/)[0], width: img.getBoundingClientRect().width}))"""
VIEWBOX = re.compile(r'viewBox="[\d.\-]+ [\d.\-]+ ([\d.]+) [\d.]+"')
FONT_SIZE = re.compile(r"font-size:\s*([\d.]+)px|font:\s*([\d.]+)px")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_chart_images_keep_their_text_readable_on_a_phone(browser, site_url, built_site, scheme):
    """Every SVG chart shown as an image renders its smallest label at READABLE_PX or more at 390 px (the
    phone drawing is picked by <picture>, hooks/phone_images.py), and still fits the screen."""
    pages = [p for p in site_pages(built_site)
             if re.search(r'<img[^>]+src="[^"]+\.svg', (built_site / p / "index.html").read_text())]
    assert pages, "no page shows an SVG chart as an image: the test checks nothing"
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, color_scheme=scheme)
    page = ctx.new_page()
    problems, seen = [], 0
    for path in pages:
        page.goto(site_url + path)
        page.wait_for_load_state("load")
        for img in page.evaluate(SHOWN_IMAGES):
            svg = (built_site / img["src"][len(site_url):]).read_text()
            drawn = float(VIEWBOX.search(svg).group(1))
            smallest = min(float(a or b) for a, b in FONT_SIZE.findall(svg)) * img["width"] / drawn
            seen += 1
            if smallest < READABLE_PX - 0.05 or img["width"] > 390:
                problems.append(f"{img['src'][len(site_url):]}: smallest text {smallest:.1f} px, "
                                f"{img['width']:.0f} px wide")
    ctx.close()
    assert seen, "no chart image was shown"
    assert not problems, problems


def test_a_diagram_drawn_for_a_phone_replaces_the_wide_one_there(browser, site_url):
    """Home's key figure has a phone layout: at 390 px it fits without a scroll cue, at 1280 px the wide one shows."""
    shown = "f => [...f.querySelectorAll('svg.lc-diagram')].filter(s => s.getClientRects().length).map(s => s.classList.value)"
    for width, expect in ((390, "lc-phone-only"), (1280, "lc-wide-only")):
        ctx = browser.new_context(viewport={"width": width, "height": 844}, is_mobile=width < 600)
        page = ctx.new_page()
        page.goto(site_url)
        page.wait_for_timeout(150)  # the sideways check runs once the page is attached
        figure = page.locator(".lc-figure").first
        classes = figure.evaluate(shown)
        assert len(classes) == 1 and expect in classes[0], (width, classes)
        assert figure.evaluate("f => f.scrollWidth <= f.clientWidth + 1 && !f.classList.contains('lc-sideways')"), width
        ctx.close()
