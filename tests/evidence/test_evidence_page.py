"""Fast checks of the saved evidence and the page that quotes it (no training; plain `pytest` runs these)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lora_course import evidence, figures

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "evidence.md"
PLACEHOLDER = re.compile(r"\{\{\s*(fig|table)\.(evidence_\w+)\s*\}\}")


def test_every_placeholder_on_the_page_renders():
    found = PLACEHOLDER.findall(PAGE.read_text())
    assert len(found) > 30
    for kind, name in found:
        text = figures.render_figure(name) if kind == "fig" else figures.render_table(name)
        assert text and "nan" not in text.lower(), name


def test_plots_the_page_shows_exist():
    for src in re.findall(r"\]\((assets/evidence/[\w.-]+\.svg)#only-(?:light|dark)\)", PAGE.read_text()):
        svg = ROOT / "docs" / src
        assert svg.is_file(), src
        assert "<text" in svg.read_text()[:200_000], f"{src}: text should stay text (svg.fonttype none)"


@pytest.mark.parametrize("family,targets_per_layer", [("lora_qv", [(128, 128)] * 2),
                                                      ("lora_all", [(128, 128)] * 4 + [(128, 256)] * 3)])
def test_saved_trainable_counts_follow_the_lora_formula(family, targets_per_layer):
    # r (d_in + d_out) per adapted matrix (FACTS.md), two layers; the model is 128 wide with a 256 MLP.
    layers = evidence.results()["settings"]["num_layers"]
    for c in evidence.results()["configs"]:
        if c["family"] == family:
            expected = layers * sum(c["rank"] * (a + b) for a, b in targets_per_layer)
            assert c["trainable_params"] == expected, c["name"]


def test_energy_curves_are_cumulative_shares():
    sp = evidence.results()["spectra"]
    for kind, k in sp["kinds"].items():
        for curve in (k["update"], k["random"]):
            assert all(0 < a <= b <= 1.0 + 1e-6 for a, b in zip(curve, curve[1:])), kind
            assert curve[-1] == pytest.approx(1.0, abs=1e-4), kind  # r = 128 is full rank


def test_saved_run_is_the_full_grid_with_three_seeds():
    r = evidence.results()
    assert r["mode"] == "full"
    names = {c["name"] for c in r["configs"]}
    assert names == {"full", "qlora_qv_r8"} | {f"{f}_r{k}" for f in ("lora_qv", "lora_all") for k in (1, 2, 4, 8, 16, 64)}
    assert all(len(c["seeds"]) == 3 for c in r["configs"])
    assert len(r["lr_sweep"]) == 4 * len(r["settings"]["lr_grid"])
