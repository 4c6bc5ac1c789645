"""Presets and config.json parsing, checked against transformers' own config files and models."""
from __future__ import annotations

import json
import pytest

import loracalc
from loracalc import LoraCalcError, model_from_config, model_from_param_count

TINY = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300)


@pytest.mark.parametrize("preset", ["llama-3.2-1b", "mistral-7b", "qwen2.5-0.5b", "gemma-2-2b"])
def test_config_written_by_transformers_round_trips(preset, tmp_path):
    """A family's config.json as transformers writes it -> the same parameter count as its model."""
    from .hf import hf_config, meta_model, total_params

    raw = {**loracalc.get_model(preset).raw_config, **TINY, "head_dim": 16}
    arch = model_from_config(raw)
    path = tmp_path / "config.json"
    hf_config(arch).to_json_file(str(path))
    parsed = model_from_config(path)
    assert parsed.model_type == arch.model_type
    assert loracalc.total_params(parsed) == total_params(meta_model(arch))
    assert loracalc.count_params(parsed, 4, "all-linear").lora_params == \
        loracalc.count_params(arch, 4, "all-linear").lora_params


def test_llama_bias_flags(tmp_path):
    from .hf import meta_model, total_params

    cfg = {"model_type": "llama", **TINY, "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True}
    arch = model_from_config(cfg)
    assert loracalc.total_params(arch) == total_params(meta_model(arch))


def test_every_preset_names_its_source():
    for name in loracalc.list_models():
        a = loracalc.get_model(name)
        assert a.source.startswith("https://huggingface.co/") and a.source.endswith("config.json")
        assert not a.approximate


@pytest.mark.parametrize("cfg, field", [
    ({}, "config.model_type"),
    ({"model_type": "t5"}, "config.model_type"),
    # a wrapper loracalc.vision does not describe (LLaVA and the other covered ones are counted whole: test_vlm.py)
    ({"model_type": "idefics2", "text_config": {"model_type": "mistral"}, "vision_config": {}}, "config.model_type"),
    ({"model_type": "gpt2"}, "config.n_embd"),
    ({"model_type": "llama", "hidden_size": 64}, "config.num_hidden_layers"),
    ({"model_type": "llama", **TINY, "num_key_value_heads": 3}, "config.num_key_value_heads"),
    ({"model_type": "llama", **TINY, "hidden_size": -5}, "config.hidden_size"),
    ({"model_type": "llama", **TINY, "vocab_size": "many"}, "config.vocab_size"),
    ({"model_type": "llama", **TINY, "hidden_size": 10**6, "intermediate_size": 4 * 10**6,
      "num_hidden_layers": 9000}, "config"),
])
def test_bad_config(cfg, field):
    with pytest.raises(LoraCalcError) as e:
        model_from_config(cfg)
    assert e.value.field == field
    assert "\n" not in str(e.value)


def test_malformed_file(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("{not json")
    with pytest.raises(LoraCalcError, match="not valid JSON"):
        model_from_config(p)
    with pytest.raises(LoraCalcError, match="cannot read"):
        model_from_config(tmp_path / "missing.json")
    p.write_text(json.dumps([1, 2]))
    with pytest.raises(LoraCalcError):
        model_from_config(p)


def test_unknown_model():
    with pytest.raises(LoraCalcError) as e:
        loracalc.get_model("llama-9")
    assert e.value.field == "model" and "llama-3.1-8b" in e.value.message


@pytest.mark.parametrize("n", [1e8, 7e9, 70e9, 405e9, 10**13])
def test_param_count_is_approximate_and_close(n):
    arch = model_from_param_count(n)
    assert arch.approximate
    assert abs(loracalc.total_params(arch) - n) / n < 0.02


@pytest.mark.parametrize("n", [0, -7e9, float("nan"), float("inf"), 1.5e14, "seven"])
def test_bad_param_count(n):
    with pytest.raises(LoraCalcError) as e:
        model_from_param_count(n)
    assert e.value.field == "params"


@pytest.mark.parametrize("name", [n for n in loracalc.list_models() if loracalc.get_model(n).published_params])
def test_preset_totals_match_the_model_card(name):
    """The card's count (as printed there, e.g. "30.5B, 3.3B active") to its last digit, or 5% for a bare "14B"."""
    import re

    arch = loracalc.get_model(name)
    text = arch.published_params
    figures = re.findall(r"([0-9.]+)B", text)
    ours = [loracalc.total_params(arch) / 1e9]
    if "active" in text:
        active = loracalc.models.active_params(arch)
        if "without embeddings" in text:
            active -= arch.vocab_size * arch.hidden_size
        ours.append(active / 1e9)
    for printed, got in zip(figures, ours):
        pub = float(printed)
        decimals = len(printed.split(".")[1]) if "." in printed else 0
        # cards round or cut off (Qwen3-30B-A3B: 3.353B active is printed 3.3B): one unit of the last digit
        tol = 10 ** -decimals if decimals else 0.05 * pub
        assert abs(got - pub) <= tol, (name, printed, got)


def test_llama_2_13b_total_is_its_checkpoints():
    # meta-llama/Llama-2-13b-hf model.safetensors.index.json: "total_size": 26031728640 bytes of fp16 weights
    assert loracalc.total_params(loracalc.get_model("llama-2-13b")) * 2 == 26_031_728_640


@pytest.mark.parametrize("count, label", [(7e9, "~7B"), (7e10, "~70B"), (3.5e8, "~350M"), (2e12, "~2T")])
def test_a_bare_count_is_labelled_with_its_own_size(count, label):
    assert loracalc.model_from_param_count(count).display_name.startswith(label + " parameters")


def test_an_moe_token_passes_through_top_k_experts():
    # Mixtral-8x7B's config.json: num_experts_per_tok 2, each expert intermediate_size 14336 wide; a dense
    # model's token passes through its whole MLP (Llama-3.1-8B: intermediate_size 14336). (Qwen3-30B-A3B would
    # not tell the two apart: 8 x 768 is its config's intermediate_size, 6144.)
    assert loracalc.get_model("mixtral-8x7b").mlp_width_per_token == 2 * 14336
    assert loracalc.get_model("llama-3.1-8b").mlp_width_per_token == 14336
