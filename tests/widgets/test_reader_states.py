"""Issue 18, the widget functions' side: verdicts a reader can trust (fits / tight / does not fit, with
headroom), a why-line when QLoRA comes out above LoRA, a typed d that a model preset never overrides,
the NF4 summary over many blocks, the error cost of the block size, and capped example output."""
from __future__ import annotations

import pytest

import loracalc
from lora_course.widgets import call, cap_output, run_code
from lora_course.widgets import memory_calculator as mc

from .conftest import assert_clean, call_widget

SETTINGS = [
    {},
    {"method": "lora"},
    {"method": "full"},
    {"model": "llama-3.1-70b", "method": "qlora"},
    {"method": "qlora", "batch_size": "8", "seq_len": "8192"},
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("gpu", [g.name for g in loracalc.list_gpus()])
def test_verdict_state_follows_the_engines_total_and_the_cards_memory(settings, gpu):
    out = call_widget("memory_calculator", {**settings, "gpu": gpu})
    arch = loracalc.get_model(settings.get("model", "llama-3.1-8b"))
    kwargs = {k: v for k, v in settings.items() if k != "model"}
    total = loracalc.estimate_memory(arch, **kwargs).total_bytes
    cap = loracalc.get_gpu(gpu).memory_bytes
    want = "no" if total > cap else "tight" if total > 0.9 * cap else "fits"
    assert out["verdict_state"] == want
    assert f"lc-verdict--{want}" in out["verdict_badge"]
    first_word = {"no": "Does not fit", "tight": "Tight", "fits": "Fits"}[want]
    assert out["gpu_verdict"].startswith(first_word)
    assert out["headroom"].endswith("short" if want == "no" else "free")
    assert_clean(out)


def test_a_run_above_90_percent_of_the_card_is_tight_not_a_plain_fit():
    # The case the issue reports: LoRA of Llama-3.1-8B at 92% of a 24 GB card was shown as a plain "fits".
    # Find a sequence length that puts the engine's total between 90% and 100% of an RTX 4090 (the engine
    # decides the bytes; the test decides only where the verdict must change).
    cap = loracalc.get_gpu("rtx-4090").memory_bytes
    seq = next(n for n in range(64, 8192, 64)
               if 0.9 * cap < loracalc.estimate_memory("llama-3.1-8b", method="lora", seq_len=n).total_bytes <= cap)
    total = loracalc.estimate_memory("llama-3.1-8b", method="lora", seq_len=seq).total_bytes
    out = call_widget("memory_calculator", {"method": "lora", "gpu": "rtx-4090", "seq_len": str(seq)})
    assert out["verdict_state"] == "tight"
    assert f"{round(100 * total / cap)}%" in out["gpu_verdict"] and out["headroom"].endswith(" free")


@pytest.mark.parametrize("settings", SETTINGS)
def test_a_why_line_appears_exactly_when_qlora_is_above_lora(settings):
    out = call_widget("memory_calculator", settings)
    arch = loracalc.get_model(settings.get("model", "llama-3.1-8b"))
    kwargs = {k: v for k, v in settings.items() if k not in ("model", "method")}
    q = loracalc.estimate_memory(arch, method="qlora", **kwargs).total_bytes
    lo = loracalc.estimate_memory(arch, method="lora", **kwargs).total_bytes
    if q > lo:
        assert out["explain"].startswith("Why is QLoRA above LoRA here")
        assert "fp32" in out["explain"]
    else:
        assert out["explain"] == ""


def test_fit_state_thresholds():
    assert mc.fit_state(90, 100) == "fits"
    assert mc.fit_state(91, 100) == "tight"
    assert mc.fit_state(100, 100) == "tight"
    assert mc.fit_state(101, 100) == "no"


# ------------------------------------------------------------------ rank trick: a preset never hides a typed d
def test_a_typed_d_switches_the_preset_to_custom():
    result = call("rank_trick", {"preset": "llama-3.1-405b", "d": "1024", "r": "8", "_changed": "d"})
    assert result["ok"]
    assert result["outputs"]["full_params"] == f"{1024 * 1024:,}"
    assert result["outputs"]["_set"] == {"d": "1024", "preset": "custom"}


@pytest.mark.parametrize("bad", ["-1", "1000000000", "", "abc"])
def test_a_bad_typed_d_is_an_error_even_with_a_preset_chosen(bad):
    result = call("rank_trick", {"preset": "llama-3.1-405b", "d": bad, "r": "8", "_changed": "d"})
    assert not result["ok"] and result["field"] == "d"


def test_choosing_a_preset_writes_its_hidden_size_into_d():
    # Llama-3.1-405B's config.json: hidden_size 16384 (the value the issue saw the drawing keep).
    result = call("rank_trick", {"preset": "llama-3.1-405b", "d": "4096", "r": "8", "_changed": "preset"})
    assert result["ok"] and result["outputs"]["_set"]["d"] == "16384"


# ------------------------------------------------------------------ NF4: many blocks, block-size cost
@pytest.mark.slow  # a thousand blocks take about a second
def test_summary_over_a_thousand_blocks_as_the_page_shows_it():
    out = call_widget("nf4_summary", {})
    assert "Over 1,000 blocks" in out["headline"]
    assert out["table"].count("<tr") == 4  # header + three formats


def test_summary_over_many_blocks():
    # QLoRA (Dettmers et al., 2023): NF4 is built for normally distributed weights, so over many normal
    # blocks its average error is the lowest of the three 4-bit formats, even if a single block may not be.
    from lora_course.widgets.nf4_explorer import blocks_summary

    res = blocks_summary(200)
    assert res["mean"]["nf4"]["rmse"] < res["mean"]["int4"]["rmse"] < res["mean"]["fp4"]["rmse"]
    assert sum(res["wins"].values()) == 200
    assert 0 < res["wins"]["int4"] < res["wins"]["nf4"]  # one block can go either way, as the page says


def test_the_bits_widget_shows_the_error_cost_of_the_block_size():
    base = call_widget("nf4_bits", {"block_size": "64"})["error_cost"]
    big = call_widget("nf4_bits", {"block_size": "4096"})["error_cost"]
    small = call_widget("nf4_bits", {"block_size": "16"})["error_cost"]
    assert "the reference" in base
    assert "more than at block size 64" in big  # a larger block: one absmax stretched over more weights
    assert "less than at block size 64" in small


# ------------------------------------------------------------------ runnable output
def test_printed_output_is_capped_with_a_count_of_the_rest():
    result = run_code("for i in range(100_000):\n    print(i)")
    shown = result["stdout"].splitlines()
    assert shown[:3] == ["0", "1", "2"] and len(shown) == 200
    assert result["hidden_lines"] == 100_000 - 200
    assert run_code("print('hi')")["hidden_lines"] == 0
    text, hidden = cap_output("a\n" * 5, max_lines=3)
    assert text == "a\na\na\n" and hidden == 2
