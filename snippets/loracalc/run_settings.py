"""A training step's settings, read once: every input validated (one-line errors), every default a recipe
implies filled in, and the byte sizes the memory terms share (stream, adapters, logits) derived."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .choices import ATTENTIONS, METHODS, PRECISIONS, QUANTIZED
from .errors import LoraCalcError, as_bool, as_choice, as_float, as_int
from .losses import LOSSES
from .models import get_model
from .optimizers import OPTIMIZER_FACTS, OPTIMIZERS, Optimizer
from .params import ParamCount, count_params
from .quantized import BASE_FORMATS, LORA_BACKWARD, LoraBackward
from .recipes import RECIPE_FACTS, RECIPES, Recipe
from .vision import image_tokens

MAX_BATCH = 1 << 20
MAX_SEQ = 1 << 24


@dataclass(frozen=True)
class RunSettings:
    arch: Any
    method: str
    optimizer: str
    attention: str
    precision: str
    recipe: str
    loss: str
    batch_size: int
    seq_len: int
    gc: bool                 # gradient checkpointing
    dropout: float           # LoRA dropout
    double_quant: bool
    block_size: int
    cuda_overhead: bool
    loss_chunks: int
    offload: bool            # activation offloading
    in_backward: bool        # the optimizer step fused into backward
    on_host: bool            # paged optimizer state counted in host memory
    dora: bool
    old_bnb: bool
    accum: int               # gradient accumulation steps
    autocast: bool
    quantize_lm_head: bool
    adapter_dtype_bytes: int
    counts: ParamCount
    upcast: str              # what prepare_model_for_kbit_training (or the recipe) leaves in fp32
    s: int                   # bytes per value of the hidden stream (fp32 after peft's upcast)
    a: int                   # bytes per trainable value (adapters; full: master or bf16 weights)
    logits_b: int            # bytes per logit (peft's upcast makes lm_head, and so the logits, fp32)
    head_copy: int           # autocast's saved bf16 copy of an fp32 output layer
    # vision-language models: images per sequence, their side in pixels, the tokens each adds (seq_len counts
    # them: it is text_seq_len + images x image_tokens, what the language model sees)
    images: int = 0
    image_size: int | None = None
    image_tokens: int = 0
    text_seq_len: int = 0
    base_format: str = "bf16"   # LoRA on a base another library quantized (loracalc.quantized.LORA_BACKWARD)

    @property
    def quantized(self) -> bool:
        return self.method in QUANTIZED

    @property
    def base(self) -> LoraBackward | None:
        """How the quantized base's matmuls run in training, for LoRA on a GPTQ, AWQ, HQQ or torchao base."""
        return LORA_BACKWARD.get(self.base_format)

    @property
    def head_quantized(self) -> bool:
        """bitsandbytes (LitGPT's plugin) quantizes an untied output layer too."""
        return self.quantized and self.quantize_lm_head and not self.arch.tie_word_embeddings

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def stack(self) -> Recipe:
        return RECIPE_FACTS[self.recipe]

    @property
    def opt(self) -> Optimizer:
        return OPTIMIZER_FACTS[self.optimizer]

    def as_dict(self) -> dict:
        return {"method": self.method, "rank": self.counts.rank, "targets": list(self.counts.requested),
                "batch_size": self.batch_size, "seq_len": self.seq_len, "gradient_checkpointing": self.gc,
                "optimizer": self.optimizer, "attention": self.attention, "precision": self.precision,
                "lora_dropout": self.dropout, "double_quant": self.double_quant, "block_size": self.block_size,
                "recipe": self.recipe, "loss": self.loss, "loss_chunks": self.loss_chunks,
                "activation_offload": self.offload, "optimizer_in_backward": self.in_backward,
                "paged_state_on_host": self.on_host, "dora": self.dora, "quantize_lm_head": self.quantize_lm_head,
                "adapter_dtype": "fp32" if self.a == 4 else "bf16", "kbit_upcast": self.upcast,
                "old_bitsandbytes": self.old_bnb, "autocast": self.autocast, "gradient_accumulation": self.accum,
                "base_format": self.base_format,
                **({"seq_len": self.text_seq_len, "lm_seq_len": self.seq_len, "images_per_sample": self.images,
                    "image_size": self.image_size, "image_tokens_per_image": self.image_tokens,
                    "adapt": self.counts.adapt} if self.arch.vision else {})}


