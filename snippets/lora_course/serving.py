"""Serving figures: loracalc.serving against vLLM's own start-up figures, and the serving page's worked example.

``data/published_kv_cache.json`` holds vLLM log lines that pair the memory vLLM gave the KV cache with the tokens
it holds (or the KV cache one full-length request needs), each with the config.json values the size depends on.
"""
from __future__ import annotations

import json
import os

from .registry import figure, table
from .prose import _md_table

DATA_FILE = os.path.join(os.path.dirname(__file__), "data", "published_kv_cache.json")
EXAMPLE = dict(model="llama-3.1-8b", context=32768, batch=8, weights="bf16", max_loras=4, max_lora_rank=16,
               gpu="h100-80gb")


def records() -> list[dict]:
    with open(DATA_FILE, encoding="utf-8") as f:
        return json.load(f)["records"]


def predict(rec: dict) -> int:
    """loracalc's figure for what the log line reports: tokens in the given memory, or one sequence's bytes."""
    import loracalc
    from loracalc.serving import KV_BLOCK_TOKENS, kv_cache_bytes

    arch = loracalc.model_from_config(rec["config"], name=rec["id"])
    tp = rec["tensor_parallel"]
    if rec["quantity"] == "tokens":   # whole blocks of the memory vLLM reported
        per_block = kv_cache_bytes(arch, KV_BLOCK_TOKENS, tensor_parallel=tp)["sequence"]
        return rec["given_bytes"] // per_block * KV_BLOCK_TOKENS
    return kv_cache_bytes(arch, rec["context"], tensor_parallel=tp)["sequence"]


def error_percent(rec: dict) -> float:
    return 100.0 * (predict(rec) - rec["published"]) / rec["published"]


@table("published_kv_cache")
def published_kv_cache_table() -> str:
    rows = []
    for r in records():
        got = predict(r)
        if r["quantity"] == "tokens":
            shown, mine = f"`{r['published']:,} tokens` in `{r['given_text']}`", f"{got:,} tokens"
        else:   # vLLM's own words in code: it prints binary units
            shown, mine = f"`{r['published_text']}` for {r['context']:,} tokens", f"{got / 1e9:.3f} GB"
        rows.append([f"[{r['source']}]({r['url']})", shown, mine, f"{error_percent(r):+.2f}%"])
    return _md_table(["vLLM printed", "what it reported", "loracalc", "error"], rows, ["", "--:", "--:", "--:"])


@figure("published_kv_worst_error")
def published_kv_worst_error() -> str:
    return f"{max(abs(error_percent(r)) for r in records()):.1f}%"


def _example():
    from loracalc.serving import estimate_serving

    return estimate_serving(**EXAMPLE)


@table("serving_example")
def serving_example_table() -> str:
    e = _example()
    rows = [[label, f"{b / 1e9:,.2f} GB"] for _, label, b in e.terms]
    rows.append(["**total on the card**", f"**{e.total_bytes / 1e9:,.2f} GB**"])
    return _md_table(["term", "bytes"], rows, ["", "--:"])


@figure("serving_example_kv_per_token")
def serving_example_kv_per_token() -> str:
    return f"{_example().kv_bytes_per_token['global'] / 1000:,.0f} kB"


@figure("serving_example_max_sequences")
def serving_example_max_sequences() -> str:
    return f"{_example().max_sequences:,}"


@table("quantized_bases")
def quantized_bases_table() -> str:
    import loracalc
    from loracalc.quantized import FORMATS, stored_bytes

    arch = loracalc.get_model(EXAMPLE["model"])
    bf16 = stored_bytes(arch, "bf16")
    rows = [["bf16 (no quantization)", "16", f"{bf16 / 1e9:,.2f} GB", "1.00", "the checkpoint itself"]]
    for name, f in FORMATS.items():
        b = stored_bytes(arch, name)
        rows.append([f"{f.label}: `{name}`", f"{f.bits_per_weight:g}", f"{b / 1e9:,.2f} GB", f"{b / bf16:.2f}",
                     "measured on a CPU" if f.measured_on_cpu else "from its stored tensors"])
    return _md_table(["format", "bits per code", "weights", "of bf16", "checked"], rows, ["", "--:", "--:", "--:", ""])
