"""Figures and tables the module pages quote (``{{ fig.NAME }}`` / ``{{ table.NAME }}``).

Three kinds of number appear in the prose, and each has one home here:

* **Computed** figures call the loracalc engine (``count_params``, ``estimate_memory``, ``get_model``,
  ``loracalc.nf4``), so a change in the engine or a model preset changes the page.
* **Reported** figures are results a source published (a paper's table, a repository's README). They
  cannot be computed, so they live in :data:`REPORTED` with the place they were read.
* **Claims of the source text** that the site corrects are quoted from :data:`SOURCE_CLAIMS`, so the
  correction and the thing corrected sit side by side and neither is typed into a page.

Standard library only: this module is imported in Pyodide too.
"""
from __future__ import annotations

import math

from loracalc import serving as _vllm

from . import registry as _figures


def figure(name: str):
    """Register a prose figure, unless the engine's headline.py already provides one of that name:
    then the engine's is the one source and this definition steps aside."""
    if name in _figures.FIGURES:
        return lambda fn: fn
    return _figures.figure(name)


def table(name: str):
    if name in _figures.TABLES:
        return lambda fn: fn
    return _figures.table(name)

# --------------------------------------------------------------------------------------------------
# Reported results: (display value, where it was read). See docs/references.md for full citations.
# --------------------------------------------------------------------------------------------------
REPORTED: dict[str, tuple[str, str]] = {
    "lora_paper_gpt3_param_reduction": ("10,000", "Hu et al. 2021 (arXiv:2106.09685), abstract"),
    "lora_paper_gpt3_memory_before": ("1.2 TB", "Hu et al. 2021, section 4.2, GPT-3 175B training VRAM"),
    "lora_paper_gpt3_memory_after": ("350 GB", "Hu et al. 2021, section 4.2"),
    "lora_paper_gpt3_checkpoint_before": ("350 GB", "Hu et al. 2021, section 4.2, checkpoint size"),
    "lora_paper_gpt3_checkpoint_after": ("35 MB", "Hu et al. 2021, section 4.2, r=4 on Wq, Wv"),
    "lora_paper_min_rank": ("1", "Hu et al. 2021, table 6 (r=1 on Wq, Wv)"),
    "lora_paper_gpt3_ranks": ("1 to 8", "Hu et al. 2021, tables 4-6"),
    "qlora_paper_max_model": ("65B", "Dettmers et al. 2023 (arXiv:2305.14314), abstract"),
    "qlora_paper_gpu_gb": ("48", "Dettmers et al. 2023, abstract: 65B on a single 48GB GPU"),
    "qlora_fp16_failure_share": ("20%", "artidoro/qlora README: fp16 compute, 7B runs"),
    "qlora_scripts_rank": ("64", "artidoro/qlora scripts/finetune_*.sh: --lora_r 64"),
    "qlora_scripts_alpha": ("16", "artidoro/qlora scripts/finetune_*.sh: --lora_alpha 16"),
    "qlora_small_max": ("13B", "artidoro/qlora scripts: 2e-4 for 7B and 13B"),
    "lr_qlora_small": ("2e-4", "artidoro/qlora scripts: --learning_rate 0.0002 (7B, 13B)"),
    "lr_qlora_large": ("1e-4", "artidoro/qlora scripts: --learning_rate 0.0001 (33B, 65B)"),
    # The scripts pass both flags, but transformers' get_scheduler returns get_constant_schedule for
    # "constant" without reading the warmup: the runs had no warmup in effect (see training-recipe.md).
    "qlora_warmup_ratio": ("0.03", "artidoro/qlora scripts/finetune_*.sh: --warmup_ratio 0.03 --lr_scheduler_type constant"),
    "peft_default_rank": ("8", "peft LoraConfig: r=8"),
    "peft_default_alpha": ("8", "peft LoraConfig: lora_alpha=8"),
    "lr_full_peft_comparison": ("1e-5", "peft method_comparison, full fine-tuning config"),
    "lr_lora_peft_comparison": ("1e-4", "peft method_comparison, LoRA configs"),
    "lora_lr_multiple": ("10", "Schulman / Thinking Machines 2025, 'LoRA Without Regret'"),
    "peft_cmp_train_set": ("MetaMathQA", "peft method_comparison/MetaMathQA/README.md: trains on MetaMathQA"),
    "peft_cmp_test_set": ("GSM8K", "peft method_comparison/MetaMathQA/README.md: tests on the GSM8K test set"),
    "peft_cmp_full_accuracy": ("50.0%", "peft method_comparison, Llama-3.2-3B, full fine-tuning"),
    "peft_cmp_full_memory": ("37.2 GB", "peft method_comparison, Llama-3.2-3B, full fine-tuning peak"),
    "peft_cmp_lora_rank": ("32", "peft method_comparison, LoRA r=32 on q,v"),
    "peft_cmp_lora_accuracy": ("48.2%", "peft method_comparison, Llama-3.2-3B, LoRA r=32"),
    "peft_cmp_lora_memory": ("22.3 GB", "peft method_comparison, Llama-3.2-3B, LoRA peak"),
    "adam8bit_state_bytes": ("2", "bitsandbytes 8-bit optimizers: two 8-bit states per parameter"),
    "bnb_fused_max_rows": ("1,536", "bitsandbytes 0.50 backends/cuda/ops.py: _gemm_4bit_custom_max_m = 1536 on CUDA"),
    # vLLM's LoRA limits live in the engine (loracalc/serving.py, which checks --max-lora-rank against them)
    "vllm_default_max_loras": (str(_vllm.VLLM_DEFAULT_MAX_LORAS), _vllm.VLLM_LORA_SOURCE),
    "vllm_default_max_lora_rank": (str(_vllm.VLLM_DEFAULT_MAX_LORA_RANK), _vllm.VLLM_LORA_SOURCE),
    "vllm_lora_ranks": (", ".join(map(str, _vllm.VLLM_LORA_RANKS)), _vllm.VLLM_LORA_SOURCE),
    "trl_sft_default_lr": ("2e-5", "trl 1.16 trl/trainer/sft_config.py: learning_rate default"),
    "trl_dpo_default_lr": ("1e-6", "trl 1.16 trl/trainer/dpo_config.py: learning_rate default"),
    "trl_grpo_default_lr": ("1e-6", "trl 1.16 trl/trainer/grpo_config.py: learning_rate default"),
    "qlora_oasst1_examples": ("9,000", "Dettmers et al. 2023, introduction: OASST1 (9k examples) beat a 450k FLAN v2 subset for chat"),
    "qlora_flan_examples": ("450,000", "Dettmers et al. 2023, introduction: FLAN v2 subsampled to 450k"),
    "hqq_bits": ("1 to 8", "mobiusml/hqq README: nbits 8, 4, 3, 2, 1"),
    # LitGPT config_hub/finetune/README.md, "Training runtime" on 1x A10G, Alpaca2k, bf16, 512 tokens: the same
    # data and epochs per model (Llama-2-7B: micro-batch 2 for both; Llama-3.1-8B: LoRA 1, QLoRA 2)
    "litgpt_llama2_7b_lora_min": ("32.8 min", "LitGPT config hub README: llama-2-7b/lora.yaml, 1xA10G, 32.82 min"),
    "litgpt_llama2_7b_qlora_min": ("45.7 min", "LitGPT config hub README: llama-2-7b/qlora.yaml, 1xA10G, 45.67 min"),
    "litgpt_llama31_8b_lora_min": ("13.4 min", "LitGPT config hub README: llama-3.1-8b/lora.yaml, 1xA10G, 13.36 min"),
    "litgpt_llama31_8b_qlora_min": ("21.8 min", "LitGPT config hub README: llama-3.1-8b/qlora.yaml, 1xA10G, 21.81 min"),
    "litgpt_llama2_7b_lora_gb": ("19.77 GB", "LitGPT config hub README: llama-2-7b/lora.yaml, peak memory"),
    "litgpt_llama2_7b_qlora_gb": ("13.68 GB", "LitGPT config hub README: llama-2-7b/qlora.yaml, peak memory"),
}

