"""Vision-language models, whole: vision towers, projectors and the wrappers that join them to a language model.

A multimodal ``config.json`` (``model_type`` "gemma3", "llava", "mistral3", ...) holds a ``vision_config`` and a
``text_config``. Transformers 5.25 builds the wrapper's ``ForConditionalGeneration`` class from them: a vision
tower (``AutoModel`` of the vision_config), a projector into the language model's width, the language model
(``AutoModel`` of the text_config, a family loracalc already counts) and ``lm_head``. This module describes
the first two as data, like ``families.py``: one ``Tower`` per vision config type, one ``Wrapper`` per wrapper
type, and walks them into the same tensor ``Record`` s, so totals, LoRA counts and 4-bit storage are sums over
one list. Vision records carry ``role="vision"`` (the tower) or ``role="projector"``, and ``path`` holds the real
module path in the transformers model (``model.vision_tower.encoder.layers.self_attn``), which peft matches.

Defaults were read from the config classes and modeling files of transformers 5.25 (``models/<type>/``);
``tests/snippets/test_vlm.py`` builds each wrapper with transformers on the meta device to check them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import LoraCalcError, as_int
from .families import LN, RMS, Record

VISION_ROLES = ("vision", "projector")


def is_vision(record: Record) -> bool:
    """Whether a record belongs to the vision tower or the projector (not to the language model)."""
    return record.role in VISION_ROLES


# --------------------------------------------------------------------------------------------- towers


@dataclass(frozen=True)
class Tower:
    """A ViT-style vision encoder: patch embedding, position embedding, pre-norm layers, a final norm.

    ``embed``: patch and position embeddings as records (a function of the resolved vision config and the path).
    Each layer holds ``norm`` kind norms named ``layer_norms``, attention ``attn_names`` (q, k, v, out) and an MLP
    ``mlp_names`` (gated: gate, up, down; else fc1, fc2); ``extra`` adds per-layer or final parameters.
    """

    model_type: str
    defaults: dict[str, Any]              # config key -> the config class's default
    embed: Callable[[dict, str], list]
    layers_path: str = "encoder.layers"   # where the layers sit under the tower
    attn_path: str = "self_attn"
    attn_names: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
    qkv_bias: bool | str = True
    o_bias: bool = True
    mlp_path: str = "mlp"
    mlp_names: tuple[str, ...] = ("fc1", "fc2")
    mlp_bias: bool = True
    norm: str | Callable[[dict], str] = LN
    layer_norms: tuple[str, ...] = ("layer_norm1", "layer_norm2")
    final_norms: tuple[str, ...] = ("post_layernorm",)
    extra: Callable[[dict, str], list] | None = None
    notes: str = ""
    # config keys spelled otherwise in this tower's config (Qwen's depth, num_heads, in_channels)
    aliases: dict[str, str] = field(default_factory=dict)
    # towers without an image_size (Qwen's native resolution): the image side the widgets assume when none is given
    image_side: int = 0
    # derived keys, set from the resolved config (Qwen2-VL's MLP width: embed_dim * mlp_ratio)
    derive: Callable[[dict], None] | None = None
    # further stacks of the same layer: (path under the tower, config key of their count); Mllama's global encoder
    more_layers: tuple[tuple[str, str], ...] = ()
    # the layers' linears are modules holding an nn.Linear under this child name (Gemma 4's clippable linears)
    wrapped: str = ""
    qk_norms: tuple[str, ...] = ()        # per-head q/k norms in each attention (weight of head_dim)


def _pair(v: Any) -> tuple[int, int]:
    return (v[0], v[-1]) if isinstance(v, (list, tuple)) else (v, v)


def _patches(v: dict) -> int:
    (ih, iw), (ph, pw) = _pair(v["image_size"]), _pair(v["patch_size"])
    return (ih // ph) * (iw // pw)


def _conv(name: str, v: dict, path: str, bias: bool) -> Record:
    ph, pw = _pair(v["patch_size"])
    k = v["num_channels"] * ph * pw
    h = v["hidden_size"]
    return Record(name, "vision", "conv2d", k, h, k * h, h if bias else 0, path=path)


def _siglip_embed(v: dict, p: str) -> list:
    # SiglipVisionEmbeddings / Idefics3VisionEmbeddings: Conv2d with bias, one position per patch
    n, h = _patches(v), v["hidden_size"]
    return [_conv("patch_embedding", v, p + ".embeddings", True),
            Record("position_embedding", "vision", "embedding", n, h, n * h, path=p + ".embeddings")]


def _siglip_head(v: dict, p: str) -> list:
    # SiglipMultiheadAttentionPoolingHead, built when vision_use_head (SiglipVisionConfig's default True; the
    # published Gemma 3 / PaliGemma configs set it false): a probe, nn.MultiheadAttention (in_proj is a bare
    # parameter, out_proj a Linear subclass peft's all-linear takes and load_in_4bit leaves 16-bit), a LayerNorm
    # and an MLP
    if not v["vision_use_head"]:
        return []
    h, i = v["hidden_size"], v["intermediate_size"]
    q = p + ".head"
    return [Record("probe", "vision", "param", weight=h, path=q),
            Record("in_proj_weight", "vision", "param", weight=3 * h * h, bias=3 * h, path=q + ".attention"),
            Record("out_proj", "vision", "linear", h, h, h * h, h, path=q + ".attention", bnb=False),
            Record("layernorm", "vision", "norm", weight=h, bias=h, path=q),
            Record("fc1", "vision", "linear", h, i, h * i, i, path=q + ".mlp"),
            Record("fc2", "vision", "linear", i, h, h * i, h, path=q + ".mlp")]


def _clip_embed(v: dict, p: str) -> list:
    # CLIPVisionEmbeddings: a class embedding, a bias-free Conv2d, one position per patch plus the class token;
    # CLIPVisionTransformer's pre_layrnorm (so spelled) before the layers
    n, h = _patches(v) + 1, v["hidden_size"]
    return [Record("class_embedding", "vision", "param", weight=h, path=p + ".embeddings"),
            _conv("patch_embedding", v, p + ".embeddings", False),
            Record("position_embedding", "vision", "embedding", n, h, n * h, path=p + ".embeddings"),
            Record("pre_layrnorm", "vision", "norm", weight=h, bias=h, path=p)]


def _pixtral_embed(v: dict, p: str) -> list:
    # PixtralVisionModel: a bias-free Conv2d and an RMSNorm ln_pre; positions are rotary (no parameters)
    h = v["hidden_size"]
    return [_conv("patch_conv", v, p, False), Record("ln_pre", "vision", "norm", weight=h, path=p)]


def _internvl_embed(v: dict, p: str) -> list:
    # InternVLVisionEmbeddings: a cls token, an optional mask token, a Conv2d with bias, absolute positions as a
    # bare (1, patches + 1, hidden) parameter
    h = v["hidden_size"]
    out = [Record("cls_token", "vision", "param", weight=h, path=p + ".embeddings")]
    if v["use_mask_token"]:
        out.append(Record("mask_token", "vision", "param", weight=h, path=p + ".embeddings"))
    out.append(_conv("projection", v, p + ".embeddings.patch_embeddings", True))
    if v["use_absolute_position_embeddings"]:
        out.append(Record("position_embeddings", "vision", "param", weight=(_patches(v) + 1) * h,
                          path=p + ".embeddings"))
    return out


def _qwen_embed(v: dict, p: str) -> list:
    # Qwen2_5_VisionPatchEmbed / Qwen3VLVisionPatchEmbed: a Conv3d of kernel (temporal_patch_size, patch, patch)
    # (bias-free in Qwen2.5-VL, with bias in Qwen3-VL and Qwen3.5); Qwen3-VL's and Qwen3.5's towers add learned
    # positions, nn.Embedding(num_position_embeddings, hidden); rotary positions hold no parameters
    ph, pw = _pair(v["patch_size"])
    k, h = v["num_channels"] * v["temporal_patch_size"] * ph * pw, v["hidden_size"]
    qwen3 = "num_position_embeddings" in v
    out = [Record("proj", "vision", "conv3d", k, h, k * h, h if qwen3 else 0, path=p + ".patch_embed")]
    if qwen3:
        n = v["num_position_embeddings"]
        out.append(Record("pos_embed", "vision", "embedding", n, h, n * h, path=p))
    return out


def _llama4_embed(v: dict, p: str) -> list:
    # Llama4VisionModel: Llama4UnfoldConvolution (an nn.Unfold and a bias-free Linear(channels x patch^2, hidden)),
    # a class embedding, positional_embedding_vlm ((image // patch)^2 + 1, hidden) and layernorm_pre
    n, h = _patches(v) + 1, v["hidden_size"]
    ph, pw = _pair(v["patch_size"])
    k = v["num_channels"] * ph * pw
    return [Record("linear", "vision", "linear", k, h, k * h, path=p + ".patch_embedding"),
            Record("class_embedding", "vision", "param", weight=h, path=p),
            Record("positional_embedding_vlm", "vision", "param", weight=n * h, path=p),
            Record("layernorm_pre", "vision", "norm", weight=h, bias=h, path=p)]


def _llama4_extra(v: dict, p: str) -> list:
    # Llama4VisionPixelShuffleMLP's Llama4VisionMLP2: fc1 Linear(intermediate_size, projector_input_dim) and fc2
    # Linear(projector_output_dim, projector_output_dim), both bias-free
    i, pi, po = v["intermediate_size"], v["projector_input_dim"], v["projector_output_dim"]
    q = p + ".vision_adapter.mlp"
    return [Record("fc1", "vision", "linear", i, pi, i * pi, path=q),
            Record("fc2", "vision", "linear", po, po, po * po, path=q)]


def _internvl_extra(v: dict, p: str) -> list:
    h, L = v["hidden_size"], v["num_hidden_layers"]
    lp = p + ".encoder.layer"
    out = [Record("lambda_1", "vision", "param", weight=h, copies=L, path=lp),
           Record("lambda_2", "vision", "param", weight=h, copies=L, path=lp)]
    if v["use_qk_norm"]:       # InternVLVisionRMSNorm over all heads at once
        out += [Record(n, "vision", "norm", weight=h, copies=L, path=lp + ".attention") for n in ("q_norm", "k_norm")]
    if not v["use_mean_pooling"]:
        out.append(Record("layernorm", "vision", "norm", weight=h, bias=h, path=p))
    return out


def _mllama_embed(v: dict, p: str) -> list:
    # MllamaVisionModel: a bias-free Conv2d, a class embedding, gated_positional_embedding (a gate, one position
    # per patch and the class token, and tile_embedding: an nn.Embedding of (aspect ratios + 1) rows of
    # max_num_tiles x positions x hidden), pre- and post-tile embeddings (gated, (aspect ratios + 1) rows of
    # max_num_tiles x hidden), layernorm_pre; the ratios are supported_aspect_ratios (eight by default)
    n, h, tiles = _patches(v) + 1, v["hidden_size"], v["max_num_tiles"]
    ratios = v["_aspect_ratios"] + 1
    g = p + ".gated_positional_embedding"
    out = [_conv("patch_embedding", v, p, False),
           Record("class_embedding", "vision", "param", weight=h, path=p),
           Record("gate", "vision", "param", weight=1, path=g),
           Record("embedding", "vision", "param", weight=n * h, path=g),
           Record("tile_embedding", "vision", "embedding", ratios, tiles * n * h, ratios * tiles * n * h, path=g)]
    for tile in ("pre_tile_positional_embedding", "post_tile_positional_embedding"):
        out += [Record("embedding", "vision", "embedding", ratios, tiles * h, ratios * tiles * h, path=f"{p}.{tile}"),
                Record("gate", "vision", "param", weight=1, path=f"{p}.{tile}")]
    return out


def _mllama_extra(v: dict, p: str) -> list:
    # the global encoder's layers (MllamaVisionEncoder(is_gated=True)) hold two tanh gates each
    lp = p + ".global_transformer.layers"
    return [Record(n, "vision", "param", weight=1, copies=v["num_global_layers"], path=lp)
            for n in ("gate_attn", "gate_ffn")]


def _mllama_ratios(v: dict) -> None:
    # MllamaVisionConfig: supported_aspect_ratios defaults to the eight (w, h) tile grids of 4 tiles, and
    # validate_architecture refuses those with another max_num_tiles
    r = v["supported_aspect_ratios"]
    if r is None:
        if v["max_num_tiles"] != 4:
            raise LoraCalcError("config.vision_config.max_num_tiles", (
                "max_num_tiles must be 4 with the default supported_aspect_ratios (transformers refuses others): "
                "give supported_aspect_ratios too"))
        r = [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]
    if not isinstance(r, (list, tuple)) or not r:
        raise LoraCalcError("config.vision_config.supported_aspect_ratios",
                            "supported_aspect_ratios must be a list of [width, height] tile grids")
    v["_aspect_ratios"] = len(r)


def _gemma4_embed(v: dict, p: str) -> list:
    # Gemma4VisionPatchEmbedder: input_proj, a bias-free Linear(3 x patch^2, hidden) over flattened patches, and
    # position_embedding_table, a bare (2, position_embedding_size, hidden) parameter (one table per axis)
    k, h = 3 * v["patch_size"] ** 2, v["hidden_size"]
    q = p + ".patch_embedder"
    return [Record("input_proj", "vision", "linear", k, h, k * h, path=q),
            Record("position_embedding_table", "vision", "param", weight=2 * v["position_embedding_size"] * h, path=q)]


# Gemma4AudioConfig's defaults
_GEMMA4_AUDIO = dict(hidden_size=1024, num_hidden_layers=12, num_attention_heads=8, subsampling_conv_channels=[128, 32],
                     conv_kernel_size=5, output_proj_dims=1536)


def _gemma4_audio(raw: Any, t: dict, p: str) -> list:
    """Gemma4AudioModel (a Conformer) at ``p`` and Gemma4Model.embed_audio, as records of role "audio".

    Two subsampling Conv2d (3x3, bias-free, each with a bias-free LayerNorm) and input_proj_linear; per layer two
    feed-forward blocks (ffw_layer_1 h -> 4h, ffw_layer_2 back, two RMSNorms), attention (q, k, v, post; a plain
    relative_k_proj Linear; per_dim_scale of head_dim), a light convolution (linear_start h -> 2h, a depthwise
    Conv1d of conv_kernel_size, linear_end, two RMSNorms) and three RMSNorms; output_proj with bias. The
    feed-forward, attention and convolution linears are Gemma4ClippableLinear, an nn.Linear child named linear.
    embed_audio: a bias-free Linear(output_proj_dims, text hidden) after a norm without weight."""
    if not isinstance(raw, dict):
        raise LoraCalcError("config.audio_config", "audio_config must be a JSON object")
    a = {k: (raw.get(k) if raw.get(k) is not None else d) for k, d in _GEMMA4_AUDIO.items()}
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "conv_kernel_size", "output_proj_dims"):
        a[key] = as_int(a[key], f"config.audio_config.{key}", 1, 1 << 20, key)
    ch = a["subsampling_conv_channels"]
    if not (isinstance(ch, (list, tuple)) and len(ch) == 2):
        raise LoraCalcError("config.audio_config.subsampling_conv_channels",
                            "subsampling_conv_channels must be two channel counts")
    c0, c1 = (as_int(x, "config.audio_config.subsampling_conv_channels", 1, 1 << 16, "channels") for x in ch)
    h, L, heads, o = a["hidden_size"], a["num_hidden_layers"], a["num_attention_heads"], a["output_proj_dims"]
    hd = h // heads
    s, lp = p + ".subsample_conv_projection", p + ".layers"
    out = [Record("conv", "audio", "conv2d", 9, c0, 9 * c0, path=s + ".layer0"),
           Record("norm", "audio", "norm", weight=c0, path=s + ".layer0"),
           Record("conv", "audio", "conv2d", 9 * c0, c1, 9 * c0 * c1, path=s + ".layer1"),
           Record("norm", "audio", "norm", weight=c1, path=s + ".layer1"),
           Record("input_proj_linear", "audio", "linear", (c0 // 4) * c1, h, (c0 // 4) * c1 * h, path=s)]

    def clip(name, d_in, d_out, sub):
        out.extend((Record(name, "audio", "wrapper", copies=L, path=f"{lp}.{sub}"),
                    Record("linear", "audio", "linear", d_in, d_out, d_in * d_out, copies=L, path=f"{lp}.{sub}.{name}")))

    def norms(sub, *names):
        out.extend(Record(n, "audio", "norm", weight=h, copies=L, path=f"{lp}{sub}") for n in names)

    for ff in ("feed_forward1", "feed_forward2"):
        clip("ffw_layer_1", h, 4 * h, ff)
        clip("ffw_layer_2", 4 * h, h, ff)
        norms("." + ff, "pre_layer_norm", "post_layer_norm")
    for n in ("q_proj", "k_proj", "v_proj"):
        clip(n, h, heads * hd, "self_attn")
    clip("post", h, h, "self_attn")
    out += [Record("relative_k_proj", "audio", "linear", h, heads * hd, h * heads * hd, copies=L, path=lp + ".self_attn"),
            Record("per_dim_scale", "audio", "param", weight=hd, copies=L, path=lp + ".self_attn")]
    clip("linear_start", h, 2 * h, "lconv1d")
    clip("linear_end", h, h, "lconv1d")
    out.append(Record("depthwise_conv1d", "audio", "depthwise_conv", weight=h * a["conv_kernel_size"], copies=L,
                      path=lp + ".lconv1d"))
    norms(".lconv1d", "pre_layer_norm", "conv_norm")
    norms("", "norm_pre_attn", "norm_post_attn", "norm_out")
    out += [Record("output_proj", "audio", "linear", h, o, h * o, o, path=p),
            Record("embedding_projection", "audio", "linear", o, t["hidden_size"], o * t["hidden_size"],
                   path=p.rsplit(".", 1)[0] + ".embed_audio")]
    return out


_SIGLIP = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, num_channels=3,
               image_size=224, patch_size=16)
_IDEFICS3 = dict(hidden_size=1152, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=16,
                 num_channels=3, image_size=224, patch_size=32)

_QWEN_ALIASES = dict(num_hidden_layers="depth", num_attention_heads="num_heads", num_channels="in_channels")
# Qwen2_5_VLVisionConfig's defaults (a 3584-wide tower; the published 7B's is 1280 wide)
_QWEN2_5 = dict(hidden_size=3584, intermediate_size=3420, num_hidden_layers=32, num_attention_heads=16,
                num_channels=3, patch_size=14, temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=3584)
# Qwen3VLVisionConfig's (Qwen3.5's the same without the deepstack mergers)
_QWEN3 = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, num_channels=3,
              patch_size=16, temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=3584,
              num_position_embeddings=2304)


# Qwen2VLVisionConfig's: the tower's width is embed_dim, hidden_size the merger's output (the language model's width),
# the MLP int(embed_dim * mlp_ratio) wide
_QWEN2 = dict(hidden_size=1280, out_hidden_size=3584, mlp_ratio=4, num_hidden_layers=32, num_attention_heads=16,
              num_channels=3, patch_size=14, temporal_patch_size=2, spatial_merge_size=2)


def _qwen2_mlp(v: dict) -> None:
    r = v["mlp_ratio"]
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1024:
        raise LoraCalcError("config.vision_config.mlp_ratio", f"mlp_ratio must be a positive number (got {r!r})")
    v["intermediate_size"] = int(v["hidden_size"] * r)


def _qwen_tower(mt: str, defaults: dict) -> Tower:
    # Qwen2_5_VisionTransformerPretrainedModel / Qwen3VLVisionModel / Qwen3_5VisionModel: blocks of norm1, a fused
    # qkv Linear(h, 3h) with bias and proj, norm2 and an MLP with bias (Qwen2.5-VL: gated, RMSNorm; Qwen3:
    # linear_fc1, linear_fc2, LayerNorm); the merger is counted as the wrapper's projector
    q2 = "num_position_embeddings" not in defaults
    return Tower(mt, defaults, _qwen_embed, layers_path="blocks", attn_path="attn", attn_names=("qkv", "proj"),
                 mlp_names=("gate_proj", "up_proj", "down_proj") if q2 else ("linear_fc1", "linear_fc2"),
                 norm=RMS if q2 else LN, layer_norms=("norm1", "norm2"), final_norms=(), aliases=_QWEN_ALIASES,
                 image_side=448)


TOWERS: dict[str, Tower] = {t.model_type: t for t in (
    Tower("llama4_vision_model", dict(hidden_size=768, intermediate_size=5632, num_hidden_layers=34,
                                      num_attention_heads=16, num_channels=3, image_size=448, patch_size=14,
                                      vision_output_dim=7680, projector_input_dim=4096, projector_output_dim=4096),
          _llama4_embed, layers_path="model.layers", attn_names=("q_proj", "k_proj", "v_proj", "o_proj"),
          layer_norms=("input_layernorm", "post_attention_layernorm"), final_norms=("layernorm_post",),
          extra=_llama4_extra),
    # Qwen2VisionTransformerPretrainedModel: Qwen2.5-VL's layout with LayerNorms and a fc1, fc2 MLP with bias
    Tower("qwen2_vl_vision", _QWEN2, _qwen_embed, layers_path="blocks", attn_path="attn", attn_names=("qkv", "proj"),
          layer_norms=("norm1", "norm2"), final_norms=(), image_side=448, derive=_qwen2_mlp,
          aliases={**_QWEN_ALIASES, "hidden_size": "embed_dim", "out_hidden_size": "hidden_size"}),
    _qwen_tower("qwen2_5_vl_vision", _QWEN2_5),
    _qwen_tower("qwen3_vl_vision", {**_QWEN3, "deepstack_visual_indexes": [8, 16, 24]}),
    _qwen_tower("qwen3_vl_moe_vision", {**_QWEN3, "deepstack_visual_indexes": [8, 16, 24]}),
    _qwen_tower("qwen3_5_vision", _QWEN3),
    _qwen_tower("qwen3_5_moe_vision", _QWEN3),
    Tower("siglip_vision_model", {**_SIGLIP, "vision_use_head": True}, _siglip_embed, extra=_siglip_head),
    Tower("clip_vision_model", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                    num_attention_heads=12, num_channels=3, image_size=224, patch_size=32),
          _clip_embed),
    Tower("idefics3_vision", _IDEFICS3, _siglip_embed),
    Tower("smolvlm_vision", _IDEFICS3, _siglip_embed),
    Tower("pixtral", dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                          num_channels=3, image_size=1024, patch_size=16),
          _pixtral_embed, layers_path="transformer.layers", attn_path="attention",
          attn_names=("q_proj", "k_proj", "v_proj", "o_proj"), qkv_bias=False, o_bias=False,
          mlp_path="feed_forward", mlp_names=("gate_proj", "up_proj", "down_proj"), mlp_bias=False, norm=RMS,
          layer_norms=("attention_norm", "ffn_norm"), final_norms=()),
    # Llama 3.2 Vision (MllamaVisionModel): CLIP-like layers (bias-free attention, fc1/fc2 with bias, LayerNorms) in a
    # local encoder (transformer) and a gated global one (global_transformer), layernorm_pre and layernorm_post
    Tower("mllama_vision_model", dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                      num_global_layers=8, num_attention_heads=16, num_channels=3, image_size=448,
                                      patch_size=14, vision_output_dim=7680, max_num_tiles=4,
                                      supported_aspect_ratios=None),
          _mllama_embed, layers_path="transformer.layers", attn_names=("q_proj", "k_proj", "v_proj", "o_proj"),
          qkv_bias=False, o_bias=False, layer_norms=("input_layernorm", "post_attention_layernorm"),
          final_norms=("layernorm_pre", "layernorm_post"), extra=_mllama_extra, derive=_mllama_ratios,
          more_layers=(("global_transformer.layers", "num_global_layers"),),
          aliases={"num_attention_heads": "attention_heads"}),
    # Gemma 4 (Gemma4VisionModel): Gemma 3's text layer in a vision encoder (four RMSNorms, q/k norms, GQA-able
    # attention of head_dim, a gated MLP), no biases; every layer linear is a Gemma4ClippableLinear holding an
    # nn.Linear named linear; the pooler and the rotary positions hold no parameters
    Tower("gemma4_vision", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=16, num_attention_heads=12,
                                num_key_value_heads=12, head_dim=64, patch_size=16, position_embedding_size=10240,
                                pooling_kernel_size=3),
          _gemma4_embed, attn_names=("q_proj", "k_proj", "v_proj", "o_proj"), qkv_bias=False, o_bias=False,
          mlp_names=("gate_proj", "up_proj", "down_proj"), mlp_bias=False, norm=RMS,
          layer_norms=("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                       "post_feedforward_layernorm"),
          final_norms=(), wrapped="linear", qk_norms=("q_norm", "k_norm"), image_side=768),
    Tower("internvl_vision", dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, num_channels=3, image_size=[448, 448], patch_size=[14, 14],
                                  attention_bias=False, use_qk_norm=False, norm_type="layer_norm",
                                  use_mask_token=False, use_absolute_position_embeddings=True, use_mean_pooling=True),
          _internvl_embed, layers_path="encoder.layer", attn_path="attention",
          attn_names=("q_proj", "k_proj", "v_proj", "projection_layer"), qkv_bias="attention_bias",
          norm=lambda v: RMS if v["norm_type"] == "rms_norm" else LN,
          layer_norms=("layernorm_before", "layernorm_after"), final_norms=(), extra=_internvl_extra),
)}


def _layers(t: Tower, v: dict, lp: str, L: int, norm: str) -> list[Record]:
    """One stack of ``L`` identical layers under the module path ``lp``."""
    h, i = v["hidden_size"], v["intermediate_size"]
    heads = v["num_attention_heads"]
    hd = v.get("head_dim") or h // heads             # towers whose config names head_dim / kv heads (Gemma 4)
    kv = v.get("num_key_value_heads") or heads
    out: list[Record] = []

    def lin(name, d_in, d_out, bias, sub):
        path = f"{lp}.{sub}"
        if t.wrapped:     # a module holding its nn.Linear as a child: peft can match it by name, not adapt it
            out.append(Record(name, "vision", "wrapper", copies=L, path=path))
            name, path = t.wrapped, f"{path}.{name}"
        out.append(Record(name, "vision", "linear", d_in, d_out, d_in * d_out, d_out if bias else 0, L, path=path))

    qb = bool(v[t.qkv_bias]) if isinstance(t.qkv_bias, str) else t.qkv_bias
    for n in t.layer_norms:
        out.append(Record(n, "vision", "norm", weight=h, bias=h if norm == LN else 0, copies=L, path=lp))
    if len(t.attn_names) == 2:                # one fused Linear(h, 3h) for q, k and v (Qwen's qkv)
        lin(t.attn_names[0], h, 3 * h, qb, t.attn_path)
    if len(t.attn_names) == 4:
        for n, width in zip(t.attn_names[:3], (heads * hd, kv * hd, kv * hd)):
            lin(n, h, width, qb, t.attn_path)
    lin(t.attn_names[-1], heads * hd if len(t.attn_names) == 4 else h, h, t.o_bias, t.attn_path)
    for n in t.qk_norms:                      # per-head norms of head_dim (weight only)
        out.append(Record(n, "vision", "norm", weight=hd, copies=L, path=f"{lp}.{t.attn_path}"))
    for n in t.mlp_names[:-1]:
        lin(n, h, i, t.mlp_bias, t.mlp_path)
    lin(t.mlp_names[-1], i, h, t.mlp_bias, t.mlp_path)
    return out


def walk_tower(t: Tower, v: dict, path: str) -> list[Record]:
    """Records of a vision tower built from the resolved vision config ``v``, under the module path ``path``."""
    h = v["hidden_size"]
    norm = t.norm(v) if callable(t.norm) else t.norm
    out = list(t.embed(v, path))
    for sub, key in ((t.layers_path, "num_hidden_layers"), *t.more_layers):
        out += _layers(t, v, f"{path}.{sub}", v[key], norm)
    for n in t.final_norms:
        out.append(Record(n, "vision", "norm", weight=h, bias=h if norm == LN else 0, path=path))
    if t.extra:
        out.extend(t.extra(v, path))
    return [r for r in out if r.copies]


# ------------------------------------------------------------------------------------------- wrappers


def _feature_layers(w: dict) -> int:
    f = w.get("vision_feature_layer", -1)
    return len(f) if isinstance(f, list) else 1


def _lin(name, d_in, d_out, bias, path) -> Record:
    return Record(name, "projector", "linear", d_in, d_out, d_in * d_out, d_out if bias else 0, path=path)


def _gemma3_proj(w, v, t, p):
    # Gemma3MultiModalProjector: a bare (vision hidden, text hidden) weight and a Gemma RMSNorm
    vh, th = v["hidden_size"], t["hidden_size"]
    return [Record("mm_input_projection_weight", "projector", "param", vh, th, vh * th, path=p),
            Record("mm_soft_emb_norm", "projector", "norm", weight=vh, path=p)]


def _paligemma_proj(w, v, t, p):
    # PaliGemmaMultiModalProjector: Linear(vision hidden, projection_dim) with bias
    return [_lin("linear", v["hidden_size"], w["projection_dim"], True, p)]


def _llava_proj(w, v, t, p):
    # LlavaMultiModalProjector: Linear(vision hidden x feature layers, text hidden), act, Linear(text, text)
    th, b = t["hidden_size"], w["multimodal_projector_bias"]
    return [_lin("linear_1", v["hidden_size"] * _feature_layers(w), th, b, p), _lin("linear_2", th, th, b, p)]


def _llava_next_proj(w, v, t, p):
    # LlavaNextModel adds image_newline, a (text hidden,) parameter, beside the LLaVA projector
    return _llava_proj(w, v, t, p) + [Record("image_newline", "projector", "param", weight=t["hidden_size"],
                                             path=p.rsplit(".", 1)[0])]


def _mistral3_proj(w, v, t, p):
    # Mistral3MultiModalProjector: RMSNorm(vision hidden), a patch merger Linear(vh * merge^2, vh) without
    # bias, then the LLaVA projector (bias off by default)
    vh, th, b, m = v["hidden_size"], t["hidden_size"], w["multimodal_projector_bias"], w["spatial_merge_size"]
    return [Record("norm", "projector", "norm", weight=vh, path=p),
            _lin("merging_layer", vh * m * m, vh, False, p + ".patch_merger"),
            _lin("linear_1", vh * _feature_layers(w), th, b, p), _lin("linear_2", th, th, b, p)]


def _idefics3_proj(w, v, t, p):
    # Idefics3Connector: pixel shuffle by scale_factor, then Linear(vh * scale^2, text hidden) without bias
    s = w["scale_factor"]
    return [_lin("proj", v["hidden_size"] * s * s, t["hidden_size"], False, p + ".modality_projection")]


def _aya_proj(w, v, t, p):
    # AyaVisionMultiModalProjector: pixel shuffle by downsample_factor, LayerNorm, Linear to
    # alignment_intermediate_size (a config.json key; the text width when absent), SwiGLU halves it, Linear to the
    # text width, all with bias
    d, ai, th = v["hidden_size"] * w["downsample_factor"] ** 2, w["alignment_intermediate_size"], t["hidden_size"]
    ai = th if ai is None else ai
    return [Record("layernorm", "projector", "norm", weight=d, bias=d, path=p),
            _lin("linear_1", d, ai, True, p), _lin("linear_2", ai // 2, th, True, p)]


def _internvl_proj(w, v, t, p):
    # InternVLMultiModalProjector: LayerNorm(vh / ratio^2), Linear to text hidden, act, Linear(text, text)
    r = int(1 / w["downsample_ratio"])
    d, th = v["hidden_size"] * r * r, t["hidden_size"]
    return [Record("layer_norm", "projector", "norm", weight=d, bias=d, path=p),
            _lin("linear_1", d, th, True, p), _lin("linear_2", th, th, True, p)]


def _llama4_proj(w, v, t, p):
    # Llama4MultiModalProjector: Linear(vision_output_dim, text hidden) without bias
    return [_lin("linear_1", v["vision_output_dim"], t["hidden_size"], False, p)]


def _qwen_proj(w, v, t, p):
    # the towers' mergers, at model.visual.merger: a norm of the tower's width (Qwen2.5-VL: ln_q, RMSNorm; Qwen3:
    # norm, LayerNorm), then Linear(h m^2, h m^2) and Linear(h m^2, out_hidden_size), both with bias (Qwen2.5-VL's
    # in an nn.Sequential: modules "0" and "2"). Qwen3-VL adds one merger per deepstack_visual_indexes entry
    # (deepstack_merger_list), its LayerNorm after the shuffle (h m^2 wide)
    h, m, o = v["hidden_size"], v["spatial_merge_size"], v["out_hidden_size"]
    d = h * m * m
    if "num_position_embeddings" not in v:            # Qwen2-VL's ln_q is a LayerNorm, Qwen2.5-VL's an RMSNorm
        ln = h if v["model_type"] == "qwen2_vl_vision" else 0
        return [Record("ln_q", "projector", "norm", weight=h, bias=ln, path=p), _lin("0", d, d, True, p + ".mlp"),
                _lin("2", d, o, True, p + ".mlp")]
    out = [Record("norm", "projector", "norm", weight=h, bias=h, path=p), _lin("linear_fc1", d, d, True, p),
           _lin("linear_fc2", d, o, True, p)]
    n = len(v.get("deepstack_visual_indexes") or ())
    if n:
        q = p.rsplit(".", 1)[0] + ".deepstack_merger_list"
        out += [Record("norm", "projector", "norm", weight=d, bias=d, copies=n, path=q),
                Record("linear_fc1", "projector", "linear", d, d, d * d, d, n, path=q),
                Record("linear_fc2", "projector", "linear", d, o, d * o, o, n, path=q)]
    return out


def _mllama_proj(w, v, t, p):
    # MllamaModel.multi_modal_projector: Linear(vision_output_dim, text hidden) with bias; the language model reads
    # its output through the cross-attention layers, not as tokens
    return [_lin("multi_modal_projector", v["vision_output_dim"], t["hidden_size"], True, p)]


# --------------------------------------------------------------------- image tokens (the processors' rules)


def _qwen_grid(v: dict, size: int) -> tuple[int, int]:
    """Patches along each side of a square image of side ``size`` after Qwen2VLImageProcessor's resize: smart_resize
    (image_processing_qwen2_vl.py) rounds each side to a multiple of patch_size * merge_size, then scales into
    [min_pixels, max_pixels] (the class defaults, 56 * 56 and 28 * 28 * 1280; a checkpoint's
    preprocessor_config.json may set others, which loracalc does not read)."""
    f = _pair(v["patch_size"])[0] * v["spatial_merge_size"]
    lo, hi = 56 * 56, 28 * 28 * 1280
    s = max(f, round(size / f) * f)
    if s * s > hi:
        s = max(f, math.floor(size / math.sqrt(size * size / hi) / f) * f)
    elif s * s < lo:
        s = math.ceil(size * math.sqrt(lo / (size * size)) / f) * f
    n = s // _pair(v["patch_size"])[0]
    return n, n


def _llama4_tokens(w, v, size):
    # rough: Llama4Processor._prompt_split_image writes (image_size // patch)^2 * pixel_shuffle_ratio^2 image tokens
    # per 336/448-pixel tile (256 at the defaults), tiles up to max_patches 16 plus a global image when there is
    # more than one, inside <|image_start|> ... <|image_end|>; tile separators are left out here
    per = int((v["image_size"] // _pair(v["patch_size"])[0]) ** 2 * 0.25)
    tiles = min(16, math.ceil(size / v["image_size"]) ** 2)
    return (tiles + 1 if tiles > 1 else 1) * per + 2


def _gemma4_side(v: dict, size: int) -> int:
    """The side a square image is resized to by Gemma4ImageProcessor (get_aspect_ratio_preserving_size): the
    largest multiple of pooling_kernel_size x patch_size whose patches fit max_soft_tokens (280, the class
    default) x pooling_kernel_size^2; small images are scaled up to it, so the side does not depend on ``size``."""
    p, k = v["patch_size"], v["pooling_kernel_size"]
    target = 280 * k * k * p * p
    side = math.floor(math.sqrt(target / (size * size)) * size / (k * p)) * (k * p)
    if side == 0:
        raise LoraCalcError("config.vision_config.patch_size", (
            f"a patch budget of 280 x {k}^2 patches of {p} pixels cannot hold one {k * p}-pixel pooling cell"))
    return side


def _gemma4_proj(w, v, t, p):
    # Gemma4MultimodalEmbedder (embed_vision): a norm without weight, then a bias-free Linear(vision hidden, text)
    return [_lin("embedding_projection", v["hidden_size"], t["hidden_size"], False, p)]


def _gemma4_tokens(w, v, size):
    # Gemma4Processor.replace_image_token: boi + one image token per pooled patch + eoi; a square image becomes
    # (side / patch)^2 / pooling_kernel_size^2 soft tokens (_get_num_multimodal_tokens)
    n = _gemma4_side(v, size) // v["patch_size"]
    return n * n // v["pooling_kernel_size"] ** 2 + 2


def _mllama_tokens(w, v, size):
    # MllamaProcessor leaves one <|image|> token per image in the text (replace_image_token); the image's tiles
    # reach the language model through cross-attention, not as sequence positions
    return 1


def _qwen_tokens(w, v, size):
    # Qwen2VLProcessor / Qwen2_5_VLProcessor / Qwen3VLProcessor: one <|image_pad|> per merged patch,
    # image_grid_thw.prod() // merge_size^2, between <|vision_start|> and <|vision_end|> (the chat template's)
    gh, gw = _qwen_grid(v, size)
    return gh * gw // v["spatial_merge_size"] ** 2 + 2



def _gemma3_tokens(w, v, size):
    # Gemma3Processor (processing_gemma3.py): "\n\n" + boi + image_token * mm_tokens_per_image + eoi + "\n\n",
    # whatever the image size (the image processor resizes to image_size); boi and eoi counted here
    return w["mm_tokens_per_image"] + 2


def _paligemma_tokens(w, v, size):
    # PaliGemmaConfig: num_image_tokens = (image_size // patch_size) ** 2; PaliGemmaProcessor repeats the image
    # token image_seq_length (= that) times before the bos token
    return (v["image_size"] // v["patch_size"]) ** 2


def _llava_tokens(w, v, size):
    # LlavaProcessor (processing_llava.py): (height // patch_size) * (width // patch_size) + 1 (CLS), minus 1 when
    # vision_feature_select_strategy == "default"; the image processor resizes to the tower's image_size
    n = (v["image_size"] // v["patch_size"]) ** 2 + 1
    return n - 1 if w.get("vision_feature_select_strategy", "default") == "default" else n


def _llava_next_tokens(w, v, size):
    # rough: LlavaNextProcessor's anyres picks a grid from image_grid_pinpoints, then adds the base image and one
    # image_newline per row of the unpadded features; taken here as the base image plus ceil(size / image_size)^2
    # tiles of image_size, each a square of (image_size // patch)^2 features, plus one newline per feature row
    side = v["image_size"] // v["patch_size"]
    grid = max(1, math.ceil(size / v["image_size"]))
    return side * side + (grid * side) ** 2 + grid * side


def _mistral3_tokens(w, v, size):
    # PixtralProcessor (processing_pixtral.py): rows = ceil(height / (patch_size * spatial_merge_size)), columns
    # likewise, each row of image tokens ends with [IMG_BREAK] (the last with [IMG_END]): rows * (columns + 1).
    # The image processor first shrinks the image to fit longest_edge (Mistral Small 3.1: 1540 = image_size)
    side = min(size, v["image_size"])
    n = math.ceil(side / (v["patch_size"] * w["spatial_merge_size"]))
    return n * (n + 1)


def _idefics3_tokens(w, v, size):
    # Idefics3Processor / SmolVLMProcessor: the image is split into tiles of the tower's image_size (max_image_size
    # longest_edge), each tile (image_size // patch_size)^2 / scale_factor^2 tokens (image_seq_len) plus a
    # <row_r_col_c> marker and <fake_token_around_image>, and a global image the same; one tile: no split
    per = (v["image_size"] // v["patch_size"]) ** 2 // (w["scale_factor"] ** 2)
    tiles = math.ceil(size / v["image_size"]) ** 2
    n = tiles + 1 if tiles > 1 else 1
    return n * (per + 2)


def _aya_tokens(w, v, size):
    # AyaVisionProcessor.replace_image_token: <start_of_img>, then per tile a tile marker and
    # (img_size // (patch_size * downsample_factor))^2 patch tokens (364 // 28: 169), the global thumbnail the same,
    # <end_of_img>; crop_to_patches makes up to max_patches 12 tiles and adds the thumbnail when it makes more than one
    per = (v["image_size"] // (v["patch_size"] * w["downsample_factor"])) ** 2
    tiles = min(12, math.ceil(size / v["image_size"]) ** 2)
    n = tiles + 1 if tiles > 1 else 1
    return 2 + n * (per + 1)


def _internvl_tokens(w, v, size):
    # InternVLProcessor: image_seq_length (256) tokens per 448-pixel tile, inside <img> ... </img>; crop_to_patches
    # splits a larger image into tiles (max_patches 12) and adds a thumbnail when there is more than one
    tiles = min(12, math.ceil(size / _pair(v["image_size"])[0]) ** 2)
    n = tiles + 1 if tiles > 1 else 1
    return n * w["image_seq_length"] + 2


@dataclass(frozen=True)
class Wrapper:
    """A vision-language wrapper type: its sub-config defaults, where transformers puts each part, its projector."""

    model_type: str
    text_type: str                        # the text_config's model_type when it names none
    vision_type: str                      # the vision_config's model_type when it names none
    defaults: dict[str, Any]              # the wrapper config's own keys that decide shapes
    projector: Callable[[dict, dict, dict, str], list]
    image_tokens: Callable[[dict, dict, int], int]
    # the sub-configs transformers builds when config.json has no text_config / vision_config
    # (the config class's sub_configs_defaults init_kwargs)
    text_init: dict[str, Any] = field(default_factory=dict)
    vision_init: dict[str, Any] = field(default_factory=dict)
    language_path: str = "model.language_model"
    vision_path: str = "model.vision_tower"
    projector_path: str = "model.multi_modal_projector"
    # LLaVA-style configs: a false top-level tie_word_embeddings takes the text_config's (LlavaConfig.__post_init__)
    tie_from_text: bool = False
    tokens_rough: bool = False            # the image-token rule is approximate (anyres grids)
    # sub_configs_defaults names a config class, not AutoConfig: a given model_type is not read
    text_fixed: bool = False
    vision_fixed: bool = False
    # Qwen2.5-VL: a config.json without text_config holds the language model's keys at its top level
    # (Qwen2_5_VLConfig.__post_init__ pops them into the text_config)
    text_flat: bool = False
    # Llama 4: the language model is a ForCausalLM of its own, tied by the text_config's tie_word_embeddings alone
    # (Llama4TextConfig's default false); the top-level key is ignored (measured in tests/snippets/test_vlm.py)
    tie_text_only: bool = False
    # lm_head is never tied, whatever the file says (MllamaForConditionalGeneration has no _tied_weights_keys)
    untied: bool = False
    # no vision_config: no vision tower nor projector (Gemma4Config's SubConfigSpec(optional=True))
    vision_optional: bool = False
    # an audio tower built from the wrapper key audio_config when given: (audio_config, text config, path) -> records
    audio: Callable[[Any, dict, str], list] | None = None
    audio_path: str = "model.audio_tower"


_CLIP_336 = dict(intermediate_size=4096, hidden_size=1024, patch_size=14, image_size=336, num_hidden_layers=24,
                 num_attention_heads=16)
_LLAVA = dict(vision_feature_layer=-2, vision_feature_select_strategy="default", multimodal_projector_bias=True,
              tie_word_embeddings=False)

WRAPPERS: dict[str, Wrapper] = {w.model_type: w for w in (
    Wrapper("gemma3", "gemma3_text", "siglip_vision_model", dict(mm_tokens_per_image=256, tie_word_embeddings=True),
            _gemma3_proj, _gemma3_tokens, text_fixed=True),
    Wrapper("paligemma", "gemma", "siglip_vision_model", dict(projection_dim=2048, tie_word_embeddings=True),
            _paligemma_proj, _paligemma_tokens,
            text_init=dict(hidden_size=2048, num_hidden_layers=18, intermediate_size=16384, num_attention_heads=8,
                           num_key_value_heads=1, vocab_size=257152),
            vision_init=dict(intermediate_size=4096, hidden_size=1152, patch_size=14, image_size=224,
                             num_hidden_layers=27, num_attention_heads=16, vision_use_head=False)),
    Wrapper("llava", "llama", "clip_vision_model", _LLAVA, _llava_proj, _llava_tokens, vision_init=_CLIP_336,
            tie_from_text=True),
    Wrapper("llava_next", "llama", "clip_vision_model", _LLAVA, _llava_next_proj, _llava_next_tokens,
            vision_init=_CLIP_336, tokens_rough=True),
    Wrapper("mistral3", "mistral", "pixtral",
            dict(vision_feature_layer=-1, multimodal_projector_bias=False, spatial_merge_size=2,
                 tie_word_embeddings=True),
            _mistral3_proj, _mistral3_tokens,
            text_init=dict(head_dim=128, hidden_size=5120, intermediate_size=32768, num_attention_heads=32,
                           num_hidden_layers=40, num_key_value_heads=8, sliding_window=None, vocab_size=131072),
            vision_init=dict(intermediate_size=4096, hidden_size=1024, patch_size=14, image_size=1540,
                             num_hidden_layers=24, num_attention_heads=16)),
    Wrapper("idefics3", "llama", "idefics3_vision", dict(scale_factor=2, tie_word_embeddings=False),
            _idefics3_proj, _idefics3_tokens, language_path="model.text_model", vision_path="model.vision_model",
            projector_path="model.connector", vision_fixed=True),
    Wrapper("smolvlm", "llama", "smolvlm_vision", dict(scale_factor=2, tie_word_embeddings=False),
            _idefics3_proj, _idefics3_tokens, language_path="model.text_model", vision_path="model.vision_model",
            projector_path="model.connector", vision_fixed=True),
    Wrapper("internvl", "qwen2", "internvl_vision",
            dict(downsample_ratio=0.5, image_seq_length=256, tie_word_embeddings=True),
            _internvl_proj, _internvl_tokens, vision_fixed=True),
    # LLaVA-OneVision: a SigLIP tower (no CLS token: strategy "full"), the LLaVA-NeXT projector and image_newline
    Wrapper("llava_onevision", "qwen2", "siglip_vision_model",
            dict(vision_feature_layer=-1, vision_feature_select_strategy="full", multimodal_projector_bias=True,
                 tie_word_embeddings=False),
            _llava_next_proj, _llava_next_tokens, tokens_rough=True,
            vision_init=dict(hidden_size=1152, intermediate_size=4304, patch_size=14, image_size=384,
                             num_hidden_layers=26, num_attention_heads=16, vision_use_head=False)),
    Wrapper("qwen2_5_vl", "qwen2_5_vl_text", "qwen2_5_vl_vision", dict(tie_word_embeddings=False), _qwen_proj,
            _qwen_tokens, vision_path="model.visual", projector_path="model.visual.merger", tie_from_text=True,
            text_fixed=True, vision_fixed=True, text_flat=True),
    # Qwen2-VL: its text_config (Qwen2VLTextConfig) has Qwen2.5-VL's keys, defaults and modules: counted by the
    # qwen2_5_vl_text family
    Wrapper("qwen2_vl", "qwen2_5_vl_text", "qwen2_vl_vision", dict(tie_word_embeddings=False), _qwen_proj,
            _qwen_tokens, vision_path="model.visual", projector_path="model.visual.merger", tie_from_text=True,
            text_fixed=True, vision_fixed=True, text_flat=True),
    # Qwen3-VL and Qwen3.5: the top-level tie_word_embeddings alone decides (no fallback to the text_config's)
    *(Wrapper(mt, mt + "_text", mt + "_vision", dict(tie_word_embeddings=False), _qwen_proj, _qwen_tokens,
              vision_path="model.visual", projector_path="model.visual.merger", text_fixed=True, vision_fixed=True)
      for mt in ("qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")),
    # Llama 4: Llama4ForConditionalGeneration holds vision_model, multi_modal_projector and language_model, a
    # Llama4ForCausalLM (its own lm_head at language_model.lm_head)
    Wrapper("llama4", "llama4_text", "llama4_vision_model", dict(tie_word_embeddings=False), _llama4_proj,
            _llama4_tokens, language_path="language_model.model", vision_path="vision_model",
            projector_path="multi_modal_projector", tokens_rough=True, text_fixed=True, vision_fixed=True,
            tie_text_only=True),
    # Llama 3.2 Vision: MllamaForConditionalGeneration holds model.vision_model, model.multi_modal_projector (one
    # Linear) and model.language_model (MllamaTextModel); lm_head is its own
    Wrapper("mllama", "mllama_text_model", "mllama_vision_model", dict(tie_word_embeddings=False), _mllama_proj,
            _mllama_tokens, vision_path="model.vision_model", projector_path="model", text_fixed=True,
            vision_fixed=True, untied=True),
    # Gemma 4: Gemma4ForConditionalGeneration holds model.language_model (Gemma4TextModel), and, when the config
    # names them, model.vision_tower with model.embed_vision and model.audio_tower with model.embed_audio
    Wrapper("gemma4", "gemma4_text", "gemma4_vision", dict(tie_word_embeddings=True, audio_config=None), _gemma4_proj,
            _gemma4_tokens, projector_path="model.embed_vision", text_fixed=True, vision_fixed=True,
            vision_optional=True, audio=_gemma4_audio),
    Wrapper("aya_vision", "cohere2", "siglip_vision_model",
            dict(vision_feature_layer=-1, downsample_factor=2, alignment_intermediate_size=None,
                 tie_word_embeddings=True),
            _aya_proj, _aya_tokens,
            vision_init=dict(hidden_size=1152, intermediate_size=4304, patch_size=14, image_size=384,
                             num_hidden_layers=26, num_attention_heads=14, vision_use_head=False)),
)}


# ------------------------------------------------------------------------------------------- resolving


def _sub(cfg: dict, key: str, default_type: str, init: dict, fixed: bool, flat: bool = False) -> dict:
    """The sub-config transformers builds: the dict as given (its model_type, else the spec's), or, when absent,
    the spec's init_kwargs (``SubConfigSpec.create_subconfig``). Where the spec names a config class rather than
    AutoConfig (``fixed``), that class is built whatever model_type the dict names (SmolVLM-256M's vision_config
    says "idefics3": Idefics3VisionConfig is built)."""
    sub = cfg.get(key)
    if sub is None and flat:
        flat = {k: x for k, x in cfg.items() if k not in ("vision_config", "text_config")}
        return {**flat, "model_type": default_type}
    if sub is None:
        return {"model_type": default_type, **init, "_absent": True}
    if not isinstance(sub, dict):
        raise LoraCalcError(f"config.{key}", f"{key} must be a JSON object")
    mt = default_type if fixed else (sub.get("model_type") or default_type)
    if not isinstance(mt, str):
        raise LoraCalcError(f"config.{key}.model_type", f"model_type must be a name (got {mt!r})")
    return {**sub, "model_type": mt}


def resolve_vision(v_raw: dict, wrapper: str) -> dict:
    """The vision config with its config class's defaults filled in (refusing a tower type loracalc lacks)."""
    mt = v_raw["model_type"]
    if not isinstance(mt, str) or mt not in TOWERS:
        raise LoraCalcError("config.vision_config", (
            f"{wrapper}'s vision tower (vision_config model_type {mt!r}) is not one loracalc counts; a Tower spec in "
            f"loracalc/vision.py would make it countable (covered: {', '.join(TOWERS)})"))
    t = TOWERS[mt]
    v: dict[str, Any] = {"model_type": mt}
    for key, default in t.defaults.items():
        val = v_raw.get(t.aliases.get(key, key))
        v[key] = default if val is None else val
    for key, default in t.defaults.items():
        if isinstance(default, bool) and not isinstance(v[key], bool):
            raise LoraCalcError(f"config.vision_config.{key}", f"{key} must be true or false (got {v[key]!r})")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels",
                "temporal_patch_size", "spatial_merge_size", "out_hidden_size", "num_position_embeddings",
                "vision_output_dim", "projector_input_dim", "projector_output_dim", "num_global_layers",
                "max_num_tiles", "num_key_value_heads", "head_dim", "position_embedding_size", "pooling_kernel_size"):
        if key in v:
            name = t.aliases.get(key, key)
            v[key] = as_int(v[key], f"config.vision_config.{name}", 1, 1 << 20, name)
    if t.derive:
        t.derive(v)
        v["intermediate_size"] = as_int(v["intermediate_size"], "config.vision_config.mlp_ratio", 1, 1 << 20,
                                        "the MLP width (embed_dim x mlp_ratio)")
    if "deepstack_visual_indexes" in v and not (isinstance(v["deepstack_visual_indexes"], (list, tuple)) and all(
            isinstance(x, int) and not isinstance(x, bool) for x in v["deepstack_visual_indexes"])):
        raise LoraCalcError("config.vision_config.deepstack_visual_indexes",
                            "deepstack_visual_indexes must be a list of layer numbers")
    if "image_size" not in v:
        v["image_size"] = t.image_side     # no fixed size: the side the widgets assume (see Tower.image_side)
    for key in ("image_size", "patch_size"):
        parts = v[key] if isinstance(v[key], (list, tuple)) else [v[key]]
        if not 1 <= len(parts) <= 2:
            raise LoraCalcError(f"config.vision_config.{key}", f"{key} must be a number or a pair of numbers")
        vals = [as_int(x, f"config.vision_config.{key}", 1, 1 << 16, key) for x in parts]
        v[key] = vals if isinstance(v[key], (list, tuple)) else vals[0]
    for (i, p) in zip(_pair(v["image_size"]), _pair(v["patch_size"])):
        if p > i:
            raise LoraCalcError("config.vision_config.patch_size", f"patch_size ({p}) exceeds image_size ({i})")
    if "head_dim" not in v and v["hidden_size"] % v["num_attention_heads"]:
        raise LoraCalcError("config.vision_config.num_attention_heads", (
            f"the vision tower's hidden_size ({v['hidden_size']}) must be a multiple of its num_attention_heads "
            f"({v['num_attention_heads']})"))
    return v


