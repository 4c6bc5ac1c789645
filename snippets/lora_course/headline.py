"""The module's headline figures, each computed by the engine and registered for the prose.

Names start with ``headline_`` so they never collide with the content pages' own figures (``prose.py``).
Every function states its assumptions in ``HEADLINE_ASSUMPTIONS`` so a page can print them beside the number.
"""
from __future__ import annotations

from .registry import figure, table

SQUARE_D = 4096      # hidden size of Llama-2 7B / Llama-3.1 8B: the square attention projection
SQUARE_R = 8         # peft's LoraConfig default rank

# The settings behind the 70B figures: one GPU's view of one training step.
HEADLINE_SETTINGS = dict(rank=16, targets="all-linear", batch_size=1, seq_len=2048, gradient_checkpointing=True,
                         optimizer="adamw", attention="sdpa")
HEADLINE_ASSUMPTIONS = ("rank 16 on all linear layers, batch 1, 2,048-token sequences, gradient checkpointing, "
                        "AdamW, fused attention, NF4 with double quantization for QLoRA, mixed precision "
                        "(bf16 + fp32 master) for full fine-tuning")


def square_counts(d: int = SQUARE_D, r: int = SQUARE_R) -> tuple[int, int, float]:
    """(LoRA params, full params, ratio) for one square d x d matrix."""
    from loracalc import square_full_params, square_lora_params
    full, lora = square_full_params(d), square_lora_params(d, r)
    return lora, full, full / lora


def seventy_b(model: str = "llama-3.1-70b") -> dict[str, int]:
    """Total bytes per method for a 70B model under ``HEADLINE_SETTINGS``, and the static part of full FT."""
    from loracalc import estimate_memory
    out = {m: estimate_memory(model, method=m, **HEADLINE_SETTINGS).total_bytes for m in ("full", "lora", "qlora")}
    b = estimate_memory(model, method="full", **HEADLINE_SETTINGS).breakdown
    out["full_static"] = b["weights"] + b["master_weights"] + b["gradients"] + b["optimizer"]
    q = estimate_memory(model, method="qlora", **HEADLINE_SETTINGS).breakdown
    out["qlora_weights"] = q["weights_4bit"] + q["weights_16bit"]
    return out


def _gb(n: int) -> str:
    return f"{n / 1e9:,.0f} GB" if n < 1e12 else f"{n / 1e12:,.2f} TB"


@figure("headline_square_lora")
def headline_square_lora() -> str:
    return f"{square_counts()[0]:,}"


@figure("headline_square_full")
def headline_square_full() -> str:
    return f"{square_counts()[1]:,}"


@figure("headline_square_ratio")
def headline_square_ratio() -> str:
    return f"{square_counts()[2]:,.0f}×"


@figure("headline_full_70b")
def headline_full_70b() -> str:
    return _gb(seventy_b()["full"])


@figure("headline_full_70b_static")
def headline_full_70b_static() -> str:
    return _gb(seventy_b()["full_static"])


@figure("headline_lora_70b")
def headline_lora_70b() -> str:
    return _gb(seventy_b()["lora"])


@figure("headline_qlora_70b")
def headline_qlora_70b() -> str:
    return _gb(seventy_b()["qlora"])


@figure("headline_qlora_70b_weights")
def headline_qlora_70b_weights() -> str:
    return f"{seventy_b()['qlora_weights'] / 1e9:.1f} GB"


@figure("headline_assumptions")
def headline_assumptions() -> str:
    return HEADLINE_ASSUMPTIONS


@table("headline_70b")
def headline_70b() -> str:
    from loracalc import get_model
    rows = ["| model | full fine-tuning | LoRA (bf16 base) | QLoRA (NF4 base) |", "|---|--:|--:|--:|"]
    for name in ("llama-2-70b", "llama-3.1-70b"):
        f = seventy_b(name)
        rows.append(f"| {get_model(name).display_name} | {_gb(f['full'])} | {_gb(f['lora'])} | {_gb(f['qlora'])} |")
    return "\n".join(rows) + f"\n\n*Settings: {HEADLINE_ASSUMPTIONS}.*"