# --------------------------------------------------------------------------------------------------
# What the module's source text claimed, quoted where the site corrects it (see FACTS.md).
# --------------------------------------------------------------------------------------------------
SOURCE_CLAIMS: dict[str, str] = {
    "seed_claim_full_70b": "1.4 TB",
    "seed_claim_lora_70b": "160 GB",
    "seed_claim_qlora_70b_weights": "35 GB",
    "seed_claim_qlora_70b_gpu_gb": "48",
    "seed_claim_dequant_chunk": "256",
    "seed_claim_quality_gap": "1–3%",
    "seed_claim_lr_multiple": "10–100",
    "seed_claim_qlora_lr": "2e-4 to 5e-4",
}

# --------------------------------------------------------------------------------------------------
# Recipe settings the site recommends: the lab's defaults (gpu_labs/qlora_finetune.py) and rules of thumb.
# --------------------------------------------------------------------------------------------------
RECIPE: dict[str, str] = {
    "recipe_rank": "16",          # qlora_finetune.py --rank default
    "recipe_alpha": "32",         # qlora_finetune.py --alpha default (alpha = 2r)
    "rank_rarely_above": "64",    # QLoRA's own rank; beyond it, gains are rarely measured
    "warmup_range": "3–5%",       # common warmup share; the lab uses 3%
    "lr_lora_range_max": "3e-4",  # top of the usual LoRA range (1e-4 .. 3e-4)
}

