"""Preset shapes hold what every published config.json in the catalog holds, so a mistyped value shows.

The Hub cannot be reached from the tests, so each preset's values are checked against a copy of its config.json
found in a public repository or a stored Hub page: data/preset_sources.json names the copy (repository, path,
commit, or the page) and the shape keys as the copy gives them, and the preset must build the same tensors from
them (a preset with no copy found says so there). Beside that, structure true of every real checkpoint:
widths are multiples of 64 (bitsandbytes' CPU 4-bit path needs input widths divisible by its block of 64,
FACTS.md), heads are a multiple of 32 wide (64, 128 and 256 in most families; Phi-3.5-mini's 3072 / 32 =
96 in its config.json), and the query heads split evenly over the key/value heads.
"""
from __future__ import annotations

import json
import os
import re

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


# --------------------------------------------------------------- the copy each preset was checked against
with open(os.path.join(os.path.dirname(__file__), "data", "preset_sources.json"), encoding="utf-8") as _f:
    SOURCES = json.load(_f)["presets"]
KINDS = {"copy", "variant", "transcribed", "derived", "partial"}
CHECKED = [n for n in loracalc.list_models() if "not_found" not in SOURCES.get(n, {})]


def test_every_preset_has_a_source_record():
    """A new preset comes with the copy it was checked against, or a line saying none was found."""
    assert list(SOURCES) == loracalc.list_models()
    for name, rec in SOURCES.items():
        if "not_found" in rec:
            assert set(rec) == {"not_found"} and len(rec["not_found"]) > 40, name
            continue
        at, kind = rec["at"], rec["kind"]
        assert kind in KINDS, (name, kind)
        if "url" in at:       # a stored Hub page: a revision or main, never a search link
            assert re.fullmatch(r"https://huggingface\.co/[\w.-]+/[\w.-]+/(blob|blame)/\w+/config\.json", at["url"]), name
        else:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+", at["repo"]) and at["path"] and at["entry"], name
            assert re.fullmatch(r"[0-9a-f]{40}", at["commit"]), name
        assert rec["config"]["model_type"] == loracalc.get_model(name).model_type, name


@pytest.mark.parametrize("name", CHECKED)
def test_preset_is_the_copy_it_was_checked_against(name):
    """Every value the preset types is the copy's, and the keys it leaves to defaults resolve to the copy's too:
    the preset and the copy build the same tensors. Keys the copy itself leaves out (Gemma 3's text_config lists
    only what differs from Gemma3TextConfig) take transformers' class defaults, as transformers reading the
    file would."""
    from transformers import AutoConfig

    rec, arch = SOURCES[name], loracalc.get_model(name)
    cfg = dict(rec["config"])
    if rec.get("class_defaults"):
        cls = AutoConfig.for_model(cfg["model_type"])
        cfg.update({k: getattr(cls, k) for k in rec["class_defaults"]})
    typed = {k: v for k, v in arch.raw_config.items() if k in cfg and v != cfg[k]}
    assert not typed, (name, typed, {k: cfg[k] for k in typed})
    copy = loracalc.model_from_config(cfg)
    assert copy.config == arch.config and copy.records == arch.records
