"""Every family spec against transformers and peft themselves, counted live on the meta device.

For each supported model_type, configs built from transformers' own config classes (class defaults plus
varied shapes: tied and untied, MHA/GQA/MQA, biases on and off, head_dim set and unset, odd sizes, MoE
expert counts and dense layers) are built with ``AutoModelForCausalLM.from_config`` on the meta device;
loracalc must give the same total parameter count, and the same LoRA parameter count as peft's
``get_peft_model`` at several ranks and target sets. The fast set runs one config per family.
"""
from __future__ import annotations

import logging
import warnings

import pytest

import loracalc
from loracalc.families import FAMILIES

from .family_configs import variants
from .hf import config_class_defaults

RANKS = (1, 4, 16)


def _target_sets(arch) -> list:
    """all-linear plus lists of the family's real module names (attention, MLP, output, MoE names)."""
    fam = arch.family
    names = arch.linear_names()
    sets: list = ["all-linear", [names[0]], [names[0], names[-1]]]
    attn = [r.name for r in arch.layer_linears() if r.role == "attention"]
    mlp = [r.name for r in arch.layer_linears() if r.role in ("mlp", "shared_expert")]
    if attn:
        sets.append(sorted(set(attn)))
    if mlp:
        sets.append(sorted(set(mlp)))
    sets.append(["lm_head", fam.embed])
    if fam.moe and fam.moe.peft_names and arch.is_moe:
        sets.append([old for old, _ in fam.moe.peft_names])
        sets.append([attn[0], fam.moe.router])
    return sets