# Rank by task: starting points, not measured optima (source: common practice; the LoRA and QLoRA
# papers' own settings are given in the last column).
RANK_BY_TASK = [
    ("Classification, light format changes", "4–8", "LoRA paper: r=1..8 on q, v for GPT-3"),
    ("Instruction tuning, chat behaviour", "8–16", "peft default r=8; the lab uses 16"),
    ("Strong style or domain shift, long structured outputs", "16–32", "raise when held-out quality plateaus"),
    ("Large shifts (new language, code, maths)", "64 and up",
     "Biderman et al. 2024: the gap to full fine-tuning is largest on code and maths"),
]


def _register_constants() -> None:
    for name, (value, _source) in REPORTED.items():
        figure(name)(lambda value=value: value)
    for name, value in {**SOURCE_CLAIMS, **RECIPE}.items():
        figure(name)(lambda value=value: value)


_register_constants()


# --------------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------------
def _int(n: float) -> str:
    return f"{int(round(n)):,}"


def _short(n: float) -> str:
    """16777216 -> '16.8M'; 6738415616 -> '6.7B'."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return f"{n:g}"


def _gb(nbytes: float, digits: int = 1) -> str:
    """Decimal gigabytes, as GPU vendors and the papers quote them."""
    return f"{nbytes / 1e9:,.{digits}f} GB"


def _tb(nbytes: float, digits: int = 2) -> str:
    return f"{nbytes / 1e12:.{digits}f} TB"


def _num(x: float, digits: int = 3) -> str:
    """4.126953125 -> '4.127'; 4.5 -> '4.5'; 16.0 -> '16'."""
    s = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return s


def _md_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Engine access
# --------------------------------------------------------------------------------------------------
def _lc():
    import loracalc

    return loracalc


def _count(model: str, rank: int, targets: str):
    return _lc().count_params(model, rank=rank, targets=targets)


def _arch(model: str):
    return _lc().get_model(model)


def _square() -> tuple[int, int, int, int]:
    """(d, r, LoRA params, LoRA params at 2r) for one square projection; the engine's headline example
    (headline.py registers the LoRA and full counts and their ratio: the pages quote those)."""
    from .headline import SQUARE_D, SQUARE_R, square_counts

    return SQUARE_D, SQUARE_R, square_counts()[0], square_counts(SQUARE_D, 2 * SQUARE_R)[0]


@figure("square_d")
def square_d() -> str:
    return _int(_square()[0])


@figure("square_r")
def square_r() -> str:
    return str(_square()[1])


@figure("square_full_short")
def square_full_short() -> str:
    from .headline import square_counts

    return _short(square_counts()[1])


@figure("square_one_factor")
def square_one_factor() -> str:
    return _int(_square()[2] // 2)


@figure("square_lora_double_rank")
def square_lora_double_rank() -> str:
    return _int(_square()[3])


# --------------------------------------------------------------------------------------------------
# Real models
# --------------------------------------------------------------------------------------------------
@figure("llama31_8b_r16_all_params")
def llama31_8b_r16_all_params() -> str:
    return _int(_count("llama-3.1-8b", 16, "all-linear").lora_params)


@figure("llama31_8b_r16_all_percent")
def llama31_8b_r16_all_percent() -> str:
    c = _count("llama-3.1-8b", 16, "all-linear")
    return f"{c.trainable_percent:.2f}%"


@figure("llama31_8b_r8_qv_params")
def llama31_8b_r8_qv_params() -> str:
    return _int(_count("llama-3.1-8b", 8, "q,v").lora_params)


@figure("llama2_7b_r8_qv_params")
def llama2_7b_r8_qv_params() -> str:
    return _int(_count("llama-2-7b", 8, "q,v").lora_params)


@figure("llama31_8b_all_vs_qv_ratio")
def llama31_8b_all_vs_qv_ratio() -> str:
    r = int(RECIPE["recipe_rank"])
    ratio = _count("llama-3.1-8b", r, "all-linear").lora_params / _count("llama-3.1-8b", r, "q,v").lora_params
    return f"{ratio:.1f}"


@table("llama31_8b_layer_shapes")
def llama31_8b_layer_shapes() -> str:
    model, r = "llama-3.1-8b", _square()[1]
    c = _count(model, r, "all-linear")
    rows = []
    for m in c.per_module:
        rows.append([f"`{m.name}`", f"{m.d_in:,} → {m.d_out:,}", _int(m.frozen_params), _int(m.lora_params),
                     f"{m.frozen_params / m.lora_params:,.0f}×"])
    frozen = sum(m.frozen_params for m in c.per_module)
    rows.append([f"**all {len(c.per_module)}**", "", f"**{_int(frozen)}**", f"**{_int(c.lora_params_per_layer)}**",
                 f"**{frozen / c.lora_params_per_layer:,.0f}×**"])
    return _md_table(["module", "in → out features", "frozen W", f"LoRA, r = {r}", "saving"], rows,
                     ["---", "---", "--:", "--:", "--:"])


@table("targets_cost_llama31_8b")
def targets_cost_llama31_8b() -> str:
    model, r = "llama-3.1-8b", int(RECIPE["recipe_rank"])
    base = _count(model, r, "q,v").lora_params
    rows = []
    for label, targets in (("q, v", "q,v"), ("q, k, v, o", "q,k,v,o"), ("all linear", "all-linear")):
        c = _count(model, r, targets)
        rows.append([label, _int(c.lora_params), f"{c.trainable_percent:.2f}%",
                     _mb(_lc().adapter_file_bytes(c.lora_params, "fp32")), f"{c.lora_params / base:.1f}×"])
    return _md_table(["targets", "trainable parameters", "of the model", "adapter file (fp32)", "vs q, v"],
                     rows, ["---", "--:", "--:", "--:", "--:"])


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.0f} MB"


@figure("llama31_8b_r16_all_adapter_file")
def llama31_8b_r16_all_adapter_file() -> str:
    c = _count("llama-3.1-8b", int(RECIPE["recipe_rank"]), "all-linear")
    return _mb(_lc().adapter_file_bytes(c.lora_params, "fp32"))


@figure("llama31_8b_bf16_size")
def llama31_8b_bf16_size() -> str:
    c = _count("llama-3.1-8b", 8, "q,v")
    return _gb(c.total_params * _dtype_bytes("bf16"))


# --------------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------------
def _dtype_bytes(name: str) -> float:
    from loracalc.params import DTYPE_BYTES

    return DTYPE_BYTES[name]


SETTINGS_70B = dict(rank=int(RECIPE["recipe_rank"]), targets="all-linear", batch_size=1, seq_len=2048,
                    gradient_checkpointing=True, optimizer="adamw", attention="sdpa")


def _mem(model: str, method: str, **over):
    kw = {**SETTINGS_70B, **over}
    return _lc().estimate_memory(model, method=method, **kw)


# Terms that exist before any batch is processed: the model, its gradients and the optimizer.
STATIC_KEYS = ("weights", "master_weights", "gradients", "optimizer", "weights_4bit", "weights_16bit",
               "kbit_upcast", "adapter", "adapter_grads")


def _static_bytes(est) -> float:
    """What the model and optimizer cost before activations, logits and CUDA overheads."""
    return sum(t.bytes for t in est.terms if t.key in STATIC_KEYS)


def _weight_bytes(est) -> float:
    """Bytes of the base model's stored weights (bf16, or NF4 plus the 16-bit embeddings and head)."""
    return sum(t.bytes for t in est.terms if t.key in ("weights", "weights_4bit", "weights_16bit"))


