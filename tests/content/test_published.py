"""loracalc against published peak-memory measurements (snippets/lora_course/data/published_memory.json).

The measured numbers are the sources' own (each record cites the file and commit it was read from); the
predictions are computed here from the recorded settings. No constant in loracalc is fitted to them.
"""
from __future__ import annotations

import statistics

import pytest

import loracalc
from lora_course import published

# Expressible points that miss the 10% goal, with what is known about why. The test below fails if one of
# them comes within the bound (take it off this list then) or if any other point leaves it. Empty since
# loracalc models LitGPT's loop holding the last step's graph, and gradient accumulation.
KNOWN_GAPS: dict[str, str] = {}


def test_every_record_is_complete():
    recs = published.records()
    assert len(recs) == 91
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
    # a sanity bound, not the goal (tests/snippets/test_allocator.py holds the goal): PEFT's figure is a 99th
    # percentile of memory_reserved sampled after each optimizer step, with empty_cache every 10 steps releasing
    # the fragmentation the engine's allocator term adds (its LoRA rows sit 22% to 26% above), and MetaMathQA's
    # batches rarely reach the 768-token cap the rows assume
    pts = published.points(("reserved",))
    assert pts and all(abs(p.error_percent) < 30 for p in pts)


def test_tables_render(figures_module):
    t = figures_module.render_table("published_memory")
    assert t.count("\n") == len(published.points()) + 1 and "| measured |" in t
    assert "why loracalc does not express it" in figures_module.render_table("published_memory_unexpressed")
    for name in ("recipes_llama_8b", "recipes_llama_70b"):
        side = figures_module.render_table(name)
        assert side.count("#calculate-it") == 3 and "recipe=torchtune" in side and "recipe=qlora-paper" in side