def resolve_wrapper(cfg: dict) -> tuple[Wrapper, dict, dict, dict]:
    """(wrapper spec, the wrapper's own keys, raw text_config, resolved vision config) of a multimodal config.json."""
    w = WRAPPERS[cfg["model_type"]]
    own = {k: (cfg.get(k) if cfg.get(k) is not None else d) for k, d in w.defaults.items()}
    text = _sub(cfg, "text_config", w.text_type, w.text_init, w.text_fixed, w.text_flat)
    if w.tie_from_text and not own["tie_word_embeddings"] and text.get("tie_word_embeddings"):
        own["tie_word_embeddings"] = True
    if w.tie_text_only:
        own["tie_word_embeddings"] = text.get("tie_word_embeddings") or False
    if w.untied:
        own["tie_word_embeddings"] = False
    for key in ("tie_word_embeddings", "multimodal_projector_bias"):
        if key in own and not isinstance(own[key], bool):
            raise LoraCalcError(f"config.{key}", f"{key} must be true or false (got {own[key]!r})")
    absent = cfg.get("vision_config") is None and w.vision_optional
    v = None if absent else resolve_vision(_sub(cfg, "vision_config", w.vision_type, w.vision_init, w.vision_fixed),
                                           w.model_type)
    for key in ("projection_dim", "spatial_merge_size", "scale_factor", "mm_tokens_per_image", "image_seq_length",
                "downsample_factor", "alignment_intermediate_size"):
        if key in own and own[key] is not None:
            own[key] = as_int(own[key], f"config.{key}", 1, 1 << 20, key)
    if "downsample_ratio" in own:
        r = own["downsample_ratio"]
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
            raise LoraCalcError("config.downsample_ratio", f"downsample_ratio must be in (0, 1] (got {r!r})")
    f = cfg.get("vision_feature_layer", own.get("vision_feature_layer", -1))
    if isinstance(f, bool) or not (isinstance(f, int) or (isinstance(f, list) and f and all(
            isinstance(x, int) and not isinstance(x, bool) for x in f))):
        raise LoraCalcError("config.vision_feature_layer", "vision_feature_layer must be a layer number or a list")
    return w, own, text, v


