"""Preset shapes hold what every published config.json in the catalog holds, so a mistyped value shows.

The Hub cannot be reached from the tests, so the values themselves are checked where a source is at hand
(test_params.py: FACTS.md's counts for the Llama presets); here, structure true of every real checkpoint:
widths are multiples of 64 (bitsandbytes' CPU 4-bit path needs input widths divisible by its block of 64,
FACTS.md), heads are a multiple of 32 wide (64, 128 and 256 in most families; Phi-3.5-mini's 3072 / 32 =
96 in its config.json), and the query heads split evenly over the key/value heads.
"""
from __future__ import annotations

import pytest

import loracalc


@pytest.mark.parametrize("name", loracalc.list_models())
def test_preset_shape_is_that_of_a_real_checkpoint(name):
    a = loracalc.get_model(name)
    for width in (a.hidden_size, a.intermediate_size, a.vocab_size):
        assert width % 64 == 0, (name, width)
    assert a.head_dim % 32 == 0 and 64 <= a.head_dim <= 256, (name, a.head_dim)
    assert a.num_attention_heads % a.num_key_value_heads == 0
    assert a.num_key_value_heads <= a.num_attention_heads
    assert (a.num_attention_heads * a.head_dim) % 128 == 0
    assert 1 <= a.num_hidden_layers <= 200


def test_presets_name_distinct_models():
    # the family too: Mixtral-8x7B has Mistral-7B's sizes, its experts are what set it apart
    shapes = {(a.model_type, a.hidden_size, a.intermediate_size, a.num_hidden_layers, a.vocab_size)
              for a in map(loracalc.get_model, loracalc.list_models())}
    assert len(shapes) == len(loracalc.list_models())


@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "gemma-2-2b"])
def test_biased_and_gemma_presets_against_peft(name):
    """In the fast set beside Llama-3.2-1B: q/k/v bias (Qwen2), four norms per layer, a head width set apart
    and tied embeddings (Gemma-2), counted by transformers and peft on the meta device."""
    from .hf import meta_model, peft_counts, total_params
    # two layers: every key that shapes a layer is the preset's config.json; counts are linear in the layers
    arch = loracalc.model_from_config({**loracalc.get_model(name).raw_config, "num_hidden_layers": 2})
    model = meta_model(arch)
    assert total_params(model) == loracalc.total_params(arch)
    trainable, _ = peft_counts(model, 16, "all-linear")          # one wrap here; every rank in the slow set
    assert trainable == loracalc.count_params(arch, 16, "all-linear").lora_params


SIZE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "vocab_size")


@pytest.mark.parametrize("name", loracalc.list_models())
def test_preset_is_what_its_config_json_means(name):
    """A preset read back through model_from_config from its own sizes gives the same tensors: the structure
    (norms, biases, soft-caps, q/k norms) is the family's, not typed again per preset. Tied embeddings: left
    out where transformers' family default ties them (Gemma's checkpoints have no separate output embedding),
    so a preset that unties a Gemma shows. A preset may state more than its sizes only where the key is one
    its family reads (the experts of a mixture, GPT-OSS's attention bias). The resolved config the engine
    shows (``to_dict()["config"]``), given back as a config.json, is read to the same config: the values
    derived from it (head_dim, kv heads, fused widths) are stable."""
    from transformers import AutoConfig
    a = loracalc.get_model(name)
    cfg = {"model_type": a.model_type, **{k: a.config[k] for k in SIZE_KEYS}}
    if not AutoConfig.for_model(a.model_type).tie_word_embeddings:
        cfg["tie_word_embeddings"] = a.tie_word_embeddings
    extra = {k: v for k, v in a.raw_config.items() if k not in cfg and k != "tie_word_embeddings"}
    assert set(extra) <= set(a.family.defaults), (name, extra)
    parsed = loracalc.model_from_config({**cfg, **extra})
    assert parsed.config == a.config and parsed.records == a.records
    shown = loracalc.model_from_config(a.to_dict()["config"])
    assert shown.config == a.config and shown.records == a.records
    assert loracalc.total_params(shown) == loracalc.total_params(a)
