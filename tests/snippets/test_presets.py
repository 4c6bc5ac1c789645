"""Preset shapes hold what every published config.json in the catalog holds, so a mistyped value shows.

The Hub cannot be reached from the tests, so the values themselves are checked where a source is at hand
(test_params.py: FACTS.md's counts for the Llama presets); here, structure true of every real checkpoint:
widths are multiples of 64 (bitsandbytes' CPU 4-bit path needs input widths divisible by its block of 64,
FACTS.md), heads are 64, 128 or 256 wide, and the query heads split evenly over the key/value heads.
"""
from __future__ import annotations

import pytest

import loracalc


@pytest.mark.parametrize("name", loracalc.list_models())
def test_preset_shape_is_that_of_a_real_checkpoint(name):
    a = loracalc.get_model(name)
    for width in (a.hidden_size, a.intermediate_size, a.vocab_size):
        assert width % 64 == 0, (name, width)
    assert a.head_dim in (64, 128, 256)
    assert a.num_attention_heads % a.num_key_value_heads == 0
    assert a.num_key_value_heads <= a.num_attention_heads
    assert (a.num_attention_heads * a.head_dim) % 128 == 0
    assert 1 <= a.num_hidden_layers <= 200


def test_presets_name_distinct_models():
    shapes = {(a.hidden_size, a.intermediate_size, a.num_hidden_layers, a.vocab_size)
              for a in map(loracalc.get_model, loracalc.list_models())}
    assert len(shapes) == len(loracalc.list_models())


@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "gemma-2-2b"])
def test_biased_and_gemma_presets_against_peft(name):
    """In the fast set beside Llama-3.2-1B: q/k/v bias (Qwen2), four norms per layer, a head width set apart
    and tied embeddings (Gemma-2), counted by transformers and peft on the meta device."""
    from dataclasses import replace

    from .hf import meta_model, peft_counts, total_params
    # two layers: every field that shapes a layer is the preset's; counts are linear in the layer count
    arch = replace(loracalc.get_model(name), num_hidden_layers=2)
    model = meta_model(arch)
    assert total_params(model) == loracalc.total_params(arch)
    trainable, _ = peft_counts(model, 16, "all-linear")          # one wrap here; every rank in the slow set
    assert trainable == loracalc.count_params(arch, 16, "all-linear").lora_params


@pytest.mark.parametrize("name", loracalc.list_models())
def test_preset_is_what_its_config_json_means(name):
    """A preset read back through model_from_config from its own sizes gives the same architecture: the
    structure (norms, biases, soft-caps, q/k norms) is the family's, not typed again per preset. Tied
    embeddings: left out where transformers' family default ties them (Gemma's checkpoints have no separate
    output embedding), so a preset that unties a Gemma shows."""
    from dataclasses import replace

    from transformers import AutoConfig
    a = loracalc.get_model(name)
    cfg = {"model_type": a.model_type, "hidden_size": a.hidden_size, "intermediate_size": a.intermediate_size,
           "num_hidden_layers": a.num_hidden_layers, "num_attention_heads": a.num_attention_heads,
           "num_key_value_heads": a.num_key_value_heads, "head_dim": a.head_dim, "vocab_size": a.vocab_size}
    if not AutoConfig.for_model(a.model_type).tie_word_embeddings:
        cfg["tie_word_embeddings"] = a.tie_word_embeddings
    parsed = loracalc.model_from_config(cfg)
    assert replace(parsed, name=a.name, display_name=a.display_name, source=a.source) == a
