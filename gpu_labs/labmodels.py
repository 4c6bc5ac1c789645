"""Models for the labs: tiny random-weight models of every family the labs support (built offline from
transformers' own config classes), the 4-bit loading settings that work on the machine at hand, and
the names `--targets` accepts for a given model.

    python gpu_labs/labkit.py tiny-model runs/tiny-qwen3 --family qwen3

Standard library only at import time; torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpu_labs import labdata
from gpu_labs.core import DEFAULT_DATASET, LabError, atomic_directory

# Every family gets the same small shape (hidden 64, 2 layers, 4 query heads of 16, 2 KV heads) so the
# tests train each in seconds; the keys are each config class's own names. Dimensions are multiples of
# 64 so NF4's 64-weight blocks tile every matrix, except where a test sets another MLP width on purpose.
# initializer_range is 5x the usual 0.02: with a frozen random lm_head that small, logits stay near
# zero whatever the adapters do, and the loss could not fall far below ln(vocab).
_ATTENTION = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256, tie_word_embeddings=False, initializer_range=0.1)
FAMILIES = {
    "llama": ("LlamaConfig", dict(_ATTENTION, intermediate_size=128, rms_norm_eps=1e-5)),
    "qwen3": ("Qwen3Config", dict(_ATTENTION, intermediate_size=128, head_dim=16)),
    # Gemma's config class defaults head_dim to 256 whatever the hidden size: set it, as real configs do.
    "gemma3_text": ("Gemma3TextConfig", dict(_ATTENTION, intermediate_size=128, head_dim=16, sliding_window=32)),
    "phi3": ("Phi3Config", dict(_ATTENTION, intermediate_size=128)),
    # Experts are fused 3-D parameters in transformers 5; every layer is a MoE layer here.
    "qwen3_moe": ("Qwen3MoeConfig", dict(_ATTENTION, intermediate_size=128, moe_intermediate_size=64, head_dim=16,
                                         num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1)),
    "gpt2": ("GPT2Config", dict(n_embd=64, n_layer=2, n_head=4, n_positions=256, initializer_range=0.1)),
    "olmo2": ("Olmo2Config", dict(_ATTENTION, intermediate_size=128)),
}

# A small chat format of our own (the roles as special tokens, each answer closed by EOS), in the Jinja
# syntax of real chat templates, so the labs exercise apply_chat_template offline.
# The newline between turns opens the next turn rather than closing an answer, so an answer's text ends
# with EOS exactly (nothing after it to learn).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if not loop.first %}{{ '\n' }}{% endif %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] | trim }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\n' if messages else '' }}{{ '<|assistant|>\n' }}{% endif %}"
)
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]


def build_tokenizer(corpus: str | os.PathLike = DEFAULT_DATASET, vocab_size: int = 512, chat_template: bool = True):
    """A byte-level BPE tokenizer trained on the shipped data, with BOS/EOS/pad/unk and, by default, the
    chat template above (role tokens included in the vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = []
    for messages in labdata.load_conversations(corpus):
        texts += [m["content"] for m in messages] + [labdata.format_prompt(messages[0]["content"])]
    specials = ["<unk>", "<s>", "</s>", "<pad>"] + (ROLE_TOKENS if chat_template else [])
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>")
    if chat_template:
        tokenizer.add_special_tokens({"additional_special_tokens": ROLE_TOKENS})
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_config(family: str, tokenizer, intermediate_size: int | None = None):
    import transformers

    if family not in FAMILIES:
        raise LabError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    class_name, sizes = FAMILIES[family]
    sizes = dict(sizes)
    if intermediate_size is not None:
        sizes["n_inner" if family == "gpt2" else "intermediate_size"] = intermediate_size
    return getattr(transformers, class_name)(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **sizes)


def build_tiny_model(out_dir: str | os.PathLike, family: str = "llama", vocab_size: int = 512, seed: int = 0,
                     corpus: str | os.PathLike = DEFAULT_DATASET, intermediate_size: int | None = None,
                     chat_template: bool = False) -> Path:
    """Write a random-weight model of `family` and a BPE tokenizer trained on `corpus` to out_dir, in the
    layout of a model downloaded from the Hub, so labs load it with from_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(corpus, vocab_size, chat_template=chat_template)
    config = tiny_config(family, tokenizer, intermediate_size)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with atomic_directory(out_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return out_dir


# --- what bitsandbytes can run on this machine ------------------------------------------------------

def meta_model(model_path: str | os.PathLike):
    """The model built on the meta device from its config: every module and shape, no memory, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(model_path)
    auto = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(config)


def linear_layers(model) -> dict[str, tuple[int, int]]:
    """Full module name -> (in_features, out_features) for every Linear (4-bit included) and GPT-2 Conv1D."""
    import torch
    from transformers.pytorch_utils import Conv1D

    layers = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            layers[name] = (module.in_features, module.out_features)
        elif isinstance(module, Conv1D):  # weight is stored (in, out): the transpose of a Linear's
            layers[name] = tuple(module.weight.shape)
    return layers


def cpu_packing_problems(model) -> list[tuple[str, int, int]]:
    """Layers that bitsandbytes' CPU inference path cannot repack.

    On a CPU with AVX512-BF16, a Linear4bit in eval mode without gradients repacks its weight once for a
    faster kernel (`_convert_weight_packed_for_cpu` in bitsandbytes/functional.py): it reshapes the
    per-block scales (absmax) to [out_features, in_features // 64], which needs in_features to be a
    multiple of the block size 64, and it asserts out_features % 32 == 0 (block_n). Any other layer fails
    there with "shape '[out, in // 64]' is invalid", in evaluation, generation or the merge check, not in
    training (the training path never repacks). Returns (name, in_features, out_features) of such layers."""
    skip = set(default_16bit_modules(model))
    return [(name, d_in, d_out) for name, (d_in, d_out) in linear_layers(model).items()
            if not any(name == s or name.endswith("." + s) for s in skip) and (d_in % 64 or d_out % 32)]


def keep_training_kernel(model):
    """Turn off bitsandbytes' CPU inference repacking, so a 4-bit layer computes the same way in evaluation as in
    training. On a CPU with AVX512-BF16, a Linear4bit repacks its weight the first time it runs in eval mode without
    gradients (absmax in bf16, a bf16 kernel): its outputs then move by about 1% against the path the adapter was
    trained on, and a later training step through a repacked layer with a bias fails ("a view of a leaf Variable
    ... in-place operation"). Returns the model."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def default_16bit_modules(model) -> list[str]:
    """What transformers itself keeps out of 4-bit (the output embedding and tied weights), which an
    explicit skip list would otherwise replace."""
    try:
        from transformers.quantizers.base import get_keys_to_not_convert

        return list(get_keys_to_not_convert(model))
    except ImportError:  # the helper moved: the output embedding is the one that always stays 16-bit
        return ["lm_head"]


def bnb_4bit_config(model_path, compute_dtype, quant_storage=None, on_cpu: bool | None = None,
                    keep_16bit: tuple[str, ...] = ()):
    """(BitsAndBytesConfig for NF4 with double quantization, layers kept 16-bit on this machine).

    Passing quantization settings once, here, keeps training, serving and merging on the same base.
    On a CPU run the layers bitsandbytes' CPU kernel cannot repack stay 16-bit (llm_int8_skip_modules,
    which despite its name is what the 4-bit loader reads), so evaluation and generation work; the
    caller reports them. keep_16bit names more modules to leave unquantized (a VLM's vision tower)."""
    import torch
    from transformers import BitsAndBytesConfig

    on_cpu = (not torch.cuda.is_available()) if on_cpu is None else on_cpu
    kept = []
    skip = None
    if on_cpu or keep_16bit:
        model = meta_model(model_path)
        kept = [k for k in (cpu_packing_problems(model) if on_cpu else [])
                if not set(k[0].split(".")) & set(keep_16bit)]
        if kept or keep_16bit:
            skip = default_16bit_modules(model) + list(keep_16bit) + [name for name, _, _ in kept]
    # --8<-- [start:bnb_config]
    config = BitsAndBytesConfig(
        load_in_4bit=True,                      # frozen base weights packed as 4-bit codes
        bnb_4bit_quant_type="nf4",              # NormalFloat4: code values at normal quantiles
        bnb_4bit_use_double_quant=True,         # quantize the per-64-weight scales too (~0.37 bit saved)
        bnb_4bit_compute_dtype=compute_dtype,   # the 4-bit layers compute in this dtype; the weight is dequantized
                                                # to it only where a kernel needs it (see docs/qlora.md)
        bnb_4bit_quant_storage=quant_storage or torch.uint8,  # bf16 lets FSDP shard the packed weights
        llm_int8_skip_modules=skip,             # None: transformers' defaults (lm_head stays 16-bit)
    )
    # --8<-- [end:bnb_config]
    return config, kept


def describe_kept(kept: list[tuple[str, int, int]], bytes_per_weight: float = 2.0) -> str:
    """One line saying which layers stay 16-bit on CPU, why, and what it costs."""
    if not kept:
        return ""
    extra = sum(d_in * d_out for _, d_in, d_out in kept) * (bytes_per_weight - 4.127 / 8)
    shapes = sorted({(d_in, d_out) for _, d_in, d_out in kept})
    example = kept[0][0]
    return (f"kept {len(kept)} layer(s) in 16-bit instead of NF4 on this CPU ({example} and others with shape "
            f"{', '.join(f'{i} -> {o}' for i, o in shapes)}): bitsandbytes' CPU kernel needs in_features a "
            f"multiple of 64 and out_features a multiple of 32; about {extra / 1e6:.2f} MB more than NF4, "
            "not in loracalc's estimate. A GPU quantizes them.")


# --- what --targets can name ----------------------------------------------------------------------

def expert_parameters(model) -> dict[str, tuple]:
    """Leaf name -> shape of fused MoE expert weights (3-D parameters: experts x out x in)."""
    return {name.rsplit(".", 1)[-1]: tuple(p.shape) for name, p in model.named_parameters() if p.dim() == 3}


def target_names(model) -> dict[str, tuple[int, int]]:
    """Leaf name -> (in, out) of the first layer of that name, for every layer --targets may name; the
    output embedding is left out, as peft's all-linear leaves it out."""
    out_names = set(default_16bit_modules(model))
    names = {}
    for full, shape in linear_layers(model).items():
        if full in out_names or full.rsplit(".", 1)[-1] in out_names:
            continue
        names.setdefault(full.rsplit(".", 1)[-1], shape)
    return names
