"""Issue 18 in a real Chromium: what a reader sees in the first seconds, on bad input, on a phone.

* While Python loads, an input change never leaves outputs shown as current for other inputs: the page
  holds the worker's "ready" (a wrapper around Worker) so the loading phase lasts as long as the test says.
* A shared link's state is in the form at once; its outputs are pending until Python answers.
* Bad and empty input leave no unmarked stale result.
* The calculator's sticky result bar stays in view on a phone and shows fits / tight / does not fit.
* Stop ends a runaway example in well under the 10 s limit; the badge says busy, then restarting.
* The table of contents and the search index have no raw TeX.
"""
from __future__ import annotations

import json
import time

import pytest

from .browser_support import expected, open_page, read_inputs, set_field, stamp, wait_updated, widget, wpage  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

# Holds the Python worker's "ready" message until window.__releasePython() is called; every other message
# passes. The bridge sets worker.onmessage, so the wrapper intercepts that setter.
HOLD_READY = """(() => {
  const Real = window.Worker;
  window.__held = null;
  window.__releasePython = () => { if (window.__held) { const f = window.__held; window.__held = null; f(); } window.__released = true; };
  window.Worker = class extends Real {
    set onmessage(fn) {
      super.onmessage = (e) => {
        if (e.data && e.data.type === 'ready' && !window.__released) { window.__held = () => fn(e); return; }
        fn(e);
      };
    }
  };
})();"""

# Samples, every 30 ms, of the calculator's state, its GPU field and its verdict line.
RECORD = """(() => {
  window.__samples = [];
  setInterval(() => {
    const w = document.querySelector('[data-widget="memory_calculator"]');
    // while the page is still being parsed the widget can exist before its fields and outputs do
    const gpu = w && w.querySelector('[name=gpu]'), verdict = w && w.querySelector('[data-output=gpu_verdict]');
    if (!gpu || !verdict) return;
    window.__samples.push({state: w.dataset.state || '', gpu: gpu.value, verdict: verdict.textContent});
  }, 30);
})();"""

CALC = "memory_calculator"


def _verdicts():
    from lora_course.widgets import call

    return {g: call(CALC, {"gpu": g})["outputs"]["gpu_verdict"] for g in ("h100-80gb", "rtx-4090")}


def _dimmed(page, name, key):
    """Is output KEY visibly marked as not current: faded (pending) or struck through (stale)?"""
    el = widget(page, name).locator(f'[data-output="{key}"]').first
    page.wait_for_timeout(350)  # past the pending fade's delay
    return el.evaluate("""e => { const s = getComputedStyle(e);
        return parseFloat(s.opacity) < 0.5 || s.textDecorationLine.includes('line-through'); }""")


def test_input_during_loading_is_marked_pending_never_shown_as_current(wpage, site_url):
    wpage.add_init_script(HOLD_READY)
    wpage.add_init_script(RECORD)
    wpage.goto(site_url + "gpu-memory/")
    wpage.evaluate("loracalcPython.start()")        # the reader's first touch (Python waits for one)
    wpage.wait_for_function("() => window.__held")  # Python has loaded and is being held back
    assert wpage.evaluate("loracalcPython.state") == "loading"
    set_field(wpage, CALC, "gpu", "rtx-4090")
    w = widget(wpage, CALC)
    assert w.get_attribute("data-state") == "pending"
    note = w.locator("[data-state-note]").first
    wpage.wait_for_timeout(300)  # the note shows once an answer takes longer than a blink (150 ms)
    assert "Python is starting" in note.inner_text()
    assert _dimmed(wpage, CALC, "gpu_verdict")
    before = stamp(wpage, CALC)
    wpage.evaluate("window.__releasePython()")
    wait_updated(wpage, CALC, before)
    verdicts = _verdicts()
    assert w.get_attribute("data-state") == "current"
    assert w.locator('[data-output="gpu_verdict"]').text_content() == verdicts["rtx-4090"]
    assert not _dimmed(wpage, CALC, "gpu_verdict")
    samples = wpage.evaluate("window.__samples")
    assert any(s["state"] == "pending" for s in samples)
    for s in samples:  # whenever the outputs claimed to be current, they were for the GPU on screen
        if s["state"] == "current":
            assert s["verdict"] == verdicts[s["gpu"]], s
    assert not wpage.errors