@figure("bf16_bytes")
def bf16_bytes() -> str:
    return _num(_dtype_bytes("bf16"))


@figure("bf16_bits")
def bf16_bits() -> str:
    return _num(8 * _dtype_bytes("bf16"))


@figure("fp32_bytes")
def fp32_bytes() -> str:
    return _num(_dtype_bytes("fp32"))


@figure("adam_moments_bytes")
def adam_moments_bytes() -> str:
    return _num(2 * _dtype_bytes("fp32"))


@figure("adam_naive_bytes")
def adam_naive_bytes() -> str:
    # "weights plus two extra copies", each read as a bf16 tensor
    return _num(3 * _dtype_bytes("bf16"))


def _adamw_bytes_per_param() -> float:
    est = _mem("llama-2-7b", "full")
    n = _count("llama-2-7b", 8, "q,v").total_params
    return _static_bytes(est) / n


@figure("adamw_bytes")
def adamw_bytes() -> str:
    return _num(_adamw_bytes_per_param(), 1)


@figure("adamw_bytes_sum")
def adamw_bytes_sum() -> str:
    b, f = _dtype_bytes("bf16"), _dtype_bytes("fp32")
    return " + ".join(_num(x) for x in (b, b, f, f, f))


@figure("adamw_bytes_fp32_grad")
def adamw_bytes_fp32_grad() -> str:
    return _num(_adamw_bytes_per_param() - _dtype_bytes("bf16") + _dtype_bytes("fp32"), 1)


