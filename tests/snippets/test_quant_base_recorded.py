"""Recompute, don't replay: LoRA on HQQ and torchao bases measured on a tiny CPU Llama
(tests/snippets/quant_base_record.py), predicted again by the engine as it is now, without importing torch.

What the quantized base adds to autograd's saved tensors (over the same run on a bf16 base) is predicted
exactly; the transient of one module's dequantization within 5% (torchao int8's forward also holds its output
and the scale's casts, 4.7% of the weight at this shape).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import loracalc
from loracalc.errors import LoraCalcError
from loracalc.quantized import BASE_FORMATS, FORMATS, LORA_BACKWARD

DATA = json.loads((Path(__file__).resolve().parent / "data" / "quant_base_measured.json").read_text())
ARCH = loracalc.model_from_config(DATA["config"])
SAVED = [r for r in DATA["rows"] if r["kind"] == "saved"]
TRANSIENT = [r for r in DATA["rows"] if r["kind"] == "transient"]


def _sid(r: dict) -> str:
    return f"{r['format']}-{r['adapter']}-drop{r['lora_dropout']}{'-gc' if r['gradient_checkpointing'] else ''}"


def _terms(est) -> dict[str, int]:
    return {t.key: t.bytes for t in est.terms + est.off_peak}


def test_records_cover_the_formats_measured_on_cpu():
    measured = {f for f, b in LORA_BACKWARD.items() if b.measured_on_cpu}
    assert {r["format"] for r in SAVED} == measured == {r["format"] for r in TRANSIENT}
    assert {r["gradient_checkpointing"] for r in SAVED} == {False, True}
    assert all(r["versions"]["peft"] and r["versions"]["torch"] and r["date"] for r in DATA["rows"])


def test_peft_layer_recorded_is_the_one_named():
    for r in SAVED:
        assert r["measured_bytes"]["peft_layer"] == LORA_BACKWARD[r["format"]].peft_layer


@pytest.mark.parametrize("row", SAVED, ids=_sid)
def test_saved_for_backward_predicted(row):
    """Without checkpointing everything saved is alive at the end of the forward; with it, the peak is the
    recomputed layer's (the bf16 run's recompute subtracted)."""
    est = loracalc.estimate_memory(ARCH, method="lora", base_format=row["format"], rank=row["rank"],
                                   batch_size=row["batch_size"], seq_len=row["seq_len"],
                                   gradient_checkpointing=row["gradient_checkpointing"],
                                   lora_dropout=row["lora_dropout"], adapter_dtype=row["adapter"],
                                   targets="q,k,v,o,gate,up,down")
    t = _terms(est)
    got = t.get("dequant_saved", 0) + t.get("bnb_inputs", 0)
    want = row["measured_bytes"]["peak" if row["gradient_checkpointing"] else "live"]
    assert got == want


@pytest.mark.parametrize("row", TRANSIENT, ids=lambda r: r["format"])
def test_dequantization_transient_predicted(row):
    """One module's dequantization: the copies the engine counts (plus the saved one where autograd keeps it)
    against the profiler's peak."""
    b = LORA_BACKWARD[row["format"]]
    w16 = 2 * row["d_out"] * row["d_in"]
    want = (b.transient_copies + (1 if b.saves_weight else 0)) * w16
    assert row["measured_bytes"]["where"] == ("forward" if b.saves_weight else "backward")
    assert want == pytest.approx(row["measured_bytes"]["peak"], rel=0.05)


def test_base_formats_come_from_the_stored_formats():
    assert set(BASE_FORMATS) - {"bf16"} <= set(FORMATS)
    from loracalc.choices import CHOICES
    assert CHOICES["base_format"] is BASE_FORMATS
    assert not {"nf4", "int8"} & set(BASE_FORMATS)      # bitsandbytes' own: methods qlora and lora_8bit


def test_stored_bytes_are_quantized_stored_bytes():
    """The weight terms split loracalc.quantized.stored_bytes, never a second formula."""
    from loracalc.quantized import stored_bytes
    for fmt in ("gptq-4bit", "hqq-4bit", "fp8"):
        t = _terms(loracalc.estimate_memory("llama-3.1-8b", method="lora", base_format=fmt))
        assert t["weights_quantized"] + t["weights_16bit"] == stored_bytes("llama-3.1-8b", fmt)


