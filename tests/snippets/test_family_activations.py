"""The activation estimate per family against what autograd really keeps (saved_tensors_hooks on CPU).

``scripts/family_activation_check.py`` measured one training step of a tiny random model of every family for
full fine-tuning, LoRA and QLoRA, with and without checkpointing (``family_activation_check.json``). The fast
tests ask the engine again for every recorded run, so a change that moves a family's estimate away from its
measurement fails at once; the slow ones measure again with the real libraries, including the structures the
families differ in (dropout as configured, SDPA's math path, latent attention, attention sinks, side-by-side
attention and MLP, fused qkv views).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import loracalc
from loracalc.families import ACTIVATIONS_CHECKED, FAMILIES
from loracalc.memory import activation_bytes
from loracalc.tiny_shapes import TINY

from .hf import config_class_defaults

ROOT = Path(__file__).resolve().parents[2]
RECORD = json.loads((ROOT / "snippets" / "lora_course" / "data" / "family_activation_check.json").read_text())
ROWS = [r for r in RECORD["rows"] if "error_percent" in r]


def _script():
    spec = importlib.util.spec_from_file_location("family_activation_check",
                                                  ROOT / "scripts" / "family_activation_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _estimate(mt: str, method: str, gc: bool, attention: str, cfg: dict | None = None, **kw) -> int:
    st = RECORD["settings"]
    cfg = cfg or {"model_type": mt, **{k: v for k, v in RECORD["shapes"][mt].items() if v is not None}}
    arch = loracalc.model_from_config(cfg, name=mt)
    return activation_bytes(arch, method, st["rank"], (st["targets"],), st["batch_size"], st["seq_len"], gc,
                            attention, device="cpu", **kw)["saved_total"]


def _row_id(r: dict) -> str:
    return f"{r['model_type']}-{r['method']}-{'gc' if r['gradient_checkpointing'] else 'nogc'}"


def test_record_covers_every_family_method_and_checkpointing():
    # every run trained, except in families whose term the engine calls rough (issue 26: PhiMoE's LoRA step fails)
    assert not [r for r in RECORD["rows"] if "error" in r and r["model_type"] in ACTIVATIONS_CHECKED]
    got = {(r["model_type"], r["method"], r["gradient_checkpointing"]) for r in RECORD["rows"]}
    assert got == {(mt, m, gc) for mt in FAMILIES for m in ("full", "lora", "qlora") for gc in (False, True)}
    assert RECORD["settings"]["device"] == "cpu"


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_recorded_run_within_ten_percent_and_recomputed(row):
    """Within 10% of the measurement (the requirement), and the engine as it is now no farther from it than
    when the run was recorded (1.25 times that gap plus 32 bytes). A family outside ACTIVATIONS_CHECKED (its
    estimate is said to be rough) keeps only the second half."""
    if row["model_type"] in ACTIVATIONS_CHECKED:
        assert abs(row["estimated_bytes"] - row["measured_bytes"]) <= 0.10 * row["measured_bytes"]
    est = _estimate(row["model_type"], row["method"], row["gradient_checkpointing"], row["attention"])
    assert abs(est - row["measured_bytes"]) <= 1.25 * abs(row["estimated_bytes"] - row["measured_bytes"]) + 32, \
        (est, row["measured_bytes"])


def test_every_family_is_checked():
    """Every family was measured; those it missed by more than 10% (issue 26: Apertus's xIELU) are left out of
    ACTIVATIONS_CHECKED, and the engine then says the term is rough (test_families checks which)."""
    assert ACTIVATIONS_CHECKED <= frozenset(FAMILIES)
    assert {r["model_type"] for r in RECORD["rows"]} == set(FAMILIES)
    # a text tower with no class AutoModelForCausalLM builds (Qwen2.5-VL's, Mllama's) has only error rows: the
    # measurement builds models that way, so it was not measured, and its term is called rough
    for mt in set(FAMILIES) - {r["model_type"] for r in ROWS}:
        errors = [r.get("error", "") for r in RECORD["rows"] if r["model_type"] == mt]
        assert errors and all("Unrecognized configuration class" in e for e in errors), mt
        assert mt not in ACTIVATIONS_CHECKED, mt


@pytest.mark.parametrize("model_type", sorted(mt for mt, f in FAMILIES.items() if f.dropouts))
def test_dropout_sites_read_real_config_keys_with_their_defaults(model_type):
    """Every dropout key a spec reads is a field of transformers' config class, with the same default."""
    theirs = config_class_defaults(model_type)
    for _, key, default in FAMILIES[model_type].dropouts:
        assert key in theirs, (model_type, key)
        assert theirs[key] == default, (model_type, key, theirs[key], default)


@pytest.mark.parametrize("value", ["0.1", 1.0, -0.1, True])
def test_bad_dropout_probability_is_refused_in_one_line(value):
    arch = loracalc.model_from_config({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4,
                                       "vocab_size": 100, "resid_pdrop": value})
    with pytest.raises(loracalc.LoraCalcError) as e:
        activation_bytes(arch, "lora", 8, ("all-linear",), 1, 16, False, "sdpa")
    assert "resid_pdrop" in str(e.value) and "\n" not in str(e.value)


def test_unknown_device_is_refused():
    arch = loracalc.get_model("llama-3.1-8b")
    with pytest.raises(loracalc.LoraCalcError, match="device"):
        activation_bytes(arch, "lora", 8, ("all-linear",), 1, 16, False, "sdpa", device="tpu")


def test_device_changes_nothing_where_no_cpu_kernel_differs():
    """Llama keeps the same tensors on either device (no dropout, SDPA output already in o_proj's layout)."""
    arch = loracalc.get_model("llama-3.1-8b")
    for method in ("full", "lora", "qlora"):
        cuda = activation_bytes(arch, method, 16, ("all-linear",), 1, 512, False, "sdpa")
        assert activation_bytes(arch, method, 16, ("all-linear",), 1, 512, False, "sdpa", device="cpu") == cuda


# ------------------------------------------------------------------------------- measured again (slow)

def _measure(cfg: dict, method: str, gc: bool, attention: str, lora_dropout: float = 0.0) -> int:
    pytest.importorskip("peft")
    sys.path.insert(0, str(ROOT / "gpu_labs"))
    import memory_measure as mm
    import torch
    torch.set_num_threads(1)
    st = RECORD["settings"]
    run = mm.RunSpec(method=method, rank=st["rank"], targets=st["targets"], lora_dropout=lora_dropout,
                     batch_size=st["batch_size"], seq_len=st["seq_len"], gradient_checkpointing=gc,
                     attention=attention)
    model = mm.build_model(dict(cfg), run)
    return mm.measure_cpu(model, run, cfg.get("vocab_size", 512))["saved_for_backward_peak_bytes"]


# Every list below is read from the specs and the tiny-shape table, and only over the families whose activation
# term is checked: a family whose term is rough has no 5% to keep, so it is never measured against one here.
CHECKED = sorted(ACTIVATIONS_CHECKED)
# the families whose estimate was more than 10% off before their structure was described (2026-11-29)
OUTLIERS = [mt for mt in CHECKED if TINY[mt].remeasured]


def _check_with_and_without_checkpointing(script, model_type, cfg, method):
    """A real step with checkpointing off and on: the estimate within 5% of autograd's saved bytes."""
    arch = loracalc.model_from_config(cfg, name=model_type)
    attention = script.attention_for(arch)
    for gc in (False, True):
        measured = _measure(cfg, method, gc, attention)
        est = _estimate(model_type, method, gc, attention, cfg=cfg)
        assert est == pytest.approx(measured, rel=0.05), (gc, est, measured)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", OUTLIERS)
@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_outlier_families_measured_again(model_type, method):
    """A real step per family, checkpointing off and on: the estimate within 5% of autograd's saved bytes."""
    script = _script()
    cfg = script.tiny_config(model_type)
    _check_with_and_without_checkpointing(script, model_type, cfg, method)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora"])
def test_gpt2_dropout_as_configured(method):
    """GPT-2's config class sets 0.1 dropout on embeddings, scores and both residual branches: what those
    masks (and SDPA's math path on CPU) add is what the estimate adds, within 3% of the measured difference."""
    script = _script()
    cfg = script.tiny_config("gpt2")
    off = dict(cfg, embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    measured = _measure(cfg, method, False, "sdpa") - _measure(off, method, False, "sdpa")
    est = _estimate("gpt2", method, False, "sdpa", cfg=cfg) - _estimate("gpt2", method, False, "sdpa", cfg=off)
    assert measured > 0
    assert est == pytest.approx(measured, rel=0.03)


@pytest.mark.slow
def test_lora_dropout_mask_on_cpu_is_exact():
    """peft's LoRA dropout on CPU keeps the mask in the adapter's dtype and the dropped input: with
    device="cpu" the estimate's extra is the measured extra (CUDA's bool mask is the default estimate)."""
    cfg = {"model_type": "llama", **RECORD["shapes"]["llama"], "max_position_embeddings": 256}
    measured = _measure(cfg, "lora", False, "sdpa", 0.1) - _measure(cfg, "lora", False, "sdpa")
    est = (_estimate("llama", "lora", False, "sdpa", cfg=cfg, lora_dropout=0.1)
           - _estimate("llama", "lora", False, "sdpa", cfg=cfg))
    assert est == pytest.approx(measured, rel=0.01)


# structures a config switches on, beyond each config class's defaults (which the record covers)
VARIANTS = [(mt, extra) for mt in CHECKED for extra in TINY[mt].structures]


@pytest.mark.slow
@pytest.mark.parametrize("model_type, extra", VARIANTS, ids=[f"{m}-{'-'.join(e)}" for m, e in VARIANTS])
@pytest.mark.parametrize("method", ["full", "lora"])
def test_config_variants_measured(model_type, extra, method):
    """The config keys a spec reads change what autograd keeps, and the estimate follows: within 5%."""
    script = _script()
    cfg = dict(script.tiny_config(model_type), **extra)
    _check_with_and_without_checkpointing(script, model_type, cfg, method)


# eager attention measured 6-8% above the estimate (full fine-tuning, no checkpointing) on the new families whose
# spec says eager_described=False, whose SDPA path is within 10% (2026-12-06, transformers 5.25)
EAGER_UNDESCRIBED = {mt for mt in CHECKED if not FAMILIES[mt].eager_described}


@pytest.mark.parametrize("model_type", [
    pytest.param(mt, marks=pytest.mark.xfail(reason="eager score path not described yet", strict=False))
    if mt in EAGER_UNDESCRIBED else mt for mt in CHECKED])
@pytest.mark.slow
def test_eager_attention_measured(model_type):
    """Eager attention keeps the score matrix (in fp32 or the scores' own dtype, with sinks or soft-caps as the
    family has them): full fine-tuning and LoRA, checkpointing off and on, within 5%."""
    script = _script()
    cfg = script.tiny_config(model_type)
    for method in ("full", "lora"):
        for gc in (False, True):
            measured = _measure(cfg, method, gc, "eager")
            est = _estimate(model_type, method, gc, "eager", cfg=cfg)
            assert est == pytest.approx(measured, rel=0.05), (method, gc, est, measured)


def test_lists_are_read_from_the_specs():
    """The measured-again lists hold only checked families, and they are not empty (a renamed field would
    silently empty them)."""
    assert len(OUTLIERS) >= 10 and len(VARIANTS) >= 12 and EAGER_UNDESCRIBED
    assert {mt for mt, _ in VARIANTS} | set(OUTLIERS) | EAGER_UNDESCRIBED <= ACTIVATIONS_CHECKED
