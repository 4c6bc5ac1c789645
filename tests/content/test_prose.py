"""The figures the prose quotes, checked against cited sources and the real libraries.

Expected values come from /work/shared/FACTS.md (counts checked with transformers + peft on the meta
device, NF4 sizes measured with bitsandbytes 0.50), from the papers, or from the installed libraries
and the lab script themselves, never from loracalc's own output.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lora_course import figures, prose

ROOT = Path(__file__).resolve().parents[2]


def fig(name: str) -> str:
    return figures.render_figure(name)


def number(text: str) -> float:
    return float(re.search(r"-?[\d,]*\.?\d+", text).group(0).replace(",", ""))


# --- the square-layer example (FACTS: 4096 x 4096, r = 8: 65,536 vs 16,777,216, 256x; the counts are the
# engine's headline figures, the pages quote them) ---------------------------------------------------------
def test_square_layer_counts():
    assert number(fig("square_d")) == 4096
    assert fig("square_r") == "8"
    assert fig("headline_square_lora") == "65,536"
    assert fig("headline_square_full") == "16,777,216"
    assert fig("square_full_short") == "16.8M"
    assert fig("headline_square_ratio") == "256×"
    assert fig("square_one_factor") == "32,768"
    assert fig("square_lora_double_rank") == "131,072"


# --- real models (FACTS.md table, config values from each model's published config.json) -----------
@pytest.mark.parametrize("name,expected", [
    ("llama31_8b_r8_qv_params", "3,407,872"),
    ("llama2_7b_r8_qv_params", "4,194,304"),
    ("llama31_8b_r16_all_params", "41,943,040"),
])
def test_model_adapter_counts(name, expected):
    assert fig(name) == expected


def test_llama31_8b_percent():
    # 41,943,040 / 8,030,261,248 = 0.522%
    assert fig("llama31_8b_r16_all_percent").startswith("0.52")


def test_all_linear_vs_qv_ratio():
    # r=16: all-linear 41,943,040 vs q,v 2 x 3,407,872 = 6,815,744 -> 6.15x
    assert number(fig("llama31_8b_all_vs_qv_ratio")) == pytest.approx(41_943_040 / 6_815_744, abs=0.06)


# --- memory per parameter (FACTS: 2+2+4+4+4 = 16 bytes; HF anatomy 18 with fp32 grads) -------------
def test_bytes_per_parameter():
    assert fig("adamw_bytes") == "16"
    assert fig("adamw_bytes_fp32_grad") == "18"
    assert fig("bf16_bytes") == "2"
    assert fig("fp32_bytes") == "4"
    assert fig("adam_moments_bytes") == "8"
    assert number(fig("nf4_bytes_per_param")) == pytest.approx(0.516, abs=0.001)


# --- 70B corrections (FACTS: 1.10-1.27 TB; 138-141 GB bf16; 36.4 and 39.5 GB NF4+DQ) ----------------
def test_full_70b_range():
    text = fig("full_70b_range")
    lo, hi = [float(x) for x in re.findall(r"\d+\.\d+", text)[:2]]
    assert lo == pytest.approx(1.10, abs=0.01) and hi == pytest.approx(1.27, abs=0.01)


def test_lora_70b_weights_range():
    lo, hi = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", fig("lora_70b_weights_range"))[:2]]
    assert lo == pytest.approx(138, abs=1) and hi == pytest.approx(141, abs=1)


def test_qlora_70b_weights_range():
    lo, hi = [float(x) for x in re.findall(r"\d+\.\d+", fig("qlora_70b_weights_range"))[:2]]
    assert lo == pytest.approx(36.4, abs=0.15) and hi == pytest.approx(39.5, abs=0.15)


def test_llama31_70b_embeddings():
    # FACTS: Llama-3's 128k vocabulary makes the 16-bit embeddings + head 4.2 GB at 70B.
    assert number(fig("llama31_70b_embed_gb")) == pytest.approx(4.2, abs=0.05)
    assert fig("llama31_70b_vocab") == "128,256"


# --- NF4 (FACTS: block 64, DQ blocks of 256, 4.5 and 4.127 bits) ----------------------------------
def test_nf4_figures():
    assert fig("nf4_block_size") == "64"
    assert fig("nf4_dq_block_size") == "256"
    assert fig("nf4_bits_single") == "4.5"
    assert fig("nf4_bits_double") == "4.127"
    assert fig("nf4_levels") == "16"


def test_nf4_codebook_matches_bitsandbytes():
    """The code book table shows bitsandbytes' own NF4 values (get_4bit_type('nf4'))."""
    bnb_functional = pytest.importorskip("bitsandbytes.functional")
    values = [float(v) for v in bnb_functional.get_4bit_type("nf4", device="cpu").tolist()]
    shown = [float(x) for x in re.findall(r"-?\d\.\d+", prose_table("nf4_codebook"))]
    assert len(shown) >= 16
    for v in values:
        assert any(abs(v - s) < 5e-4 for s in shown), v


def prose_table(name: str) -> str:
    return figures.render_table(name)


# --- settings quoted from libraries and the lab ------------------------------------------------------
def test_peft_defaults_match_the_library():
    peft = pytest.importorskip("peft")
    cfg = peft.LoraConfig()
    assert fig("peft_default_rank") == str(cfg.r)
    assert fig("peft_default_alpha") == str(cfg.lora_alpha)


def test_recipe_matches_the_lab_defaults():
    from gpu_labs import qlora_finetune as mod   # a package module: no sys.path juggling (it failed run alone)
    args = mod.build_parser().parse_args(["--model", "x"])
    assert fig("recipe_rank") == str(args.rank)
    assert number(fig("recipe_alpha")) == args.alpha
    assert float(fig("lr_qlora_small")) == pytest.approx(args.lr)


def test_every_reported_value_has_a_source():
    for name, (value, source) in prose.REPORTED.items():
        assert value and len(source) > 10, name
