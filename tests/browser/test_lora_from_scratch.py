"""The rank-trick page's LoRA-from-scratch exercise in a real Chromium: it trains in Pyodide within the page's
time limit, the rank below the hidden rank stays above the threshold, and Stop ends a long run."""
from __future__ import annotations

import re
import time

import pytest

from site_support import wait_python

pytestmark = pytest.mark.browser

THRESHOLD = 1e-2  # the same claim as tests/snippets/test_lora_from_scratch.py
DONE = "(el) => !el.hidden && !el.textContent.startsWith('Running')"


def exercise(page):
    return page.locator(".lc-runnable").filter(has_text="class LoRALinear")


def final_loss(text: str) -> float:
    steps = re.findall(r"^step\s+(\d+)\s+loss (\S+)$", text, re.M)
    assert steps, text[-2000:]
    return float(steps[-1][1])


def run_with(page, box, replace: tuple[str, str] | None = None) -> tuple[str, float]:
    editor = box.locator(".lc-editor")
    if replace:
        source = editor.input_value()
        assert replace[0] in source
        editor.fill(source.replace(replace[0], replace[1], 1))
    output = box.locator(".lc-run-output")
    started = time.monotonic()
    box.locator("button.lc-run").click()
    page.wait_for_function(DONE, arg=output.element_handle(), timeout=60_000)
    return output.text_content(), time.monotonic() - started


def test_exercise_trains_in_the_browser_and_the_rank_matters(page, site_url, built_site):
    page.goto(site_url + "rank-trick/")
    wait_python(page)
    box = exercise(page)
    assert box.count() == 1
    text, seconds = run_with(page, box)
    print(f"\nLoRA from scratch, page defaults (r = 2): {seconds:.1f} s in Pyodide")
    assert "Stopped" not in text and "Error" not in text, text[-2000:]
    assert "largest difference 0)" in text            # B = 0: the step-0 output is the frozen model's
    assert final_loss(text) < THRESHOLD
    assert seconds < 10                               # within the page's own time limit
    text, seconds = run_with(page, box, ("R = 2 ", "R = 1 "))
    print(f"LoRA from scratch, r = 1: {seconds:.1f} s in Pyodide")
    assert final_loss(text) > THRESHOLD
    assert page.js_errors == []


def test_stop_ends_a_long_run(page, site_url, built_site):
    page.goto(site_url + "rank-trick/")
    wait_python(page)
    box = exercise(page)
    editor = box.locator(".lc-editor")
    editor.fill(editor.input_value().replace("STEPS = 120 ", "STEPS = 100000 ", 1))
    output = box.locator(".lc-run-output")
    box.locator("button.lc-run").click()
    stop = box.locator("button.lc-run-stop")
    stop.wait_for(state="visible")
    page.wait_for_timeout(1500)
    started = time.monotonic()
    stop.click()
    page.wait_for_function("(el) => el.textContent.startsWith('Stopped by you')", arg=output.element_handle(),
                           timeout=30_000)
    assert time.monotonic() - started < 5
    wait_python(page)  # a fresh worker, and the exercise runs again on it
    text, _ = run_with(page, box, ("STEPS = 100000 ", "STEPS = 20 "))
    assert re.search(r"^step\s+20\s+loss", text, re.M), text[-2000:]
