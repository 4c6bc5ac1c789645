"""Model architectures: presets from published config.json files, your own config.json, or a bare size.

Every preset copies the values of the model's ``config.json`` on the Hugging Face Hub (the repository
is named in ``source``). Only the fields that decide parameter counts and memory are kept.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from .errors import LoraCalcError, as_int

# The decoder's linear layers, in the order transformers builds them (Llama, Mistral, Qwen2, Gemma-2).
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

MAX_PARAMS = 100 * 10**12   # "absurd" starts above 100T parameters


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer, as its config.json gives it."""

    name: str
    display_name: str
    source: str
    model_type: str                 # llama, mistral, qwen2, qwen3, gemma, gemma2
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    attention_bias: bool = False    # bias on q, k, v (Qwen2 always; Llama if config.attention_bias)
    o_proj_bias: bool = False       # bias on o_proj (Llama's attention_bias also covers o_proj)
    mlp_bias: bool = False          # bias on gate/up/down (Llama's mlp_bias)
    norms_per_layer: int = 2        # RMSNorm weights per decoder layer (Gemma-2 has four)
    qk_norm: bool = False           # per-head RMSNorm on q and k (Qwen3), head_dim weights each
    attn_softcap: bool = False      # tanh soft-capping of attention scores (Gemma-2), eager attention only
    final_softcap: bool = False     # tanh soft-capping of the logits (Gemma-2)
    approximate: bool = False       # True when built from a bare parameter count

    # ------------------------------------------------------------------ shapes
    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of each linear layer inside one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        q = self.num_attention_heads * self.head_dim
        kv = self.num_key_value_heads * self.head_dim
        return {
            "q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }

    def linear_bias(self) -> dict[str, bool]:
        a, m = self.attention_bias, self.mlp_bias
        return {"q_proj": a, "k_proj": a, "v_proj": a, "o_proj": self.o_proj_bias,
                "gate_proj": m, "up_proj": m, "down_proj": m}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _llama(name, display, source, h, i, layers, heads, kv, vocab, tied=False, head_dim=None,
           model_type="llama", **extra) -> Architecture:
    return Architecture(name=name, display_name=display, source=source, model_type=model_type,
                        hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
                        num_attention_heads=heads, num_key_value_heads=kv,
                        head_dim=head_dim or h // heads, vocab_size=vocab, tie_word_embeddings=tied, **extra)


def _hub(repo: str) -> str:
    return f"https://huggingface.co/{repo}/blob/main/config.json"


# --8<-- [start:presets]
PRESETS: dict[str, Architecture] = {a.name: a for a in (
    # Llama 2: multi-head attention (kv heads = heads) except 70B, 32k vocabulary
    _llama("llama-2-7b", "Llama-2 7B", _hub("meta-llama/Llama-2-7b-hf"), 4096, 11008, 32, 32, 32, 32000),
    _llama("llama-2-13b", "Llama-2 13B", _hub("meta-llama/Llama-2-13b-hf"), 5120, 13824, 40, 40, 40, 32000),
    _llama("llama-2-70b", "Llama-2 70B", _hub("meta-llama/Llama-2-70b-hf"), 8192, 28672, 80, 64, 8, 32000),
    # Llama 3.1 / 3.2: grouped-query attention with 8 kv heads, 128k vocabulary; 3.2 ties embeddings
    _llama("llama-3.1-8b", "Llama-3.1 8B", _hub("meta-llama/Llama-3.1-8B"), 4096, 14336, 32, 32, 8, 128256),
    _llama("llama-3.1-70b", "Llama-3.1 70B", _hub("meta-llama/Llama-3.1-70B"), 8192, 28672, 80, 64, 8, 128256),
    _llama("llama-3.1-405b", "Llama-3.1 405B", _hub("meta-llama/Llama-3.1-405B"), 16384, 53248, 126, 128, 8,
           128256),
    _llama("llama-3.2-1b", "Llama-3.2 1B", _hub("meta-llama/Llama-3.2-1B"), 2048, 8192, 16, 32, 8, 128256,
           tied=True, head_dim=64),
    _llama("llama-3.2-3b", "Llama-3.2 3B", _hub("meta-llama/Llama-3.2-3B"), 3072, 8192, 28, 24, 8, 128256,
           tied=True, head_dim=128),
    # Mistral 7B v0.1: Llama shape with grouped-query attention and a 32k vocabulary
    _llama("mistral-7b", "Mistral-7B v0.1", _hub("mistralai/Mistral-7B-v0.1"), 4096, 14336, 32, 32, 8, 32000,
           model_type="mistral"),
    # Qwen2.5: bias on q, k, v; 0.5B ties embeddings
    _llama("qwen2.5-0.5b", "Qwen2.5 0.5B", _hub("Qwen/Qwen2.5-0.5B"), 896, 4864, 24, 14, 2, 151936, tied=True,
           model_type="qwen2", attention_bias=True),
    _llama("qwen2.5-7b", "Qwen2.5 7B", _hub("Qwen/Qwen2.5-7B"), 3584, 18944, 28, 28, 4, 152064,
           model_type="qwen2", attention_bias=True),
    _llama("qwen2.5-14b", "Qwen2.5 14B", _hub("Qwen/Qwen2.5-14B"), 5120, 13824, 48, 40, 8, 152064,
           model_type="qwen2", attention_bias=True),
    _llama("qwen2.5-32b", "Qwen2.5 32B", _hub("Qwen/Qwen2.5-32B"), 5120, 27648, 64, 40, 8, 152064,
           model_type="qwen2", attention_bias=True),
    _llama("qwen2.5-72b", "Qwen2.5 72B", _hub("Qwen/Qwen2.5-72B"), 8192, 29568, 80, 64, 8, 152064,
           model_type="qwen2", attention_bias=True),
    # Gemma 2: head_dim set apart from hidden/heads, four norms per layer, 256k tied vocabulary
    _llama("gemma-2-2b", "Gemma-2 2B", _hub("google/gemma-2-2b"), 2304, 9216, 26, 8, 4, 256000, tied=True,
           head_dim=256, model_type="gemma2", norms_per_layer=4, attn_softcap=True, final_softcap=True),
    _llama("gemma-2-9b", "Gemma-2 9B", _hub("google/gemma-2-9b"), 3584, 14336, 42, 16, 8, 256000, tied=True,
           head_dim=256, model_type="gemma2", norms_per_layer=4, attn_softcap=True, final_softcap=True),
    _llama("gemma-2-27b", "Gemma-2 27B", _hub("google/gemma-2-27b"), 4608, 36864, 46, 32, 16, 256000, tied=True,
           head_dim=128, model_type="gemma2", norms_per_layer=4, attn_softcap=True, final_softcap=True),
)}
# --8<-- [end:presets]


# --8<-- [start:total_params]
def total_params(arch: Architecture) -> int:
    """Every parameter transformers creates for this config (tied embeddings counted once)."""
    h, v = arch.hidden_size, arch.vocab_size
    per_layer = arch.norms_per_layer * h
    if arch.qk_norm:
        per_layer += 2 * arch.head_dim
    bias = arch.linear_bias()
    for name, (d_in, d_out) in arch.linear_shapes().items():
        per_layer += d_in * d_out + (d_out if bias[name] else 0)
    embeddings = v * h
    lm_head = 0 if arch.tie_word_embeddings else v * h
    final_norm = h
    return embeddings + arch.num_hidden_layers * per_layer + final_norm + lm_head
# --8<-- [end:total_params]


def quantizable_params(arch: Architecture) -> int:
    """Weights of the decoder's linear layers (what bitsandbytes stores in 4 bit); biases excluded."""
    return arch.num_hidden_layers * sum(a * b for a, b in arch.linear_shapes().values())


def list_models() -> list[str]:
    """Preset names, in catalog order."""
    return list(PRESETS)


def get_model(name: Any) -> Architecture:
    """A preset by name (case-insensitive), or an ``Architecture`` passed through."""
    if isinstance(name, Architecture):
        return name
    if not isinstance(name, str) or name.strip().lower() not in PRESETS:
        raise LoraCalcError("model", f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name.strip().lower()]


# ---------------------------------------------------------------------------------- config.json
# model_type -> (default tie_word_embeddings, norms per layer, q/k/v bias, bias key in config, qk_norm)
_FAMILIES = {
    "llama": (False, 2, None, "attention_bias", False),
    "mistral": (False, 2, False, None, False),
    "qwen2": (False, 2, True, None, False),
    "qwen3": (False, 2, None, "attention_bias", True),
    "gemma": (True, 2, None, "attention_bias", False),
    "gemma2": (True, 4, None, "attention_bias", False),
}


def model_from_config(path_or_dict: Any, name: str | None = None) -> Architecture:
    """An architecture from a Hugging Face ``config.json`` (a path or the parsed dict); read offline."""
    if isinstance(path_or_dict, dict):
        cfg = path_or_dict
        source = "config.json (dict)"
    elif isinstance(path_or_dict, str) or hasattr(path_or_dict, "__fspath__"):
        path = str(path_or_dict)
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
        except OSError as exc:
            raise LoraCalcError("config", f"cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise LoraCalcError("config", f"{path} is not valid JSON: {exc}") from None
        if not isinstance(cfg, dict):
            raise LoraCalcError("config", f"{path} must hold a JSON object")
        source = path
    else:
        raise LoraCalcError("config", "give a path to config.json or its parsed dict")
    if isinstance(cfg.get("text_config"), dict) and "hidden_size" not in cfg:
        cfg = cfg["text_config"]
    mt = cfg.get("model_type")
    if not isinstance(mt, str) or not mt:
        raise LoraCalcError("config.model_type", "config.json has no model_type; supported: "
                            + ", ".join(_FAMILIES))
    if mt not in _FAMILIES:
        raise LoraCalcError("config.model_type", f"model_type {mt!r} is not supported; supported: "
                            + ", ".join(_FAMILIES))
    tied_default, norms, bias_fixed, bias_key, qk_norm = _FAMILIES[mt]

    def need(key: str, lo: int, hi: int) -> int:
        if key not in cfg or cfg[key] is None:
            raise LoraCalcError(f"config.{key}", f"config.json lacks {key} (needed for {mt} models)")
        return as_int(cfg[key], f"config.{key}", lo, hi, key)

    h = need("hidden_size", 1, 1 << 20)
    i = need("intermediate_size", 1, 1 << 22)
    layers = need("num_hidden_layers", 1, 10_000)
    heads = need("num_attention_heads", 1, 1 << 16)
    vocab = need("vocab_size", 1, 1 << 24)
    kv = cfg.get("num_key_value_heads")
    kv = heads if kv is None else as_int(kv, "config.num_key_value_heads", 1, heads, "num_key_value_heads")
    if heads % kv:
        raise LoraCalcError("config.num_key_value_heads",
                            f"num_key_value_heads ({kv}) must divide num_attention_heads ({heads})")
    hd = cfg.get("head_dim")
    if hd is None:
        if h % heads:
            raise LoraCalcError("config.head_dim", f"config.json lacks head_dim and hidden_size ({h}) is not "
                                                   f"a multiple of num_attention_heads ({heads})")
        hd = h // heads
    else:
        hd = as_int(hd, "config.head_dim", 1, 1 << 16, "head_dim")
    tied = cfg.get("tie_word_embeddings", tied_default)
    if not isinstance(tied, bool):
        raise LoraCalcError("config.tie_word_embeddings", f"tie_word_embeddings must be true or false (got {tied!r})")
    if bias_fixed is not None:
        attn_bias, o_bias = bias_fixed, False
    else:
        attn_bias = bool(cfg.get(bias_key, False))
        o_bias = attn_bias
    mlp_bias = bool(cfg.get("mlp_bias", False)) if mt == "llama" else False
    label = name or cfg.get("_name_or_path") or f"{mt} from config.json"
    arch = Architecture(
        name=str(label), display_name=str(label), source=source, model_type=mt, hidden_size=h,
        intermediate_size=i, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
        head_dim=hd, vocab_size=vocab, tie_word_embeddings=tied, attention_bias=attn_bias, o_proj_bias=o_bias,
        mlp_bias=mlp_bias, norms_per_layer=norms, qk_norm=qk_norm,
        attn_softcap=mt == "gemma2" and cfg.get("attn_logit_softcapping", 50.0) is not None,
        final_softcap=mt == "gemma2" and cfg.get("final_logit_softcapping", 30.0) is not None)
    _check_size(arch, "config")
    return arch


def _check_size(arch: Architecture, field: str) -> None:
    n = total_params(arch)
    if n > MAX_PARAMS:
        raise LoraCalcError(field, f"the model would have {n:,} parameters; loracalc handles up to "
                                   f"{MAX_PARAMS:,} (100T)")


# ------------------------------------------------------------------------------- a bare size
def model_from_param_count(n: Any) -> Architecture:
    """An approximate Llama-3-shaped model of about ``n`` parameters (results are approximate).

    Shape rules taken from the Llama-3.1 family: head_dim 128, 8 kv heads, 128k vocabulary, MLP width
    about 3.5x hidden (rounded to 256), tied embeddings up to hidden 3072, about one layer per 128 of hidden size.
    """
    target = as_int(n, "params", 10**7, MAX_PARAMS, "parameter count")
    best = None
    widths = list(range(256, 1024, 128)) + list(range(1024, 131072 + 1, 1024))
    for h in widths:
        heads = h // 128
        kv = min(8, heads)
        i = max(512, int(round(3.5 * h / 256)) * 256)
        # Llama-3.2 ties embeddings at 1B and 3B; the larger models do not
        base = _llama("approx", "", "", h, i, 1, heads, kv, 128256, head_dim=128, tied=h <= 3072)
        per_layer = total_params(replace(base, num_hidden_layers=2)) - total_params(base)
        fixed = total_params(base) - per_layer
        layers = max(1, round((target - fixed) / per_layer))
        arch = replace(base, num_hidden_layers=layers)
        err = abs(total_params(arch) - target)
        aspect = abs(math.log(h / (128 * layers)))  # prefer Llama-like depth for width
        score = (err / target > 0.02, aspect if err / target <= 0.02 else err)
        if best is None or score < best[0]:
            best = (score, arch)
    arch = best[1]
    label = f"~{_short(target)} parameters (approximate, Llama-3 shape)"
    return replace(arch, name=f"approx-{target}", display_name=label,
                   source="approximate: Llama-3.1 shape rules scaled to the given parameter count",
                   approximate=True)


def _short(n: int) -> str:
    for unit, div in (("T", 10**12), ("B", 10**9), ("M", 10**6)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:,}"
