"""Every choice a reader makes, in one table: the CLI's ``choices=`` and help, the widgets' ``<select>`` options
and the tests' settings all read ``CHOICES``. A new option is added where its facts live (an optimizer class,
a recipe row, a loss, a GPU) and appears everywhere from here."""
from __future__ import annotations

from .gpus import GPUS, vendors
from .losses import LOSSES
from .optimizers import OPTIMIZERS
from .params import ADAPT
from .quantized import BASE_FORMATS
from .recipes import RECIPES

METHODS = {"full": "Full fine-tuning", "lora": "LoRA (16-bit frozen base)",
           "lora_8bit": "LoRA on an 8-bit base (LLM.int8)", "qlora": "QLoRA (NF4 frozen base)"}
QUANTIZED = ("lora_8bit", "qlora")     # methods whose frozen linears bitsandbytes stores in 8 or 4 bit
ATTENTIONS = {"sdpa": "fused (PyTorch SDPA)",
              "flash_attention_2": "FlashAttention-2 (transformers' flash_attention_2)",
              "eager": "eager (materialises the score matrix)"}
PRECISIONS = {"mixed": "bf16 compute, fp32 master weights", "bf16": "pure bf16"}
STRATEGIES = {
    "ddp": "data parallel (a full copy per GPU)",
    "shard-grad-op": "FSDP SHARD_GRAD_OP (all sharded at rest; whole model gathered from forward to backward)",
    "full-shard": "FSDP FULL_SHARD / ZeRO-3 (weights sharded, gathered a layer at a time)",
}

# preference and RL tuning as TRL runs them (loracalc.preference says what each does)
OBJECTIVES = {
    "sft": "supervised fine-tuning (no preference pairs, no generation)",
    "dpo": "DPO: chosen + rejected in one forward (2 x batch), a reference forward without gradients",
    "orpo": "ORPO: chosen + rejected in one forward (2 x batch), no reference",
    "simpo": "SimPO (TRL's CPO trainer): chosen + rejected in one forward (2 x batch), no reference",
    "kto": "KTO: unpaired answers plus a KL batch without gradients, a reference forward",
    "grpo": "GRPO: a group of generated completions per prompt; a reference only with beta > 0",
}
REFERENCES = {
    "default": "the trainer's default (DPO, KTO: the adapter off, or a second model for a full fine-tune; "
               "GRPO, ORPO, SimPO: none)",
    "adapter-off": "the same weights with the adapter switched off (peft; TRL's default with an adapter)",
    "separate": "a second copy of the base model (TRL's default without peft)",
    "precomputed": "reference log-probabilities computed before training (precompute_ref_log_probs)",
    "none": "no reference (GRPO with beta = 0, TRL's default; ORPO and SimPO never have one)",
}
GENERATIONS = {
    "generate": "transformers' generate in the training process (TRL's default)",
    "vllm-colocate": "a vLLM engine in the training process, holding a fixed share of the card",
    "vllm-server": "a vLLM server on other GPUs (nothing on the training card)",
}

# setting name (as estimate_memory and the widgets spell it) -> {value: label}
CHOICES: dict[str, dict[str, str]] = {
    "method": METHODS,
    "base_format": BASE_FORMATS,
    "optimizer": OPTIMIZERS,
    "attention": ATTENTIONS,
    "precision": PRECISIONS,
    "recipe": RECIPES,
    "loss": LOSSES,
    "strategy": STRATEGIES,
    "adapt": ADAPT,
    "objective": OBJECTIVES,
    "reference": REFERENCES,
    "generation": GENERATIONS,
    "gpu": {g.name: g.display_name + ("" if "GB" in g.display_name else f" ({g.memory_gb:g} GB)")
            for group in vendors().values() for g in group},
}

# the serving calculator's settings (loracalc.serving; `loracalc serve --help` lists them)
from .serving import KV_DTYPES, VLLM_LORA_RANKS, WEIGHT_FORMATS  # noqa: E402  (after GPUS: serving reads the catalog)

SERVING_CHOICES: dict[str, dict[str, str]] = {
    "weights": WEIGHT_FORMATS,
    "kv_dtype": {k: ("the model's dtype (bf16)" if k == "auto" else k) for k in KV_DTYPES},
    "max_lora_rank": {str(r): str(r) for r in VLLM_LORA_RANKS},
}
CHOICES.update(SERVING_CHOICES)
MEMORY_SETTINGS = tuple(k for k in CHOICES if k not in SERVING_CHOICES)

# settings whose options come in groups: value -> group, shown as one <optgroup> per group in this order
GROUPS: dict[str, dict[str, str]] = {"gpu": {g.name: vendor for vendor, group in vendors().items() for g in group}}


def choice_help(setting: str, default: str | None = None) -> str:
    """One line listing a setting's choices with their labels, as the CLI's --help shows them."""
    table = CHOICES[setting]
    listed = "; ".join(f"{key}: {label}" for key, label in table.items())
    return listed + (f" (default {default})" if default else "")
