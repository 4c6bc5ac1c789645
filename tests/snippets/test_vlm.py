"""Vision-language models counted whole (loracalc.vision): totals equal what transformers builds on the meta device,
LoRA counts what peft's get_peft_model reports, over the whole model and over the language model alone.

Tiny configs: the wrapper's text_config is the engine's tiny shape of its default text family
(``loracalc.tiny_shapes``), its vision_config a small tower of its default type, and each wrapper type is varied
(tied or not, the tower's switches, the projector's). Published configs are in ``snippets/lora_course/data/vlm_configs.json``.
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

import loracalc
from loracalc.tiny_shapes import tiny_config
from loracalc.vision import TOWERS, WRAPPERS, image_tokens, is_vision

from .hf import peft_counts, total_params

DATA_FILE = Path(__file__).parents[2] / "snippets" / "lora_course" / "data" / "vlm_configs.json"
DATA = json.loads(DATA_FILE.read_text())["models"]
ROOT = Path(__file__).resolve().parents[2]

# a small tower of each vision type (widths bitsandbytes' CPU path would take are not needed: meta device only)
_TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
              patch_size=8)
# the tower and projector switches each wrapper's variants turn (beside tie_word_embeddings)
_SWITCHES = {
    "siglip_vision_model": [{"vision_config": {"vision_use_head": True}}],
    "clip_vision_model": [{"vision_feature_layer": [-2, -1]}, {"multimodal_projector_bias": False}],
    "pixtral": [{"multimodal_projector_bias": True, "spatial_merge_size": 1}, {"vision_feature_layer": [-1, -2]}],
    "idefics3_vision": [{"scale_factor": 1}],
    "smolvlm_vision": [{"scale_factor": 4, "vision_config": {"image_size": 64}}],
    "internvl_vision": [{"vision_config": {"use_qk_norm": True, "norm_type": "rms_norm", "attention_bias": True}},
                        {"vision_config": {"use_mean_pooling": False, "use_mask_token": True,
                                           "use_absolute_position_embeddings": False}, "downsample_ratio": 0.25}],
    "llama4_vision_model": [{"vision_config": {"image_size": 64, "projector_input_dim": 24,
                                               "projector_output_dim": 24}}],
    "qwen2_vl_vision": [{"vision_config": {"mlp_ratio": 3, "spatial_merge_size": 1, "temporal_patch_size": 1}}],
    "qwen2_5_vl_vision": [{"vision_config": {"spatial_merge_size": 1, "temporal_patch_size": 1, "in_channels": 1}}],
    "qwen3_vl_vision": [{"vision_config": {"deepstack_visual_indexes": [0, 1], "num_position_embeddings": 9}},
                        {"vision_config": {"deepstack_visual_indexes": [], "spatial_merge_size": 1}}],
    "qwen3_vl_moe_vision": [{"vision_config": {"deepstack_visual_indexes": [1], "temporal_patch_size": 1}}],
    "qwen3_5_vision": [{"vision_config": {"num_position_embeddings": 9, "spatial_merge_size": 1}}],
    "qwen3_5_moe_vision": [{"vision_config": {"temporal_patch_size": 1, "out_hidden_size": 48}}],
    "mllama_vision_model": [{"vision_config": {"num_global_layers": 2, "max_num_tiles": 2, "image_size": 48,
                                               "supported_aspect_ratios": [[1, 1], [1, 2], [2, 1]]}}],
    "gemma4_vision": [{"vision_config": {"num_key_value_heads": 1, "head_dim": 24, "position_embedding_size": 16,
                                         "patch_size": 4, "pooling_kernel_size": 2}}],
}


# projector switches of one wrapper type
_WRAPPER_SWITCHES = {"llama4": [{"text_config": {"tie_word_embeddings": True}}],
                     "aya_vision": [{"alignment_intermediate_size": 96, "downsample_factor": 1}],
                     "llava_onevision": [{"vision_feature_layer": [-1, -2], "multimodal_projector_bias": False}],
                     # MllamaForConditionalGeneration ties nothing, whatever the file says
                     "mllama": [{"tie_word_embeddings": True, "text_config": {"tie_word_embeddings": True}}],
                     # Gemma 4's towers are optional: without vision_config, without audio_config, with neither
                     "gemma4": [{"vision_config": None}, {"audio_config": None},
                                {"vision_config": None, "audio_config": None},
                                {"audio_config": {"num_attention_heads": 4, "conv_kernel_size": 3,
                                                  "subsampling_conv_channels": [12, 8], "output_proj_dims": 40}}]}
# a small Gemma 4 audio tower (widths in multiples of 64 where bitsandbytes' CPU path quantizes them)
_AUDIO = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, subsampling_conv_channels=[16, 16],
              output_proj_dims=64)


def _own(mt: str, text: dict) -> dict:
    """Wrapper keys a tiny model needs to build: Gemma 3 pools 16 patches into 4 tokens; PaliGemma projects to the
    language model's width."""
    return {"gemma3": {"mm_tokens_per_image": 4}, "paligemma": {"projection_dim": text["hidden_size"]},
            "gemma4": {"audio_config": dict(_AUDIO)}}.get(mt, {})


