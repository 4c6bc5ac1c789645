"""What quantized bases' kernels hold for backward: inputs their matmuls keep, and weights dequantized whole.

MatMul8bitLt (LLM.int8) and MatMul4Bit before bitsandbytes 0.43.2 keep their input for backward outside
autograd's saved tensors; every bitsandbytes matmul's backward dequantizes its whole weight for a moment.
LoRA on a base another library quantized (``loracalc.quantized.LORA_BACKWARD``) does one of the same two things
inside autograd: HQQ keeps the input and dequantizes again in backward; torchao, GPTQModel and AWQ dequantize in
the forward and autograd saves that 16-bit weight for backward, every quantized module's, until backward frees it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .families import is_4bit
from .terms import Term, term

if TYPE_CHECKING:
    from .run_settings import RunSettings

INT8_SCALE_BYTES = 4        # LLM.int8: one fp32 scale (SCB) per output row beside the int8 weight


def _input_groups(arch, every_linear: bool) -> dict[tuple, tuple[int, set, float, float]]:
    """The quantized modules of a layer grouped by the tensor they read, in build order: (path, "in" or the output
    module's name) -> (input width, module names, the share of layers holding them, their weights' values per
    layer). q, k and v read one tensor; gate and up another; o_proj and down_proj each their own."""
    fam = arch.family
    outputs = {fam.names[-1], fam.mlp_names[-1]}
    L = arch.num_hidden_layers
    groups: dict[tuple, tuple[int, set, float, float]] = {}
    for r in arch.layer_linears():
        if not is_4bit(r, fam, every_linear):
            continue                                   # bitsandbytes replaces only these modules
        key = (r.path, r.name if r.name in outputs else "in")
        width, names, share, weights = groups.get(key, (r.d_in, set(), min(1.0, r.copies / L), 0.0))
        groups[key] = (width, names | {r.name}, share, weights + (r.weight + 0.0) * r.copies / L)
    return groups


def saved_weights(arch, chosen_names: set[str], per_row_bytes: int) -> tuple[int, int]:
    """(bytes per layer, of which layer 0 saves none without checkpointing) of the 16-bit weights autograd
    saves where the forward dequantized them (torchao, GPTQModel, AWQ): 2 B per weight and ``per_row_bytes``
    per output row, for every quantized module whose input needs a gradient. In layer 0, when nothing upstream
    needs one, the modules reading the layer's input (and any group before the first adapter) save nothing,
    as the kept inputs below."""
    rows = {}
    for r in arch.layer_linears():
        if is_4bit(r, arch.family, True):
            rows[r.name] = rows.get(r.name, 0.0) + r.d_out * r.copies / arch.num_hidden_layers
    per_layer = skip = 0.0
    grad_flows = False
    for _key, (_width, names, _share, weights) in _input_groups(arch, True).items():
        nbytes = 2 * weights + per_row_bytes * sum(rows[n] for n in names)
        per_layer += nbytes
        if not grad_flows:
            skip += nbytes
        grad_flows = grad_flows or bool(names & chosen_names)
    return int(round(per_layer)), int(round(skip))


def bnb_kept_inputs(arch, method: str, chosen_names: set[str], attention: str, lora_dropout: float,
                    stream_bytes: int, adapter_bytes: int, old_bitsandbytes: bool,
                    every_linear: bool = False, keeps_input: bool = False) -> tuple[int, int, int, int, str]:
    """Bytes per token and layer of the inputs bitsandbytes' own autograd functions keep on ``ctx`` for backward.

    MatMul8bitLt (LLM.int8, bitsandbytes 0.50 too) keeps its input A in ``ctx.tensors``, and MatMul4Bit did the
    same before bitsandbytes 0.43.2 (commit 9e75374, #1270, July 2024, "delete useless buffered activation").
    These references are invisible to ``saved_tensors_hooks``, so activation offloading does not move them.
    ``keeps_input``: a base whose own autograd function saves its input (HQQ), the same bytes inside autograd.
    An input counts once per group of modules that read it (q, k and v share one; gate and up another), and
    not at all where the model keeps it anyway: o_proj's input is fused attention's saved output, and LoRA
    without dropout in the stream's dtype saves the same tensor for its A.
    Returns (bytes per token and layer, the same for layer 0 when nothing upstream of it needs a gradient,
    the same two still held after backward, why): autograd records no node for a matmul whose
    input needs no gradient, so nothing is kept there; after backward the inputs shared with autograd's saved
    tensors are held by ``ctx`` alone, so all groups count.
    """
    if method == "lora_8bit" or (method == "qlora" and old_bitsandbytes) or keeps_input:
        fam = arch.family
        lora_shares = lora_dropout == 0 and adapter_bytes == stream_bytes
        groups = _input_groups(arch, every_linear)
        # layer 0 without checkpointing: nothing upstream needs a gradient, so a group keeps its input only once
        # an adapter before it (in build order) has made the stream require one
        total = first_layer = held = held_first = 0.0
        grad_flows = False
        for (path, which), (width, names, share, _weights) in groups.items():
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
        why = "LLM.int8 keeps" if method == "lora_8bit" else (
            "bitsandbytes < 0.43.2 kept" if method == "qlora" else "the base's autograd function keeps")
        return int(round(total)), int(round(first_layer)), int(round(held)), int(round(held_first)), why
    return 0, 0, 0, 0, ""



def bnb_terms(run: RunSettings) -> tuple[list[Term], int]:
    """(terms, bytes the last step's graph still holds after its backward) for what a quantized base keeps for
    backward: the inputs bitsandbytes' 8-bit (and old 4-bit) matmuls keep on ``ctx`` (HQQ's in autograd), the
    16-bit weights autograd saves where the forward dequantized them (torchao, GPTQModel, AWQ), and the weights
    dequantized whole for a moment: the output layer's (when quantized) while the loss's tensors are alive; the
    largest layer matrix's while a checkpointed layer runs backward."""
    arch, counts, s, T, gc = run.arch, run.counts, run.s, run.tokens, run.gc
    L, h, V = arch.num_hidden_layers, arch.hidden_size, arch.vocab_size
    base = run.base
    every = True if base else run.stack.quantizes_every_linear
    out: list[Term] = []
    chosen_names = {m.name for m in counts.per_module}
    kept_tok, kept_layer0, held_tok, held_layer0, kept_why = bnb_kept_inputs(
        arch, run.method, chosen_names, run.attention, run.dropout, s, run.a, run.old_bnb, every,
        keeps_input=bool(base and base.keeps_input))
    last_kept = 0      # what the last step's graph still holds after its backward (see Recipe.holds_last_step)
    head_q = run.head_quantized
    # nothing upstream of layer 0 needs a gradient without checkpointing (unless an embedding adapter makes it)
    layer0_free = not gc and not any(m.kind == "embedding" for m in counts.per_module)
    if kept_tok:
        n_layers = 1 if gc else L
        # without checkpointing nothing upstream of layer 0 needs a gradient: its first groups keep nothing
        skip = 0 if gc else kept_tok - kept_layer0
        # a quantized output layer keeps the final norm's output too, checkpointing or not
        head_tok = s * h if head_q else 0
        where = "in autograd" if base else "outside autograd, not offloaded"
        out.append(term("bnb_inputs", f"Layer inputs {kept_why} for backward ({where})",
                        (kept_tok * n_layers - skip + head_tok) * T,
                        f"({kept_tok:,} B/token x {n_layers} layer{'s' if n_layers > 1 else ''}"
                        + (f" - {skip:,} B/token in layer 0" if skip else "")
                        + (f" + {head_tok:,} B/token at the output layer" if head_tok else "") + f") x {T:,} tokens"))
        # backward frees checkpointed layers' recomputed graphs, not the output layer's ctx; in the others it
        # frees autograd's saved tensors, so the inputs ctx shared with them count now (layer 0's as before);
        # a base's autograd function frees its own with the graph
        if not base:
            last_kept = head_tok * T if gc else (held_tok * (L - 1) + held_layer0 + head_tok) * T
    if base and base.saves_weight:
        per_layer, skip = saved_weights(arch, chosen_names, base.saved_bytes_per_row)
        skip = skip if layer0_free else 0
        n_layers = 1 if gc else L
        row = f" + {base.saved_bytes_per_row} B per output row" if base.saved_bytes_per_row else ""
        out.append(term("dequant_saved", "Dequantized 16-bit weights autograd saves for backward"
                        + (" (the recomputed layer's)" if gc else ""), per_layer * n_layers - skip,
                        f"(2 B x weights{row}) = {per_layer:,} B x {n_layers} layer{'s' if n_layers > 1 else ''}"
                        + (f" - {skip:,} B in layer 0" if skip else "")))
    if run.quantized or base:
        copies = base.transient_copies if base else run.stack.dequant_copies
        if head_q:
            out.append(term("dequant_head", "Output layer dequantized in its backward (transient)", 2 * copies * V * h,
                            f"{copies} x 2 B x {V:,} x {h:,}"
                            + (" (fp16 quant state, then a bf16 copy)" if copies > 1 else "")))
        big_w = max((r.weight for r in arch.layer_linears() if is_4bit(r, arch.family, every)), default=0)
        if gc and big_w and copies:
            when = "in backward" if not (base and base.saves_weight) else "in the recompute"
            out.append(term("dequant_layer", f"Largest layer weight dequantized {when} (transient)",
                            2 * copies * big_w, f"{copies} x 2 B x {big_w:,} entries"))
    return out, last_kept