def vision_records(w: Wrapper, own: dict, v: dict | None, text_c: dict) -> tuple[Record, ...]:
    """The vision tower's and the projector's records (none without a vision config, where the wrapper allows it),
    then an audio tower's, and nothing of the language model."""
    out = [] if v is None else walk_tower(TOWERS[v["model_type"]], v, w.vision_path)
    out += [] if v is None else w.projector(own, v, text_c, w.projector_path)
    if w.audio and own.get("audio_config") is not None:
        out += w.audio(own["audio_config"], text_c, w.audio_path)
    return tuple(out)


def image_tokens(arch, image_size: Any = None) -> int:
    """Tokens one image adds to the sequence the language model sees, by the wrapper's processor rule.

    ``image_size``: the image's longer side in pixels (default: the vision tower's image_size)."""
    vis = getattr(arch, "vision", None)
    if vis is None:
        raise LoraCalcError("images", f"{arch.name} has no vision tower: images need a vision-language model")
    w, own, v = WRAPPERS[vis["wrapper"]], vis["wrapper_config"], vis["vision_config"]
    if v is None:
        raise LoraCalcError("images", f"{arch.name} has no vision tower (its config.json has no vision_config): "
                                      "images need one")
    size = _pair(v["image_size"])[0] if image_size is None else as_int(image_size, "image_size", 1, 1 << 16,
                                                                       "image size")
    return w.image_tokens(own, v, size)


