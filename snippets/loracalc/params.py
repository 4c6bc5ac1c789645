"""Exact parameter counts: the whole model, and the LoRA adapter for a rank and a set of target modules.

These equal what transformers builds from the same config.json and what peft's ``get_peft_model``
reports as trainable (checked for every preset in ``tests/snippets/test_params.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import LoraCalcError, as_choice, as_int
from .families import TOWER_LABELS, TOWER_ROLES, Record
from .models import (LINEAR_MODULES, Architecture, active_params, get_model,  # noqa: F401
                     quantizable_params, total_params)

MAX_RANK = 65536

_SHORT = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
          "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
ALL_LINEAR = ("all-linear", "all")
# which parts of a vision-language model the targets reach: peft matches a module name anywhere in the model
# (the vision tower's q_proj too); "language" is what practitioners get with a regex over the language model,
# e.g. target_modules=r".*language_model.*\.(q_proj|v_proj)"
ADAPT = {"all": "the whole model, as peft matches names (vision tower and projector included)",
         "language": "the language model only (a target_modules regex over language_model)"}
_GROUPS = {"attention": ("attention",), "mlp": ("mlp", "shared_expert")}


def _words(targets: Any) -> list[str]:
    if isinstance(targets, str):
        parts = [p for p in targets.strip().lower().replace(",", " ").split() if p]
    elif isinstance(targets, (list, tuple, set, frozenset)):
        parts = []
        for p in targets:
            if not isinstance(p, str):
                raise LoraCalcError("targets", f"target names must be strings (got {p!r})")
            if p.strip():
                parts.append(p.strip().lower())
    else:
        raise LoraCalcError("targets", "targets must be 'all-linear' or module names such as 'q,v'")
    if not parts:
        raise LoraCalcError("targets", "no target modules given: use 'all-linear' or names such as 'q,v'")
    return parts


def _known_names(arch: Architecture) -> list[str]:
    """Names a reader may target in this family: peft's own matching by module name."""
    names = [r.name for r in arch.records if r.kind in ("linear", "conv1d", "embedding")]
    if "lm_head" not in names:
        names.append("lm_head")
    moe = arch.family.moe
    if moe and moe.peft_names and arch.is_moe:
        names += [old for old, _ in moe.peft_names]
    return list(dict.fromkeys(names))


def parse_targets(targets: Any, model: Any = None) -> tuple[str, ...]:
    """``"q,v"`` / ``"q_proj v_proj"`` / ``"all-linear"`` / a list -> module names, as peft would be given them.

    ``all-linear`` stays one word (peft resolves it against the model); short names (q, k, v, o, gate, up,
    down) become the ``*_proj`` name when the family has it. Names the family lacks are refused.
    """
    arch = get_model(model) if model is not None else get_model("llama-3.1-8b")
    parts = _words(targets)
    if len(parts) == 1 and parts[0] in ALL_LINEAR:
        return ("all-linear",)
    known = _known_names(arch)
    by_lower = {n.lower(): n for n in known}   # targets are read lower-cased; DBRX's Wqkv is matched without case
    chosen: list[str] = []
    for p in parts:
        if p in ALL_LINEAR:
            raise LoraCalcError("targets", "all-linear cannot be combined with other names")
        if p in _GROUPS:
            chosen += [r.name for r in arch.layer_linears() if r.role in _GROUPS[p]]
            continue
        name = p if p in known else by_lower.get(p, _SHORT.get(p, p))
        if name not in known:
            raise LoraCalcError("targets", f"{arch.model_type} has no module {p!r}; its names: "
                                           + ", ".join(known) + ", or all-linear, attention, mlp")
        chosen.append(name)
    order = {n: i for i, n in enumerate(known)}
    return tuple(sorted(dict.fromkeys(chosen), key=lambda n: order[n]))