def tiny_vlm(mt: str) -> dict:
    w = WRAPPERS[mt]
    text = {k: v for k, v in tiny_config(w.text_type).items() if k != "max_position_embeddings"}
    aliases = TOWERS[w.vision_type].aliases     # Qwen's towers spell depth, num_heads
    vision = {"model_type": w.vision_type, **{aliases.get(k, k): v for k, v in _TOWER.items()}}
    if w.vision_type == "internvl_vision":
        vision.update(image_size=[32, 32], patch_size=[8, 8])
    if w.vision_type == "llama4_vision_model":  # the pixel-shuffle MLP and the projector's widths
        vision.update(vision_output_dim=48, projector_input_dim=40, projector_output_dim=48)
    if w.vision_type == "mllama_vision_model":  # the global encoder and the projector's input width
        vision.update(num_global_layers=1, vision_output_dim=48)
    if w.vision_type == "gemma4_vision":        # its own head_dim (the class default 64) and position table
        vision.update(head_dim=16, num_key_value_heads=2, position_embedding_size=32)
        del vision["image_size"]
    if "out_hidden_size" in TOWERS[w.vision_type].defaults:   # the merger projects to the language model's width
        vision.update({aliases.get("out_hidden_size", "out_hidden_size"): text["hidden_size"],
                       "deepstack_visual_indexes": [0]})
        if w.vision_type == "qwen2_vl_vision":  # its MLP is embed_dim x mlp_ratio wide
            vision.update(embed_dim=_TOWER["hidden_size"], hidden_size=text["hidden_size"], mlp_ratio=2)
            del vision["intermediate_size"]
        if w.vision_type.startswith("qwen3_5"):
            del vision["deepstack_visual_indexes"]
    return {"model_type": mt, "text_config": text, "vision_config": vision, **_own(mt, text)}


def vlm_variants(mt: str) -> list[dict]:
    """The base tiny config, its tie flipped, and each of the tower's switches."""
    base = tiny_vlm(mt)
    out = [base, {**base, "tie_word_embeddings": not WRAPPERS[mt].defaults["tie_word_embeddings"]}]
    for sw in _WRAPPER_SWITCHES.get(mt, []) + _SWITCHES[WRAPPERS[mt].vision_type]:
        cfg = {**base, **{k: v for k, v in sw.items() if k not in ("vision_config", "text_config")}}
        for key in ("vision_config", "text_config", "audio_config"):
            if key in sw and sw[key] is None:
                cfg.pop(key, None)
            elif key in base:
                cfg[key] = {**base[key], **sw.get(key, {})}
        out.append(cfg)
    return out


