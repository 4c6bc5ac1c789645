"""A config.json that leaves a key out means what transformers makes of it: the family's default.

For each family and each optional key, the config without that key is given both to loracalc and to
transformers (``AutoConfig.for_model``, the model built on the meta device); the parameter counts must be
the same, so a wrong default (tied embeddings, key/value heads, head width, bias) shows as a count.
"""
from __future__ import annotations

import pytest

import loracalc

# sizes where every family's own defaults still give a buildable model (head_dim 16 fits 4 heads in 64)
SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, vocab_size=256, tie_word_embeddings=False)
FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"]
OPTIONAL = ["tie_word_embeddings", "num_key_value_heads", "head_dim"]

# Families whose config class defaults num_key_value_heads to more than SIZES' 4 heads (Mistral 8, Qwen2 and
# Qwen3 32, Gemma 16; Llama and Gemma-2 give one per query head): the missing-key case is checked with 32
# heads, which all of these divide; the refusal at 4 heads has its own test below.
HEADS_FOR_KV_DEFAULT = 32


def _transformers_count(cfg: dict) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .hf import total_params
    hf = AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        return total_params(AutoModelForCausalLM.from_config(hf))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("missing", OPTIONAL)
def test_missing_key_means_the_family_default(family, missing):
    cfg = {"model_type": family, **{k: v for k, v in SIZES.items() if k != missing}}
    if missing == "num_key_value_heads":
        cfg["num_attention_heads"] = HEADS_FOR_KV_DEFAULT
    try:
        want = _transformers_count(cfg)
    except Exception as err:  # noqa: BLE001 - transformers' own default makes no valid model at these sizes
        pytest.skip(f"transformers cannot build {family} without {missing}: {err}")
    arch = loracalc.model_from_config(cfg)
    assert loracalc.total_params(arch) == want
    from transformers import AutoConfig
    hf = AutoConfig.for_model(**cfg)
    assert arch.num_key_value_heads == (hf.num_key_value_heads or hf.num_attention_heads)
    assert arch.head_dim == (getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads)


@pytest.mark.parametrize("family", FAMILIES)
def test_default_kv_heads_that_cannot_group_the_heads_are_refused(family):
    """With 4 query heads, a default of 8, 16 or 32 key/value heads leaves no whole group of query heads per
    key/value head (transformers' num_key_value_groups = 4 // 8 = 0): the engine names the field instead of
    counting a model that cannot attend. Where the family's default divides the heads, the model is read."""
    from transformers import AutoConfig
    cfg = {"model_type": family, **{k: v for k, v in SIZES.items() if k != "num_key_value_heads"}}
    kv = AutoConfig.for_model(**cfg).num_key_value_heads or SIZES["num_attention_heads"]
    if SIZES["num_attention_heads"] % kv == 0:
        assert loracalc.model_from_config(cfg).num_key_value_heads == kv
        return
    with pytest.raises(loracalc.LoraCalcError) as e:
        loracalc.model_from_config(cfg)
    assert e.value.field == "config.num_key_value_heads" and f"({kv})" in e.value.message


@pytest.mark.parametrize("family", FAMILIES)
def test_tied_embeddings_default(family):
    """Gemma ties its input and output embeddings unless told otherwise; the others do not."""
    from transformers import AutoConfig
    cfg = {k: v for k, v in SIZES.items() if k != "tie_word_embeddings"}
    hf = AutoConfig.for_model(family, **cfg)
    assert loracalc.model_from_config({"model_type": family, **cfg}).tie_word_embeddings == hf.tie_word_embeddings


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bias", [True, False])
def test_bias_keys(family, bias):
    """attention_bias / mlp_bias where the family reads them; Qwen2's q/k/v bias is always there."""
    cfg = {"model_type": family, **SIZES, "attention_bias": bias, "mlp_bias": bias}
    try:
        want = _transformers_count(cfg)
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"transformers cannot build {family} with these keys: {err}")
    assert loracalc.total_params(loracalc.model_from_config(cfg)) == want


