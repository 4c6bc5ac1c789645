"""DoRA (peft's weight-decomposed LoRA): its magnitude vectors, what its forward keeps for backward, and the
weight norm's temporaries inside one adapted module's forward."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .choices import QUANTIZED
from .params import lora_targets
from .terms import Term, term

if TYPE_CHECKING:
    from .run_settings import RunSettings


def dora_transient(arch: Any, method: str, targets: tuple[str, ...], rank: int, adapter_bytes: int,
                   stream_bytes: int, autocast: bool) -> tuple[int, str]:
    """Bytes peft's DoRA forward holds at once inside its largest adapted module, and the formula.

    peft (tuners/lora/dora.py, DoraLinearLayer.forward) rebuilds the weight norm ||W + scaling B A|| on every
    forward: B A as lora_B(lora_A(I)) on an identity matrix of the input width (the identity and A's output
    are saved by B A's graph until the forward returns), the base weight cast (or dequantized) to the layer
    input's dtype, the scaled product and the sum, alive together at the sum. peft casts that input to the
    adapters' dtype, except in bitsandbytes layers under autocast, which keep the stream's dtype (bf16 for
    attention's output); autocast runs lora_A and lora_B on the identity in bf16. The norm is detached and
    B A's graph dies with the forward, so backward makes none of this, except by recomputing a checkpointed
    layer. LLM.int8's dequantization (int8 x row scale, then x 1/127) holds two fp32 copies at once.
    Measured on CPU with the profiler's allocation events in test_memory_stacks.py.
    """
    a, s = adapter_bytes, stream_bytes
    quantized = method in QUANTIZED
    chosen, _ = lora_targets(arch, targets)
    best, formula = 0, ""
    # peft refuses DoRA on fused expert and router parameters; only Linear and Conv1D modules take it
    for rec, mult in (x for x in chosen if x[0].kind in ("linear", "conv1d")):
        i, o, r = rec.d_in, rec.d_out, rank * mult
        x_b = (2 if rec.reads == "attn_out" else s) if (autocast and quantized) else a
        eye_b = 2 if autocast else a               # the identity as B A's graph keeps it, and A's output on it
        base = 0 if (method == "lora" and x_b == 2) else x_b    # a bf16 base weight is used as it is
        graph = eye_b * i * i + eye_b * i * r
        graph_f = f"{eye_b} B x {i:,} x {i:,} (identity) + {eye_b} B x {i:,} x {r} (A on it)"
        at_sum = [(x_b, "B A"), (base, "base weight"), (x_b, "scaled B A"), (x_b, "their sum")]
        moments = [(graph + sum(n for n, _ in at_sum) * o * i, graph_f, at_sum)]
        if method == "lora_8bit":
            moments.append((graph + (x_b + 8) * o * i, graph_f, [(x_b, "B A"), (8, "int8 dequantized, two fp32 steps")]))
        if autocast and a != 2:
            # while lora_B runs on A's output: the fp32 identity (a local of peft's get_lora_weight, alive until it
            # returns), autocast's bf16 copy of it (kept by A's graph), A's output and B A, both bf16
            moments.append(((a + 2) * i * i + 2 * i * r + 2 * o * i,
                            f"({a} + 2) B x {i:,} x {i:,} (identity and its bf16 copy) + "
                            f"2 B x {i:,} x {r} (A on it) + 2 B x {o:,} x {i:,} (B A)", []))
        for nbytes, head, parts in moments:
            if nbytes > best:
                best = nbytes
                formula = head + (f" + ({' + '.join(str(n) for n, _ in parts if n)}) B x {o:,} x {i:,} "
                                  f"({', '.join(w for n, w in parts if n)})" if parts else "") + f" in {rec.name}"
    return best, formula


def magnitude_term(run: RunSettings, state_bytes: float) -> Term:
    """The magnitude vectors (one value per output row of each adapted module), their gradients and state."""
    a, counts = run.a, run.counts
    Pm = sum(m.d_out * m.copies for m in counts.per_module)
    return term("dora_magnitude", "DoRA magnitude vectors, their gradients and optimizer state",
                (2 * a + state_bytes) * Pm, f"({a} + {a} + {state_bytes:g}) B x {Pm:,} magnitudes (one per output row)")


def dora_terms(run: RunSettings, kept_on_card: int) -> list[Term]:
    """What DoRA's forward keeps for backward in the layers that keep activations, and its transient peak."""
    arch, counts, a, s, ac, T, gc = run.arch, run.counts, run.a, run.s, run.autocast, run.tokens, run.gc
    L, dropout = arch.num_hidden_layers, run.dropout
    out: list[Term] = []
    # DoRA's forward keeps the base layer's output (stream dtype) and the LoRA branch's output (adapter dtype)
    # for the magnitude's gradient: (a + s) B per output feature per token, in every layer kept. With dropout
    # peft recomputes the base output from the dropped input in the adapters' dtype (bf16 under autocast)
    base_out_b = (2 if ac else a) if dropout > 0 else s
    dora_feats = sum(m.d_out for m in counts.per_module if m.kind in ("linear", "conv1d"))
    n_layers = 1 if gc else (kept_on_card if run.offload else L)
    out.append(term("dora_activations", "DoRA activations (base and LoRA outputs kept)",
                    (a + base_out_b) * dora_feats * n_layers * T,
                    f"({a} + {base_out_b}) B x {dora_feats:,} output features x {n_layers} "
                    f"layer{'s' if n_layers > 1 else ''} x {T:,} tokens"))
    # with dropout that recomputed base output is F.linear(dropped x, W) on the weight converted to x's dtype
    # (a dequantized or cast copy; bf16 under autocast): autograd keeps that copy for backward in every
    # module whose input needs a gradient (not layer 0's attention inputs without checkpointing); a 16-bit
    # weight already in x's dtype is the parameter itself
    x_b = 2 if ac else a
    w_b = x_b if (run.quantized or x_b != 2) else 0
    if dropout > 0 and w_b:
        recs = [r for r in arch.layer_linears() if r.name in {m.name for m in counts.per_module}]
        per_layer_w = sum(r.weight * min(1.0, r.copies / L) for r in recs)
        # in layer 0 without checkpointing, the first adapted modules read a tensor nothing upstream trains
        first_reads = recs[0].reads if recs else None
        skip0 = 0 if (gc or run.offload) else sum(r.weight * min(1.0, r.copies / L) for r in recs
                                                  if r.reads == first_reads)
        w_total = per_layer_w * n_layers - skip0
        out.append(term("dora_weights", "DoRA with dropout: each module's converted weight, kept for backward",
                        w_b * w_total, f"{w_b} B x {int(round(w_total)):,} weight entries of the adapted modules in "
                                       f"{n_layers} layer{'s' if n_layers > 1 else ''}"
                                       + (" (less layer 0's first ones, whose input needs no gradient)" if skip0 else "")))
    # the weight norm's weight-sized temporaries inside one module's forward (largest module): alive on top of
    # what is kept so far, and again while backward recomputes a checkpointed layer
    tr, tr_f = dora_transient(arch, run.method, counts.requested, counts.rank, a, s, ac)
    if tr:
        out.append(term("dora_transient", "DoRA weight norm's temporaries, largest adapted module (transient)", tr, tr_f))
    return out