def _lora_targets(arch: Architecture, targets: tuple[str, ...],
                  adapt: str = "all") -> tuple[list[tuple[Record, int]], list[str]]:
    """(record, rank multiplier) for every tensor peft 0.21 adapts, and notes where its choice surprises.

    Reproduces ``tuners_utils._maybe_include_all_linear_layers`` (every nn.Linear and Conv1D except the output
    embedding) and, for families whose experts transformers 5 fused into 3-D parameters, peft's v4->v5 mapping
    (``utils/transformers_weight_conversion.py``): the old expert names become parameter targets, the two
    halves of gate_up_proj together at twice the rank, and modules sharing those names are no longer targeted.
    """
    moe = arch.family.moe
    mapping = dict(moe.peft_names) if (moe and moe.peft_names) else {}
    lin = tuple(r for r in arch.layer_linears() if adapt != "language" or r.role not in TOWER_ROLES)
    notes: list[str] = []
    if targets == ("all-linear",):
        if not mapping:
            if moe and arch.is_moe:
                left = "the fused experts are" if moe.router_kind == "linear" else "the router and the fused experts are"
                notes.append(f"peft 0.21's all-linear adapts only nn.Linear modules here: {left} left out")
            return [(r, 1) for r in lin], notes
        names = set(r.name for r in lin) | set(mapping)
    else:
        names = set(targets)
        digits = sorted(n for n in names if n.isdigit())
        if digits:
            # peft matches a name as a suffix of module paths: "0" is also every ModuleList's first entry
            # (model.layers.0, a decoder layer), which it refuses to adapt (Qwen2.5-VL's merger holds mlp.0, mlp.2)
            raise LoraCalcError("targets", f"target {digits[0]!r} is an index, which peft matches to whole layers "
                                           "(layers.0) and refuses: name modules by their own names, or all-linear")
    out: list[tuple[Record, int]] = []
    params = {mapping[n] for n in names if n in mapping}
    if mapping:
        halves = [n for n, v in mapping.items() if v == "gate_up"]
        got = [n for n in halves if n in names]
        if got and len(got) < len(halves):
            raise LoraCalcError("targets", f"peft cannot target {', '.join(got)} without "
                                           f"{', '.join(n for n in halves if n not in got)}: they are fused into "
                                           "gate_up_proj in transformers 5")
    for r in arch.records:
        if adapt == "language" and r.role in TOWER_ROLES:
            continue
        if r.kind == "router" and "router" in params:
            out.append((r, 1))
        elif r.kind == "experts" and r.name == "gate_up_proj" and "gate_up" in params:
            out.append((r, 2))
        elif r.kind == "experts" and r.name == "down_proj" and "down" in params:
            out.append((r, 1))
        elif r.name in names and r.kind == "wrapper":
            # a module that holds its nn.Linear as a child (Gemma 4's clippable linears): peft's name match finds
            # the wrapper, a type it has no LoRA layer for, and get_peft_model raises
            inner = next((x.name for x in arch.records if x.kind == "linear" and x.path.endswith("." + r.name)), "")
            raise LoraCalcError("targets", (
                f"peft refuses target {r.name!r} on {arch.vision['wrapper'] if arch.vision else arch.model_type}: "
                f"in the {r.role} tower {r.name} is a module wrapping an nn.Linear ({inner!r}), which peft cannot "
                f"adapt; use adapt=\"language\" (the language model only), all-linear, or target {inner!r}"))
        elif r.name in names and r.name not in mapping and r.kind not in ("experts", "param"):
            # fused expert weights and bare parameters are not modules: peft's name matching skips them
            # a vision tower's Conv2d / Conv3d named by the user: peft's LoRA conv layers, A a conv of the
            # module's kernel (rank x d_in, d_in = channels x kernel), B a 1x1 conv (d_out x rank)
            if r.kind in ("linear", "conv1d", "embedding", "conv2d", "conv3d"):
                out.append((r, 1))
            else:
                raise LoraCalcError("targets", f"{r.name} is a {r.kind} module in {arch.model_type}; peft adapts only "
                                               "Linear, Conv1D, Conv2d, Conv3d and Embedding modules")
    if "lm_head" in names and not any(r.name == "lm_head" and r.weight for r, _ in out):
        h, V = arch.hidden_size, arch.vocab_size
        out = [x for x in out if x[0].name != "lm_head"]
        out.append((Record("lm_head", "head", "linear", h, V, V * h), 1))
    if mapping and arch.is_moe:
        skipped = sorted({r.name for r in lin if r.name in mapping and (targets == ("all-linear",) or r.name in names)})
        adapted = sorted({("router " + r.name) if r.kind == "router" else f"experts.{r.name}" for r, _ in out
                          if r.kind in ("router", "experts")})
        if adapted:
            notes.append(f"peft 0.21 maps {', '.join(sorted(set(mapping) & names))} onto the fused experts and "
                         f"router: it adapts {', '.join(adapted)}"
                         + (" (gate_up_proj at twice the rank)" if "gate_up" in params else "")
                         + (f", and no longer the Linear modules named {', '.join(skipped)} (shared experts, dense "
                            "layers)" if skipped else ""))
    return out, notes


def as_adapt(adapt: Any) -> str:
    """``None`` -> "all" (peft's own matching by name); else one of ``ADAPT``."""
    if adapt is None:
        return "all"
    return as_choice(adapt, "adapt", ADAPT, "adapted part")


