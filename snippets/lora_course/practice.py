"""Figures for the optional deep dives (docs/deep-dives/): peft's variants, new tokens, the logits, serving.

Every number is computed by the loracalc engine (``count_params``, ``estimate_memory``, ``get_model``,
``adapter_file_bytes``) or read from a cited constant in :mod:`lora_course.prose`; nothing is typed here.
Standard library only: this module is imported in Pyodide too.
"""
from __future__ import annotations

from .registry import figure, table
from .prose import RECIPE, _count, _dtype_bytes, _gb, _int, _lc, _md_table, _mb

MODEL = "llama-3.1-8b"          # the 8B-class model the recipe and the labs use
RANK = int(RECIPE["recipe_rank"])


def _adamw_state_bytes() -> float:
    from loracalc.memory import STATE_BYTES

    return STATE_BYTES["adamw"]


def _trainable_bytes(n_params: int) -> float:
    # weight and gradient in fp32 plus AdamW's moments, as the engine counts an adapter parameter
    return n_params * (2 * _dtype_bytes("fp32") + _adamw_state_bytes())


def _label(model: str) -> str:
    return _lc().get_model(model).display_name


# --------------------------------------------------------------------------------------------------
# DoRA: one magnitude per output feature of every adapted layer
# --------------------------------------------------------------------------------------------------
def _dora_extra() -> tuple[int, int]:
    c = _count(MODEL, RANK, "all-linear")
    extra = c.num_layers * sum(m.d_out for m in c.per_module)
    return extra, c.lora_params


@figure("dora_extra_params")
def dora_extra_params() -> str:
    return _int(_dora_extra()[0])


@figure("dora_extra_percent")
def dora_extra_percent() -> str:
    extra, lora = _dora_extra()
    return f"{100 * extra / lora:.1f}%"


def _dora_peak(gc: bool, dora: bool, dropout: float) -> int:
    # the recipe's QLoRA run (peft, all linear layers, batch 1 x 2,048) with or without DoRA
    return _lc().estimate_memory(MODEL, method="qlora", rank=RANK, targets="all-linear", gradient_checkpointing=gc,
                                 dora=dora, lora_dropout=dropout).total_bytes


@figure("dora_memory_gc")
def dora_memory_gc() -> str:
    """What DoRA adds to the recipe's QLoRA run with checkpointing and dropout 0.05."""
    return _gb(_dora_peak(True, True, 0.05) - _dora_peak(True, False, 0.05))


@figure("dora_memory_no_gc")
def dora_memory_no_gc() -> str:
    """The same without checkpointing, where every layer keeps its DoRA copies."""
    return _gb(_dora_peak(False, True, 0.05) - _dora_peak(False, False, 0.05))


@figure("dora_memory_no_gc_no_dropout")
def dora_memory_no_gc_no_dropout() -> str:
    return _gb(_dora_peak(False, True, 0.0) - _dora_peak(False, False, 0.0))


@figure("practice_model")
def practice_model() -> str:
    return _label(MODEL)


@figure("practice_rank")
def practice_rank() -> str:
    return str(RANK)


# --------------------------------------------------------------------------------------------------
# modules_to_save and new tokens
# --------------------------------------------------------------------------------------------------
def _embedding_params() -> int:
    a = _lc().get_model(MODEL)
    return a.vocab_size * a.hidden_size


@table("new_tokens_cost")
def new_tokens_cost() -> str:
    a = _lc().get_model(MODEL)
    lora = _count(MODEL, RANK, "all-linear").lora_params
    emb = _embedding_params()
    # untied: the dict form {"embed_tokens": ids, "lm_head": ids} trains new rows in both matrices; tied: one shared set
    copies = 1 if a.tie_word_embeddings else 2
    new_rows = 8   # a handful of new special tokens, e.g. a chat template's markers
    rows = [
        [f"LoRA, rank {RANK} on all linear layers", _int(lora), _gb(_trainable_bytes(lora), 2),
         _mb(_lc().adapter_file_bytes(lora, "fp32"))],
        ["… plus `embed_tokens` and `lm_head` in `modules_to_save`", _int(lora + copies * emb),
         _gb(_trainable_bytes(lora + copies * emb), 2),
         _mb(_lc().adapter_file_bytes(lora + copies * emb, "fp32"))],
        [f"… or only {new_rows} new rows of each, with `trainable_token_indices` as a dict naming both", _int(lora + copies * new_rows * a.hidden_size),
         _gb(_trainable_bytes(lora + copies * new_rows * a.hidden_size), 2),
         _mb(_lc().adapter_file_bytes(lora + copies * new_rows * a.hidden_size, "fp32"))],
    ]
    return _md_table(["what is trained", "trainable parameters", "weights, gradients and AdamW state (fp32, as after prepare_model_for_kbit_training)",
                      "saved adapter (fp32)"], rows, ["---", "--:", "--:", "--:"])


@figure("vocab_size_8b")
def vocab_size_8b() -> str:
    return _int(_lc().get_model(MODEL).vocab_size)


@figure("hidden_size_8b")
def hidden_size_8b() -> str:
    return _int(_lc().get_model(MODEL).hidden_size)


# --------------------------------------------------------------------------------------------------
# The logits: what fused or chunked cross-entropy removes
# --------------------------------------------------------------------------------------------------
LOGITS_SEQ_LENS = (2048, 8192)


def _terms(seq_len: int) -> dict[str, int]:
    est = _lc().estimate_memory(MODEL, method="qlora", rank=RANK, targets="all-linear", batch_size=1,
                                seq_len=seq_len, gradient_checkpointing=True, optimizer="paged_adamw_8bit")
    out = {t.key: t.bytes for t in est.terms}
    out["total"] = est.total_bytes
    return out


@table("logits_share")
def logits_share() -> str:
    rows = []
    for s in LOGITS_SEQ_LENS:
        t = _terms(s)
        rows.append([f"{s:,}", _gb(t["activations"], 2), _gb(t["logits"], 2), _gb(t["total"], 1),
                     f"{100 * t['logits'] / t['total']:.0f}%"])
    return _md_table(["tokens per sequence", "checkpointed activations", "logits and their gradient",
                      "estimated total", "logits' share"], rows, ["--:", "--:", "--:", "--:", "--:"])


@figure("logits_seq_long")
def logits_seq_long() -> str:
    return f"{LOGITS_SEQ_LENS[-1]:,}"


# --------------------------------------------------------------------------------------------------
# Serving: adapter sizes and vLLM's adapter slots
# --------------------------------------------------------------------------------------------------
SERVE_RANKS = (8, 16, 64)
SERVE_SLOTS = 4


@table("serving_adapter_slots")
def serving_adapter_slots() -> str:
    rows = []
    for r in SERVE_RANKS:
        n = _count(MODEL, r, "all-linear").lora_params
        one = _lc().adapter_file_bytes(n, "bf16")
        rows.append([str(r), _int(n), _mb(one), _gb(SERVE_SLOTS * one, 2)])
    return _md_table(["`max_lora_rank`", "parameters per adapter (all linear)", "one adapter in bf16",
                      f"`max_loras` = {SERVE_SLOTS} slots"], rows, ["--:", "--:", "--:", "--:"])


@figure("serving_slots")
def serving_slots() -> str:
    return str(SERVE_SLOTS)


@figure("serving_base_gb")
def serving_base_gb() -> str:
    return _gb(_count(MODEL, 8, "q,v").total_params * _dtype_bytes("bf16"))