# Every family, and the size keys real config.json files leave out when they equal the class default (Google's
# Gemma-3 text_config names only its width, MLP width and depth): what transformers builds is what loracalc counts.
SIZE_DEFAULTS = ["num_attention_heads", "vocab_size", "intermediate_size"]


def _all_families():
    from loracalc.families import FAMILIES as F
    return sorted(F)


@pytest.mark.slow
@pytest.mark.parametrize("family", _all_families())
@pytest.mark.parametrize("missing", SIZE_DEFAULTS + OPTIONAL)
def test_every_family_left_out_key_is_the_class_default(family, missing):
    from transformers import AutoConfig
    base = {k: v for k, v in AutoConfig.for_model(family).to_dict().items()
            if k in ("head_dim", "num_key_value_heads", "num_attention_heads", "moe_intermediate_size",
                     "num_experts", "num_local_experts", "n_routed_experts", "num_experts_per_tok")}
    cfg = {"model_type": family, **base, **{k: v for k, v in SIZES.items() if k not in ("num_attention_heads",
                                                                                      "num_key_value_heads",
                                                                                      "head_dim")}}
    # a width the class's default head count divides, as in every real checkpoint
    cfg["hidden_size"] = 16 * (cfg.get("num_attention_heads") or SIZES["num_attention_heads"])
    if "num_experts_per_tok" in cfg and cfg["num_experts_per_tok"] is None:
        cfg["num_experts_per_tok"] = 2    # DeepSeek-V2's class leaves it unset; loracalc needs it (activations)
    cfg.pop(missing, None)
    try:
        want = _transformers_count(cfg)
    except Exception as err:  # noqa: BLE001 - the class default makes no valid model at these sizes
        pytest.skip(f"transformers cannot build {family} without {missing}: {err}")
    try:
        arch = loracalc.model_from_config(cfg)
    except loracalc.LoraCalcError as err:
        pytest.fail(f"loracalc refused a config transformers builds: {err}")
    assert loracalc.total_params(arch) == want


def test_gemma3_text_config_as_google_writes_it():
    """google/gemma-3-4b-pt's text_config names only what differs from Gemma3TextConfig's defaults."""
    arch = loracalc.model_from_config({"model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240,
                                       "num_hidden_layers": 34})
    assert loracalc.total_params(arch) == loracalc.total_params(loracalc.get_model("gemma-3-4b-text"))


def test_a_config_without_width_or_depth_is_refused_in_one_line():
    for missing in ("hidden_size", "num_hidden_layers"):
        cfg = {"model_type": "llama", **{k: v for k, v in SIZES.items() if k != missing}}
        with pytest.raises(loracalc.LoraCalcError, match=missing):
            loracalc.model_from_config(cfg)


def test_soft_caps_follow_the_config_and_its_class_defaults():
    """Gemma-2's class turns both tanh soft-caps on (50 and 30), Gemma-3's turns them off; a config.json's own value
    wins, and null switches a cap off (transformers skips the tanh when the value is None)."""
    from transformers import AutoConfig
    base = dict(SIZES, num_attention_heads=4, head_dim=16)
    for family in ("gemma2", "gemma3_text"):
        hf = AutoConfig.for_model(family)
        arch = loracalc.model_from_config({"model_type": family, **base})
        assert arch.attn_softcap == (hf.attn_logit_softcapping is not None)
        assert arch.final_softcap == (hf.final_logit_softcapping is not None)
    off = loracalc.model_from_config({"model_type": "gemma2", **base, "final_logit_softcapping": None})
    assert not off.final_softcap and off.attn_softcap
    on = loracalc.model_from_config({"model_type": "gemma3_text", **base, "final_logit_softcapping": 30.0})
    assert on.final_softcap and not on.attn_softcap
    assert not loracalc.model_from_config({"model_type": "llama", **base}).final_softcap
