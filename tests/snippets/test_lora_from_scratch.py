"""The rank-trick page's LoRA-from-scratch exercise (snippets/lora_course/lora_from_scratch.py), in CPython.

What is asserted comes from outside the exercise's own code: the hidden update is built with rank 2, so a
rank-1 product cannot fit it and its best possible loss is what reduced-rank regression leaves (computed
here with numpy's SVD); the hand-written gradient is checked against finite differences; the singular
values against numpy's.
"""
from __future__ import annotations

import functools
import random

import numpy as np
import pytest

from lora_course import lora_from_scratch as ex

THRESHOLD = 1e-2  # the page's claim: at or above the hidden rank the loss falls below this in STEPS steps


def quiet(*_args):
    pass


@functools.lru_cache(maxsize=None)
def run(r):
    """One run at the page's settings but rank R (shared by the tests that only read it)."""
    return ex.train(r=r, log=quiet)


@pytest.mark.parametrize("r", [2, 4])
def test_rank_at_or_above_the_hidden_rank_fits_the_update(r):
    out = run(r=r)
    assert out["losses"][-1] < THRESHOLD, out["losses"][-1]
    # the learned update is the hidden one: its two singular values, the rest zero
    found = out["singular_values"]
    assert found[:2] == pytest.approx(list(ex.HIDDEN), abs=0.1)
    assert all(s < 1e-3 for s in found[2:])


def test_rank_below_the_hidden_rank_stays_at_the_best_rank_one_fit():
    out = run(r=1)
    _, pairs = ex.make_task()
    X = np.array([x for x, _, _ in pairs]).T                      # D x N
    residual = np.array([np.subtract(t, f) for _, f, t in pairs]).T  # what the adapter must add: update @ X
    assert np.linalg.matrix_rank(residual, tol=1e-9) == 2
    # Best rank-1 M: min ||M X - residual||^2 over rank-1 M is the energy past the first singular value
    # of the residual (its rows lie in X's row space, and X has full row rank).
    s = np.linalg.svd(residual, compute_uv=False)
    floor = float((s[1:] ** 2).sum()) / (X.shape[1] * ex.D)
    assert floor > THRESHOLD
    assert out["losses"][-1] > THRESHOLD
    assert out["losses"][-1] == pytest.approx(floor, rel=0.02)
    assert out["singular_values"][0] == pytest.approx(ex.HIDDEN[0], abs=0.1)


def test_step_zero_is_the_frozen_model():
    W, pairs = ex.make_task()
    layer = ex.LoRALinear(W, 4, 8.0, random.Random(5))
    assert all(v == 0.0 for row in layer.B for v in row)
    assert any(v != 0.0 for row in layer.A for v in row)
    for x, frozen, _ in pairs:
        y, _ = layer.forward(x, frozen)
        assert np.allclose(y, np.array(W) @ np.array(x), rtol=0, atol=1e-12)
    assert run(r=2)["start_difference"] == 0.0


def test_hand_written_gradient_matches_finite_differences():
    W, pairs = ex.make_task()
    layer = ex.LoRALinear(W, 2, 4.0, random.Random(3))
    rng = random.Random(4)
    layer.B = [[rng.gauss(0, 0.3) for _ in range(2)] for _ in range(ex.D)]  # off the B = 0 start

    def loss_of(A, B):
        probe = ex.LoRALinear(W, 2, 4.0, random.Random(0))
        probe.A, probe.B = [r[:] for r in A], [r[:] for r in B]
        return probe.train_step(pairs, 0.0)

    A0, B0 = [r[:] for r in layer.A], [r[:] for r in layer.B]
    lr = 1e-3
    layer.train_step(pairs, lr)
    eps = 1e-6
    for which, k, j in [("A", 0, 3), ("A", 1, 15), ("B", 0, 1), ("B", 11, 0)]:
        A, B = [r[:] for r in A0], [r[:] for r in B0]
        M = A if which == "A" else B
        M[k][j] += eps
        up = loss_of(A, B)
        M[k][j] -= 2 * eps
        down = loss_of(A, B)
        numeric = (up - down) / (2 * eps)
        stepped = ((A0 if which == "A" else B0)[k][j] - (layer.A if which == "A" else layer.B)[k][j]) / lr
        assert stepped == pytest.approx(numeric, rel=1e-4, abs=1e-8), (which, k, j)


def test_singular_values_match_numpy():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(16, 3)) @ rng.normal(size=(3, 16))
    found = ex.singular_values(M.tolist(), 4)
    want = np.linalg.svd(M, compute_uv=False)[:4]
    assert found == pytest.approx(list(want), abs=1e-5)


def test_the_loss_falls_and_a_too_large_rate_is_reported_in_one_line():
    losses = run(r=2)["losses"]
    assert len(losses) == ex.STEPS + 1
    assert losses[0] > 100 * losses[-1]
    lines = []
    out = ex.train(r=2, lr=4.0, log=lines.append)
    assert out["singular_values"] is None
    assert "diverged" in lines[-1] and "lower LR" in lines[-1]


@pytest.mark.parametrize("kw,word", [({"r": 0}, "rank"), ({"r": 17}, "rank"), ({"r": 2.5}, "rank"),
                                     ({"lr": -1.0}, "LR"), ({"alpha": 0.0}, "ALPHA"), ({"steps": 0}, "STEPS")])
def test_bad_settings_get_one_line(kw, word):
    lines = []
    assert ex.train(log=lines.append, **kw) is None
    assert len(lines) == 1 and word in lines[0]


def test_the_page_runs_the_file_as_written():
    """The runnable block is the file's exercise section, run the way the browser runs it."""
    from pathlib import Path

    from lora_course.widgets import run_code

    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "rank-trick.md").read_text()
    assert '--8<-- "snippets/lora_course/lora_from_scratch.py:exercise"' in page
    source = (root / "snippets" / "lora_course" / "lora_from_scratch.py").read_text()
    section = source.split("# --8<-- [start:exercise]\n")[1].split("# --8<-- [end:exercise]")[0]
    result = run_code(section)
    assert result["error"] is None, result["error"]
    assert result["hidden_lines"] == 0
    final = [line for line in result["stdout"].splitlines() if line.strip().startswith(f"step {ex.STEPS:4d}")]
    assert float(final[0].split()[-1]) < THRESHOLD
