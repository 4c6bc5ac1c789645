"""The learning-rate search's rules, without training (plain `pytest` runs these).

The experiment promises: at least five log-spaced rates per cell, one more rate beyond an edge while the
best sits at that edge, a diverged run never chosen, and the widening bounded. These tests hold it to that.
"""
from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gpu_labs" / "evidence"))
import experiment  # noqa: E402  (stdlib at import time; torch only inside the training functions)

STEP = math.sqrt(10)
BOUNDS = (1e-5, 1.0)


def test_grid_is_log_spaced_around_its_centre():
    grid = experiment.lr_grid(1e-2, 5, STEP)
    assert len(grid) == 5
    assert grid[2] == pytest.approx(1e-2)
    ratios = [b / a for a, b in zip(grid, grid[1:])]
    assert all(r == pytest.approx(STEP, rel=2e-3) for r in ratios)  # 3 significant digits


def test_a_best_rate_inside_the_grid_ends_the_search():
    tried = {1e-3: 0.9, 3.16e-3: 0.5, 1e-2: 0.4, 3.16e-2: 0.6, 1e-1: 2.0}
    assert experiment.next_rates(tried, STEP, BOUNDS, widened=0, max_widen=3) == []
    assert experiment.best_rate(tried) == 1e-2


@pytest.mark.parametrize("best,expected", [(1e-3, 3.16e-4), (1e-1, 0.316)])
def test_a_best_rate_at_an_edge_widens_beyond_that_edge(best, expected):
    grid = [1e-3, 3.16e-3, 1e-2, 3.16e-2, 1e-1]
    tried = {lr: (0.1 if lr == best else 1.0) for lr in grid}
    assert experiment.next_rates(tried, STEP, BOUNDS, widened=0, max_widen=3) == [pytest.approx(expected, rel=1e-2)]


def test_widening_stops_at_the_limit_and_at_the_bounds():
    tried = {0.1: 1.0, 0.316: 0.5, 1.0: 0.1}
    assert experiment.next_rates(tried, STEP, BOUNDS, widened=0, max_widen=3) == []  # 3.16 > upper bound 1.0
    tried = {1e-3: 0.1, 3.16e-3: 0.5}
    assert experiment.next_rates(tried, STEP, BOUNDS, widened=3, max_widen=3) == []


def test_a_diverged_run_is_never_the_best():
    tried = {1e-3: 0.8, 3.16e-3: 0.7, 1e-2: None}
    assert experiment.best_rate(tried) == 3.16e-3
    assert experiment.next_rates({1e-2: None, 3e-2: None}, STEP, BOUNDS, 0, 3) == []  # nothing to widen around


def test_interval_over_three_seeds_is_the_student_t_interval():
    values = [0.41, 0.35, 0.47]
    got = experiment.stats(values)
    half = 4.302653 * statistics.stdev(values) / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert got["mean"] == pytest.approx(statistics.mean(values))
    assert got["ci95"] == pytest.approx([statistics.mean(values) - half, statistics.mean(values) + half], rel=1e-4)
    assert experiment.stats([None, 0.5])["n"] == 1  # a diverged seed is left out, not averaged in as a number


def test_schemes_share_the_update_scale_at_rank_8():
    # peft scales the update by lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora (FACTS.md, rsLoRA).
    s = experiment.Settings()
    scale = {"fixed": lambda r: experiment.lora_alpha(s, "fixed", r) / r,
             "2r": lambda r: experiment.lora_alpha(s, "2r", r) / r,
             "rslora": lambda r: experiment.lora_alpha(s, "rslora", r) / math.sqrt(r)}
    at8 = {k: f(8) for k, f in scale.items()}
    assert max(at8.values()) == pytest.approx(min(at8.values()), rel=1e-3)
    assert scale["fixed"](64) == pytest.approx(at8["fixed"] / 8)   # fixed alpha: 8x smaller at r = 64
    assert scale["2r"](64) == pytest.approx(at8["2r"])              # alpha = 2r: the same at every rank
    assert scale["rslora"](64) == pytest.approx(at8["rslora"] / math.sqrt(8), rel=1e-3)
