"""loracalc against published peak-memory measurements (snippets/lora_course/data/published_memory.json).

The measured numbers are the sources' own (each record cites the file and commit it was read from); the
predictions are computed here from the recorded settings. No constant in loracalc is fitted to them.
"""
from __future__ import annotations

import statistics

import pytest

import loracalc
from lora_course import published

# Expressible points that miss the 10% goal today, with what is known about why. The test below fails if
# one of them comes within the bound (take it off this list then) or if any other point leaves it.
KNOWN_GAPS = {
    "torchtune_flags:+8bit_adamw":
        "torchtune's 8-bit row drops 4.2 GiB from the row before; with the 8-bit state in PyTorch's allocator "
        "(the only reading its active statistic allows) loracalc drops 5.9 GiB, and the chain's rows before it "
        "sit 6% under already",
    "litgpt:llama-3.1-8b/qlora.yaml":
        "LitGPT QLoRA rows (bitsandbytes 0.42, Lightning's fp16 quantization, k and v expanded) stay 7-19% above "
        "loracalc after the kept inputs, the output layer's dequantized copies and the expanded k and v; LitGPT's "
        "LoRA rows are within 6%; the rest of the gap is specific to its 4-bit path and not found in the sources read",
    "litgpt:llama-2-7b/qlora.yaml": "as above",
    "litgpt:mistral-7b-v0.2/qlora.yaml": "as above",
}


def test_every_record_is_complete():
    recs = published.records()
    assert len(recs) == 75
    for r in recs:
        assert r["source"] and r["citation"] and r["settings_text"]
        assert r["quantity"] in ("allocated", "active", "reserved", "unspecified", "max context")
        m = r["measured"]
        if m["value"] is not None and m["unit"] in ("GiB", "GB"):
            assert m["bytes"] == round(m["value"] * {"GiB": 2**30, "GB": 10**9}[m["unit"]])
        if r["expressible"]:
            assert r["quantity"] in ("allocated", "active", "reserved") and m["bytes"] > 0
            loracalc.estimate_memory(published.architecture(r), **r["loracalc"]["settings"])   # raises if not
        else:
            assert r["why_not"]


def test_allocated_peak_within_ten_percent_on_every_expressible_point():
    pts = published.points()
    assert len(pts) >= 20
    errors = {p.rec["id"]: p.error_percent for p in pts}
    outside = {k for k, e in errors.items() if abs(e) > published.BOUND_PERCENT}
    assert outside == set(KNOWN_GAPS), {k: round(errors[k], 1) for k in outside ^ set(KNOWN_GAPS)}
    inside = [abs(e) for k, e in errors.items() if k not in KNOWN_GAPS]
    assert statistics.median(inside) < 6


def test_reserved_points_are_reported():
    # a sanity bound, not the goal: PEFT's figure is a 99th percentile of memory_reserved sampled after each
    # optimizer step with empty_cache every 10 steps, which can sit below the step's true reserved peak
    pts = published.points(("reserved",))
    assert pts and all(abs(p.error_percent) < 25 for p in pts)


def test_tables_render(figures_module):
    t = figures_module.render_table("published_memory")
    assert t.count("\n") == len(published.points()) + 1 and "| measured |" in t
    assert "why loracalc does not express it" in figures_module.render_table("published_memory_unexpressed")
    for name in ("recipes_llama_8b", "recipes_llama_70b"):
        side = figures_module.render_table(name)
        assert side.count("#calculate-it") == 3 and "recipe=torchtune" in side and "recipe=qlora-paper" in side
