"""Model architectures: presets from published config.json files, your own config.json, or a bare size.

Every preset copies the values of the model's ``config.json`` on the Hugging Face Hub (the repository
is named in ``source``). Only the fields that decide parameter counts and memory are kept.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import LoraCalcError, as_int
from .families import FAMILIES, KEY_KINDS, KEY_SYNONYMS, TOWER_ROLES, Record, is_4bit, softcap_on, walk
from .vision import TOWERS, WRAPPERS, resolve_wrapper, vision_records

MAX_PARAMS = 100 * 10**12   # "absurd" starts above 100T parameters

# A Llama-shaped layer's linear modules, in the order transformers builds them (kept for callers that
# only know that shape; other families name theirs in their spec, see ``Architecture.linear_names``).
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True, eq=False)
class Architecture:
    """A decoder-only model: its family spec and its resolved config; the tensors come from ``walk``.

    ``config`` holds every key the family reads, with the config class's defaults and the model class's
    derived values (head_dim, kv heads, ...) filled in. The familiar sizes are read-only views of it.
    """

    name: str
    display_name: str
    source: str
    config: dict
    approximate: bool = False
    published_params: str | None = None     # the model card's count as it prints it ("30.5B", "3.3B active")
    raw_config: dict = field(default_factory=dict, repr=False)   # the config.json as given (a wrapper's text_config)
    # a vision-language model (loracalc.vision): {"wrapper", "wrapper_config", "vision_config", "language_path",
    # "vision_path", "projector_path", "raw"}; its tower's and projector's records follow the language model's
    vision: dict | None = field(default=None, repr=False)
    extra_records: tuple[Record, ...] = field(default=(), repr=False)
    records: tuple[Record, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "records", walk(self.family, self.config) + tuple(self.extra_records))

    # ---------------------------------------------------------------- views of the config
    family = property(lambda self: FAMILIES[self.config["model_type"]])
    model_type = property(lambda self: self.config["model_type"])
    hidden_size = property(lambda self: self.config["hidden_size"])
    num_hidden_layers = property(lambda self: self.config["num_hidden_layers"])
    num_attention_heads = property(lambda self: self.config["num_attention_heads"])
    num_key_value_heads = property(lambda self: self.config["num_key_value_heads"])
    head_dim = property(lambda self: self.config["head_dim"])
    vocab_size = property(lambda self: self.config["vocab_size"])
    tie_word_embeddings = property(lambda self: self.config["tie_word_embeddings"])

    intermediate_size = property(lambda self: self.config["intermediate_size"])

    @property
    def mlp_width_per_token(self) -> int:
        """MLP width one token passes through: the dense MLP's, or top_k experts plus the shared ones (MoE)."""
        moe = self.family.moe
        if not moe or not self.is_moe:
            return self.config["intermediate_size"]
        c = self.config
        shared = moe.shared_width(c) if moe.shared_width else 0
        return c[moe.top_k] * c[moe.width] + shared

    @property
    def norms_per_layer(self) -> int:
        L = self.num_hidden_layers
        return sum(1 for r in self.records if r.role == "norm" and r.copies == L and r.path == "")

    @property
    def qk_norm(self) -> bool:
        return any(r.role == "norm" and r.path == "self_attn" and r.name != "q_a_layernorm"
                   and r.name != "kv_a_layernorm" for r in self.records)

    @property
    def attn_softcap(self) -> bool:      # Gemma-2's attention logit soft-cap (eager attention keeps its output)
        return softcap_on(self.family.attn_softcap_key, self.raw_config)

    @property
    def final_softcap(self) -> bool:     # Gemma-2's tanh soft-cap of the logits
        return softcap_on(self.family.final_softcap_key, self.raw_config)

    @property
    def is_moe(self) -> bool:
        return any(r.kind == "experts" for r in self.records)

    # ------------------------------------------------------------------ shapes
    def layer_linears(self) -> tuple[Record, ...]:
        """Linear-like modules inside the decoder layers (not the output layer); a vision-language model's vision
        tower and projector linears follow (peft's all-linear and bitsandbytes take them too)."""
        return tuple(r for r in self.records if r.kind in ("linear", "conv1d") and r.role != "head")

    def text_records(self) -> tuple[Record, ...]:
        """The language model's records (all of them for a text-only model)."""
        return tuple(r for r in self.records if r.role not in TOWER_ROLES)

    def linear_names(self) -> tuple[str, ...]:
        """Module names of the layers' linear modules, in build order, each once."""
        return tuple(dict.fromkeys(r.name for r in self.layer_linears()))

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of each linear module name inside a decoder layer (first occurrence)."""
        out: dict[str, tuple[int, int]] = {}
        for r in self.layer_linears():
            out.setdefault(r.name, (r.d_in, r.d_out))
        return out

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {"name": self.name, "display_name": self.display_name, "source": self.source,
                "model_type": self.model_type, "hidden_size": c["hidden_size"],
                "intermediate_size": c["intermediate_size"], "num_hidden_layers": c["num_hidden_layers"],
                "num_attention_heads": c["num_attention_heads"], "num_key_value_heads": c["num_key_value_heads"],
                "head_dim": c["head_dim"], "vocab_size": c["vocab_size"],
                "tie_word_embeddings": c["tie_word_embeddings"], "approximate": self.approximate,
                "published_params": self.published_params, "moe": self.is_moe,
                "config": {k: v for k, v in c.items() if not k.startswith("_")},
                **({"vision": {k: v for k, v in self.vision.items() if k != "raw"}} if self.vision else {})}


def _hub(repo: str) -> str:
    return f"https://huggingface.co/{repo}/blob/main/config.json"


# --8<-- [start:presets]
# name, display name, source repository, published parameter count (model card; None where it gives none),
# and the config.json values that decide the shapes (everything else takes the config class's default).
# Each was checked against a copy of that config.json (the Hub is out of reach here): the copy's repository,
# path and commit, and its values, are in tests/snippets/data/preset_sources.json, which the tests compare.
_PRESETS = (
    # Llama 2: multi-head attention (kv heads = heads) except 70B, 32k vocabulary
    ("llama-2-7b", "Llama-2 7B", "meta-llama/Llama-2-7b-hf", None,
     dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
          num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)),
    ("llama-2-13b", "Llama-2 13B", "meta-llama/Llama-2-13b-hf", None,
     dict(model_type="llama", hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
          num_attention_heads=40, num_key_value_heads=40, vocab_size=32000)),
    ("llama-2-70b", "Llama-2 70B", "meta-llama/Llama-2-70b-hf", None,
     dict(model_type="llama", hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
          num_attention_heads=64, num_key_value_heads=8, vocab_size=32000)),
    # Llama 3.1 / 3.2: grouped-query attention with 8 kv heads, 128k vocabulary; 3.2 ties embeddings
    ("llama-3.1-8b", "Llama-3.1 8B", "meta-llama/Llama-3.1-8B", None,
     dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
          num_attention_heads=32, num_key_value_heads=8, vocab_size=128256)),
    ("llama-3.1-70b", "Llama-3.1 70B", "meta-llama/Llama-3.1-70B", None,
     dict(model_type="llama", hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
          num_attention_heads=64, num_key_value_heads=8, vocab_size=128256)),
    ("llama-3.1-405b", "Llama-3.1 405B", "meta-llama/Llama-3.1-405B", None,
     dict(model_type="llama", hidden_size=16384, intermediate_size=53248, num_hidden_layers=126,
          num_attention_heads=128, num_key_value_heads=8, vocab_size=128256)),
    ("llama-3.2-1b", "Llama-3.2 1B", "meta-llama/Llama-3.2-1B", None,
     dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
          num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True)),
    ("llama-3.2-3b", "Llama-3.2 3B", "meta-llama/Llama-3.2-3B", None,
     dict(model_type="llama", hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
          num_attention_heads=24, num_key_value_heads=8, head_dim=128, vocab_size=128256,
          tie_word_embeddings=True)),
    # Mistral 7B v0.1: Llama shape with grouped-query attention and a 32k vocabulary
    ("mistral-7b", "Mistral-7B v0.1", "mistralai/Mistral-7B-v0.1", None,
     dict(model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
          num_attention_heads=32, num_key_value_heads=8, vocab_size=32000)),
    # Qwen2.5: bias on q, k, v; 0.5B ties embeddings
    ("qwen2.5-0.5b", "Qwen2.5 0.5B", "Qwen/Qwen2.5-0.5B", None,
     dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
          num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)),
    ("qwen2.5-7b", "Qwen2.5 7B", "Qwen/Qwen2.5-7B", None,
     dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
          num_attention_heads=28, num_key_value_heads=4, vocab_size=152064)),
    ("qwen2.5-14b", "Qwen2.5 14B", "Qwen/Qwen2.5-14B", None,
     dict(model_type="qwen2", hidden_size=5120, intermediate_size=13824, num_hidden_layers=48,
          num_attention_heads=40, num_key_value_heads=8, vocab_size=152064)),
    ("qwen2.5-32b", "Qwen2.5 32B", "Qwen/Qwen2.5-32B", None,
     dict(model_type="qwen2", hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
          num_attention_heads=40, num_key_value_heads=8, vocab_size=152064)),
    ("qwen2.5-72b", "Qwen2.5 72B", "Qwen/Qwen2.5-72B", None,
     dict(model_type="qwen2", hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
          num_attention_heads=64, num_key_value_heads=8, vocab_size=152064)),
    # Gemma 2: head_dim set apart from hidden/heads, four norms per layer, 256k tied vocabulary
    ("gemma-2-2b", "Gemma-2 2B", "google/gemma-2-2b", None,
     dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
          num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=256000)),
    ("gemma-2-9b", "Gemma-2 9B", "google/gemma-2-9b", None,
     dict(model_type="gemma2", hidden_size=3584, intermediate_size=14336, num_hidden_layers=42,
          num_attention_heads=16, num_key_value_heads=8, head_dim=256, vocab_size=256000)),
    ("gemma-2-27b", "Gemma-2 27B", "google/gemma-2-27b", None,
     dict(model_type="gemma2", hidden_size=4608, intermediate_size=36864, num_hidden_layers=46,
          num_attention_heads=32, num_key_value_heads=16, head_dim=128, vocab_size=256000)),
    # Qwen3: per-head q/k RMSNorm, head_dim 128 whatever the width; the small ones tie embeddings
    ("qwen3-0.6b", "Qwen3 0.6B", "Qwen/Qwen3-0.6B", "0.6B",
     dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
          num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True)),
    ("qwen3-4b", "Qwen3 4B", "Qwen/Qwen3-4B", "4.0B",
     dict(model_type="qwen3", hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
          num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True)),
    ("qwen3-8b", "Qwen3 8B", "Qwen/Qwen3-8B", "8.2B",
     dict(model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
          num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936)),
    ("qwen3-14b", "Qwen3 14B", "Qwen/Qwen3-14B", "14.8B",
     dict(model_type="qwen3", hidden_size=5120, intermediate_size=17408, num_hidden_layers=40,
          num_attention_heads=40, num_key_value_heads=8, head_dim=128, vocab_size=151936)),
    ("qwen3-32b", "Qwen3 32B", "Qwen/Qwen3-32B", "32.8B",
     dict(model_type="qwen3", hidden_size=5120, intermediate_size=25600, num_hidden_layers=64,
          num_attention_heads=64, num_key_value_heads=8, head_dim=128, vocab_size=151936)),
    # Qwen3 MoE: 128 fused experts of width 768 per layer, 8 per token
    ("qwen3-30b-a3b", "Qwen3 30B-A3B (MoE)", "Qwen/Qwen3-30B-A3B", "30.5B, 3.3B active",
     dict(model_type="qwen3_moe", hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
          num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4, head_dim=128, num_experts=128,
          num_experts_per_tok=8, decoder_sparse_step=1, mlp_only_layers=[], vocab_size=151936)),
    # Gemma 3: q/k norms and four norms per layer; 1B is text-only, the larger ones are multimodal wrappers
    # whose language model (text_config) is given here alone: the SigLIP vision tower is not counted
    ("gemma-3-1b", "Gemma-3 1B", "google/gemma-3-1b-pt", None,
     dict(model_type="gemma3_text", hidden_size=1152, intermediate_size=6912, num_hidden_layers=26,
          num_attention_heads=4, num_key_value_heads=1, head_dim=256, vocab_size=262144)),
    ("gemma-3-4b-text", "Gemma-3 4B, language model only (no vision tower)", "google/gemma-3-4b-pt", None,
     dict(model_type="gemma3_text", hidden_size=2560, intermediate_size=10240, num_hidden_layers=34,
          num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=262208, sliding_window=1024)),
    ("gemma-3-12b-text", "Gemma-3 12B, language model only (no vision tower)", "google/gemma-3-12b-pt", None,
     dict(model_type="gemma3_text", hidden_size=3840, intermediate_size=15360, num_hidden_layers=48,
          num_attention_heads=16, num_key_value_heads=8, head_dim=256, vocab_size=262208, sliding_window=1024)),
    ("gemma-3-27b-text", "Gemma-3 27B, language model only (no vision tower)", "google/gemma-3-27b-pt", None,
     dict(model_type="gemma3_text", hidden_size=5376, intermediate_size=21504, num_hidden_layers=62,
          num_attention_heads=32, num_key_value_heads=16, head_dim=128, vocab_size=262208, sliding_window=1024)),
    # Phi-3.5 / Phi-4: fused qkv_proj and gate_up_proj (peft names them so). No citable copy of Phi-4's
    # config.json was found to check it against; its total, 14.66B, is within 5% of the card's "14B"
    ("phi-3.5-mini", "Phi-3.5-mini", "microsoft/Phi-3.5-mini-instruct", "3.8B",
     dict(model_type="phi3", hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
          num_attention_heads=32, num_key_value_heads=32, vocab_size=32064)),
    ("phi-4", "Phi-4", "microsoft/phi-4", "14B",
     dict(model_type="phi3", hidden_size=5120, intermediate_size=17920, num_hidden_layers=40,
          num_attention_heads=40, num_key_value_heads=10, vocab_size=100352)),
    # Mistral Small 3 (2501): head_dim 128 with hidden 5120 / 32 heads (160), 131k vocabulary
    ("mistral-small-24b", "Mistral-Small-24B (2501)", "mistralai/Mistral-Small-24B-Base-2501", "24B",
     dict(model_type="mistral", hidden_size=5120, intermediate_size=32768, num_hidden_layers=40,
          num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=131072)),
    # Mixtral: 8 experts of width 14336, 2 per token
    ("mixtral-8x7b", "Mixtral-8x7B (MoE)", "mistralai/Mixtral-8x7B-v0.1", "46.7B, 12.9B active",
     dict(model_type="mixtral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
          num_attention_heads=32, num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2,
          vocab_size=32000)),
    # GPT-OSS: biased attention with sinks, experts with biases stored (E, in, out), 4 per token
    # (the card's active counts leave the 0.58B input embedding table out)
    ("gpt-oss-20b", "GPT-OSS 20B (MoE)", "openai/gpt-oss-20b", "21B, 3.6B active without embeddings",
     dict(model_type="gpt_oss", hidden_size=2880, intermediate_size=2880, num_hidden_layers=24,
          num_attention_heads=64, num_key_value_heads=8, head_dim=64, num_local_experts=32, num_experts_per_tok=4,
          vocab_size=201088, attention_bias=True)),
    ("gpt-oss-120b", "GPT-OSS 120B (MoE)", "openai/gpt-oss-120b", "117B, 5.1B active without embeddings",
     dict(model_type="gpt_oss", hidden_size=2880, intermediate_size=2880, num_hidden_layers=36,
          num_attention_heads=64, num_key_value_heads=8, head_dim=64, num_local_experts=128,
          num_experts_per_tok=4, vocab_size=201088, attention_bias=True)),
    # OLMo 2: norms after attention and MLP, q/k RMSNorm over the full width
    ("olmo-2-7b", "OLMo-2 7B (1124)", "allenai/OLMo-2-1124-7B", None,
     dict(model_type="olmo2", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
          num_attention_heads=32, num_key_value_heads=32, vocab_size=100352)),
    # SmolLM2: a Llama shape with multi-head attention and tied embeddings
    ("smollm2-1.7b", "SmolLM2 1.7B", "HuggingFaceTB/SmolLM2-1.7B", "1.7B",
     dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
          num_attention_heads=32, num_key_value_heads=32, vocab_size=49152, tie_word_embeddings=True)),
)
# --8<-- [end:presets]


def _preset(name, display, repo, published, cfg) -> Architecture:
    return model_from_config(cfg, name=name, display_name=display, source=_hub(repo), published_params=published)


# --8<-- [start:total_params]
def total_params(arch: Architecture) -> int:
    """Every parameter transformers creates for this config (tied embeddings counted once)."""
    return sum(r.params for r in arch.records)
# --8<-- [end:total_params]


def active_params(arch: Architecture) -> int:
    """Parameters one token passes through: all but the routed experts it is not sent to."""
    return sum(r.active_params for r in arch.records)


def quantizable_params(arch: Architecture, every_linear: bool = False) -> int:
    """Weights bitsandbytes stores in 4 bit (see ``nf4.is_4bit``); biases and everything else stay 16-bit."""
    return sum(r.weight * r.copies for r in arch.records if is_4bit(r, arch.family, every_linear))


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
SUPPORTED = tuple(FAMILIES)
# an explicit null: none (no q latent, no local attention), or derived otherwise (Falcon-H1's mamba_d_ssm: expand x hidden)
_NULLABLE = {"q_lora_rank", "sliding_window", "mamba_d_ssm"}
_BOOL_KEYS = {"tie_word_embeddings", "attention_bias", "mlp_bias", "qkv_bias", "use_qkv_bias", "qk_layernorm",
              "use_parallel_residual", "use_qk_norm", "use_bias", "bias", "multi_query", "new_decoder_architecture",
              "parallel_attn", "add_cross_attention"}
_LIMITS = {"hidden_size": 1 << 20, "intermediate_size": 1 << 22, "num_hidden_layers": 10_000,
           "num_attention_heads": 1 << 16, "num_key_value_heads": 1 << 16, "head_dim": 1 << 16, "vocab_size": 1 << 24}


def _read(path_or_dict: Any) -> tuple[dict, str]:
    if isinstance(path_or_dict, dict):
        return path_or_dict, "config.json (dict)"
    if isinstance(path_or_dict, str) or hasattr(path_or_dict, "__fspath__"):
        path = str(path_or_dict)
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
        except OSError as exc:
            raise LoraCalcError("config", f"cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, RecursionError) as exc:
            raise LoraCalcError("config", f"{path} is not valid JSON: {str(exc)[:120]}") from None
        if not isinstance(cfg, dict):
            raise LoraCalcError("config", f"{path} must hold a JSON object")
        return cfg, path
    raise LoraCalcError("config", "give a path to config.json or its parsed dict")


def _nested(cfg: dict, spelled: str) -> Any:
    """``cfg[spelled]``, where a dotted name reads a sub-config (DBRX's ``attn_config.kv_n_heads``)."""
    outer, _, inner = spelled.partition(".")
    if not inner:
        return cfg.get(spelled)
    sub = cfg.get(outer)
    if sub is None:
        return None
    if not isinstance(sub, dict):
        raise LoraCalcError(f"config.{outer}", f"{outer} must be a JSON object (got {json.dumps(sub)[:40]})")
    return _nested(sub, inner)


def resolve_config(cfg: dict) -> dict:
    """The family's keys from ``cfg``, with its config class's defaults and the model's derived values."""
    mt = cfg.get("model_type")
    if mt is not None and not isinstance(mt, str):
        raise LoraCalcError("config.model_type", f"model_type must be a name such as \"llama\" (got "
                            f"{json.dumps(mt)[:40]}); supported: " + ", ".join(SUPPORTED))
    sub = [k for k in ("text_config", "vision_config", "audio_config") if isinstance(cfg.get(k), dict)]
    if sub and mt not in FAMILIES:
        raise LoraCalcError("config.model_type", _wrapper_refusal(cfg, mt, sub))
    if not isinstance(mt, str) or not mt:
        raise LoraCalcError("config.model_type", "config.json has no model_type; supported: " + ", ".join(SUPPORTED))
    if mt not in FAMILIES:
        if isinstance(cfg.get("auto_map"), dict):
            why = ("its modelling code comes with the checkpoint (auto_map, trust_remote_code), which loracalc "
                   "does not run: only types transformers itself ships can be counted, each from a family spec")
        else:
            why = "loracalc has no family spec for it (a spec in loracalc/families.py would make it countable)"
        raise LoraCalcError("config.model_type", f"model_type {mt!r} is not supported: {why}; supported: "
                            + ", ".join(SUPPORTED))
    fam = FAMILIES[mt]
    c: dict[str, Any] = {"model_type": mt}
    for key, default in fam.defaults.items():
        spelled = fam.aliases.get(key, key)
        value = _nested(cfg, spelled)
        if value is None:
            value = cfg.get(key)
        if key in _NULLABLE and (spelled in cfg or key in cfg):
            c[key] = value                       # an explicit null means "none of these" (DeepSeek's q_lora_rank)
            continue
        for other in KEY_SYNONYMS.get(mt, {}).get(key, ()):
            if value is None:
                value = cfg.get(other)
        c[key] = default if value is None else value
    for key in list(c):
        kind = KEY_KINDS.get(key)
        if key in _BOOL_KEYS or kind == "bool":
            if not isinstance(c[key], bool):
                raise LoraCalcError(f"config.{key}", f"{key} must be true or false (got {c[key]!r})")
        elif kind == "names":                   # a list of layer kinds (layer_types, layers_block_type)
            if c[key] is not None and (not isinstance(c[key], list) or not all(isinstance(x, str) for x in c[key])):
                raise LoraCalcError(f"config.{key}", f"{key} must be a list of names, one per layer")
        elif kind == "str":                     # a pattern string (Nemotron-H's hybrid_override_pattern), or null
            if c[key] is not None and not isinstance(c[key], str):
                raise LoraCalcError(f"config.{key}", f"{key} must be a string (got {c[key]!r})")
        elif kind == "mapping":                 # overrides by layer (Gemma 4's per_layer_config), or null; the
            if c[key] is not None and not isinstance(c[key], dict):          # family's derive reads the values
                raise LoraCalcError(f"config.{key}", f"{key} must be a mapping from layer numbers to settings")
        elif kind == "auto":                    # a whole number, or "auto": the family derives it (Mamba's dt_rank)
            if c[key] != "auto":
                c[key] = as_int(c[key], f"config.{key}", 1, _LIMITS.get(key, 1 << 24), key)
        elif kind == "float":                   # a real number (LFM2's block_ffn_dim_multiplier), or null
            if c[key] is not None and (isinstance(c[key], bool) or not isinstance(c[key], (int, float))
                                       or not 0 < c[key] < 1e6):
                raise LoraCalcError(f"config.{key}", f"{key} must be a positive number (got {c[key]!r})")
        elif isinstance(kind, int) and c[key] is not None:     # an integer that may be 0 or negative (-1: "last")
            c[key] = as_int(c[key], f"config.{key}", kind, _LIMITS.get(key, 1 << 24), key)
        elif key == "mlp_only_layers" or kind == "ints":
            if c[key] is not None and (not isinstance(c[key], list) or not all(
                    isinstance(x, int) and not isinstance(x, bool) for x in c[key])):
                raise LoraCalcError(f"config.{key}", f"{key} must be a list of layer numbers")
        elif key != "model_type" and c[key] is not None:
            lo = 0 if key in ("first_k_dense_replace", "n_shared_experts", "q_lora_rank", "num_experts") else 1
            c[key] = as_int(c[key], f"config.{key}", lo, _LIMITS.get(key, 1 << 24), key)
    # the width and depth must be in the file: without them it describes no model in particular. Every other key
    # may be left out, as Google's Gemma-3 text_config leaves out its heads and vocabulary: transformers then
    # takes the config class's default, and so does loracalc
    for key in ("hidden_size", "num_hidden_layers"):
        spelled = fam.aliases.get(key, key)
        given = [_nested(cfg, k) for k in (spelled, key, *KEY_SYNONYMS.get(mt, {}).get(key, ()))]
        if key in fam.defaults and fam.defaults[key] is not None and all(v is None for v in given):
            raise LoraCalcError(f"config.{spelled}", f"config.json lacks {spelled} (needed for {mt} models)")
    h, heads = c["hidden_size"], c["num_attention_heads"]
    c["_head_dim_given"] = c.get("head_dim") is not None     # a family may refuse a config without it
    if fam.head_dim == "hidden" or c.get("head_dim") is None:
        if h % heads:
            raise LoraCalcError("config.head_dim", f"hidden_size ({h}) must be a multiple of num_attention_heads "
                                                   f"({heads}) when {mt} derives head_dim from them")
        c["head_dim"] = h // heads
    if c.get("num_key_value_heads") is None:
        c["num_key_value_heads"] = heads
    if fam.act_key:
        act = cfg.get(fam.act_key)
        c["_act"] = act if isinstance(act, str) else fam.act_default
    if fam.derive:
        fam.derive(c)
    kv = c["num_key_value_heads"]
    if kv > heads or heads % kv:
        raise LoraCalcError("config.num_key_value_heads",
                            f"num_key_value_heads ({kv}) must divide num_attention_heads ({heads})")
    if c.get("intermediate_size") is None:
        raise LoraCalcError("config.intermediate_size", f"config.json lacks intermediate_size (needed for {mt})")
    if fam.moe:
        k = c[fam.moe.top_k]
        if k is None:
            raise LoraCalcError(f"config.{fam.moe.top_k}", f"config.json lacks {fam.moe.top_k}, the experts each "
                                                           f"token passes through (needed for {mt} models)")
        if k > c[fam.moe.experts]:
            raise LoraCalcError(f"config.{fam.moe.top_k}", f"{fam.moe.top_k} ({k}) cannot exceed the number of "
                                                           f"experts ({c[fam.moe.experts]})")
    if fam.refuse:
        why = fam.refuse(c)
        if why:
            raise LoraCalcError("config", why)
    del c["_head_dim_given"]          # a fact about the file, not the model: the config read back stays the same
    return c


def _wrapper_refusal(cfg: dict, mt: Any, sub: list) -> str:
    """One line for a multimodal wrapper loracalc has no Wrapper spec for: what would make it countable."""
    # counting its text_config alone would leave out the vision tower and projector. The advice to pass the
    # text_config is given only where loracalc counts that text_config's type
    inner = cfg["text_config"].get("model_type") if "text_config" in sub else None
    if isinstance(inner, str) and inner in FAMILIES:
        advice = (f": to count the language model alone, pass its text_config (model_type {inner!r}) as a "
                  "config of its own")
    elif isinstance(inner, str) and inner:
        advice = (f"; its language model (text_config, model_type {inner!r}) is not a type loracalc counts "
                  "either: a family spec for it would make the language model countable")
    else:
        advice = "; its language model's keys are not in a text_config loracalc could count on its own"
    vt = cfg["vision_config"].get("model_type") if "vision_config" in sub else None
    tower = (f"its vision tower ({vt}) has a Tower spec" if vt in TOWERS else
             "a Tower spec for its vision tower" + (f" ({vt})" if isinstance(vt, str) and vt else ""))
    return (f"model_type {mt!r} is a multimodal wrapper ({', '.join(sub)}) loracalc does not count whole: "
            f"{tower} and a Wrapper spec in loracalc/vision.py would make it countable (covered: "
            f"{', '.join(WRAPPERS)}){advice}")


def _wrapper_model(cfg: dict) -> tuple[dict, dict, tuple[Record, ...], dict]:
    """(resolved text config, its raw dict, vision and projector records, the ``vision`` view) of a wrapper."""
    w, own, text, v = resolve_wrapper(cfg)
    text = dict(text)
    absent = text.pop("_absent", False)
    tt = text["model_type"]
    if tt not in FAMILIES:
        raise LoraCalcError("config.text_config", (
            f"{w.model_type}'s language model (text_config model_type {tt!r}) is not a type loracalc counts: a "
            "family spec for it in loracalc/families.py would make the whole model countable"))
    # transformers builds the sub-config class with its defaults for what the text_config leaves out (LLaVA-1.5's
    # gives no width or depth: LlamaConfig's 4096 and 32 stand), and the wrapper's init_kwargs when it is absent
    fam = FAMILIES[tt]
    for key in (fam.defaults if absent else ("hidden_size", "num_hidden_layers")):
        if text.get(fam.aliases.get(key, key)) is None and text.get(key) is None and fam.defaults.get(key) is not None:
            text[key] = fam.defaults[key]
    try:
        c = resolve_config(text)
    except LoraCalcError as exc:
        raise LoraCalcError(exc.field.replace("config.", "config.text_config.", 1), exc.message) from None
    # the ForConditionalGeneration class ties lm_head to the input embeddings by the wrapper's own
    # tie_word_embeddings (PreTrainedModel.get_expanded_tied_weights_keys reads the top-level config)
    c["tie_word_embeddings"] = own["tie_word_embeddings"]
    recs = vision_records(w, own, v, c)
    view = {"wrapper": w.model_type, "wrapper_config": own, "vision_config": v, "language_path": w.language_path,
            "vision_path": w.vision_path, "projector_path": w.projector_path, "raw": dict(cfg)}
    return c, text, recs, view


def model_from_config(path_or_dict: Any, name: str | None = None, display_name: str | None = None,
                      source: str | None = None, published_params: str | None = None) -> Architecture:
    """An architecture from a Hugging Face ``config.json`` (a path or the parsed dict); read offline.

    A vision-language wrapper that ``loracalc.vision`` describes (gemma3, llava, mistral3, ...) is counted whole:
    its language model's config is ``config``, its vision tower and projector are in ``vision`` and ``records``."""
    cfg, where = _read(path_or_dict)
    if isinstance(cfg.get("model_type"), str) and cfg["model_type"] in WRAPPERS:
        c, raw, extra, vision = _wrapper_model(cfg)
    else:
        c, raw, extra, vision = resolve_config(cfg), dict(cfg), (), None
    label = name or cfg.get("_name_or_path") or f"{cfg['model_type']} from config.json"
    arch = Architecture(name=str(label), display_name=str(display_name or label), source=source or where,
                        config=c, published_params=published_params, raw_config=raw, vision=vision,
                        extra_records=extra)
    _check_size(arch, "config")
    return arch


def _check_size(arch: Architecture, field: str) -> None:
    n = total_params(arch)
    if n > MAX_PARAMS:
        raise LoraCalcError(field, f"the model would have {n:,} parameters; loracalc handles up to "
                                   f"{MAX_PARAMS:,} (100T)")


PRESETS: dict[str, Architecture] = {p[0]: _preset(*p) for p in _PRESETS}


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
        cfg = dict(model_type="llama", hidden_size=h, intermediate_size=max(512, int(round(3.5 * h / 256)) * 256),
                   num_attention_heads=heads, num_key_value_heads=min(8, heads), head_dim=128, vocab_size=128256,
                   # Llama-3.2 ties embeddings at 1B and 3B; the larger models do not
                   tie_word_embeddings=h <= 3072)
        one = total_params(model_from_config({**cfg, "num_hidden_layers": 1}))
        per_layer = total_params(model_from_config({**cfg, "num_hidden_layers": 2})) - one
        fixed = one - per_layer
        layers = max(1, round((target - fixed) / per_layer))
        # rounding up at the top of the range would build a model over the size limit the input was checked
        # against (100T gave 100.013T and a "config" refusal): stay at or under it
        layers = max(1, min(layers, (MAX_PARAMS - fixed) // per_layer))
        err = abs(fixed + layers * per_layer - target)
        aspect = abs(math.log(h / (128 * layers)))  # prefer Llama-like depth for width
        score = (err / target > 0.02, aspect if err / target <= 0.02 else err)
        if best is None or score < best[0]:
            best = (score, {**cfg, "num_hidden_layers": layers})
    arch = model_from_config(best[1])
    label = f"~{_short(target)} parameters (approximate, Llama-3 shape)"
    return replace(arch, name=f"approx-{target}", display_name=label,
                   source="approximate: Llama-3.1 shape rules scaled to the given parameter count",
                   approximate=True)


def _short(n: int) -> str:
    for unit, div in (("T", 10**12), ("B", 10**9), ("M", 10**6)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:,}"