def _hf_model(model_type: str, kw: dict):
    """The model transformers builds from ``kw`` with a causal-LM head, on the meta device.

    A vision-language model's text tower without a causal-LM class of its own (Qwen2.5-VL's, Qwen3-VL's) is
    built inside its wrapper (``hf.tower_model``): only the language model and the wrapper's lm_head count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .hf import tower_model

    cfg = AutoConfig.for_model(model_type, **kw)
    with torch.device("meta"):
        try:
            return cfg, AutoModelForCausalLM.from_config(cfg)
        except ValueError:          # no causal-LM class is registered for this config class
            return cfg, tower_model(cfg)


def _peft_trainable(model, rank: int, targets) -> int:
    from peft import LoraConfig, get_peft_model

    from .hf import counted

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, lora_dropout=0.0))
    trainable = sum(p.numel() for n, p in pm.named_parameters() if p.requires_grad and counted(model, n))
    pm.unload()
    return trainable


def check_family_config(model_type: str, kw: dict, ranks=RANKS, full_targets: bool = True) -> int:
    """Assert loracalc == transformers + peft for one config; returns the number of comparisons made."""
    from .hf import total_params

    logging.getLogger("transformers").setLevel(logging.ERROR)
    cfg, model = _hf_model(model_type, kw)
    checks = 0
    for source in ({"model_type": model_type, **kw}, cfg.to_dict()):
        arch = loracalc.model_from_config(source)
        assert loracalc.total_params(arch) == total_params(model), (model_type, kw)
        checks += 1
    arch = loracalc.model_from_config({"model_type": model_type, **kw})
    for targets in (_target_sets(arch) if full_targets else ["all-linear"]):
        for rank in ranks:
            try:
                theirs = _peft_trainable(model, rank, targets)
            except ValueError as exc:
                # peft refuses some targets (out_proj and conv1d of Mamba-based models): loracalc must refuse too
                if "incompatible" not in str(exc):
                    raise
                with pytest.raises(loracalc.LoraCalcError, match="peft 0.21 refuses"):
                    loracalc.count_params(arch, rank, targets)
                checks += 1
                _, model = _hf_model(model_type, kw)     # peft may have wrapped some modules before refusing
                continue
            ours = loracalc.count_params(arch, rank, targets).lora_params
            assert ours == theirs, (model_type, kw, targets, rank)
            checks += 1
    return checks


def test_every_family_quick():
    """One varied config per family: total parameters; all-linear LoRA at rank 4 for four unlike families."""
    from .hf import total_params

    for model_type in sorted(FAMILIES):
        kw = variants(model_type, 2)[1]
        _, model = _hf_model(model_type, kw)
        arch = loracalc.model_from_config({"model_type": model_type, **kw})
        assert loracalc.total_params(arch) == total_params(model), model_type
    for model_type in ("llama", "gpt2", "qwen3_moe", "deepseek_v3"):
        check_family_config(model_type, variants(model_type, 2)[1], ranks=(4,), full_targets=False)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_family_many_configs(model_type):
    """Four configs per family, both as a sparse config.json and as transformers writes it in full (the suite's
    time: scripts/family_coverage.py checks twelve per family and records them, README's coverage table)."""
    n = sum(check_family_config(model_type, kw) for kw in variants(model_type, 4))
    assert n >= 4 * 10


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_spec_defaults_are_the_config_class_defaults(model_type):
    """Each spec's defaults are the __init__ defaults of transformers' config class for that model_type."""
    from transformers import CONFIG_MAPPING

    from .hf import wrapper_config_class

    theirs = config_class_defaults(model_type)
    wrapper = wrapper_config_class(CONFIG_MAPPING[model_type])
    if "tie_word_embeddings" not in theirs and wrapper is not None:
        # a text tower whose config class has no tie key (Qwen2.5-VL's): its wrapper's default decides the tie
        theirs["tie_word_embeddings"] = config_class_defaults(wrapper.model_type)["tie_word_embeddings"]
    fam = FAMILIES[model_type]
    for key, ours in fam.defaults.items():
        spelled = fam.aliases.get(key, key)
        if "." in spelled:        # a key of a nested sub-config (DBRX's attn_config.kv_n_heads): that class's default
            from .hf import config_class_defaults_of
            outer, inner = spelled.split(".", 1)
            assert config_class_defaults_of(CONFIG_MAPPING[model_type].sub_configs[outer])[inner] == ours, key
        elif spelled in theirs:
            assert theirs[spelled] == ours, (model_type, key)
        else:
            # keys the class does not take (GPT-2's intermediate_size) are derived from others
            assert ours is None, (model_type, key)


def test_moe_all_linear_says_what_peft_matched():
    kw = variants("qwen3_moe", 3)[1]
    arch = loracalc.model_from_config({"model_type": "qwen3_moe", **kw})
    c = loracalc.count_params(arch, 4, "all-linear")
    assert any("experts" in n and "twice the rank" in n for n in c.notes)
    assert "experts.gate_up_proj" in c.targets and "gate" in c.targets


def test_unknown_target_lists_the_family_names():
    arch = loracalc.model_from_config({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4,
                                       "vocab_size": 100})
    with pytest.raises(loracalc.LoraCalcError) as e:
        loracalc.count_params(arch, 4, "q,v")
    assert "c_attn" in str(e.value) and "\n" not in str(e.value)


def test_half_of_a_fused_expert_pair_is_refused_as_peft_does():
    from peft import LoraConfig, get_peft_model

    kw = variants("qwen3_moe", 1)[0]
    _, model = _hf_model("qwen3_moe", kw)
    with pytest.raises(ValueError, match="fused"):
        get_peft_model(model, LoraConfig(r=2, target_modules=["gate_proj"]))
    arch = loracalc.model_from_config({"model_type": "qwen3_moe", **kw})
    with pytest.raises(loracalc.LoraCalcError, match="fused"):
        loracalc.count_params(arch, 2, "gate_proj")


def test_activation_checked_families_are_the_measured_ones():
    """The engine says its activation term is rough exactly for the families whose measured error exceeded 10%
    (the record written by scripts/family_activation_check.py from saved_tensors_hooks on tiny models)."""
    import json
    import os

    from loracalc.families import ACTIVATIONS_CHECKED

    path = os.path.join(os.path.dirname(__file__), "..", "..", "snippets", "lora_course", "data",
                        "family_activation_check.json")
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    within = {}
    for r in rows:
        ok = "error_percent" in r and abs(r["error_percent"]) <= 10
        within[r["model_type"]] = within.get(r["model_type"], True) and ok
    assert {mt for mt, ok in within.items() if ok} == set(ACTIVATIONS_CHECKED)
    assert set(within) == set(FAMILIES)

