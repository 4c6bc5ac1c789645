"""Recompute, don't replay: peft's DoRA measured on tiny CPU models (tests/snippets/stack_record.py, which the
slow test ``test_stack_records_remeasured`` in test_memory_stacks.py checks and can rewrite), predicted again by
the engine as it is now, without importing torch.

Tolerances are the slow tests': the weight norm's temporaries exactly (but 16 bytes of 0-dim scalars inside
LLM.int8's dequantization), what DoRA adds to the saved tensors within 2% (a few small per-module tensors the
engine leaves out) and what dropout adds to it exactly, the magnitude vectors exactly.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import loracalc
from loracalc.dora import dora_transient

DATA = json.loads((Path(__file__).resolve().parent / "data" / "stack_measured.json").read_text())
ARCH = loracalc.model_from_config(DATA["config"])
TRANSIENT = [r for r in DATA["rows"] if r["kind"] == "transient"]
SAVED = [r for r in DATA["rows"] if r["kind"] == "saved"]
SCALARS = 16     # LLM.int8's dequantization with bf16 adapters: two 0-dim scalars (8 + 4 B) alive at the peak


def _tid(r: dict) -> str:
    return (f"{r['method']}-{r['adapter']}{'-autocast' if r['autocast'] else ''}"
            f"{'-gc' if r['gradient_checkpointing'] else ''}{'-wide' if r.get('config_overrides') else ''}")


def _arch(r: dict):
    """The recorded config, with the row's overrides (a wider MLP for one row)."""
    return loracalc.model_from_config({**DATA["config"], **r["config_overrides"]}) if r.get("config_overrides") \
        else ARCH


def _sid(r: dict) -> str:
    return (f"{r['method']}-{r['adapter']}-{r['targets']}-drop{r['lora_dropout']}"
            f"{'-gc' if r['gradient_checkpointing'] else ''}")


def _terms(est) -> dict[str, int]:
    return {t.key: t.bytes for t in est.terms + est.off_peak}


def _cached_casts(r: dict, name: str) -> int:
    """peft's own Linear under autocast: the measured bytes also hold autocast's cached bf16 copies of fp32 A
    and B (rank 8: 2 B x 8 x (in + out)), persistent and counted with the activations, not in the transient."""
    if not (r["autocast"] and r["method"] == "lora" and r["adapter"] == "fp32"):
        return 0
    rec = next(x for x in _arch(r).layer_linears() if x.name == name)
    return 2 * r["rank"] * (rec.d_in + rec.d_out)


def test_records_cover_the_settings():
    assert {r["method"] for r in TRANSIENT} == {"lora", "qlora", "lora_8bit", "qlora-paper"}
    assert {(r["autocast"], r["gradient_checkpointing"]) for r in TRANSIENT} == {(False, False), (True, False),
                                                                                (False, True)}
    assert {r["lora_dropout"] for r in SAVED} == {0.0, 0.1} and {r["adapter"] for r in SAVED} == {"fp32", "bf16"}
    assert all(r["peft"] and r["torch"] and r["date"] for r in DATA["rows"])