@figure("nf4_bytes_per_param")
def nf4_bytes_per_param() -> str:
    return _num(_nf4().bits_per_param(block_size=_nf4_block(), double_quant=True) / 8, 3)


MODELS_70B = ("llama-2-70b", "llama-3.1-70b")


def _range(values, fmt) -> str:
    lo, hi = min(values), max(values)
    return f"{fmt(lo)}–{fmt(hi)}".replace(" GB–", "–").replace(" TB–", "–")


@figure("full_70b_range")
def full_70b_range() -> str:
    lo = _static_bytes(_mem(MODELS_70B[0], "full"))
    n_hi = _count(MODELS_70B[1], 8, "q,v").total_params
    hi = _static_bytes(_mem(MODELS_70B[1], "full")) + n_hi * (_dtype_bytes("fp32") - _dtype_bytes("bf16"))
    return _range([lo, hi], _tb)


def _full_70b(**over):
    return _mem(MODELS_70B[1], "full", **over)


@figure("full_70b_total")
def full_70b_total() -> str:
    return _tb(_full_70b().total_bytes)


@figure("full_70b_adamw_temp")
def full_70b_adamw_temp() -> str:
    return _gb(_full_70b().term("optimizer_temp").bytes, 0)


@figure("full_70b_fused_total")
def full_70b_fused_total() -> str:
    # torchtune's recipe steps a fused AdamW (no foreach temporary); for full fine-tuning nothing else differs
    est = _full_70b(recipe="torchtune")
    assert "optimizer_temp" not in est.breakdown
    return _tb(est.total_bytes)


@figure("lora_70b_weights_range")
def lora_70b_weights_range() -> str:
    vals = [_count(m, 8, "q,v").total_params * _dtype_bytes("bf16") for m in MODELS_70B]
    return _range(vals, lambda b: _gb(b, 0))


@figure("qlora_70b_weights_range")
def qlora_70b_weights_range() -> str:
    return _range([_nf4().weight_storage_bytes(m) for m in MODELS_70B], _gb)


@figure("lora_70b_total")
def lora_70b_total() -> str:
    return _gb(_mem(MODELS_70B[1], "lora").total_bytes, 0)


@figure("lora_70b_seq_len")
def lora_70b_seq_len() -> str:
    return _int(SETTINGS_70B["seq_len"])


@figure("lora_70b_fitting_gpus")
def lora_70b_fitting_gpus() -> str:
    total = _mem(MODELS_70B[1], "lora").total_bytes
    names = [g.display_name for g in _lc().list_gpus() if g.memory_bytes >= total]
    return ", ".join(names) if names else "none"


@figure("gpu_80gb")
def gpu_80gb() -> str:
    return _lc().get_gpu("h100-80gb").display_name


def _usable(gpu: str) -> float:
    return _lc().get_gpu(gpu).memory_bytes


@figure("rtx4090_sold_gb")
def rtx4090_sold_gb() -> str:
    return f"{_lc().get_gpu('rtx-4090').memory_gb} GB"


@figure("rtx4090_usable")
def rtx4090_usable() -> str:
    return _gb(_usable("rtx-4090"))


@figure("rtx4090_usable_gib")
def rtx4090_usable_gib() -> str:
    return f"{_usable('rtx-4090') / 2**30:.1f} GiB"


@figure("l4_usable")
def l4_usable() -> str:
    return _gb(_usable("l4"))


