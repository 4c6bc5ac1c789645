"""The evidence experiment end to end: run `--quick` for real and check what it shows, and that the saved
results (snippets/lora_course/data/evidence.json, rendered by the site) came from the committed code.

`--quick` pretrains the same base and runs five of the full run's cells (full fine-tuning, LoRA q,v r=8,
LoRA q,v r=64 under rsLoRA, DoRA r=8, PiSSA r=8) with seed 0, each at the rate the saved run chose, so
its runs are the saved run's seed-0 runs repeated. About 85 s on a lightly loaded 2-core machine.

What is asserted, and why:
* Training starts at the base model. LoRA's B starts at zero and PiSSA subtracts what its adapter adds, so
  before the first step each adapter model scores the base's task loss and held-out pretraining loss.
* Trainable counts. r (d_in + d_out) per adapted matrix (FACTS.md); DoRA adds one magnitude per output
  feature of each adapted matrix (Liu et al. 2024, the vector m).
* Content. Exact match needs both facts right. Writing the training set's most common record every time
  scores `baselines.most_common_answer.test_exact_match`; full fine-tuning and LoRA r=8 must beat it, i.e.
  they read the sentence. The base model never writes the record at all.
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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # ~85 s alone; generous for a shared CI machine


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
    return {c["name"]: c for c in result["cells"]}


def test_quick_runs_the_expected_cells(quick):
    assert quick["mode"] == "quick"
    assert set(by_name(quick)) == {"full", "lora_qv_r8_fixed", "lora_qv_r64_rslora", "dora_qv_r8_fixed",
                                   "pissa_qv_r8_fixed"}
    assert all(c["seeds"] == [0] for c in quick["cells"])


def test_every_method_starts_at_the_base_model(quick):
    base = quick["base"]
    for name, c in by_name(quick).items():
        assert c["start_loss"] == pytest.approx(base["task_val_loss"], abs=2e-3), name
        assert c["forget_before"]["mean"] == pytest.approx(base["heldout_pretrain_loss"], abs=2e-3), name


def test_trainable_counts_follow_lora_and_dora(quick):
    c = by_name(quick)
    layers, d = quick["settings"]["num_layers"], quick["settings"]["hidden_size"]
    for name, rank in (("lora_qv_r8_fixed", 8), ("lora_qv_r64_rslora", 64), ("pissa_qv_r8_fixed", 8)):
        assert c[name]["trainable_params"] == layers * 2 * rank * (d + d), name
    assert c["dora_qv_r8_fixed"]["trainable_params"] == layers * 2 * (8 * (d + d) + d)


def test_full_ft_and_lora_read_the_sentence(quick):
    c = by_name(quick)
    mode = quick["baselines"]["most_common_answer"]["test_exact_match"]
    assert quick["base"]["task_test_exact_match"] == 0.0  # the base model never writes the record
    # Margins well under what the saved seed-0 runs show (full FT 0.85 above the mode, LoRA r=8 0.22), and over
    # what luck gives on 256 prompts (a 15% hit rate has a binomial sd of about 0.022).
    assert c["full"]["exact_match"]["mean"] > mode + 0.15
    assert c["lora_qv_r8_fixed"]["exact_match"]["mean"] > mode + 0.05


def test_fine_tuning_moves_the_pretraining_loss(quick):
    # Forgetting is measured, not assumed small or assumed ordered: training on the record task must raise
    # every method's loss on held-out pretraining text. Which method raises it more depends on the rates
    # the searches chose (at 200 steps full fine-tuning's low chosen rate forgot less than LoRA r=8's high
    # one), so no order is asserted here; the saved-run comparison below checks the values themselves.
    c = by_name(quick)
    for name, cell in c.items():
        assert cell["forgetting"]["mean"] > 0.0, name


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


def test_saved_results_came_from_this_code(quick, saved):
    """Each quick cell repeats the saved run's seed-0 run at the same rate: the numbers must agree."""
    if saved.get("schema", 1) < 2:
        pytest.skip("the saved results are the first run's (schema 1), from code this run no longer matches")
    assert saved["mode"] == "full"
    # the saved run is a claim about the libraries it ran with: a repeat on other releases measures the drift
    # between them, not this code (transformers 5.25 moved the quick cells by up to 0.13 in validation loss)
    ran_with = {k: v for k, v in saved["library_versions"].items() if k != "python"}
    now = {k: v for k, v in quick["library_versions"].items() if k != "python"}
    if ran_with != now:
        pytest.skip(f"the saved run used {ran_with}, this one {now}: re-record it with the locked versions "
                    "(python gpu_labs/evidence/experiment.py, about 35 minutes) to compare")
    assert saved["settings"] == quick["settings"]
    assert abs(quick["base"]["task_test_loss"] - saved["base"]["task_test_loss"]) < 0.05
    saved_cells = by_name(saved)
    compared = [name for name in by_name(quick) if name in saved_cells]
    assert {"full", "lora_qv_r8_fixed"} <= set(compared)  # the saved run always has these two
    for name in compared:
        q, s = by_name(quick)[name], saved_cells[name]
        assert q["lr"] == s["lr"], name  # quick reads the saved choice
        run = next(r for r in saved["runs"] if r["cell"] == name and r["lr"] == s["lr"] and r["seed"] == 0)
        assert q["val_loss"]["mean"] == pytest.approx(run["val_loss"], abs=0.02), name
        assert q["exact_match"]["mean"] == pytest.approx(run["test_exact"], abs=0.03), name
        assert q["forget_after"]["mean"] == pytest.approx(run["forget_after"], abs=0.05), name
        assert q["trainable_params"] == s["trainable_params"], name