def patches_per_image(arch, image_size: Any = None) -> int:
    """Patches the vision tower encodes for one image (its sequence length, summed over tiles): rough for
    tiling processors (LLaVA-NeXT, Idefics3, InternVL), whose tile count follows their image-token rule."""
    vis = arch.vision
    v = vis["vision_config"]
    side = _pair(v["image_size"])[0]
    size = side if image_size is None else as_int(image_size, "image_size", 1, 1 << 16, "image size")
    per = _patches(v) + (1 if v["model_type"] in ("clip_vision_model", "internvl_vision", "llama4_vision_model") else 0)
    if vis["wrapper"] == "mistral3":            # Pixtral encodes the image at its own size, up to image_size
        n = math.ceil(min(size, side) / _pair(v["patch_size"])[0])
        return n * n
    if WRAPPERS[vis["wrapper"]].projector is _qwen_proj:     # Qwen: the image at its own size, resized
        gh, gw = _qwen_grid(v, size)
        return gh * gw
    if WRAPPERS[vis["wrapper"]].projector is _gemma4_proj:   # padded to max_soft_tokens x pooling^2 patches
        return 280 * v["pooling_kernel_size"] ** 2
    if WRAPPERS[vis["wrapper"]].projector is _mllama_proj:   # every tile slot, patches + CLS padded to 8
        return v["max_num_tiles"] * ((per + 8) // 8 * 8)
    if vis["wrapper"] in ("gemma3", "paligemma", "llava"):
        return per
    tiles = math.ceil(size / side) ** 2
    return per * (tiles + 1 if tiles > 1 else 1)


# ------------------------------------------------------------------------------------------ activations


def vision_activation_bytes(arch, counts, method: str, batch_size: int, images: int, image_size: Any,
                            gradient_checkpointing: bool, s: int, a: int) -> tuple[int, str]:
    """(bytes, formula) the vision tower and projector keep for backward in one step. Rough: measured only on a
    few tiny towers on a CPU (``scripts/vlm_activation_check.py``), unlike the language model's term.

    Frozen and unadapted (LoRA on the language model only), the tower and projector run without a graph: no
    parameter upstream of their outputs needs a gradient, so they keep nothing. When they train (full
    fine-tuning) or hold adapters, each ViT layer keeps, per patch, its two norms' inputs (2 vh), q, k, v and the
    attention output (4 vh), the MLP activation's input and the second linear's input (2 vi), all of s bytes,
    plus each adapter's A output (a r) and, when the adapters' dtype is not the stream's, its cast input (a d_in);
    with gradient checkpointing, each layer's input (vh) and one layer. On tiny LLaVA, Gemma 3, InternVL and
    Mistral 3 towers on a CPU (bf16, fp32 adapters on all-linear, no checkpointing) it was 18% to 35% under what
    saved_tensors_hooks counted (the CPU's math attention keeps fp32 copies and scores; Pixtral's gated MLP keeps
    three intermediate-wide tensors; SigLIP's pooling head is not described); not checked on CUDA."""
    vis = arch.vision
    v = vis["vision_config"]
    vh, vi = v["hidden_size"], v["intermediate_size"]
    Lv = v["num_hidden_layers"] + v.get("num_global_layers", 0)     # Mllama's global encoder runs after the local
    mods = counts.per_module if method != "full" else ()
    tower = method == "full" or any(m.name.startswith("vision.") for m in mods)
    proj = tower or any(m.name.startswith("projector.") for m in mods)
    if not images or not proj:
        return 0, "frozen vision tower and projector: they keep nothing for backward"
    P = batch_size * images * patches_per_image(arch, image_size)
    proj_in = sum(r.d_in for r in arch.records if r.role == "projector" and r.kind in ("linear", "param"))
    proj_b = s * proj_in * P
    if not tower:
        return proj_b, f"{s} B x {proj_in:,} projector inputs x {P:,} patches"
    # each adapter keeps A's output (a r) and, in another dtype than the stream's, its own cast input (a d_in)
    adapters = sum(a * (m.rank + (m.d_in if a != s else 0)) * m.copies for m in mods
                   if m.name.startswith("vision.")) // max(1, Lv)
    per = s * (6 * vh + 2 * vi) + adapters
    if gradient_checkpointing:
        kept = (Lv * s * vh + per) * P
        return kept + proj_b, (f"({Lv} layers x {s * vh:,} B + one layer recomputed {per:,} B) x {P:,} patches "
                               f"+ projector {proj_b:,} B")
    return Lv * per * P + proj_b, f"{Lv} layers x {per:,} B x {P:,} patches + projector {proj_b:,} B"
