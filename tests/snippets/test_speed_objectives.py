"""Training time for preference and RL objectives (loracalc.speed, objective=...): the structure TRL's trainers
run (trl/trainer/dpo_trainer.py concatenates chosen and rejected into one forward and scores the reference under
no_grad; ORPO and SimPO have no reference; GRPO generates before it trains), and a physical bound on decoding.
"""
from __future__ import annotations

import pytest

from loracalc.errors import LoraCalcError
from loracalc.gpus import get_gpu
from loracalc.speed import BANDWIDTH_EFFICIENCY, estimate_time

MODEL, GPU = "llama-3.1-8b", "h100-80gb"


def _t(**kw):
    return estimate_time(MODEL, GPU, **{"method": "lora", "seq_len": 1024, **kw})


def test_paired_objectives_train_on_chosen_and_rejected_stacked():
    """ORPO's (and DPO's) policy runs one forward and backward over 2 x batch sequences: the matmuls of SFT on
    twice the batch."""
    for obj in ("orpo", "simpo", "dpo"):
        assert _t(objective=obj, batch_size=2).seconds["matmuls"] == pytest.approx(
            _t(batch_size=4).seconds["matmuls"])


def test_dpo_adds_only_the_reference_forward():
    dpo, orpo = _t(objective="dpo", batch_size=2), _t(objective="orpo", batch_size=2)
    assert dpo.seconds_per_step - orpo.seconds_per_step == pytest.approx(dpo.seconds["reference_forward"])
    # a forward without gradients is cheaper than the policy's forward and backward over the same sequences
    assert 0 < dpo.seconds["reference_forward"] < dpo.seconds["matmuls"] / 2
    # reference log-probabilities computed before training: nothing to add
    assert _t(objective="dpo", batch_size=2, reference="precomputed").seconds_per_step == pytest.approx(
        orpo.seconds_per_step)


def test_kto_scores_its_kl_batch_without_gradients():
    kto = _t(objective="kto", batch_size=4)
    assert {"reference_forward", "kl_forward"} <= set(kto.seconds)
    assert kto.seconds["reference_forward"] == pytest.approx(2 * kto.seconds["kl_forward"], rel=0.02)


def test_grpo_decoding_reads_every_weight_per_token():
    """Each decode step reads every weight at least once, so generating C tokens takes at least C x the 16-bit
    weights over the card's bandwidth (nominal bandwidth times the engine's copy efficiency)."""
    from loracalc.models import get_model
    arch = get_model(MODEL)
    C = 256
    t = _t(objective="grpo", batch_size=8, completion_len=C, seq_len=512)
    linear = sum(r.weight * r.copies for r in arch.text_records() if r.kind == "linear")
    card = get_gpu(GPU)
    floor = C * 2 * linear / (card.memory_bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY)
    assert floor <= t.seconds["generation_decode"] < 1.5 * floor
    assert t.seconds["generation_prefill"] < t.seconds["generation_decode"]
    assert "reference_forward" not in t.seconds         # beta = 0 by default: no reference
    assert "reference_forward" in _t(objective="grpo", batch_size=8, completion_len=C, seq_len=512,
                                     reference="adapter-off").seconds


def test_run_is_counted_in_pairs_or_prompts():
    dpo = _t(objective="dpo", batch_size=2, gradient_accumulation=4, samples=800)
    assert dpo.steps == pytest.approx(100)                # 8 pairs per step
    grpo = _t(objective="grpo", batch_size=4, gradient_accumulation=4, samples=100, num_generations=8,
              completion_len=256)
    assert grpo.steps == pytest.approx(50)                # 16 completions = 2 prompts per step


@pytest.mark.parametrize("kw, field", [
    (dict(objective="dpo", tokens=10**6), "samples"),
    (dict(objective="orpo", reference="separate"), "reference"),
    (dict(objective="grpo", batch_size=3, num_generations=8), "num_generations"),
    (dict(objective="ppo"), "objective"),
])
def test_refused_with_one_line(kw, field):
    with pytest.raises(LoraCalcError) as exc:
        _t(**kw)
    assert exc.value.field == field and "\n" not in exc.value.message


def test_cli_time_takes_the_objective(capsys):
    from loracalc.cli import main
    assert main(["time", "--gpu", GPU, "--objective", "dpo", "--samples", "1000", "--method", "lora"]) == 0
    out = capsys.readouterr().out
    assert "reference_forward" in out and "DPO" in out
