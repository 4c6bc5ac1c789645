"""The widgets in a real Chromium against the built site: every input changes the outputs to what
loracalc computes in this process; bad input shows the engine's message and keeps the last good output;
the prerendered defaults equal what Pyodide computes; the calculator's state round-trips through the URL;
the quiz locks, scores, retries and survives a broken stored state; axe-core finds no violations."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest

from .browser_support import (MISMATCHES_JS, expected, mismatches, open_page, read_inputs, set_field, stamp,  # noqa: F401
                              wait_error, wait_updated, widget, wpage)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PAGES = {
    "rank_trick": "rank-trick/", "model_lora": "rank-trick/",
    "memory_calculator": "gpu-memory/",
    "nf4_explorer": "qlora/", "nf4_bits": "qlora/", "serving_memory": "deep-dives/serving-and-merging/",
    "quiz": "knowledge-check/",
}

# Each widget's inputs and values to change them to, in order (all valid).
CHANGES = {
    "rank_trick": [("r", "64"), ("d", "8192"), ("r", "1"), ("d", "64"), ("r", "32"), ("preset", "llama-3.1-405b"),
                   ("preset", "custom")],
    "model_lora": [("model", "llama-3.1-70b"), ("rank", "64"), ("targets", "q,v"), ("model", "llama-3.2-1b")],
    "memory_calculator": [("method", "lora"), ("rank", "64"), ("targets", "q,v"), ("batch_size", "4"),
                          ("seq_len", "4096"), ("gradient_checkpointing", "off"), ("optimizer", "adamw_8bit"),
                          ("attention", "eager"), ("gpu", "mac-32gb"), ("gpu", "rtx-4090"), ("model", "llama-3.1-70b"), ("method", "full"),
                          ("gpus", "8"), ("strategy", "full-shard"), ("offload", "params"),
                          ("gradient_accumulation", "4"), ("targets", "q,k,v,o,gate,up,down,lm_head"),
                          ("samples", "5000"), ("epochs", "3")],
    "nf4_bits": [("block_size", "128"), ("double_quant", "off"), ("model", "llama-2-70b"), ("block_size", "32")],
    "serving_memory": [("context", "131072"), ("model", "gemma-2-27b"), ("weights", "nf4"), ("gpu", "rtx-4090"),
                       ("max_loras", "0"), ("kv_dtype", "fp8"), ("tensor_parallel", "2"), ("max_lora_rank", "64")],
}

BAD = {
    "rank_trick": [("d", "abc"), ("d", "-64"), ("d", ""), ("r", "100000"), ("d", "128"), ("r", "300")],
    "model_lora": [("rank", "0"), ("rank", "")],
    "memory_calculator": [("batch_size", "0"), ("seq_len", "-1"), ("rank", "1.5"), ("batch_size", ""),
                          ("gpus", "0"), ("gradient_accumulation", "0"), ("samples", "0")],
    "nf4_bits": [("block_size", "7"), ("block_size", "x")],
    "serving_memory": [("context", "0"), ("batch", "abc"), ("tensor_parallel", "")],
}


def _check_outputs(page, name, index=0):
    want = expected(name, read_inputs(page, name, index))
    bad = mismatches(page, name, want, index)
    assert not bad, bad
    return want


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_each_input_updates_the_outputs_to_loracalcs(wpage, site_url, name):
    open_page(wpage, site_url, PAGES[name])
    _check_outputs(wpage, name)  # the prerendered defaults
    for field, value in CHANGES[name]:
        before = stamp(wpage, name)
        set_field(wpage, name, field, value)
        wait_updated(wpage, name, before)
        want = _check_outputs(wpage, name)
        assert "nan" not in json.dumps(want).lower().replace("nanc", "")  # never NaN on the page
    assert not wpage.errors


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_shows_the_engines_message_and_keeps_the_last_good_output(wpage, site_url, name):
    from lora_course.widgets import call

    open_page(wpage, site_url, PAGES[name])
    good = read_inputs(wpage, name)
    kept = expected(name, good)
    for field, value in BAD[name]:
        inputs = {**read_inputs(wpage, name), field: value}
        result = call(name, inputs)
        if result["ok"]:  # a step that is valid on its own (e.g. d = 128 before a bad r): let it update
            before = stamp(wpage, name)
            set_field(wpage, name, field, value)
            wait_updated(wpage, name, before)
            kept = result["outputs"]
            continue
        set_field(wpage, name, field, value)
        slot = widget(wpage, name).locator(f'[data-error-for="{result["field"] or ""}"]')
        # the engine's message, exactly (waiting for it: the slot may still show the previous bad value's message)
        from playwright.sync_api import expect
        expect(slot).to_have_text(result["message"], timeout=15_000)
        assert widget(wpage, name).locator(f'[name="{result["field"]}"]').first.get_attribute("aria-invalid") == "true"
        assert not mismatches(wpage, name, kept)  # the last good outputs stay
        page_text = widget(wpage, name).inner_text().lower()
        assert "traceback" not in page_text and "internal error" not in page_text


@pytest.mark.parametrize("path", sorted(set(PAGES.values())))
def test_prerendered_defaults_equal_what_pyodide_computes(wpage, site_url, path):
    open_page(wpage, site_url, path)
    names = wpage.eval_on_selector_all("[data-widget]", "ws => ws.map(w => w.dataset.widget)")
    assert names
    for i, name in enumerate(names):
        el = wpage.locator("[data-widget]").nth(i)
        assert el.get_attribute("data-prerendered") is not None
        result = wpage.evaluate(
            """async (i) => { const w = document.querySelectorAll('[data-widget]')[i];
                 const inputs = {}; w.querySelectorAll('input[name], select[name], textarea[name]').forEach(el => {
                   if (el.closest('[data-widget]') !== w) return;
                   if (el.type === 'range') { if (!(el.name in inputs)) inputs[el.name] = el.value; return; }
                   if (el.type === 'radio') { if (el.checked) inputs[el.name] = el.value; else if (!(el.name in inputs)) inputs[el.name] = ''; }
                   else inputs[el.name] = el.value; });
                 return await window.loracalcPython.call(w.dataset.widget, inputs); }""", i)
        assert result["ok"], result
        assert not el.evaluate(MISMATCHES_JS, result["outputs"]), name


def test_calculator_state_round_trips_through_the_url(wpage, site_url, browser):
    name = "memory_calculator"
    open_page(wpage, site_url, PAGES[name])
    for field, value in [("model", "llama-3.1-70b"), ("method", "lora"), ("rank", "32"), ("batch_size", "2"),
                         ("seq_len", "1024"), ("optimizer", "paged_adamw_8bit"), ("gpu", "h200"), ("gpus", "4"),
                         ("strategy", "full-shard"), ("offload", "optimizer")]:
        before = stamp(wpage, name)
        set_field(wpage, name, field, value)
        wait_updated(wpage, name, before)
    state = read_inputs(wpage, name)
    query = parse_qs(urlparse(wpage.url).query)
    assert query["rank"] == ["32"] and query["gpu"] == ["h200"] and query["method"] == ["lora"]
    assert query["gpus"] == ["4"] and query["strategy"] == ["full-shard"] and query["offload"] == ["optimizer"]
    want = expected(name, state)

    other = browser.new_context().new_page()
    other.goto(wpage.url)
    other.wait_for_function("() => window.loracalcPython && (window.loracalcPython.start(), window.loracalcPython.state === 'ready')", timeout=90_000)
    other.wait_for_function("() => document.querySelector('[data-widget=memory_calculator]').dataset.updated")
    assert read_inputs(other, name) == state
    assert not mismatches(other, name, want)
    other.context.close()


def test_copy_as_json_equals_the_terminal_json(wpage, site_url):
    import subprocess
    import sys

    open_page(wpage, site_url, PAGES["memory_calculator"])
    before = stamp(wpage, "memory_calculator")
    set_field(wpage, "memory_calculator", "model", "llama-3.1-70b")
    wait_updated(wpage, "memory_calculator", before)
    shown = widget(wpage, "memory_calculator").locator('[data-output="json"]').text_content()
    cli = subprocess.run([sys.executable, "-m", "loracalc", "memory", "--model", "llama-3.1-70b", "--method", "qlora",
                          "--rank", "16", "--targets", "all-linear", "--batch-size", "1", "--seq-len", "2048",
                          "--gradient-checkpointing", "--json"], capture_output=True, text=True, check=True).stdout
    assert json.loads(shown) == json.loads(cli)
    assert widget(wpage, "memory_calculator").locator('button[data-copy="json"]').count() == 1


def test_nf4_reroll_draws_the_next_block(wpage, site_url):
    name = "nf4_explorer"
    open_page(wpage, site_url, PAGES[name])
    assert read_inputs(wpage, name)["seed"] == "0"
    for seed in (1, 2):
        before = stamp(wpage, name)
        widget(wpage, name).locator('button[data-action="reroll"]').click()
        wait_updated(wpage, name, before)
        assert read_inputs(wpage, name)["seed"] == str(seed)
        assert not mismatches(wpage, name, expected(name, {"seed": str(seed)}))


def _choose(page, q, letter):
    before = stamp(page, "quiz")
    page.locator(f'#quiz-q{q}{letter}').check()
    wait_updated(page, "quiz", before)


def test_quiz_locks_scores_retries_and_persists(wpage, site_url):
    from lora_course import quiz as quiz_data

    pool = quiz_data.questions()
    qs = [pool[j] for j in quiz_data.check_set(0)]  # the five questions the first set shows
    open_page(wpage, site_url, PAGES["quiz"])
    wpage.evaluate("localStorage.clear()")
    wrong = next(o for o in qs[0]["options"] if not o["correct"])
    _choose(wpage, 1, wrong["id"])
    fb = widget(wpage, "quiz").locator('[data-output="q1_feedback"]')
    assert "Not quite." in fb.inner_text()
    assert wrong["explanation"] in fb.inner_text()
    # A locked question's options ignore the pointer; the keyboard can still reach another option and
    # press Space on it: the verdict stays with the first choice.
    assert wpage.locator(f"#quiz-q1{qs[0]['answer']}").evaluate("e => getComputedStyle(e.closest('label')).pointerEvents") == "none"
    before = stamp(wpage, "quiz")
    wpage.locator(f"#quiz-q1{wrong['id']}").focus()
    wpage.keyboard.press("ArrowDown")
    wpage.keyboard.press("Space")
    wait_updated(wpage, "quiz", before)
    assert "Not quite." in fb.inner_text()
    for i, q in enumerate(qs[1:], start=2):
        _choose(wpage, i, q["answer"])
    score = widget(wpage, "quiz").locator('[data-output="score"]').inner_text()
    assert score == f"Score: {len(qs) - 1}/{len(qs)} on first tries"
    # the live region read the last verdict out
    # (the generic script fills its live region 30 ms after an update, so wait for it)
    wpage.wait_for_function("() => document.querySelector('[data-widget=quiz] .lc-live').textContent.includes('Right')",
                            timeout=5_000)

    wpage.reload()  # progress is kept for the visit
    wpage.wait_for_function("() => window.loracalcPython && (window.loracalcPython.start(), window.loracalcPython.state === 'ready')", timeout=90_000)
    wpage.wait_for_function("() => document.querySelector('[data-widget=quiz]').dataset.updated")
    assert widget(wpage, "quiz").locator('[data-output="score"]').inner_text() == score

    before = stamp(wpage, "quiz")
    widget(wpage, "quiz").locator('button[data-action="retry"]').click()
    wait_updated(wpage, "quiz", before)
    assert widget(wpage, "quiz").locator("input[type=radio]:checked").count() == 0
    assert widget(wpage, "quiz").locator('[data-output="q1_feedback"]').inner_text() == ""


def test_quiz_reopens_a_wrong_answer_and_moves_to_the_next_set(wpage, site_url):
    from lora_course import quiz as quiz_data

    pool = quiz_data.questions()
    q = pool[quiz_data.check_set(0)[0]]
    wrong = next(o for o in q["options"] if not o["correct"])
    open_page(wpage, site_url, PAGES["quiz"])
    wpage.evaluate("localStorage.clear()")
    _choose(wpage, 1, wrong["id"])
    fb = widget(wpage, "quiz").locator('[data-output="q1_feedback"]')
    assert "The answer is" in fb.inner_text()
    assert fb.locator("a").get_attribute("href").endswith("#" + q["section"].partition("#")[2])
    before = stamp(wpage, "quiz")
    fb.locator('button[data-action="again-q1"]').click()
    wait_updated(wpage, "quiz", before)
    assert widget(wpage, "quiz").locator('input[name="q1"]:checked').count() == 0  # the page cleared the radios
    _choose(wpage, 1, q["answer"])
    assert "Right." in fb.inner_text()
    before = stamp(wpage, "quiz")
    widget(wpage, "quiz").locator('button[data-action="next-set"]').click()
    wait_updated(wpage, "quiz", before)
    second = pool[quiz_data.check_set(1)[0]]
    assert widget(wpage, "quiz").locator('[data-output="q1_prompt"]').inner_text() == second["prompt"]
    assert widget(wpage, "quiz").locator("input[type=radio]:checked").count() == 0


@pytest.mark.parametrize("stored", ['{"q1": 5, "locked": "x:y"}', "not json", '["a"]', '{"locked": "rank-arithmetic:z"}'])
def test_quiz_ignores_a_broken_stored_state(wpage, site_url, stored):
    open_page(wpage, site_url, PAGES["quiz"])
    wpage.evaluate("(s) => localStorage.setItem('loracalc-quiz-v1', s)", stored)
    wpage.reload()
    wpage.wait_for_function("() => window.loracalcPython && (window.loracalcPython.start(), window.loracalcPython.state === 'ready')", timeout=90_000)
    _choose(wpage, 2, "a")
    assert widget(wpage, "quiz").locator('[data-output="progress"]').inner_text().startswith("1 of")
    assert not wpage.errors


def test_quiz_is_keyboard_operable(wpage, site_url):
    open_page(wpage, site_url, PAGES["quiz"])
    wpage.evaluate("localStorage.clear()")
    wpage.locator("#quiz-q3a").focus()
    before = stamp(wpage, "quiz")
    wpage.keyboard.press("Space")
    wait_updated(wpage, "quiz", before)
    assert widget(wpage, "quiz").locator('[data-output="q3_feedback"]').inner_text().strip()
    assert wpage.evaluate("document.activeElement.id") == "quiz-q3a"  # focus stays where the reader is


def test_quiz_arrow_keys_move_between_options_without_answering(wpage, site_url):
    open_page(wpage, site_url, PAGES["quiz"])
    wpage.evaluate("localStorage.clear()")
    wpage.locator("#quiz-q4a").focus()
    for _ in range(2):
        wpage.keyboard.press("ArrowDown")
    assert wpage.evaluate("document.activeElement.id") == "quiz-q4c"
    wpage.keyboard.press("ArrowUp")
    assert wpage.evaluate("document.activeElement.id") == "quiz-q4b"
    assert widget(wpage, "quiz").locator('input[name="q4"]:checked').count() == 0  # nothing chosen yet
    assert widget(wpage, "quiz").locator('[data-output="q4_feedback"]').inner_text().strip() == ""
    before = stamp(wpage, "quiz")
    wpage.keyboard.press("Space")
    wait_updated(wpage, "quiz", before)
    assert wpage.locator("#quiz-q4b").is_checked()
    assert widget(wpage, "quiz").locator('[data-output="q4_feedback"]').inner_text().strip()


@pytest.mark.parametrize("path", sorted(set(PAGES.values())))
def test_axe_finds_no_violations_with_the_widgets_in_use(wpage, site_url, path):
    from axe_playwright_python.sync_playwright import Axe

    open_page(wpage, site_url, path)
    names = wpage.eval_on_selector_all("[data-widget]", "ws => ws.map(w => w.dataset.widget)")
    for name in names:  # use each widget: a change, then a bad value so an error message shows too
        if name in CHANGES:
            field, value = CHANGES[name][0]
            before = stamp(wpage, name)
            set_field(wpage, name, field, value)
            wait_updated(wpage, name, before)
        if name in BAD:
            field, value = BAD[name][0]
            set_field(wpage, name, field, value)
            wait_error(wpage, name, field)
        if name == "quiz":
            _choose(wpage, 1, "a")
        if name == "nf4_explorer":
            before = stamp(wpage, name)
            widget(wpage, name).locator('button[data-action="reroll"]').click()
            wait_updated(wpage, name, before)
    wpage.locator(".lc-seg").first.focus() if path == "gpu-memory/" else None
    results = Axe().run(wpage, context={"include": [["[data-widget]"]]})
    violations = results.response["violations"]
    assert not violations, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in violations]


def test_rank_sliders_and_typed_fields_move_together(wpage, site_url):
    """The slider and the typed field of d and r are one input: keys on the slider change the field and
    the outputs; a typed value moves the slider; a bad typed value leaves the slider and shows its error."""
    name = "rank_trick"
    open_page(wpage, site_url, PAGES[name])
    start = int(wpage.locator("#rt-r").input_value())
    before = stamp(wpage, name)
    wpage.locator("#rt-r-slider").focus()
    for _ in range(3):
        wpage.keyboard.press("ArrowRight")  # step 1 per key press
    wpage.wait_for_function(f"document.querySelector('#rt-r').value === '{start + 3}'")
    wait_updated(wpage, name, before)
    _check_outputs(wpage, name)
    assert read_inputs(wpage, name)["r"] == str(start + 3)

    before = stamp(wpage, name)
    wpage.locator("#rt-d").fill("1024")
    wait_updated(wpage, name, before)
    assert wpage.locator("#rt-d-slider").input_value() == "1024"
    _check_outputs(wpage, name)

    from lora_course.widgets import call

    wpage.locator("#rt-d").fill("lots")
    assert wait_error(wpage, name, "d") == call(name, read_inputs(wpage, name))["message"]
    assert wpage.locator("#rt-d-slider").input_value() == "1024"
