"""Build the real transformers / peft objects for an ``Architecture``, offline, on the meta device."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def hf_config(arch):
    """A transformers config holding the architecture's config.json values (the preset's published ones)."""
    from transformers import AutoConfig

    raw = {k: v for k, v in arch.raw_config.items() if k != "model_type"}
    return AutoConfig.for_model(arch.model_type, **raw)


def config_class_defaults(model_type: str) -> dict:
    """The defaults of transformers' config class for ``model_type`` (dataclass fields or __init__ keywords)."""
    from transformers import CONFIG_MAPPING

    return config_class_defaults_of(CONFIG_MAPPING[model_type])


def config_class_defaults_of(cls) -> dict:
    import dataclasses
    import inspect

    if dataclasses.is_dataclass(cls):
        return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def meta_model(arch):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config(arch))


def peft_counts(model, rank: int, target_modules) -> tuple[int, int]:
    """(trainable, all) as peft reports them for LoRA at ``rank`` on ``target_modules``."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=rank, target_modules=target_modules, lora_dropout=0.0)
    pm = get_peft_model(model, cfg)
    trainable, total = pm.get_nb_trainable_parameters()
    pm.unload()  # remove the adapter so the same base model can be reused
    return trainable, total


def total_params(model) -> int:
    # tied weights appear once; a text tower built in its wrapper counts its language model and lm_head only
    return sum(p.numel() for n, p in model.named_parameters() if counted(model, n))


def wrapper_config_class(text_config_class):
    """The image-text-to-text wrapper whose text_config is this config class (Qwen2.5-VL's for its text tower)."""
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    for mt in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        if mt in CONFIG_MAPPING and CONFIG_MAPPING[mt].sub_configs.get("text_config") is text_config_class:
            return CONFIG_MAPPING[mt]
    return None


def tower_model(cfg):
    """A text tower with a causal-LM head, for a config class AutoModelForCausalLM does not map.

    A causal-LM class taking this config class (Mllama's MllamaForCausalLM) is built as it is. Otherwise the
    image-text-to-text wrapper holding it (Qwen2.5-VL, Qwen3-VL) is built with the vision tower's defaults, and
    only its language model and lm_head are counted (``counted``). The wrapper's own tie_word_embeddings decides
    the tie (Qwen3-VL ignores the text_config's), so it is given the text config's value, or the wrapper's
    default where the text config class has none."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    for name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        cls = getattr(transformers, name, None) if isinstance(name, str) else None
        if cls is not None and getattr(cls, "config_class", None) is type(cfg):
            return cls(cfg)
    wrapper = wrapper_config_class(type(cfg))
    if wrapper is None:
        raise ValueError(f"no causal-LM class nor wrapper builds {cfg.model_type}")
    tie = getattr(cfg, "tie_word_embeddings", None)
    # one vision block is enough (nothing of the vision tower is counted): a much quicker build and peft wrap
    vision = {"depth": 1} if "depth" in config_class_defaults_of(wrapper.sub_configs["vision_config"]) else {}
    wcfg = wrapper(text_config=cfg.to_dict(), vision_config=vision,
                   **({} if tie is None else {"tie_word_embeddings": tie}))
    model = transformers.AutoModelForImageTextToText.from_config(wcfg)
    lm = model.model.language_model
    model._counted_modules = tuple(n for n, m in model.named_modules() if m is lm) + ("lm_head",)
    return model


def counted(model, name: str) -> bool:
    """Whether parameter ``name`` (peft's wrapped names too) belongs to what a text tower's count covers."""
    mods = getattr(model, "_counted_modules", None)
    return mods is None or any(("." + name).find("." + m + ".") >= 0 for m in mods)
