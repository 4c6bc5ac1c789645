"""Vision-language figures for the pages: published VLM configs (data/vlm_configs.json, each counted exactly
against transformers and peft in tests/snippets/test_vlm.py) split into vision tower, projector and language
model, with the image tokens each family's processor writes and what restricting LoRA to the language model
changes."""
from __future__ import annotations

import json
import os

from .prose import _md_table
from .registry import figure, table

DATA_FILE = os.path.join(os.path.dirname(__file__), "data", "vlm_configs.json")
SHOWN = ("google/gemma-3-4b-it", "google/gemma-3-27b-it", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-8B-Instruct",
         "llava-hf/llava-1.5-7b-hf", "google/paligemma2-3b-pt-224", "HuggingFaceTB/SmolVLM-256M-Instruct",
         "OpenGVLab/InternVL3-1B-hf", "CohereForAI/aya-vision-8b", "meta-llama/Llama-4-Scout-17B-16E-Instruct",
         "meta-llama/Llama-3.2-11B-Vision-Instruct", "google/gemma-4-E2B-it")


def _models():
    import loracalc

    with open(DATA_FILE, encoding="utf-8") as f:
        rows = {m["repo"]: m["config"] for m in json.load(f)["models"]}
    return [(repo, loracalc.model_from_config(rows[repo], name=repo.split("/")[-1])) for repo in SHOWN]


def _vision_params(arch) -> int:
    """The vision tower's, the projector's and an audio tower's parameters (as `loracalc params` splits them)."""
    from loracalc.families import TOWER_ROLES
    return sum(r.params for r in arch.records if r.role in TOWER_ROLES)


@table("vlm_counts")
def vlm_counts_table() -> str:
    import loracalc
    from loracalc.vision import image_tokens

    rows = []
    for repo, arch in _models():
        lang = loracalc.count_params(arch, rank=16, targets="q,v", adapt="language")
        try:
            whole = f"{loracalc.count_params(arch, rank=16, targets='q,v', adapt='all').lora_params:,}"
        except loracalc.LoraCalcError:      # Gemma 4: q_proj names a wrapper module in its towers, which peft refuses
            whole = "peft refuses"
        rows.append([f"`{repo}`", f"{lang.total_params / 1e9:.2f}B", f"{_vision_params(arch) / 1e6:,.0f}M",
                     f"{image_tokens(arch):,}", whole, f"{lang.lora_params:,}"])
    return _md_table(["model", "parameters (whole)", "towers (vision, audio) + projector", "image tokens per image",
                      "LoRA r=16 on q,v: whole model", "language model only"], rows,
                     ["", "--:", "--:", "--:", "--:", "--:"])


@figure("vlm_gemma3_4b_image_tokens")
def gemma3_image_tokens() -> str:
    from loracalc.vision import image_tokens

    return f"{image_tokens(_models()[0][1]):,}"


def _qwen25_tokens_at(side: int) -> int:
    from loracalc.vision import image_tokens

    arch = dict(_models())["Qwen/Qwen2.5-VL-7B-Instruct"]
    return image_tokens(arch, side)


@figure("vlm_qwen25_tokens_1024")
def qwen25_tokens_1024() -> str:
    """Image tokens of a 1,024 x 1,024 picture for Qwen2.5-VL (its processor's smart_resize, vision start/end)."""
    return f"{_qwen25_tokens_at(1024):,}"


@figure("vlm_qwen25_tokens_1024_batch8")
def qwen25_tokens_1024_batch8() -> str:
    return f"{8 * _qwen25_tokens_at(1024):,}"