@pytest.mark.parametrize("row", TRANSIENT, ids=_tid)
def test_dora_transient_recomputed_per_module(row):
    """The weight norm's temporaries inside each module's DoRA forward, module by module. Stream dtype as in
    the slow tests: the bf16 model's (2 B) for lora; the fp32 upcast norms' (4 B) after
    prepare_model_for_kbit_training for the 4- and 8-bit bases."""
    method = "qlora" if row["method"] == "qlora-paper" else row["method"]
    a = 4 if row["adapter"] == "fp32" else 2
    s = 2 if method == "lora" else 4
    assert set(row["measured_bytes"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                          "down_proj"}
    for name, peak in row["measured_bytes"].items():
        want = peak - _cached_casts(row, name)
        got = dora_transient(_arch(row), method, (name,), row["rank"], a, s, row["autocast"])[0]
        assert got == pytest.approx(want, abs=SCALARS), (name, got, want)


@pytest.mark.parametrize("row", TRANSIENT, ids=_tid)
def test_dora_transient_term_is_the_largest_module(row):
    """The estimate's dora_transient term (its settings derived by the engine from the method and recipe) is
    the largest module's peak: down_proj, whose input width squared (the identity) outweighs gate_proj."""
    kw = {"recipe": "qlora-paper"} if row["method"] == "qlora-paper" else {
        "adapter_dtype": row["adapter"], "autocast": row["autocast"]}
    est = loracalc.estimate_memory(_arch(row), method="qlora" if row["method"] == "qlora-paper" else row["method"],
                                   rank=row["rank"], targets=row["targets"], dora=True, batch_size=1,
                                   seq_len=row["tokens"], gradient_checkpointing=row["gradient_checkpointing"], **kw)
    assert bool(est.settings["autocast"]) == row["autocast"]
    want = max(peak - _cached_casts(row, n) for n, peak in row["measured_bytes"].items())
    term = {t.key: t for t in est.terms + est.off_peak}["dora_transient"]
    assert term.bytes == pytest.approx(want, abs=SCALARS)
    assert term.formula.endswith(" in down_proj")
    assert f" x {row['rank']} (A on it)" in term.formula          # A's output: input width x rank, as peft makes it


def _estimate(row: dict):
    return loracalc.estimate_memory(ARCH, method=row["method"], rank=row["rank"], targets=row["targets"],
                                    batch_size=row["batch_size"], seq_len=row["seq_len"],
                                    gradient_checkpointing=row["gradient_checkpointing"],
                                    lora_dropout=row["lora_dropout"], dora=True, adapter_dtype=row["adapter"])


def _engine_saved(row: dict) -> int:
    t = _terms(_estimate(row))
    return t["dora_activations"] + t.get("dora_weights", 0)


def _measured_saved(row: dict) -> int:
    # without checkpointing, what the forward leaves for backward; with it, the most kept at once (the
    # recomputed layer's, in backward)
    m = row["measured_bytes"]
    return m["peak"] if row["gradient_checkpointing"] else m["live"]


@pytest.mark.parametrize("row", SAVED, ids=_sid)
def test_dora_saved_tensors_recomputed(row):
    """What DoRA adds to autograd's saved tensors (with DoRA minus without, the same model and batch): the
    engine's dora_activations and dora_weights, within 2% as in test_dora_activations_match_peft_saved_tensors."""
    assert _engine_saved(row) == pytest.approx(_measured_saved(row), rel=0.02)


def _pairs():
    key = lambda r: (r["method"], r["adapter"], r["targets"], r["gradient_checkpointing"])  # noqa: E731
    by = {}
    for r in SAVED:
        by.setdefault(key(r), {})[r["lora_dropout"]] = r
    return [(k, v[0.0], v[0.1]) for k, v in by.items() if set(v) == {0.0, 0.1}]


@pytest.mark.parametrize("key, dry, wet", _pairs(), ids=lambda x: "-".join(map(str, x)) if isinstance(x, tuple) else "")
def test_dropout_adds_exactly_what_peft_keeps(key, dry, wet):
    """What dropout adds to DoRA's saved tensors (the base output recomputed in the adapters' dtype, and each
    module's converted weight): to the byte, as in test_dora_with_dropout_keeps_each_modules_converted_weight."""
    assert _engine_saved(wet) - _engine_saved(dry) == _measured_saved(wet) - _measured_saved(dry)


@pytest.mark.parametrize("row", SAVED, ids=_sid)
def test_dora_magnitudes_recomputed(row):
    """The magnitude vectors' parameters, gradients and AdamW moments after a real step, to the byte."""
    est = _estimate(row)
    assert _terms(est)["dora_magnitude"] == row["measured_bytes"]["magnitude_bytes"]
    assert est.term("dora_magnitude").formula.endswith(f"{row['measured_bytes']['magnitudes']:,} magnitudes "
                                                       "(one per output row)")
