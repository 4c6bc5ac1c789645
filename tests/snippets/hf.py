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
    import dataclasses
    import inspect

    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
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
    return sum(p.numel() for p in model.parameters())   # tied weights appear once
