"""The serving calculator on the serving deep dive: memory per GPU to serve a model with vLLM.

Inputs are the CLI's ``loracalc serve`` flags; every number comes from ``loracalc.serving.estimate_serving``.
"""
from __future__ import annotations

from typing import Any

from . import _common as c
from .registry import widget

DEFAULT_MODEL = "llama-3.1-8b"


@widget("serving_memory")
def serving_memory(model: str = DEFAULT_MODEL, context: str = "8192", batch: str = "8", weights: str = "bf16",
                   kv_dtype: str = "auto", max_loras: str = "4", max_lora_rank: str = "16", gpu: str = "h100-80gb",
                   tensor_parallel: str = "1", **_: Any) -> dict[str, Any]:
    from loracalc.gpus import get_gpu
    from loracalc.serving import estimate_serving

    arch = c.preset(model, DEFAULT_MODEL)
    est = estimate_serving(arch, context=c.text(context), batch=c.text(batch), weights=c.text(weights) or "bf16",
                           kv_dtype=c.text(kv_dtype) or "auto", max_loras=c.text(max_loras),
                           max_lora_rank=c.text(max_lora_rank), gpu=c.text(gpu) or None,
                           tensor_parallel=c.text(tensor_parallel))
    rows = "".join(f'<tr><th scope="row">{c.esc(label)}</th><td class="lc-num">{c.fmt_gb(b, 2)}</td></tr>'
                   for _, label, b in est.terms)
    per_gpu = " per GPU" if est.tensor_parallel > 1 else ""
    table = ('<table class="lc-table"><caption>Memory to serve, by term' + per_gpu + '</caption><thead><tr>'
             '<th scope="col">term</th><th scope="col" class="lc-num">GB</th></tr></thead><tbody>' + rows +
             f'<tr class="lc-chosen"><th scope="row">total</th><td class="lc-num">{c.fmt_gb(est.total_bytes, 2)}'
             '</td></tr></tbody></table>')
    kv = est.kv_bytes_per_token
    per_token = f"{c.fmt_int(kv['global'])} bytes per token in global attention layers"
    if kv["local"]:
        per_token += f", {c.fmt_int(kv['local'])} in local ones until their window is full"
    if est.max_sequences is None:
        verdict = "Choose a GPU to see how many sequences fit."
    elif est.max_sequences:
        verdict = (f"Fits: at most {c.fmt_int(est.max_sequences)} sequences of {c.fmt_int(est.context)} tokens at "
                   f"once on {get_gpu(est.gpu).display_name} at {est.utilization:.0%} of its memory (vLLM's start-up activations and "
                   f"CUDA graphs take a little of that).")
    else:
        verdict = (f"Does not fit: one sequence of {c.fmt_int(est.context)} tokens needs "
                   f"{c.fmt_gb(est.kv_bytes_per_sequence, 2)} of KV cache and {c.fmt_gb(max(0, est.kv_budget_bytes), 2)} "
                   f"is left after the weights. Shorten the context, store the cache in fp8, quantize the weights "
                   f"or split the model across GPUs.")
    return {"table": table, "total": c.fmt_gb(est.total_bytes, 2), "kv_per_token": per_token,
            "kv_per_sequence": c.fmt_gb(est.kv_bytes_per_sequence, 2), "verdict": verdict,
            "notes": " ".join(n[0].upper() + n[1:] + "." for n in est.notes),
            "announce": f"{c.fmt_gb(est.total_bytes, 2)} in all. {verdict}"}
