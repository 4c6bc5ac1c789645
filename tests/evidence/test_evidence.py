"""The evidence experiment: run `--quick` for real and check what it shows, and that the saved results
(snippets/lora_course/data/evidence.json, rendered by the site) came from the committed code.

`--quick` pretrains the same base and runs four of the full run's configurations with seed 0, so its
numbers must fall inside the saved run's seed range. About a minute on an idle 2-core machine.

Thresholds, and why they are what they are:
* Loss gain. The base model's loss on the task (about 8 nats per token) is almost all format: six of the
  record's eight tokens are fixed keys and separators that never followed " => " in pretraining. A
  model that learned only the format and guessed both facts from their base rates would already score
  `format_only.gain_fraction` (0.965 here, computed exactly from the generator). So "most of the gain"
  is asserted as >= 0.9 for LoRA at r=1 and r=8, and the stronger claim is checked separately:
* Content. Exact match needs both facts right. Guessing the most common group and region every time
  gets (25/72) x (8/20) = 13.9% right; LoRA r=8 on q,v must beat that, i.e. it read the sentence.
  Full fine-tuning must reach 90%: the task is learnable in the step budget.
* Low rank. For a 128 x 128 (or 256 x 128) Gaussian matrix the top 8 of 128 singular directions hold
  about a fifth of the energy (Marchenko-Pastur); the fine-tuning update must hold at least twice that
  in every matrix kind, and more than a random matrix at every r below full rank.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "gpu_labs" / "evidence" / "experiment.py"
SAVED = ROOT / "snippets" / "lora_course" / "data" / "evidence.json"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # ~1 min alone; generous for a shared CI machine


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("evidence") / "quick.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def saved() -> dict:
    return json.loads(SAVED.read_text())


def by_name(result: dict) -> dict:
    return {c["name"]: c for c in result["configs"]}


def test_quick_runs_the_expected_configurations(quick):
    assert quick["mode"] == "quick"
    assert set(by_name(quick)) == {"full", "lora_qv_r1", "lora_qv_r8", "lora_all_r8"}


def test_lora_at_small_rank_recovers_most_of_the_loss_gain(quick):
    c = by_name(quick)
    for name in ("lora_qv_r1", "lora_qv_r8", "lora_all_r8"):
        assert c[name]["gain_fraction"]["mean"] >= 0.9, name
    # ... while training a small fraction of the parameters (r=8 on q,v of a 128-wide model: 4 x 8 x 256
    # per layer, two layers, against ~350k weights).
    assert c["lora_qv_r8"]["trainable_params"] == 2 * 2 * 8 * (128 + 128)
    assert c["lora_qv_r8"]["trainable_percent"] < 3


def test_the_loss_gain_is_mostly_format(quick):
    # The flattering part of the metric, recomputed from the generator: format alone scores > 0.95.
    assert quick["format_only"]["gain_fraction"] > 0.95


def test_lora_reads_the_sentence_and_full_ft_learns_the_task(quick):
    c = by_name(quick)
    guess_the_mode = (25 / 72) * (8 / 20)
    assert c["lora_qv_r8"]["exact_match"]["mean"] > guess_the_mode + 0.05
    assert c["full"]["exact_match"]["mean"] >= 0.9
    assert quick["base"]["task_exact_match"] == 0.0  # the base model never writes the record


def test_update_is_far_more_low_rank_than_noise(quick):
    spectra = quick["spectra"]
    i8 = spectra["ranks"].index(8)
    for kind, k in spectra["kinds"].items():
        assert k["random"][i8] < 0.3, kind  # sanity: a Gaussian matrix is spread out
        assert k["update"][i8] >= 2 * k["random"][i8], kind
        assert all(u > r for u, r, rank in zip(k["update"], k["random"], spectra["ranks"]) if rank < 128), kind


def test_greedy_decoding_agrees_with_teacher_forced_exact_match(quick):
    for check in quick["spectra"]["greedy_check"]:
        assert check["agree"] == check["examples"]


def test_saved_results_reproduce_within_the_seed_spread(quick, saved):
    """The site's numbers came from this code: each quick configuration lands in the saved seed range."""
    assert saved["mode"] == "full"
    assert saved["settings"] == quick["settings"]
    assert quick["learning_rates"] == saved["learning_rates"]  # quick reads them from the saved sweep
    assert abs(quick["base"]["task_val_loss"] - saved["base"]["task_val_loss"]) < 0.05
    full = by_name(saved)
    for name, q in by_name(quick).items():
        s = full[name]
        for key, slack in (("val_loss", 0.02), ("exact_match", 0.03)):
            lo, hi = s[key]["min"], s[key]["max"]
            assert lo - slack <= q[key]["mean"] <= hi + slack, (name, key, q[key]["mean"], lo, hi)
        assert q["trainable_params"] == s["trainable_params"]
