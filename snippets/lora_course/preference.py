"""The preference-tuning deep dive's table: one model and batch through each objective, as TRL runs them
(loracalc.preference), beside supervised fine-tuning."""
from __future__ import annotations

from .prose import _md_table
from .registry import figure, table

# Llama-3.1-8B with QLoRA (rank 16, all linear layers, checkpointing), 1,024 tokens per sequence, on an H100
EXAMPLE = dict(model="llama-3.1-8b", method="qlora", seq_len=1024, gpu="h100-80gb")
ROWS = (  # (objective, label, batch per device, settings)
    ("sft", "SFT, TRL's fused head (cce)", 4, dict(loss="cce")),
    ("dpo", "DPO, reference = adapter off", 2, {}),
    ("dpo", "DPO, reference = a second 4-bit base", 2, dict(reference="separate")),
    ("dpo", "DPO, reference log-probs precomputed", 2, dict(reference="precomputed")),
    ("orpo", "ORPO (full logits)", 2, {}),
    ("kto", "KTO", 4, {}),
    ("grpo", "GRPO, generate, 4 micro-steps per generation", 4, dict(gradient_accumulation=4, num_generations=8,
                                                                   completion_len=512)),
    ("grpo", "GRPO, vLLM colocated (0.3 of the card)", 4, dict(gradient_accumulation=4, num_generations=8,
                                                               generation="vllm-colocate")),
)


def _estimates():
    import loracalc
    from loracalc.preference import preference_memory

    gpu_bytes = loracalc.get_gpu(EXAMPLE["gpu"]).memory_bytes
    for objective, label, batch, extra in ROWS:
        kw = dict(method=EXAMPLE["method"], seq_len=EXAMPLE["seq_len"], batch_size=batch, **extra)
        if objective == "sft":
            yield label, loracalc.estimate_memory(EXAMPLE["model"], **kw)
        else:
            yield label, preference_memory(EXAMPLE["model"], objective, gpu_bytes=gpu_bytes, **kw)


@table("preference_memory")
def preference_memory_table() -> str:
    rows = []
    for label, est in _estimates():
        s = est.settings
        peak = next((n.split("; ")[0].removeprefix("peak at the ") for n in est.notes if n.startswith("peak at")), "")
        added = [t.label for t in est.terms + est.off_peak
                 if t.key in ("reference_weights", "reference_forward", "kv_cache", "vllm_pool")]
        rows.append([label, f"{s.get('rows_per_forward', s['batch_size'])}", peak,
                     "; ".join(added) or "nothing", f"{est.total_bytes / 1e9:,.1f} GB"])
    return _md_table(["run", "sequences per forward", "peak at", "what the objective adds", "needed on the card"],
                     rows, ["", "--:", "", "", "--:"])


@figure("preference_example")
def preference_example() -> str:
    return (f"Llama-3.1-8B with QLoRA (rank 16 on every linear layer, gradient checkpointing), "
            f"{EXAMPLE['seq_len']:,} tokens per sequence")