@figure("llama31_70b_vocab")
def llama31_70b_vocab() -> str:
    return _int(_arch(MODELS_70B[1]).vocab_size)


@figure("llama31_70b_embed_gb")
def llama31_70b_embed_gb() -> str:
    a = _arch(MODELS_70B[1])
    copies = 1 if a.tie_word_embeddings else 2
    return _gb(copies * a.vocab_size * a.hidden_size * _dtype_bytes("bf16"))


# The engine's terms, grouped into the four categories the GPU memory page explains (plus overheads).
CATEGORIES = [
    ("Model weights", ("weights", "weights_4bit", "weights_16bit")),
    ("fp32 copies of 16-bit weights", ("kbit_upcast",)),
    ("Adapter weights", ("adapter",)),
    ("Gradients and optimizer state", ("gradients", "master_weights", "optimizer", "adapter_grads")),
    # torch's AdamW (foreach, its CUDA default unless fused=True) makes one temporary of the second moment's size
    ("AdamW step's temporary (torch's unfused AdamW)", ("optimizer_temp",)),
    ("Activations and logits", ("activations", "logits")),
    ("CUDA context and allocator", ("cuda_context",)),
]


def _category_table(estimates: list[tuple[str, object]]) -> str:
    """One column per configuration, one row per category of memory."""
    known = {k for _, keys in CATEGORIES for k in keys}
    cats = list(CATEGORIES)
    if any(t.key not in known for _, est in estimates for t in est.terms):
        cats.append(("Other", tuple({t.key for _, est in estimates for t in est.terms} - known)))
    rows = []
    for label, keys in cats:
        row = [label]
        for _, est in estimates:
            b = sum(t.bytes for t in est.terms if t.key in keys)
            row.append(_gb(b) if b else "–")
        rows.append(row)
    rows.append(["**total**"] + [f"**{_gb(est.total_bytes)}**" for _, est in estimates])
    return _md_table(["memory"] + [name for name, _ in estimates], rows, ["---"] + ["--:"] * len(estimates))


@table("memory_70b_corrected")
def memory_70b_corrected() -> str:
    m = MODELS_70B[1]
    return _category_table([("full fine-tuning", _mem(m, "full")), ("LoRA", _mem(m, "lora")),
                                ("QLoRA", _mem(m, "qlora"))])


# The QLoRA paper's own 65B run: artidoro/qlora scripts/finetune_guanaco_65b.sh (--lora_r 64 --lora_modules all
# --lora_dropout 0.05 --per_device_train_batch_size 4 --source_max_len 16 --target_max_len 512
# --gradient_checkpointing --bf16) with qlora.py's own default optimizer (optim="paged_adamw_32bit"). A sequence is
# at most 16 + 512 tokens; the run is judged at that longest batch.
QLORA_SCRIPT_SOURCE_LEN, QLORA_SCRIPT_TARGET_LEN = 16, 512
QLORA_SCRIPT_RUN = dict(method="qlora", recipe="qlora-paper", rank=64, targets="all-linear", batch_size=4,
                        seq_len=QLORA_SCRIPT_SOURCE_LEN + QLORA_SCRIPT_TARGET_LEN, gradient_checkpointing=True,
                        optimizer="paged_adamw", lora_dropout=0.05)
# LLaMA-65B as transformers' convert_llama_weights_to_hf builds it (hidden 8192, 80 layers, 64 heads, MLP 22016,
# vocabulary 32,000, untied): the model of the paper's claim, which no preset covers
LLAMA_65B_CONFIG = dict(model_type="llama", hidden_size=8192, intermediate_size=22016, num_hidden_layers=80,
                        num_attention_heads=64, num_key_value_heads=64, vocab_size=32000, tie_word_embeddings=False,
                        max_position_embeddings=2048, rms_norm_eps=1e-5)
PEFT_48GB_CASES = [
    ("peft: batch 1, 2,048 tokens, AdamW", dict(seq_len=2048, optimizer="adamw")),
    ("peft: batch 1, 512 tokens, paged 8-bit AdamW", dict(seq_len=512, optimizer="paged_adamw_8bit")),
]


def _llama_65b():
    return _lc().model_from_config(dict(LLAMA_65B_CONFIG), name="llama-65b")