def read_settings(model: Any, method: Any, rank: Any, targets: Any, batch_size: Any, seq_len: Any,
                  gradient_checkpointing: Any, optimizer: Any, attention: Any, precision: Any, lora_dropout: Any,
                  double_quant: Any, block_size: Any, cuda_overhead: Any, recipe: Any, loss: Any, loss_chunks: Any,
                  activation_offload: Any, optimizer_in_backward: Any, paged_state_on_host: Any, dora: Any,
                  quantize_lm_head: Any, adapter_dtype: Any, kbit_upcast: Any, old_bitsandbytes: Any,
                  autocast: Any, gradient_accumulation: Any, adapt: Any = None, images_per_sample: Any = 0,
                  image_size: Any = None, base_format: Any = "bf16") -> RunSettings:
    """``estimate_memory``'s arguments, checked in the order a reader gives them; see its docstring."""
    arch = get_model(model)
    method = as_choice(method, "method", METHODS)
    optimizer = as_choice(optimizer, "optimizer", OPTIMIZERS)
    attention = as_choice(attention, "attention", ATTENTIONS)
    precision = as_choice(precision, "precision", PRECISIONS)
    recipe = as_choice(recipe, "recipe", RECIPES)
    loss = as_choice(loss, "loss", LOSSES)
    b = as_int(batch_size, "batch_size", 1, MAX_BATCH, "batch size")
    S = as_int(seq_len, "seq_len", 1, MAX_SEQ, "sequence length")
    text_S, images, per_image, side = S, as_int(images_per_sample, "images_per_sample", 0, 4096, "images"), 0, None
    if images or image_size is not None:
        if not arch.vision:
            raise LoraCalcError("images_per_sample", f"{arch.name} has no vision tower: images need a "
                                                     "vision-language model (e.g. a gemma3 or llava config.json)")
        side = None if image_size is None else as_int(image_size, "image_size", 1, 1 << 16, "image size")
        per_image = image_tokens(arch, side)
        S += images * per_image
        if S > MAX_SEQ:
            raise LoraCalcError("seq_len", f"text and image tokens ({S:,}) exceed {MAX_SEQ:,}")
    gc = as_bool(gradient_checkpointing, "gradient_checkpointing")
    dropout = as_float(lora_dropout, "lora_dropout", 0.0, 0.99, "LoRA dropout")
    dq = as_bool(double_quant, "double_quant")
    bs = as_int(block_size, "block_size", 16, 4096, "block size")
    overhead = as_bool(cuda_overhead, "cuda_overhead")
    n_chunks = as_int(loss_chunks, "loss_chunks", 1, 4096, "loss chunks")
    offload = as_bool(activation_offload, "activation_offload")
    in_bwd = as_bool(optimizer_in_backward, "optimizer_in_backward")
    # None: where bitsandbytes' paging puts it. A paged optimizer's state is evicted to host memory whenever the
    # card runs short and paged back for the optimizer step (Dettmers et al. 2023, section 3), so the card need
    # not hold it at the step's peak; pass False to count it on the card anyway
    on_host = None if paged_state_on_host is None else as_bool(paged_state_on_host, "paged_state_on_host")
    use_dora = as_bool(dora, "dora")
    old_bnb = as_bool(old_bitsandbytes, "old_bitsandbytes")
    accum = as_int(gradient_accumulation, "gradient_accumulation", 1, MAX_BATCH, "gradient accumulation steps")
    if accum > 1 and in_bwd:
        # torchtune's recipes raise the same: each gradient is applied and freed as it arrives
        raise LoraCalcError("gradient_accumulation", "the optimizer step in backward applies each gradient as it "
                                                     "arrives, so nothing accumulates: set gradient accumulation to 1 "
                                                     "or turn the step in backward off")
    stack = RECIPE_FACTS[recipe]
    ac = stack.autocast if autocast is None else as_bool(autocast, "autocast")
    if ac and method == "full":
        if autocast is not None:
            raise LoraCalcError("autocast", "for full fine-tuning, precision mixed is autocast over fp32 weights: "
                                            "choose precision mixed or bf16 instead")
        ac = False
    q_head = stack.quantize_lm_head if quantize_lm_head is None else as_bool(quantize_lm_head, "quantize_lm_head")
    adapter_b = stack.adapter_bytes if adapter_dtype is None else \
        {"fp32": 4, "bf16": 2}[as_choice(adapter_dtype, "adapter_dtype", ("fp32", "bf16"), "adapter dtype")]
    if use_dora and method == "full":
        raise LoraCalcError("dora", "DoRA is a LoRA variant: choose method lora, lora_8bit or qlora with dora")
    base_fmt = _base_format(base_format, method, use_dora)
    counts = count_params(arch, rank=rank, targets=targets, adapt=adapt)
    fused = any(m.kind in ("experts", "router") for m in counts.per_module)
    if use_dora and fused:
        # peft's ParamWrapper, which adapts fused experts and routers, raises for use_dora=True
        raise LoraCalcError("dora", "peft's DoRA does not work on fused experts or routers: leave them out of the "
                                    "targets (attention names such as q,k,v,o) or turn DoRA off")
    if dropout > 0 and fused:
        # peft's ParamWrapper (LoRA on a bare parameter) raises for lora_dropout != 0
        raise LoraCalcError("lora_dropout", "peft adapts fused experts and routers only with lora_dropout 0; "
                                            "set it to 0 or leave those modules out of the targets")
    # a stack may prepare the quantized model its own way (fms-acceleration's bnb plugin skips the upcast)
    upcast = (stack.kbit_upcast if kbit_upcast is None else
              as_choice(kbit_upcast, "kbit_upcast", ("all", "norms", "none"), "fp32 upcast")) \
        if method in QUANTIZED else "none"
    paged = OPTIMIZER_FACTS[optimizer].paged
    if on_host is None:
        on_host = paged
    elif on_host and not paged:
        raise LoraCalcError("paged_state_on_host", "only a paged optimizer's state can move to host memory: "
                                                   "choose paged_adamw or paged_adamw_8bit, or leave it off")
    V, h = arch.vocab_size, arch.hidden_size
    return RunSettings(
        arch=arch, method=method, optimizer=optimizer, attention=attention, precision=precision, recipe=recipe,
        loss=loss, batch_size=b, seq_len=S, gc=gc, dropout=dropout, double_quant=dq, block_size=bs,
        cuda_overhead=overhead, loss_chunks=n_chunks, offload=offload, in_backward=in_bwd, on_host=on_host,
        dora=use_dora, old_bnb=old_bnb, accum=accum, autocast=ac, quantize_lm_head=q_head,
        adapter_dtype_bytes=adapter_b, counts=counts, upcast=upcast,
        s=4 if upcast != "none" else 2,
        a=4 if method == "full" and precision == "mixed" else (2 if method == "full" else adapter_b),
        logits_b=4 if upcast == "all" and not ac else 2,
        # under autocast an fp32 output layer is cast to bf16 for its matmul, and the copy is saved for backward
        head_copy=2 * V * h if (ac and upcast == "all") else 0,
        images=images, image_size=side, image_tokens=per_image, text_seq_len=text_S, base_format=base_fmt)


def _base_format(base_format: Any, method: str, dora: bool) -> str:
    """The base's stored format for LoRA: bf16, or one peft trains adapters on (GPTQ, AWQ, HQQ, torchao)."""
    fmt = as_choice("bf16" if base_format is None else base_format, "base_format", BASE_FORMATS, "base format")
    if fmt == "bf16":
        return fmt
    if method != "lora":
        raise LoraCalcError("base_format", f"a {fmt} base is for method lora (LoRA on an already-quantized base); "
                                          "qlora and lora_8bit quantize the base with bitsandbytes themselves")
    if LORA_BACKWARD[fmt].refused:
        raise LoraCalcError("base_format", LORA_BACKWARD[fmt].refused)
    if dora:
        # peft's GPTQ and AWQ layers raise for use_dora; the DoRA terms are measured on 16-bit and bitsandbytes bases
        raise LoraCalcError("dora", f"DoRA on a {fmt} base is not estimated (peft's GPTQ and AWQ layers refuse it): "
                                    "turn DoRA off or choose base format bf16")
    return fmt
