"""LoRA on a base another library quantized (GPTQ, AWQ, HQQ, torchao): the training memory the engine gives each
format, and the 72B example from the issue tracker, for docs/qlora.md."""
from __future__ import annotations

from .prose import _md_table
from .registry import figure, table

EXAMPLE = dict(model="llama-3.1-8b", rank=16, batch_size=1, seq_len=2048)
BIG = "qwen2.5-72b"      # Qwen2-72B has the same shapes (80 layers, hidden 8192, MLP 29568, vocab 152064)


def _estimate(model: str, fmt: str, gc: bool):
    import loracalc
    method = "qlora" if fmt == "nf4" else "lora"
    settings = {k: v for k, v in EXAMPLE.items() if k != "model"}
    return loracalc.estimate_memory(model, method=method, gradient_checkpointing=gc, **settings,
                                    **({} if fmt in ("nf4", "bf16") else {"base_format": fmt}))


def _kept(est) -> float:
    return sum(t.bytes for t in est.terms + est.off_peak if t.key in ("dequant_saved", "bnb_inputs"))


@table("lora_on_quantized_bases")
def lora_on_quantized_bases_table() -> str:
    from loracalc.quantized import BASE_FORMATS, FORMATS, LORA_BACKWARD
    rows = []
    for fmt in ["bf16", "nf4", *[f for f in BASE_FORMATS if f != "bf16" and not LORA_BACKWARD[f].refused]]:
        on, off = _estimate(EXAMPLE["model"], fmt, True), _estimate(EXAMPLE["model"], fmt, False)
        weights = sum(t.bytes for t in on.terms if t.key.startswith("weights"))
        b = LORA_BACKWARD.get(fmt)
        if fmt == "bf16":
            name, keeps, checked = "bf16 base (plain LoRA)", "nothing beyond LoRA's own", "the GPU memory page"
        elif fmt == "nf4":
            name, keeps, checked = "bitsandbytes NF4 (QLoRA)", "nothing; dequantizes again in backward", "the GPU memory page"
        else:
            name = f"{FORMATS[fmt].label}: `{fmt}`"
            keeps = "each module's 16-bit weight" if b.saves_weight else "its input; dequantizes again in backward"
            checked = "measured on a CPU" if b.measured_on_cpu else "from source (built for CUDA)"
        rows.append([name, f"{weights / 1e9:,.2f} GB", keeps, f"{_kept(on) / 1e9:,.2f} GB",
                     f"{on.total_bytes / 1e9:,.1f} GB", f"{_kept(off) / 1e9:,.1f} GB", f"{off.total_bytes / 1e9:,.1f} GB",
                     checked])
    return _md_table(["base", "weights", "kept for backward", "kept, checkpointing", "total, checkpointing",
                      "kept, no checkpointing", "total, no checkpointing", "checked"], rows,
                     ["", "--:", "", "--:", "--:", "--:", "--:", ""])


@figure("lora_quant_example")
def lora_quant_example() -> str:
    import loracalc
    return (f"{loracalc.get_model(EXAMPLE['model']).display_name}, LoRA rank {EXAMPLE['rank']} on all linear layers, "
            f"batch {EXAMPLE['batch_size']} of {EXAMPLE['seq_len']:,} tokens")


@figure("big_gptq_weights_gb")
def big_gptq_weights_gb() -> str:
    from loracalc.quantized import stored_bytes
    return f"{stored_bytes(BIG, 'gptq-4bit') / 1e9:,.1f} GB"


@figure("big_gptq_weights_gib")
def big_gptq_weights_gib() -> str:
    from loracalc.quantized import stored_bytes
    return f"{stored_bytes(BIG, 'gptq-4bit') / 2**30:,.1f} GiB"


@figure("big_gptq_lora_gc_gb")
def big_gptq_lora_gc_gb() -> str:
    return f"{_estimate(BIG, 'gptq-4bit', True).total_bytes / 1e9:,.1f} GB"


@figure("big_gptq_lora_no_gc_gb")
def big_gptq_lora_no_gc_gb() -> str:
    return f"{_estimate(BIG, 'gptq-4bit', False).total_bytes / 1e9:,.0f} GB"


@figure("big_gptq_saved_per_layer_gb")
def big_gptq_saved_per_layer_gb() -> str:
    return f"{_estimate(BIG, 'gptq-4bit', True).term('dequant_saved').bytes / 1e9:,.2f} GB"


@figure("big_params_b")
def big_params_b() -> str:
    from loracalc.models import get_model, total_params
    return f"{total_params(get_model(BIG)) / 1e9:,.1f} billion"


@figure("big_no_head_bf16_gib")
def big_no_head_bf16_gib() -> str:
    """2 B per parameter of the model without its output layer, in GiB: what accelerate's fp32 row printed."""
    from loracalc.models import get_model, total_params
    a = get_model(BIG)
    return f"{2 * (total_params(a) - a.vocab_size * a.hidden_size) / 2**30:,.2f} GiB"


@figure("big_no_head_int4_gib")
def big_no_head_int4_gib() -> str:
    from loracalc.models import get_model, total_params
    a = get_model(BIG)
    return f"{2 * (total_params(a) - a.vocab_size * a.hidden_size) / 8 / 2**30:,.2f} GiB"


@figure("big_half_byte_gb")
def big_half_byte_gb() -> str:
    from loracalc.models import get_model, total_params
    return f"{total_params(get_model(BIG)) / 2 / 1e9:,.1f} GB"


@figure("hqq_rebuild_copies")
def hqq_rebuild_copies() -> str:
    from loracalc.quantized import LORA_BACKWARD
    words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
    n = LORA_BACKWARD["hqq-4bit"].transient_copies
    return words.get(n, str(n))