def _cards_48gb():
    """The catalog's NVIDIA cards sold as 48 GB (the claim and the runs it is checked with are on NVIDIA cards;
    a Radeon or a Mac of that size is the calculator's to judge), by what CUDA reports as usable on each."""
    gb = int(SOURCE_CLAIMS["seed_claim_qlora_70b_gpu_gb"])
    return [g for g in _lc().list_gpus() if g.memory_gb == gb and g.platform == "cuda"]


def _card_label(g) -> str:
    return f"{g.display_name} ({_gb(g.memory_bytes)} usable)"


def _fits_on(nbytes: float) -> str:
    cards = _cards_48gb()
    ok = [g.display_name.replace("NVIDIA ", "") for g in cards if nbytes <= g.memory_bytes]
    if not ok:
        return "neither"
    return "both" if len(ok) == len(cards) else " and ".join(ok) + " only"


def _runs_48gb():
    """(model label, settings label, estimate, estimate with a paged state kept on the card or None)."""
    r = QLORA_SCRIPT_RUN
    script = (f"qlora.py's Guanaco-65B run: rank {r['rank']}, batch {r['batch_size']}, up to {r['seq_len']:,} tokens, "
              "paged AdamW")
    out = []
    for arch, label in [(_llama_65b(), "LLaMA-65B")] + [(m, _model_label(m)) for m in MODELS_70B]:
        est = _lc().estimate_memory(arch, **QLORA_SCRIPT_RUN)
        card = _lc().estimate_memory(arch, **QLORA_SCRIPT_RUN, paged_state_on_host=False)
        out.append((label, script if not out else "qlora.py: the same run", est, card))
    for text, over in PEFT_48GB_CASES:
        for m in MODELS_70B:
            est = _mem(m, "qlora", **over)
            paged = over["optimizer"].startswith("paged")
            card = _mem(m, "qlora", paged_state_on_host=False, **over) if paged else None
            out.append((_model_label(m), text, est, card))
    return out


@table("memory_70b_qlora_48gb")
def memory_70b_qlora_48gb() -> str:
    rows = [[label, text, _gb(est.total_bytes), _fits_on(est.total_bytes),
             f"{_gb(card.total_bytes)} ({_fits_on(card.total_bytes)})" if card else "–"]
            for label, text, est, card in _runs_48gb()]
    return _md_table(["model", "recipe and settings", "needed on the card", f"fits on a {SOURCE_CLAIMS['seed_claim_qlora_70b_gpu_gb']} GB card?",
                      "paged state kept on the card"], rows, ["---", "---", "--:", ":-:", "--:"])


def _run_48gb(label: str, first: bool):
    return [r for r in _runs_48gb() if r[0] == label][0 if first else -1]


@figure("cards_48gb")
def cards_48gb() -> str:
    return " and ".join(_card_label(g) for g in _cards_48gb())


@figure("qlora_65b_script_total")
def qlora_65b_script_total() -> str:
    return _gb(_run_48gb("LLaMA-65B", True)[2].total_bytes)


@figure("qlora_65b_script_on_card")
def qlora_65b_script_on_card() -> str:
    return _gb(_run_48gb("LLaMA-65B", True)[3].total_bytes)


@figure("qlora_script_settings")
def qlora_script_settings() -> str:
    r = QLORA_SCRIPT_RUN
    return (f"rank {r['rank']} on all linear layers, batch {r['batch_size']}, prompts cut at "
            f"{QLORA_SCRIPT_SOURCE_LEN} tokens and answers at {QLORA_SCRIPT_TARGET_LEN}, paged 32-bit AdamW")


def _fits_phrase(nbytes: float) -> str:
    v = _fits_on(nbytes)
    return {"neither": "fit neither card", "both": "fit both cards"}.get(v, f"fit the {v.removesuffix(' only')} only")


@figure("qlora_65b_on_card_fits")
def qlora_65b_on_card_fits() -> str:
    return _fits_phrase(_run_48gb("LLaMA-65B", True)[3].total_bytes)


@figure("qlora_65b_paged_state")
def qlora_65b_paged_state() -> str:
    return _gb(_run_48gb("LLaMA-65B", True)[2].host_bytes)


@figure("qlora_70b_upcast_gb")
def qlora_70b_upcast_gb() -> str:
    est = _mem(MODELS_70B[1], "qlora")
    return _gb(sum(t.bytes for t in est.terms if t.key == "kbit_upcast"))


def _model_label(name: str) -> str:
    a = _arch(name)
    return getattr(a, "label", None) or getattr(a, "display_name", None) or name


