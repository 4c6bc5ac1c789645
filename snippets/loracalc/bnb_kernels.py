"""What bitsandbytes' kernels hold beyond autograd: inputs its matmuls keep on ``ctx``, and weights dequantized whole.

MatMul8bitLt (LLM.int8) and MatMul4Bit before bitsandbytes 0.43.2 keep their input for backward outside
autograd's saved tensors; every quantized matmul's backward dequantizes its whole weight for a moment.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .families import is_4bit
from .terms import Term, term

if TYPE_CHECKING:
    from .run_settings import RunSettings

INT8_SCALE_BYTES = 4        # LLM.int8: one fp32 scale (SCB) per output row beside the int8 weight


def bnb_kept_inputs(arch, method: str, chosen_names: set[str], attention: str, lora_dropout: float,
                    stream_bytes: int, adapter_bytes: int, old_bitsandbytes: bool,
                    every_linear: bool = False) -> tuple[int, int, int, int, str]:
    """Bytes per token and layer of the inputs bitsandbytes' own autograd functions keep on ``ctx`` for backward.

    MatMul8bitLt (LLM.int8, bitsandbytes 0.50 too) keeps its input A in ``ctx.tensors``, and MatMul4Bit did the
    same before bitsandbytes 0.43.2 (commit 9e75374, #1270, July 2024, "delete useless buffered activation").
    These references are invisible to ``saved_tensors_hooks``, so activation offloading does not move them.
    An input counts once per group of modules that read it (q, k and v share one; gate and up another), and
    not at all where the model keeps it anyway: o_proj's input is fused attention's saved output, and LoRA
    without dropout in the stream's dtype saves the same tensor for its A.
    Returns (bytes per token and layer, the same for layer 0 when nothing upstream of it needs a gradient,
    the same two still held after backward, why): autograd records no node for a matmul whose
    input needs no gradient, so nothing is kept there; after backward the inputs shared with autograd's saved
    tensors are held by ``ctx`` alone, so all groups count.
    """
    if method == "lora_8bit" or (method == "qlora" and old_bitsandbytes):
        fam = arch.family
        outputs = {fam.names[-1], fam.mlp_names[-1]}
        lora_shares = lora_dropout == 0 and adapter_bytes == stream_bytes
        groups: dict[tuple, tuple[int, set, float]] = {}
        L = arch.num_hidden_layers
        for r in arch.layer_linears():
            if not is_4bit(r, fam, every_linear):
                continue                                   # bitsandbytes replaces only these modules
            key = (r.path, r.name if r.name in outputs else "in")
            width, names, share = groups.get(key, (r.d_in, set(), min(1.0, r.copies / L)))
            groups[key] = (width, names | {r.name}, share)
        # layer 0 without checkpointing: nothing upstream needs a gradient, so a group keeps its input only once
        # an adapter before it (in build order) has made the stream require one
        total = first_layer = held = held_first = 0.0
        grad_flows = False
        for (path, which), (width, names, share) in groups.items():
            skip = (which == fam.names[-1] and attention in ("sdpa", "flash_attention_2")) or (
                lora_shares and bool(names & chosen_names))
            held += stream_bytes * width * share
            if grad_flows:
                held_first += stream_bytes * width * share
            if not skip:
                total += stream_bytes * width * share
                if grad_flows:
                    first_layer += stream_bytes * width * share
            grad_flows = grad_flows or bool(names & chosen_names)
        why = "LLM.int8 keeps" if method == "lora_8bit" else "bitsandbytes < 0.43.2 kept"
        return int(round(total)), int(round(first_layer)), int(round(held)), int(round(held_first)), why
    return 0, 0, 0, 0, ""



def bnb_terms(run: RunSettings) -> tuple[list[Term], int]:
    """(terms, bytes the last step's graph still holds after its backward) for what bitsandbytes keeps outside
    autograd: the inputs its 8-bit (and old 4-bit) matmuls keep on ``ctx``, and the weights its backward
    dequantizes whole: the output layer's (when quantized) while the loss's tensors are alive; the largest layer
    matrix's while a checkpointed layer runs backward."""
    arch, counts, s, T, gc = run.arch, run.counts, run.s, run.tokens, run.gc
    L, h, V = arch.num_hidden_layers, arch.hidden_size, arch.vocab_size
    every = run.stack.quantizes_every_linear
    out: list[Term] = []
    chosen_names = {m.name for m in counts.per_module}
    kept_tok, kept_layer0, held_tok, held_layer0, kept_why = bnb_kept_inputs(
        arch, run.method, chosen_names, run.attention, run.dropout, s, run.a, run.old_bnb, every)
    last_kept = 0      # what the last step's graph still holds after its backward (see Recipe.holds_last_step)
    head_q = run.head_quantized
    if kept_tok:
        n_layers = 1 if gc else L
        # without checkpointing nothing upstream of layer 0 needs a gradient: its first groups keep nothing
        skip = 0 if gc else kept_tok - kept_layer0
        # a quantized output layer keeps the final norm's output too, checkpointing or not
        head_tok = s * h if head_q else 0
        out.append(term("bnb_inputs", f"Layer inputs {kept_why} for backward (outside autograd, not offloaded)",
                        (kept_tok * n_layers - skip + head_tok) * T,
                        f"({kept_tok:,} B/token x {n_layers} layer{'s' if n_layers > 1 else ''}"
                        + (f" - {skip:,} B/token in layer 0" if skip else "")
                        + (f" + {head_tok:,} B/token at the output layer" if head_tok else "") + f") x {T:,} tokens"))
        # backward frees checkpointed layers' recomputed graphs, not the output layer's ctx; in the others it
        # frees autograd's saved tensors, so the inputs ctx shared with them count now (layer 0's as before)
        last_kept = head_tok * T if gc else (held_tok * (L - 1) + held_layer0 + head_tok) * T
    if run.quantized:
        copies = run.stack.dequant_copies
        if head_q:
            out.append(term("dequant_head", "Output layer dequantized in its backward (transient)", 2 * copies * V * h,
                            f"{copies} x 2 B x {V:,} x {h:,}"
                            + (" (fp16 quant state, then a bf16 copy)" if copies > 1 else "")))
        big_w = max((r.weight for r in arch.layer_linears() if is_4bit(r, arch.family, every)), default=0)
        if gc and big_w:
            out.append(term("dequant_layer", "Largest layer weight dequantized in backward (transient)",
                            2 * copies * big_w, f"{copies} x 2 B x {big_w:,} entries"))
    return out, last_kept
