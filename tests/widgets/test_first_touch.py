"""Widget details from the learner walk-through of issue 30: an empty config.json box is a prompt, not an
error; "Copy link" says on itself that it copied; a quiz choice made before Python is ready says so beside
the question."""
from __future__ import annotations

import pytest

from .browser_support import open_page, widget, wpage  # noqa: F401  (wpage: the fixture)

pytestmark = pytest.mark.browser


def test_choosing_your_config_json_prompts_instead_of_erring(wpage, site_url):
    open_page(wpage, site_url, "gpu-memory/")
    w = widget(wpage, "memory_calculator")
    w.locator('select[name="model"]').select_option("config")
    slot = w.locator('[data-error-for="config"]')
    wpage.wait_for_function("(el) => el.textContent.trim().length > 0", arg=slot.element_handle())
    assert "Paste a model's config.json" in slot.text_content()
    assert "lc-prompt" in slot.get_attribute("class")
    assert w.get_attribute("data-waiting") == ""
    assert w.locator('textarea[name="config"]').get_attribute("aria-invalid") is None
    # its colour is the muted text colour, not the error red of a wrong value
    colours = wpage.evaluate("""(el) => {
        const probe = document.createElement('p'); probe.className = 'lc-error';
        el.closest('[data-widget]').appendChild(probe); probe.textContent = 'x';
        const red = getComputedStyle(probe).color; probe.remove();
        return [getComputedStyle(el).color, red];
    }""", slot.element_handle())
    assert colours[0] != colours[1], colours


def test_copy_link_confirms_on_the_button(wpage, site_url):
    open_page(wpage, site_url, "gpu-memory/")
    button = widget(wpage, "memory_calculator").locator("button[data-copy-link]").first
    label = button.inner_text()
    button.click()
    wpage.wait_for_function("(b) => /copied|Copy failed/.test(b.textContent)", arg=button.element_handle())
    wpage.wait_for_function("([b, l]) => b.textContent === l", arg=[button.element_handle(), label], timeout=5_000)


def test_a_quiz_choice_before_python_is_ready_says_so_beside_the_question(wpage, site_url):
    wpage.goto(site_url + "knowledge-check/")
    wpage.evaluate("localStorage.clear()")
    wpage.reload()
    assert wpage.evaluate("loracalcPython.state") == "idle"
    quiz = widget(wpage, "quiz")
    quiz.locator('input[name="q1"]').first.check()          # the first touch: Python starts now
    feedback = quiz.locator('[data-output="q1_feedback"]')
    assert "Python is starting" in feedback.inner_text()
    wpage.wait_for_function("() => loracalcPython.state === 'ready'", timeout=90_000)
    wpage.wait_for_function("(el) => /Right|Not quite/.test(el.textContent)", arg=feedback.element_handle(),
                            timeout=30_000)