# --------------------------------------------------------------------------------------------------
# NF4
# --------------------------------------------------------------------------------------------------
def _nf4():
    from loracalc import nf4

    return nf4


def _default(fn, arg: str):
    import inspect

    return inspect.signature(fn).parameters[arg].default


def _nf4_block() -> int:
    """bitsandbytes' first-level block size, as the engine's bits_per_param defaults to it."""
    return int(_default(_nf4().bits_per_param, "block_size"))


def _nf4_dq_block() -> int:
    """Absmax values per second-level block under double quantization."""
    return int(_default(_nf4().bits_per_param, "dq_block_size"))


def _codebook() -> list[float]:
    return list(_nf4().code_book())


@figure("nf4_levels")
def nf4_levels() -> str:
    return str(len(_codebook()))


@figure("nf4_block_size")
def nf4_block_size() -> str:
    return str(_nf4_block())


@figure("nf4_dq_block_size")
def nf4_dq_block_size() -> str:
    return str(_nf4_dq_block())


@figure("nf4_bits_code_only")
def nf4_bits_code_only() -> str:
    return _num(math.log2(len(_codebook())))


@figure("nf4_bits_single")
def nf4_bits_single() -> str:
    return _num(_nf4().bits_per_param(block_size=_nf4_block(), double_quant=False))


@figure("nf4_bits_double")
def nf4_bits_double() -> str:
    return _num(_nf4().bits_per_param(block_size=_nf4_block(), double_quant=True))


@figure("nf4_absmax_fp32_bits")
def nf4_absmax_fp32_bits() -> str:
    return _num(8 * _dtype_bytes("fp32") / _nf4_block())


@figure("nf4_absmax_int8_bits")
def nf4_absmax_int8_bits() -> str:
    return _num(8 / _nf4_block())


@figure("nf4_bits_formula_latex")
def nf4_bits_formula_latex() -> str:
    code = _num(math.log2(len(_codebook())))
    b, dq, f32 = _nf4_block(), _nf4_dq_block(), _num(8 * _dtype_bytes("fp32"))
    return rf"{code} + \frac{{8}}{{{b}}} + \frac{{{f32}}}{{{b} \cdot {dq}}}"


@figure("dq_saving_llama31_70b")
def dq_saving_llama31_70b() -> str:
    m = MODELS_70B[1]
    a = _arch(m)
    n = _count(m, 8, "q,v").total_params
    copies = 1 if a.tie_word_embeddings else 2
    quantized = n - copies * a.vocab_size * a.hidden_size   # embeddings and head stay 16-bit
    saved_bits = (_nf4().bits_per_param(block_size=_nf4_block(), double_quant=False)
                  - _nf4().bits_per_param(block_size=_nf4_block(), double_quant=True))
    return f"about {_gb(quantized * saved_bits / 8)}"


@table("nf4_codebook")
def nf4_codebook() -> str:
    code = _codebook()
    half = (len(code) + 1) // 2
    rows = []
    for i in range(half):
        j = i + half
        right = [str(j), f"{code[j]:+.4f}"] if j < len(code) else ["", ""]
        rows.append([str(i), f"{code[i]:+.4f}"] + right)
    return _md_table(["index", "value", "index", "value"], rows, ["--:", "--:", "--:", "--:"])


# --------------------------------------------------------------------------------------------------
# Recipe tables and the quiz
# --------------------------------------------------------------------------------------------------
@table("rank_by_task")
def rank_by_task() -> str:
    return _md_table(["task", "starting rank", "note"], [list(r) for r in RANK_BY_TASK])


@figure("qlora_scripts_scale")
def qlora_scripts_scale() -> str:
    return _num(float(REPORTED["qlora_scripts_alpha"][0]) / float(REPORTED["qlora_scripts_rank"][0]), 2)


@table("learning_rates")
def learning_rates() -> str:
    R = {k: v for k, (v, _) in REPORTED.items()}
    rows = [
        ["full fine-tuning", R["lr_full_peft_comparison"], "peft method comparison"],
        ["LoRA", f"{R['lr_lora_peft_comparison']} to {RECIPE['lr_lora_range_max']}",
         "peft method comparison; the usual range"],
        [f"QLoRA, models up to {R['qlora_small_max']}", R["lr_qlora_small"], "QLoRA scripts"],
        [f"QLoRA, larger models", R["lr_qlora_large"], "QLoRA scripts"],
    ]
    return _md_table(["method", "peak learning rate", "source"], rows)
