"""Smaller promises of the engine, each against its source: peft's defaults, torch's element sizes, the
documented shape rules of an approximate model, and what the JSON carries."""
from __future__ import annotations

import inspect
import math

import pytest

import loracalc
from loracalc import LoraCalcError, estimate_memory, parse_targets
from loracalc.params import DTYPE_BYTES, adapter_file_bytes


def test_count_params_defaults_are_peft_defaults():
    peft = pytest.importorskip("peft")
    default = inspect.signature(loracalc.count_params).parameters
    assert default["rank"].default == peft.LoraConfig().r
    # peft's default targets for Llama-style models (utils/constants.py): q_proj and v_proj
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as targets
    assert parse_targets(default["targets"].default) == tuple(targets["llama"])
    assert loracalc.count_params("llama-3.1-8b").lora_params == 3_407_872          # FACTS.md, r=8 on q,v


@pytest.mark.parametrize("dtype", sorted(DTYPE_BYTES))
def test_dtype_bytes_are_torch_element_sizes(dtype):
    torch = pytest.importorskip("torch")
    names = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
    size = torch.empty(0, dtype=getattr(torch, names.get(dtype, dtype))).element_size()
    assert adapter_file_bytes(1000, dtype) == 1000 * size


def test_target_groups_inside_a_list():
    assert parse_targets("q,mlp") == ("q_proj", "gate_proj", "up_proj", "down_proj")
    assert parse_targets(["attention", "down"]) == ("q_proj", "k_proj", "v_proj", "o_proj", "down_proj")
    # "all" is peft's all-linear: one word peft resolves against the model (which then also takes a fused
    # qkv_proj, or an expert's parameters), never a fixed list of Llama names
    assert parse_targets("ALL") == ("all-linear",) == parse_targets(" all-linear ")
    with pytest.raises(LoraCalcError) as e:
        parse_targets("all,q")
    assert e.value.field == "targets"
    assert parse_targets("attention", "phi-3.5-mini") == ("qkv_proj", "o_proj")


def test_square_lora_width_edges():
    with pytest.raises(LoraCalcError) as e:
        loracalc.square_lora_params(10**9, 1)
    assert e.value.field == "d"
    hi = int(e.value.message.split(" to ")[1].split(" ")[0].replace(",", ""))
    assert loracalc.square_lora_params(hi, 1) == 2 * hi
    with pytest.raises(LoraCalcError):
        loracalc.square_lora_params(hi + 1, 1)


def test_json_total_in_gb_is_the_bytes_rounded_to_megabytes():
    d = estimate_memory("llama-3.1-8b").to_dict()
    assert d["total_gb"] == pytest.approx(d["total_bytes"] / 1e9, abs=5e-4)
    assert d["total_gb"] == round(d["total_gb"], 3)
    assert d["total_bytes"] == sum(d["breakdown"].values())
    assert d["allocated_peak_gb"] == pytest.approx(d["allocated_peak_bytes"] / 1e9, abs=5e-4)
    assert 0 < d["allocated_peak_bytes"] < d["total_bytes"]


def test_approximate_model_says_so_in_notes():
    est = estimate_memory(loracalc.model_from_param_count(7e9))
    assert any("approximat" in n for n in est.notes)
    assert not any("approximat" in n for n in estimate_memory("llama-3.1-8b").notes)


@pytest.mark.parametrize("n", [5e7, 1e9, 3.2e9, 8e9, 70e9, 405e9])
def test_approximate_shape_follows_its_documented_rules(n):
    """model_from_param_count's docstring: head_dim 128, 8 kv heads, 128k vocabulary, MLP width about 3.5x
    hidden rounded to 256, tied embeddings up to hidden 3072 (as Llama-3.2 1B and 3B)."""
    a = loracalc.model_from_param_count(n)
    sizes = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
             "head_dim", "vocab_size")
    assert all(type(getattr(a, k)) is int for k in sizes)        # counts of things are whole numbers
    assert type(loracalc.total_params(a)) is int
    assert type(loracalc.count_params(a, 8, "all-linear").lora_params) is int
    assert a.head_dim == 128 and a.num_attention_heads * 128 == a.hidden_size
    assert a.num_key_value_heads == min(8, a.num_attention_heads) and a.vocab_size == 128256
    assert a.intermediate_size % 256 == 0 and abs(a.intermediate_size - 3.5 * a.hidden_size) <= 128 or \
        a.intermediate_size == 512
    assert a.tie_word_embeddings == (a.hidden_size <= 3072)
    if n >= 1e9:                      # below that the 128k vocabulary is most of the model
        # about one layer per 128 of width, as in Llama-3 (8B: 4096 / 32 layers; 70B: 8192 / 80; 405B: 16384 / 126)
        assert abs(math.log(a.hidden_size / (128 * a.num_hidden_layers))) < 0.3
    assert abs(loracalc.total_params(a) - n) / n < 0.02


def test_approximate_shape_ties_embeddings_at_hidden_3072():
    """Llama-3.2-3B's own count gives its own width, where the rule still ties the embeddings."""
    a = loracalc.model_from_param_count(loracalc.total_params(loracalc.get_model("llama-3.2-3b")))
    assert a.hidden_size == 3072 and a.tie_word_embeddings


def test_comparison_formats_are_what_they_say():
    """int4: symmetric integers -7..7 scaled by absmax/7 (15 evenly spaced levels with an exact zero);
    FP4 has 15 distinct values too (bitsandbytes stores +0 and -0), NF4 16."""
    from loracalc import nf4
    ints = nf4.INT4_LEVELS
    assert len(ints) == 15 and ints[0] == -1 and ints[-1] == 1 and 0 in ints
    assert all(b - a == pytest.approx(1 / 7) for a, b in zip(ints, ints[1:]))
    assert len(nf4.FP4_LEVELS) == 15 and nf4.FP4_LEVELS == sorted(-v for v in nf4.FP4_LEVELS)
    assert len(nf4.code_book()) == 16
