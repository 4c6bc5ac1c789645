"""Exact parameter counts: the whole model, and the LoRA adapter for a rank and a set of target modules.

These equal what transformers builds from the same config.json and what peft's ``get_peft_model``
reports as trainable (checked for every preset in ``tests/snippets/test_params.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import LoraCalcError, as_choice, as_int
from .models import LINEAR_MODULES, Architecture, get_model, quantizable_params, total_params  # noqa: F401

MAX_RANK = 65536

_SHORT = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
          "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
_GROUPS = {"all-linear": LINEAR_MODULES, "all": LINEAR_MODULES,
           "attention": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}


def parse_targets(targets: Any) -> tuple[str, ...]:
    """``"q,v"`` / ``"q_proj v_proj"`` / ``"all-linear"`` / a list -> module names in layer order."""
    if isinstance(targets, str):
        text = targets.strip().lower()
        if text in _GROUPS:
            return tuple(_GROUPS[text])
        parts = [p for p in text.replace(",", " ").split() if p]
    elif isinstance(targets, (list, tuple, set, frozenset)):
        parts = []
        for p in targets:
            if not isinstance(p, str):
                raise LoraCalcError("targets", f"target names must be strings (got {p!r})")
            parts.append(p.strip().lower())
    else:
        raise LoraCalcError("targets", "targets must be 'all-linear' or module names such as 'q,v'")
    if not parts:
        raise LoraCalcError("targets", "no target modules given: use 'all-linear' or names such as 'q,v'")
    chosen = set()
    allowed = ", ".join(list(_SHORT) + list(LINEAR_MODULES) + list(_GROUPS))
    for p in parts:
        if p in _GROUPS:
            chosen.update(_GROUPS[p])
            continue
        name = _SHORT.get(p, p)
        if name not in LINEAR_MODULES:
            raise LoraCalcError("targets", f"unknown target module {p!r}; allowed: {allowed}")
        chosen.add(name)
    return tuple(m for m in LINEAR_MODULES if m in chosen)


# --8<-- [start:lora_params]
def lora_params(d_in: int, d_out: int, rank: int) -> int:
    """LoRA on a linear layer d_in -> d_out: A is rank x d_in, B is d_out x rank."""
    return rank * (d_in + d_out)
# --8<-- [end:lora_params]


def square_full_params(d: Any) -> int:
    """Entries of one square d x d weight matrix."""
    d = as_int(d, "d", 1, 1 << 20)
    return d * d


def square_lora_params(d: Any, r: Any) -> int:
    """LoRA parameters for a square d x d matrix at rank r: 2 d r."""
    d = as_int(d, "d", 1, 1 << 20)
    r = as_int(r, "rank", 1, d, "rank")
    return lora_params(d, d, r)


DTYPE_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "int8": 1}


def adapter_file_bytes(lora_param_count: Any, dtype: str = "bf16") -> int:
    """Size of the adapter's tensors saved at ``dtype`` (safetensors header and config not counted)."""
    n = as_int(lora_param_count, "lora_params", 0, 10**15)
    return n * DTYPE_BYTES[as_choice(dtype, "dtype", DTYPE_BYTES)]


@dataclass(frozen=True)
class ModuleCount:
    """One targeted linear layer of a decoder layer."""

    name: str
    d_in: int
    d_out: int
    frozen_params: int       # weight (+ bias) of the base layer
    lora_params: int         # rank * (d_in + d_out)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "d_in": self.d_in, "d_out": self.d_out,
                "frozen_params": self.frozen_params, "lora_params": self.lora_params}


@dataclass(frozen=True)
class ParamCount:
    model: str
    rank: int
    targets: tuple[str, ...]
    total_params: int
    lora_params: int
    lora_params_per_layer: int
    num_layers: int
    per_module: tuple[ModuleCount, ...] = field(default_factory=tuple)
    approximate: bool = False

    @property
    def trainable_percent(self) -> float:
        """LoRA parameters as a percentage of all parameters after adding the adapter (peft's figure)."""
        return 100.0 * self.lora_params / (self.total_params + self.lora_params)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "rank": self.rank, "targets": list(self.targets),
                "total_params": self.total_params, "lora_params": self.lora_params,
                "lora_params_per_layer": self.lora_params_per_layer, "num_layers": self.num_layers,
                "trainable_percent": self.trainable_percent, "approximate": self.approximate,
                "per_module": [m.to_dict() for m in self.per_module]}


def count_params(model: Any, rank: Any = 8, targets: Any = "q,v") -> ParamCount:
    """Total and LoRA parameter counts for ``model`` (a preset name or an Architecture)."""
    arch = get_model(model)
    r = as_int(rank, "rank", 1, MAX_RANK, "rank")
    names = parse_targets(targets)
    shapes = arch.linear_shapes()
    bias = arch.linear_bias()
    mods = []
    for name in names:
        d_in, d_out = shapes[name]
        if r > min(d_in, d_out):
            raise LoraCalcError("rank", f"rank must be from 1 to {min(d_in, d_out):,} for {name} "
                                        f"({d_in:,} -> {d_out:,}) of {arch.display_name} (got {r:,})")
        mods.append(ModuleCount(name, d_in, d_out, d_in * d_out + (d_out if bias[name] else 0),
                                lora_params(d_in, d_out, r)))
    per_layer = sum(m.lora_params for m in mods)
    return ParamCount(model=arch.name, rank=r, targets=names, total_params=total_params(arch),
                      lora_params=per_layer * arch.num_hidden_layers, lora_params_per_layer=per_layer,
                      num_layers=arch.num_hidden_layers, per_module=tuple(mods), approximate=arch.approximate)