@pytest.mark.parametrize("kw, field", [
    (dict(method="qlora", base_format="gptq-4bit"), "base_format"),
    (dict(method="lora", base_format="torchao-int4"), "base_format"),
    (dict(method="lora", base_format="nf4"), "base_format"),
    (dict(method="lora", base_format="gptq-4bit", dora=True), "dora"),
])
def test_refused_with_one_line(kw, field):
    with pytest.raises(LoraCalcError) as exc:
        loracalc.estimate_memory("llama-3.1-8b", **kw)
    assert exc.value.field == field and "\n" not in exc.value.message


def test_checkpointing_keeps_one_layer_of_dequantized_weights():
    """Without checkpointing a GPTQ base saves every layer's 16-bit weights (less layer 0's q, k, v, whose input
    needs no gradient); with it, one layer's."""
    arch = loracalc.get_model("llama-3.1-8b")
    L = arch.num_hidden_layers
    on = _terms(loracalc.estimate_memory(arch, method="lora", base_format="gptq-4bit"))["dequant_saved"]
    off = _terms(loracalc.estimate_memory(arch, method="lora", base_format="gptq-4bit",
                                          gradient_checkpointing=False))["dequant_saved"]
    per_layer = sum(2 * r.weight * r.copies for r in arch.layer_linears()) // L
    qkv = sum(2 * r.weight * r.copies for r in arch.layer_linears() if r.name in ("q_proj", "k_proj", "v_proj")) // L
    assert on == per_layer and off == L * per_layer - qkv


def test_a_separate_reference_is_a_second_quantized_base():
    """DPO with a second reference model loads the same GPTQ checkpoint again: its stored bytes once more."""
    from loracalc.preference import preference_memory
    from loracalc.quantized import stored_bytes
    est = preference_memory("llama-3.1-8b", "dpo", reference="separate", method="lora", base_format="gptq-4bit")
    assert est.term("reference_weights").bytes == stored_bytes("llama-3.1-8b", "gptq-4bit")


def test_time_reads_the_stored_base_in_every_forward():
    """time --base-format: each forward (and a checkpointed recompute) reads the stored codes and writes a 16-bit
    copy, so a step takes at least the stored bytes plus the 16-bit weights over the bandwidth, twice with
    checkpointing; a bf16 base has no such term."""
    from loracalc.gpus import get_gpu
    from loracalc.quantized import split_stored_bytes
    from loracalc.speed import BANDWIDTH_EFFICIENCY, estimate_time
    card = get_gpu("h100-80gb")
    bw = card.memory_bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY
    q_bytes, _ = split_stored_bytes("llama-3.1-8b", "gptq-4bit")
    arch = loracalc.get_model("llama-3.1-8b")
    n = loracalc.models.quantizable_params(arch, True)
    for gc, passes in ((True, 2), (False, 1)):
        t = estimate_time("llama-3.1-8b", "h100-80gb", method="lora", base_format="gptq-4bit",
                          gradient_checkpointing=gc)
        assert t.seconds["dequantize"] >= passes * (q_bytes + 2 * n) / bw
    assert "dequantize" not in estimate_time("llama-3.1-8b", "h100-80gb", method="lora").seconds
    with pytest.raises(LoraCalcError):
        estimate_time("llama-3.1-8b", "h100-80gb", method="qlora", base_format="gptq-4bit")


@pytest.mark.slow
@pytest.mark.parametrize("row", SAVED, ids=_sid)
def test_saved_rows_remeasured(row):
    """Measure each recorded row again with the libraries installed (torchao and hqq are not in the lock: see
    quant_base_record.py for where to install them); skipped where they are missing."""
    import importlib.util
    from tests.snippets import quant_base_record as rec
    if not importlib.util.find_spec(rec.LIBRARY[row["format"]]):
        pytest.skip(f"{rec.LIBRARY[row['format']]} is not installed")
    got = rec.measure_saved(row["format"], row["adapter"], row["lora_dropout"], row["gradient_checkpointing"])
    assert got == row["measured_bytes"]