def test_a_shared_link_fills_the_form_at_once_and_its_outputs_wait_for_python(wpage, site_url):
    wpage.add_init_script(HOLD_READY)
    wpage.goto(site_url + "gpu-memory/?gpu=rtx-4090&method=lora")
    wpage.wait_for_function("() => document.querySelector('[data-widget=memory_calculator]').dataset.state")
    assert read_inputs(wpage, CALC)["gpu"] == "rtx-4090"  # before Python is ready
    assert wpage.evaluate("loracalcPython.state") != "ready"
    assert widget(wpage, CALC).get_attribute("data-state") == "pending"
    before = stamp(wpage, CALC)
    wpage.wait_for_function("() => window.__held")
    wpage.evaluate("window.__releasePython()")
    wait_updated(wpage, CALC, before)
    want = expected(CALC, read_inputs(wpage, CALC))
    assert widget(wpage, CALC).locator('[data-output="gpu_verdict"]').text_content() == want["gpu_verdict"]
    assert widget(wpage, CALC).get_attribute("data-state") == "current"


@pytest.mark.parametrize("name,path,field,value", [
    (CALC, "gpu-memory/", "batch_size", "abc"),
    (CALC, "gpu-memory/", "batch_size", ""),
    (CALC, "gpu-memory/", "seq_len", ""),
    ("rank_trick", "rank-trick/", "d", ""),
    ("nf4_bits", "qlora/", "block_size", "4097"),
])
def test_bad_or_empty_input_marks_the_last_result_stale(wpage, site_url, name, path, field, value):
    from lora_course.widgets import call

    open_page(wpage, site_url, path)
    result = call(name, {**read_inputs(wpage, name), field: value})
    assert not result["ok"]
    set_field(wpage, name, field, value)
    w = widget(wpage, name)
    wpage.wait_for_function("(w) => w.dataset.state === 'stale'", arg=w.element_handle(), timeout=15_000)
    note = w.locator("[data-state-note]").first.inner_text()
    assert note.startswith("Not updated:") and result["message"] in note
    key = w.locator("[data-output]:not([data-html])").first.get_attribute("data-output")
    assert _dimmed(wpage, name, key)
    # a valid value brings it back to current
    good = {"batch_size": "2", "seq_len": "1024", "d": "1024", "block_size": "128"}[field]
    before = stamp(wpage, name)
    set_field(wpage, name, field, good)
    wait_updated(wpage, name, before)
    assert w.get_attribute("data-state") == "current"
    assert not _dimmed(wpage, name, key)


def test_rank_trick_a_typed_d_is_never_hidden_by_a_preset(wpage, site_url):
    from lora_course.widgets import call

    open_page(wpage, site_url, "rank-trick/")
    before = stamp(wpage, "rank_trick")
    set_field(wpage, "rank_trick", "preset", "llama-3.1-405b")
    wait_updated(wpage, "rank_trick", before)
    assert wpage.locator("#rt-d").input_value() == "16384"  # the preset's d, in the field
    wpage.locator("#rt-d").fill("-1")
    w = widget(wpage, "rank_trick")
    wpage.wait_for_function("(w) => w.dataset.state === 'stale'", arg=w.element_handle(), timeout=15_000)
    msg = call("rank_trick", {"preset": "custom", "d": "-1", "r": "8"})["message"]
    assert w.locator('[data-error-for="d"]').text_content() == msg
    before = stamp(wpage, "rank_trick")
    wpage.locator("#rt-d").fill("1024")
    wait_updated(wpage, "rank_trick", before)
    assert wpage.locator("#rt-preset").input_value() == "custom"
    assert w.locator('[data-output="full_params"]').text_content() == f"{1024 * 1024:,}"


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    yield page
    context.close()