def hf_vlm(cfg: dict):
    """(transformers config, the model AutoModelForImageTextToText builds from it on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    logging.getLogger("transformers").setLevel(logging.ERROR)
    hc = AutoConfig.for_model(cfg["model_type"], **{k: v for k, v in cfg.items() if k != "model_type"})
    with torch.device("meta"):
        return hc, AutoModelForImageTextToText.from_config(hc)


def language_regex(arch, count) -> str:
    """The regex a practitioner gives peft to adapt the language model only: the adapted names under its path."""
    names = "|".join(dict.fromkeys(m.name for m in count.per_module))
    return rf".*{re.escape(arch.vision['language_path'])}.*\.({names})"


def check_vlm_config(cfg: dict, ranks=(4, 8), targets=("all-linear", ("q_proj", "v_proj"))) -> int:
    """Assert loracalc == transformers + peft for one wrapper config; returns the number of comparisons made."""
    hc, model = hf_vlm(cfg)
    checks = 0
    for source in (cfg, hc.to_dict()):
        arch = loracalc.model_from_config(source)
        assert loracalc.total_params(arch) == total_params(model), (cfg["model_type"], cfg)
        checks += 1
    arch = loracalc.model_from_config(cfg)
    for t in targets:
        for rank in ranks:
            for adapt in ("all", "language"):
                names = list(t) if isinstance(t, tuple) else t
                if adapt == "all" and any(r.kind == "wrapper" and r.name in names for r in arch.records):
                    # a name of a module wrapping its nn.Linear (Gemma 4's towers): peft refuses, so does loracalc
                    with pytest.raises(ValueError, match="is not supported"):
                        peft_counts(model, rank, names)
                    with pytest.raises(loracalc.LoraCalcError, match="peft refuses"):
                        loracalc.count_params(arch, rank, names, adapt)
                    _, model = hf_vlm(cfg)      # peft may have wrapped some modules before refusing
                    checks += 1
                    continue
                ours = loracalc.count_params(arch, rank, names, adapt)
                given = language_regex(arch, ours) if adapt == "language" else names
                theirs, total = peft_counts(model, rank, given)
                assert ours.lora_params == theirs, (cfg["model_type"], t, rank, adapt, cfg)
                assert total - theirs == ours.total_params
                checks += 1
    return checks


@pytest.mark.parametrize("mt", sorted(WRAPPERS))
def test_tiny_wrappers_equal_transformers_and_peft(mt):
    for cfg in vlm_variants(mt):
        check_vlm_config(cfg, ranks=(4,))


@pytest.mark.parametrize("mt", sorted(WRAPPERS))
def test_vision_names_reach_the_tower_unless_language_only(mt):
    # names only the tower or projector holds: peft adapts them over the whole model; a language-only regex finds
    # nothing, and peft refuses the config, so loracalc refuses too
    arch = loracalc.model_from_config(tiny_vlm(mt))
    text = {r.name for r in arch.text_records()}
    # Qwen2.5-VL's merger Linears are "0" and "2" (an nn.Sequential): peft matches those to blocks.0 and
    # layers.0 too and refuses, and so does loracalc
    digits = sorted({r.name for r in arch.records if is_vision(r) and r.name.isdigit()})
    only = sorted({r.name for r in arch.records if is_vision(r) and r.kind == "linear"} - text - set(digits))
    assert only, mt
    if digits:
        with pytest.raises(ValueError, match="is not supported"):
            peft_counts(hf_vlm(tiny_vlm(mt))[1], 4, digits)
        with pytest.raises(loracalc.LoraCalcError, match="index"):
            loracalc.count_params(arch, 4, digits)
    _, model = hf_vlm(tiny_vlm(mt))
    ours = loracalc.count_params(arch, 4, only)
    assert ours.lora_params == peft_counts(model, 4, only)[0]
    assert all(m.name.startswith(("vision.", "projector.", "audio.")) for m in ours.per_module)
    with pytest.raises(loracalc.LoraCalcError, match="language model"):
        loracalc.count_params(arch, 4, only, adapt="language")


@pytest.mark.parametrize("entry", DATA, ids=[e["repo"][:50] for e in DATA])
def test_published_configs(entry):
    cfg = entry["config"]
    _, model = hf_vlm(cfg)
    arch = loracalc.model_from_config(cfg)
    n = loracalc.total_params(arch)
    assert n == total_params(model)
    if entry["published"]:
        assert abs(n / entry["published"] - 1) <= entry["tolerance"], (entry["repo"], n)
    # the language model alone is the text family's count with the wrapper's tie: the same records
    text = loracalc.model_from_config({**arch.raw_config, "tie_word_embeddings": arch.tie_word_embeddings})
    assert loracalc.total_params(text) == sum(r.params for r in arch.text_records())


# target sets beyond all-linear and q,v for the published Llama 3.2 Vision and Gemma 4 configs: names in the tower,
# the projector and the language model at once (Gemma 4's q_proj is a clippable wrapper in its towers: refused)
_PUBLISHED_TARGETS = {"mllama": ("all-linear", ("q_proj", "v_proj"), ("fc1", "gate_proj", "multi_modal_projector")),
                      "gemma4": ("all-linear", ("q_proj", "v_proj"),
                                 ("embedding_projection", "input_proj", "embed_tokens"))}


@pytest.mark.parametrize("repo", [e["repo"] for e in DATA if e["config"]["model_type"] in _PUBLISHED_TARGETS])
def test_published_lora_counts_equal_peft(repo):
    cfg = next(e["config"] for e in DATA if e["repo"] == repo)
    assert check_vlm_config(cfg, ranks=(16,), targets=_PUBLISHED_TARGETS[cfg["model_type"]]) == 2 + 6


def test_published_defaults_of_every_wrapper_equal_transformers():
    from transformers import AutoConfig
    for mt in sorted(WRAPPERS):
        d = AutoConfig.for_model(mt).to_dict()
        try:
            _, model = hf_vlm(d)
        except ValueError:
            # transformers cannot build it (Aya Vision's default tower: 1152 wide, 14 heads): loracalc refuses
            with pytest.raises(loracalc.LoraCalcError):
                loracalc.model_from_config(d)
            continue
        assert loracalc.total_params(loracalc.model_from_config(d)) == total_params(model), mt


def test_a_wrapper_without_its_text_or_vision_config_takes_the_spec_defaults():
    for mt in ("llava", "paligemma", "mistral3"):
        cfg = {"model_type": mt}
        _, model = hf_vlm(cfg)
        assert loracalc.total_params(loracalc.model_from_config(cfg)) == total_params(model), mt


@pytest.mark.parametrize("mt", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen2_vl_flat_config_reads_the_language_model_from_the_top_level(mt):
    # Qwen2VLConfig / Qwen2_5_VLConfig.__post_init__ pop the language model's keys from a config.json without
    # text_config
    base = tiny_vlm(mt)
    flat = {k: v for k, v in base.items() if k != "text_config"}
    flat.update({k: v for k, v in base["text_config"].items() if k != "model_type"})
    check_vlm_config(flat, ranks=(4,), targets=("all-linear",))
    check_vlm_config({**flat, "tie_word_embeddings": True}, ranks=(4,), targets=("all-linear",))


def test_qwen_image_tokens_follow_smart_resize():
    # Qwen2VLImageProcessor (transformers' own, class defaults) on a square image: tokens = grid_thw.prod() // 4
    import numpy as np
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    for mt, patch in (("qwen2_5_vl", 14), ("qwen3_vl", 16)):
        proc = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2)
        arch = loracalc.model_from_config(AutoConfigDict(mt))
        for side in (20, 100, 448, 1000, 2000):
            grid = proc(images=np.zeros((side, side, 3), dtype=np.uint8), return_tensors="np")["image_grid_thw"]
            assert image_tokens(arch, side) == int(grid.prod()) // 4 + 2, (mt, side)


def test_gemma4_image_tokens_follow_its_image_processor():
    # Gemma4ImageProcessorPil (class defaults: 280 soft tokens, pooling 3, patch 16) resizes a square image of any
    # size to 768 pixels: 48 x 48 patches pooled 3 x 3, 256 soft tokens; Gemma4Processor adds boi and eoi
    import numpy as np
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil
    proc = Gemma4ImageProcessorPil()
    arch = _published("google/gemma-4-E2B-it")
    for side in (64, 300, 768, 1000, 2000):
        out = proc(images=np.zeros((side, side, 3), dtype=np.uint8), return_tensors="np")
        assert image_tokens(arch, side) == int(out["num_soft_tokens_per_image"][0]) + 2, side
    # a checkpoint with another pooling kernel and patch: 280 x 2^2 patches of 14 pixels fit 32 x 32 patches
    small = loracalc.model_from_config({**tiny_vlm("gemma4"), "vision_config": {
        **tiny_vlm("gemma4")["vision_config"], "patch_size": 14, "pooling_kernel_size": 2}})
    out = Gemma4ImageProcessorPil(patch_size=14, pooling_kernel_size=2)(
        images=np.zeros((500, 500, 3), dtype=np.uint8), return_tensors="np")
    assert image_tokens(small, 500) == int(out["num_soft_tokens_per_image"][0]) + 2


def test_mllama_images_take_one_token_and_gemma4_needs_its_vision_config():
    # MllamaProcessor.replace_image_token keeps the one <|image|> token (the tiles reach the language model through
    # cross-attention); a Gemma 4 config.json without vision_config builds no vision tower
    assert image_tokens(_published("meta-llama/Llama-3.2-11B-Vision-Instruct"), 1120) == 1
    cfg = {k: v for k, v in tiny_vlm("gemma4").items() if k != "vision_config"}
    with pytest.raises(loracalc.LoraCalcError, match="no vision tower"):
        loracalc.estimate_memory(loracalc.model_from_config(cfg), targets="all-linear", images_per_sample=1)


def AutoConfigDict(mt: str) -> dict:
    from transformers import AutoConfig
    return AutoConfig.for_model(mt).to_dict()


# ---------------------------------------------------------------------------------------------- refusals


def test_an_uncovered_tower_is_refused_in_one_line_saying_what_would_count_it():
    cfg = {**tiny_vlm("llava"), "vision_config": {"model_type": "idefics2_vision", "hidden_size": 32}}
    with pytest.raises(loracalc.LoraCalcError) as e:
        loracalc.model_from_config(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "Tower spec" in msg and "idefics2_vision" in msg


def test_an_uncovered_wrapper_is_refused_in_one_line_saying_what_would_count_it():
    from transformers import AutoConfig
    for mt in ("idefics2", "gemma3n"):
        with pytest.raises(loracalc.LoraCalcError) as e:
            loracalc.model_from_config(AutoConfig.for_model(mt).to_dict())
        msg = str(e.value)
        assert "\n" not in msg and "Wrapper spec" in msg, msg


def test_bad_wrapper_values_are_one_line_errors():
    base = tiny_vlm("internvl")
    for bad in ({"downsample_ratio": 0}, {"vision_config": {**base["vision_config"], "patch_size": [64, 64]}},
                {"vision_config": {**base["vision_config"], "num_attention_heads": 3}},
                {"vision_feature_layer": "last"}, {"tie_word_embeddings": "yes"},
                {"text_config": {**base["text_config"], "hidden_size": None, "num_hidden_layers": -1}}):
        with pytest.raises(loracalc.LoraCalcError) as e:
            loracalc.model_from_config({**base, **bad})
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ memory


def _published(repo: str):
    return loracalc.model_from_config(next(e["config"] for e in DATA if e["repo"] == repo))


def test_image_tokens_follow_each_processor():
    # Gemma3Processor: boi + 256 image tokens + eoi; LlavaProcessor: (336 / 14)^2 patches, the CLS token dropped
    # ("default" strategy); PaliGemma: (224 / 14)^2; PixtralProcessor: ceil(1540 / 28) = 55 rows of 55 tokens and a
    # break each; SmolVLM-256M: (512 / 16)^2 / 4^2 = 64 per tile, plus its two markers, four tiles and the global
    # image at 1024 pixels; InternVL: 256 per 448-pixel tile inside <img></img>
    assert image_tokens(_published("google/gemma-3-4b-it")) == 258
    assert image_tokens(_published("llava-hf/llava-1.5-7b-hf")) == 576
    assert image_tokens(_published("google/paligemma2-3b-pt-224")) == 256
    assert image_tokens(_published("mistralai/Mistral-Small-3.1-24B-Instruct-2503")) == 55 * 56
    assert image_tokens(_published("mistralai/Mistral-Small-3.1-24B-Instruct-2503"), 280) == 10 * 11
    smol = _published("HuggingFaceTB/SmolVLM-256M-Instruct")
    assert image_tokens(smol) == 66 and image_tokens(smol, 1024) == 5 * 66
    assert image_tokens(_published("OpenGVLab/InternVL3-1B-hf")) == 258


def test_images_lengthen_the_sequence_and_a_frozen_tower_keeps_nothing():
    arch = _published("google/gemma-3-4b-it")
    kw = dict(method="qlora", rank=16, targets="q,v", seq_len=1024)
    none = loracalc.estimate_memory(arch, **kw, adapt="language")
    two = loracalc.estimate_memory(arch, **kw, adapt="language", images_per_sample=2)
    assert two.settings["lm_seq_len"] == 1024 + 2 * 258 and two.settings["seq_len"] == 1024
    assert not any(t.key == "vision_activations" for t in two.terms + two.off_peak)
    assert two.total_bytes > none.total_bytes
    whole = loracalc.estimate_memory(arch, **kw, images_per_sample=2)
    vis = [t for t in whole.terms + whole.off_peak if t.key == "vision_activations"]
    assert vis and vis[0].bytes > 0 and any("rough" in n for n in whole.notes)
    # the adapters on the tower count in the adapter weights: whole > language only
    assert whole.total_bytes > two.total_bytes


def test_images_on_a_text_model_are_refused():
    with pytest.raises(loracalc.LoraCalcError, match="no vision tower"):
        loracalc.estimate_memory("llama-3.1-8b", images_per_sample=1)


def test_language_lora_leaves_the_text_activation_term_as_for_the_text_model():
    # the language model's activations do not depend on adapters in the tower
    arch = _published("llava-hf/llava-1.5-7b-hf")
    a = loracalc.estimate_memory(arch, targets="q,v", adapt="language", images_per_sample=0)
    b = loracalc.estimate_memory(arch, targets="q,v", adapt="all", images_per_sample=0)
    act = lambda e: [t.bytes for t in e.terms + e.off_peak if t.key in ("activations", "recomputed")]  # noqa: E731
    assert act(a) == act(b)


# --------------------------------------------------------------------------------------------------- CLI


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loracalc", *args], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "snippets")}, cwd=ROOT)


def test_cli_params_and_memory_on_a_vlm(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(next(e["config"] for e in DATA if e["repo"] == "google/gemma-3-4b-it")))
    out = _cli("params", "--config", str(p), "--targets", "q,v", "--adapt", "language", "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["total_params"] == 4_300_079_472 and d["adapt"] == "language" and d["wrapper"] == "gemma3"
    text = _cli("params", "--config", str(p), "--targets", "q,v")
    assert "vision tower" in text.stdout and "vision.q_proj" in text.stdout
    mem = _cli("memory", "--config", str(p), "--images", "1", "--image-size", "896", "--json")
    assert json.loads(mem.stdout)["settings"]["image_tokens_per_image"] == 258
    bad = _cli("memory", "--model", "llama-3.1-8b", "--images", "1")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--adapt" in _cli("params", "--help").stdout and "--images" in _cli("memory", "--help").stdout


def test_every_tower_is_used_by_a_wrapper():
    assert {w.vision_type for w in WRAPPERS.values()} == set(TOWERS)


# -------------------------------------------------------------------------------------------- 4-bit storage


@pytest.mark.slow
@pytest.mark.parametrize("mt", sorted(WRAPPERS))
def test_4bit_weights_are_what_bitsandbytes_quantizes(mt, tmp_path):
    if mt == "llama4":
        # measured 2026-12-07: load_in_4bit leaves the language model's Llama4Router (an nn.Linear subclass)
        # 16-bit, which the llama4_text family counts as 4-bit (512 weights on this tiny model); a text-family fix
        pytest.xfail("llama4_text's router is counted 4-bit; bitsandbytes leaves it 16-bit")
    """Load a tiny random wrapper with load_in_4bit on CPU (widths in multiples of 64, as bitsandbytes' CPU path
    needs): the vision tower's and projector's linears are stored in 4 bit like the language model's; lm_head,
    embeddings, norms, the patch convolution, Gemma 3's bare projection weight and nn.MultiheadAttention's
    out_proj (SigLIP's pooling head) stay 16-bit."""
    import torch
    import bitsandbytes as bnb
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    cfg = tiny_vlm(mt)
    aliases = TOWERS[WRAPPERS[mt].vision_type].aliases          # Qwen's towers spell num_heads, embed_dim
    cfg["vision_config"].update({aliases.get(k, k): v for k, v in dict(
        hidden_size=64, intermediate_size=128, num_attention_heads=1, image_size=64, patch_size=16,
        vision_use_head=True).items()})
    if WRAPPERS[mt].vision_type == "internvl_vision":
        cfg["vision_config"].update(image_size=[64, 64], patch_size=[16, 16])
    hc, _ = hf_vlm(cfg)
    AutoModelForImageTextToText.from_config(hc).save_pretrained(tmp_path)
    q = AutoModelForImageTextToText.from_pretrained(tmp_path, device_map="cpu", quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16))
    four_bit = sum(m.in_features * m.out_features for m in q.modules() if isinstance(m, bnb.nn.Linear4bit))
    arch = loracalc.model_from_config(cfg)
    assert loracalc.models.quantizable_params(arch) == four_bit


def test_step_flops_count_the_language_model_on_text_tokens():
    arch = _published("google/gemma-3-4b-it")
    text = loracalc.model_from_config({**arch.raw_config, "tie_word_embeddings": arch.tie_word_embeddings})
    from loracalc.speed import step_flops
    assert step_flops(arch, targets="q,v") == step_flops(text, targets="q,v")
    assert any("vision tower" in n for n in loracalc.estimate_time(arch, "h100-80gb").notes)
