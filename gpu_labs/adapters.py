"""The model and its LoRA adapters, as the labs build them: which layers `--targets` names, the checks that
need only the meta-device model (rank, dropout, variants), the 4-bit load and peft's wrapping.

`AdapterPlan` holds every setting these builders read, so a lab passes its own flags once
(`AdapterPlan.from_args(args)`) and the TRL comparison builds the same model from the same plan.
Standard library only at import time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gpu_labs import labmodels
from gpu_labs.core import LabError

# Short names a reader can pass to --targets, mapped to the Llama/Mistral/Qwen module names.
TARGET_ALIASES = {
    "q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
    "gate": "gate_proj", "up": "up_proj", "down": "down_proj",
}
# peft's names for --init; "default" is peft's own choice (Kaiming-uniform A, zero B).
INITS = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora", "loftq": "loftq"}
DEFAULT_DROPOUT = 0.05


@dataclasses.dataclass
class AdapterPlan:
    """What to load and how to adapt it (the flags of the same names)."""

    model: str                          # Hub id or local folder
    method: str = "qlora"               # qlora (4-bit base), lora (16-bit base) or full (no adapter)
    rank: int = 16
    alpha: float = 32
    dropout: float | None = None        # None: DEFAULT_DROPOUT, or 0 where peft allows no dropout
    targets: str = "all-linear"
    use_dora: bool = False
    use_rslora: bool = False
    init: str = "default"
    gradient_checkpointing: bool = True
    quant_storage: str = "uint8"        # container dtype of the packed 4-bit weights; bf16 for FSDP
    seed: int = 42                      # the adapter's random init depends on it alone

    @classmethod
    def from_args(cls, args) -> AdapterPlan:
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


@dataclasses.dataclass
class Targets:
    """What the plan adapts in this model, resolved on the meta device before any weight loads."""

    modules: str | list[str]            # "all-linear" or the model's leaf module names, for LoraConfig
    names: list[str]                    # the adapted module names spelled out
    experts: list[str]                  # fused MoE expert weights (LoraConfig.target_parameters)
    dropout: float | None               # the dropout to use (None for --method full)
    note: str = ""                      # why the dropout differs from what was asked, if it does


def resolve_targets(spec: str, model):
    """(target_modules, target_names, target_parameters) for peft, in the model's own names.

    'all-linear' stays a string: peft expands it to every linear layer but the output (and, on a MoE model,
    to the fused expert weights too). Other specs are comma lists: the model's leaf module names (GPT-2's
    c_attn, Phi-3's qkv_proj, ...), names of fused expert weights (qwen3_moe's gate_up_proj), or the short
    forms q,k,v,o,gate,up,down where the model has Llama-style names. Unknown names fail with the real list."""
    layers = labmodels.target_names(model)
    experts = labmodels.expert_parameters(model)
    if spec.strip() == "all-linear":
        return "all-linear", sorted(layers), sorted(experts)
    modules, parameters, unknown = [], [], []
    for raw in (s.strip() for s in spec.split(",") if s.strip()):
        name = TARGET_ALIASES.get(raw, raw) if raw not in layers and raw not in experts else raw
        if name in layers:
            modules.append(name)
        elif name in experts:
            parameters.append(name)
        else:
            unknown.append(raw)
    if unknown or not (modules or parameters):
        valid = ", ".join(sorted(layers) + [f"{n} (fused experts)" for n in sorted(experts)])
        missing = ", ".join(unknown) if unknown else repr(spec)
        raise LabError(f"--targets: this {model.config.model_type} model has no module named {missing}. "
                       f"Its adaptable layers are: {valid}. Use all-linear or names from that list.")
    return modules, modules, parameters


def check_rank(model, names: list[str], rank: int) -> None:
    """Fail if the rank exceeds the smallest targeted matrix (B @ A cannot have a rank above min(in, out))."""
    shapes = labmodels.target_names(model)
    shapes.update({n: s[-2:][::-1] for n, s in labmodels.expert_parameters(model).items()})
    wanted = [n for n in names if n in shapes]
    if not wanted:
        return
    smallest = min(wanted, key=lambda t: min(shapes[t]))
    d_in, d_out = shapes[smallest]
    width = min(d_in, d_out)
    if rank > width:
        raise LabError(f"--rank {rank} is larger than {smallest} allows: that layer maps {d_in} -> {d_out} features, "
                       f"so an update B @ A has rank at most {width}. Use --rank {min(width, 64)} or lower.")


def resolve_dropout(dropout: float | None, expert_targets: list[str]) -> tuple[float, str]:
    """(dropout, note). peft adapts fused MoE expert weights with lora.ParamWrapper, which raises
    'does not work with lora_dropout != 0': dropout on the input of a 3-D parameter is not defined there.
    The default becomes 0 on such runs (said in the log); an explicit non-zero value stops with the fix."""
    if not expert_targets:
        return (DEFAULT_DROPOUT if dropout is None else dropout), ""
    if dropout not in (None, 0):
        raise LabError(f"--dropout {dropout}: peft adapts this model's fused MoE experts ({', '.join(expert_targets)}) "
                       "with lora.ParamWrapper, which supports no dropout. Use --dropout 0, or leave the experts out "
                       "with --targets naming attention layers only (e.g. q_proj,k_proj,v_proj,o_proj).")
    return 0.0, f"dropout 0: peft's wrapper for the fused expert weights ({', '.join(expert_targets)}) supports no dropout"


def check_expert_variants(plan: AdapterPlan, expert_targets: list[str]) -> None:
    """peft's lora.ParamWrapper (fused MoE expert weights) rejects DoRA, and PiSSA/OLoRA need a 2-D
    `.weight` to decompose, which an experts module does not have: say so before loading."""
    if not expert_targets:
        return
    problem = ("--use-dora" if plan.use_dora else
               f"--init {plan.init}" if plan.init in ("pissa", "olora", "loftq") else None)
    if problem:
        raise LabError(f"{problem}: peft cannot apply it to this model's fused MoE expert weights "
                       f"({', '.join(expert_targets)}), which --targets {plan.targets} includes. Drop {problem}, or "
                       "adapt the attention layers only (e.g. --targets q_proj,k_proj,v_proj,o_proj).")


def plan_targets(plan: AdapterPlan) -> Targets:
    """Targets, rank and dropout checked on the meta-device model: a wrong name fails before any weight loads."""
    skeleton = labmodels.meta_model(plan.model)
    modules, names, experts = resolve_targets(plan.targets, skeleton)
    if plan.method == "full":
        return Targets(modules, names, experts, None)
    check_rank(skeleton, names + experts, plan.rank)
    dropout, note = resolve_dropout(plan.dropout, experts)
    check_expert_variants(plan, experts)
    return Targets(modules, names, experts, dropout, note)


def load_model(plan: AdapterPlan, compute_dtype, device_index):
    """(model, layers kept 16-bit on this CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": compute_dtype}
    kept = []
    if plan.method == "qlora":
        storage = {"uint8": torch.uint8, "bf16": torch.bfloat16}[plan.quant_storage]
        # NF4 + double quantization, compute in compute_dtype (labmodels.bnb_4bit_config sets every field and
        # says why); on a CPU run it also keeps the layers bitsandbytes' CPU kernel cannot repack in 16-bit.
        bnb_config, kept = labmodels.bnb_4bit_config(plan.model, compute_dtype, storage)
        kwargs["quantization_config"] = bnb_config
    if device_index is not None:
        kwargs["device_map"] = {"": device_index}  # the whole model on this process's GPU
    try:
        return labmodels.keep_training_kernel(AutoModelForCausalLM.from_pretrained(plan.model, **kwargs)), kept
    except OSError as err:
        raise LabError(f"could not load --model {plan.model}: {err}. Pass a local folder with config.json and "
                       "weights, or a Hub id (with network access; HF_HUB_OFFLINE=1 blocks downloads).") from None


def add_adapters(model, plan: AdapterPlan, targets: Targets):
    """Freeze and prepare the base, then wrap it with LoRA adapters (qlora / lora). (model, trainable, total)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    ckpt_kwargs = {"use_reentrant": False}  # the non-reentrant form works with DDP and frozen inputs
    if plan.method == "qlora":
        # --8<-- [start:prepare_kbit]
        # Freezes the base, casts norms/embeddings to fp32 for stable training, and turns on
        # gradient checkpointing with input gradients so the frozen 4-bit layers pass gradients through.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=plan.gradient_checkpointing,
            gradient_checkpointing_kwargs=ckpt_kwargs,
        )
        # --8<-- [end:prepare_kbit]
    elif plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
        model.enable_input_require_grads()
    # LoftQ on a 4-bit base starts from peft's default init and is replaced below (replace_lora_weights_loftq).
    init = INITS[plan.init] if plan.init != "loftq" else True
    # --8<-- [start:lora_config]
    lora_config = LoraConfig(
        r=plan.rank,                   # inner width of B (d x r) and A (r x k)
        lora_alpha=plan.alpha,         # update is scaled by alpha / r (alpha / sqrt(r) with use_rslora)
        lora_dropout=targets.dropout,  # dropout on the adapter's input only
        target_modules=targets.modules,  # "all-linear" (every linear but the output) or the model's own names
        target_parameters=targets.experts or None,  # fused MoE expert weights named in --targets
        use_dora=plan.use_dora,        # DoRA: a learned magnitude per output on top of the LoRA direction
        use_rslora=plan.use_rslora,    # rsLoRA: alpha / sqrt(r), so large ranks are not damped
        init_lora_weights=init,        # True (Kaiming A, zero B), "gaussian", "pissa", "olora"
        bias="none",                   # biases stay frozen
        task_type="CAUSAL_LM",
    )
    # --8<-- [end:lora_config]
    # --8<-- [start:get_peft_model]
    torch.manual_seed(plan.seed)  # the adapter's random init depends on --seed alone, not on what ran before
    model = get_peft_model(model, lora_config)  # A random, B zero: training starts at the base model
    if plan.init == "loftq":
        from peft import replace_lora_weights_loftq
        # Reads the 16-bit weights from the model's safetensors and sets A, B so that NF4(W) + B @ A is
        # closer to W: training starts from the 16-bit model instead of its rounded copy.
        replace_lora_weights_loftq(model, model_path=_safetensors_file(plan.model))
    trainable, total = model.get_nb_trainable_parameters()  # counts a packed 4-bit weight as its real size
    # --8<-- [end:get_peft_model]
    return model, trainable, total


def build_model(plan: AdapterPlan, targets: Targets, compute_dtype, device_index):
    """(model, trainable, total, layers kept 16-bit): the base loaded as the plan says, with its adapters."""
    model, kept = load_model(plan, compute_dtype, device_index)
    if plan.method == "full":
        if plan.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        total = sum(p.numel() for p in model.parameters())
        return model, total, total, kept
    model, trainable, total = add_adapters(model, plan, targets)
    return model, trainable, total, kept


def adapted_names(peft_model) -> list[str]:
    """What peft actually adapted, as leaf names (modules, then fused parameters such as MoE experts and
    the router's weight, which all-linear also reaches)."""
    modules = sorted({n.rsplit(".", 1)[-1] for n in getattr(peft_model, "targeted_module_names", [])})
    params = sorted({".".join(n.split(".")[-2:]) if n.endswith(".weight") else n.rsplit(".", 1)[-1]
                     for n in getattr(peft_model, "targeted_parameter_names", [])})
    return modules + [f"{p} (parameter)" for p in params if p not in modules]


def adapter_dtypes(model) -> dict[str, int]:
    """dtype name -> number of trainable parameter values in it (the adapter's storage, as the optimizer sees it)."""
    counts: dict[str, int] = {}
    for p in model.parameters():
        if p.requires_grad:
            name = str(p.dtype).removeprefix("torch.")
            counts[name] = counts.get(name, 0) + p.numel()
    return counts


def _safetensors_file(model: str) -> str:
    files = sorted(Path(model).glob("*.safetensors")) if Path(model).is_dir() else []
    if len(files) != 1:
        raise LabError(f"--init loftq reads the 16-bit weights from one local model.safetensors; {model} has "
                       f"{len(files)} such files. Pass a local folder with a single-file checkpoint, or another --init.")
    return str(files[0])