def test_sticky_result_bar_and_verdict_states_on_a_phone(phone, site_url):
    open_page(phone, site_url, "gpu-memory/")
    bar = widget(phone, CALC).locator(".lc-resultbar")
    import loracalc

    # a LoRA run between 90% and 100% of an RTX 4090's usable bytes, found from the engine's own total
    cap = loracalc.get_gpu("rtx-4090").memory_bytes
    tight_seq = next(n for n in range(64, 8192, 64) if 0.9 * cap < loracalc.estimate_memory(
        "llama-3.1-8b", method="lora", seq_len=n).total_bytes <= cap)
    for settings, state, word in [({}, "fits", "Fits"),
                                  ({"method": "lora", "gpu": "rtx-4090", "seq_len": str(tight_seq)}, "tight", "Tight"),
                                  ({"model": "llama-3.1-70b", "method": "full"}, "no", "Does not fit")]:
        for field, value in settings.items():
            before = stamp(phone, CALC)
            set_field(phone, CALC, field, value)
            wait_updated(phone, CALC, before)
        want = expected(CALC, read_inputs(phone, CALC))
        assert want["verdict_state"] == state
        assert bar.locator(f".lc-verdict--{state}").inner_text().strip() == word
        assert bar.locator('[data-output="headroom"]').inner_text() == want["headroom"]
        # editing the last field of the form: the bar is on screen, under the header
        phone.locator("#mc-gpu").scroll_into_view_if_needed()
        box = bar.bounding_box()
        assert box and 0 <= box["y"] and box["y"] + box["height"] <= 844, box
        assert phone.locator("#mc-gpu").bounding_box()["y"] > box["y"] + box["height"] - 1  # not hidden under it
    # the config box opens only when chosen
    assert not phone.locator("#mc-config").is_visible()
    phone.locator("#mc-model").select_option("config")
    assert phone.locator("#mc-config").is_visible()


def test_the_why_line_appears_when_qlora_is_above_lora(wpage, site_url):
    open_page(wpage, site_url, "gpu-memory/")
    for field, value in (("batch_size", "8"), ("seq_len", "8192")):
        before = stamp(wpage, CALC)
        set_field(wpage, CALC, field, value)
        wait_updated(wpage, CALC, before)
    line = widget(wpage, CALC).locator('[data-output="explain"]')
    assert line.is_visible() and line.inner_text() == expected(CALC, read_inputs(wpage, CALC))["explain"]
    assert line.inner_text().startswith("Why is QLoRA above LoRA")


def test_stop_ends_a_runaway_example_and_the_badge_tells(wpage, site_url, built_site):
    path = next(h.parent.relative_to(built_site).as_posix() + "/" for h in sorted(built_site.rglob("index.html"))
                if 'class="lc-runnable"' in h.read_text() and h.parent != built_site)
    open_page(wpage, site_url, path)
    box = wpage.locator(".lc-runnable").first
    output = box.locator(".lc-run-output")
    assert not output.is_visible()  # no empty box before a run
    assert not box.locator(".lc-run-stop").is_visible()
    box.locator(".lc-editor").fill("while True:\n    pass")
    box.locator("button.lc-run").click()
    wpage.wait_for_function("() => document.querySelector('.lc-py-status').dataset.state === 'busy'")
    assert box.locator(".lc-run-stop").is_visible()
    wpage.wait_for_timeout(1200)
    assert "Running for" in box.locator(".lc-run-status").inner_text()
    started = time.monotonic()
    box.locator(".lc-run-stop").click()
    wpage.wait_for_function("(el) => el.textContent.startsWith('Stopped by you')", arg=output.element_handle(),
                            timeout=5_000)
    assert time.monotonic() - started < 3
    assert wpage.text_content(".lc-py-status") == "Python: restarting\u2026"
    wpage.wait_for_function("() => (loracalcPython.start(), loracalcPython.state === 'ready')", timeout=90_000)
    assert wpage.text_content(".lc-py-status") == "Python: ready"
    box.locator(".lc-editor").fill("for i in range(100000):\n    print(i)")
    box.locator("button.lc-run").click()
    wpage.wait_for_function("(el) => el.textContent.includes('more lines hidden')", arg=output.element_handle())
    assert "99,800 more lines hidden" in output.text_content()
    assert output.evaluate("e => e.getBoundingClientRect().height") < 700


def test_toc_and_search_index_have_no_raw_tex(wpage, site_url, built_site):
    wpage.goto(site_url + "training-recipe/")
    toc = wpage.locator(".md-sidebar--secondary .md-nav__link").all_inner_texts()
    assert "Rank r" in [t.strip() for t in toc] and "Alpha α" in [t.strip() for t in toc]
    assert not any("\\(" in t for t in toc)
    index = json.loads((built_site / "search" / "search_index.json").read_text())
    assert not [d["location"] for d in index["docs"] if "\\(" in d["title"] or "\\(" in d["text"]]