def lora_targets(arch: Architecture, targets: tuple[str, ...],
                 adapt: str = "all") -> tuple[list[tuple[Record, int]], list[str]]:
    r"""(record, rank multiplier) for every tensor peft adapts; ``adapt="language"`` keeps a vision-language
    model's language model (and a named lm_head) only, as a regex such as ``r".*language_model.*\.(q_proj)"``
    does; "all" is peft's own name matching, which reaches the vision tower and projector too."""
    out, notes = _lora_targets(arch, targets, adapt)
    if arch.vision and adapt != "language" and any(x[0].role in TOWER_ROLES for x in out):
        n = sum(1 for x in out if x[0].role in TOWER_ROLES)
        notes.append(f"peft matches these names in the vision tower and projector too ({n} module kinds there); "
                     "adapt=\"language\" keeps the language model only, as a regex over "
                     f"{arch.vision['language_path']} does")
    refused = sorted({r.name for r, _ in out if r.name in arch.family.peft_refuses})
    if refused:
        keep = [n for n in dict.fromkeys(r.name for r in arch.layer_linears()) if n not in arch.family.peft_refuses]
        raise LoraCalcError("targets", f"peft 0.21 refuses LoRA on {', '.join(refused)} of Mamba-based models "
                                       f"({arch.model_type}), all-linear included: name the targets instead, e.g. "
                                       + ",".join(keep))
    return out, notes


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
    """One adapted module (or fused parameter) and how many copies of it the model holds."""

    name: str
    d_in: int
    d_out: int
    frozen_params: int       # weight (+ bias) of one copy of the base module
    lora_params: int         # LoRA parameters of one copy: rank * (d_in + d_out) (x experts when fused)
    copies: int = 1          # layers that hold it
    kind: str = "linear"     # linear | conv1d | embedding | router | experts
    rank: int = 0            # the rank peft gives it (twice the rank for a fused gate_up_proj)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "d_in": self.d_in, "d_out": self.d_out, "frozen_params": self.frozen_params,
                "lora_params": self.lora_params, "copies": self.copies, "kind": self.kind, "rank": self.rank}


@dataclass(frozen=True)
class ParamCount:
    model: str
    rank: int
    targets: tuple[str, ...]
    total_params: int
    lora_params: int
    lora_params_per_layer: int   # one layer holding one copy of every adapted module
    num_layers: int
    per_module: tuple[ModuleCount, ...] = field(default_factory=tuple)
    approximate: bool = False
    active_params: int = 0       # parameters one token passes through (differs from total for MoE)
    notes: tuple[str, ...] = ()
    requested: tuple[str, ...] = ()   # the targets as given to peft ("all-linear" or module names)
    adapt: str = "all"                # the parts of a vision-language model adapted (see ``ADAPT``)

    @property
    def trainable_percent(self) -> float:
        """LoRA parameters as a percentage of all parameters after adding the adapter (peft's figure)."""
        return 100.0 * self.lora_params / (self.total_params + self.lora_params)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "rank": self.rank, "targets": list(self.targets),
                "total_params": self.total_params, "active_params": self.active_params,
                "lora_params": self.lora_params,
                "lora_params_per_layer": self.lora_params_per_layer, "num_layers": self.num_layers,
                "trainable_percent": self.trainable_percent, "approximate": self.approximate,
                "per_module": [m.to_dict() for m in self.per_module], "notes": list(self.notes),
                "requested_targets": list(self.requested), "adapt": self.adapt}


def _label(rec: Record) -> str:
    if rec.kind == "experts":
        return f"experts.{rec.name}"
    if rec.role in TOWER_ROLES:      # a vision tower's q_proj is not the language model's
        return f"{rec.role}.{rec.name}"
    return rec.name


def count_params(model: Any, rank: Any = 8, targets: Any = "q,v", adapt: Any = None) -> ParamCount:
    """Total and LoRA parameter counts for ``model`` (a preset name or an Architecture), as peft counts them.

    ``adapt`` (vision-language models): "all" (default) is peft's matching by name over the whole model, vision
    tower included; "language" adapts the language model only. Vision and projector modules are listed in
    ``per_module`` as ``vision.<name>`` / ``projector.<name>``."""
    arch = get_model(model)
    r = as_int(rank, "rank", 1, MAX_RANK, "rank")
    part = as_adapt(adapt)
    names = parse_targets(targets, arch)
    chosen, notes = lora_targets(arch, names, part)
    if not chosen and part == "language":
        raise LoraCalcError("targets", f"no module named {', '.join(names)} in {arch.model_type}'s language model: "
                                       "peft would refuse the config; name modules of the language model")
    mods = []
    for rec, mult in chosen:
        per_copy = (rec.experts or 1) * lora_params(rec.d_in, rec.d_out, r * mult)
        mods.append(ModuleCount(_label(rec), rec.d_in, rec.d_out, rec.weight + rec.bias, per_copy, rec.copies,
                                rec.kind, r * mult))
    total_lora = sum(m.lora_params * m.copies for m in mods)
    per_layer = sum(m.lora_params for m in mods if m.kind != "embedding" and m.name != "lm_head"
                    and not m.name.startswith(TOWER_LABELS))
    adapted = tuple(dict.fromkeys(m.name for m in mods))
    return ParamCount(model=arch.name, rank=r, targets=adapted, requested=names, total_params=total_params(arch),
                      lora_params=total_lora, lora_params_per_layer=per_layer,
                      num_layers=arch.num_hidden_layers, per_module=tuple(mods), approximate=arch.approximate,
                      active_params=active_params(arch), notes=tuple(notes), adapt=part)
