"""Training memory, term by term: what a GPU holds for one training step of a decoder-only model.

``estimate_memory(...)`` returns every term with its key, a label, its bytes and its formula as text,
so a reader can see where the total comes from. This module assembles the terms; each kind lives in its own
module: ``run_settings`` (the inputs, read once), ``optimizers`` (one class per optimizer), ``activations``
(what autograd saves, checked against ``saved_tensors_hooks`` in ``gpu_labs/memory_probe.py``), ``losses``,
``bnb_kernels`` (what bitsandbytes keeps and dequantizes), ``dora`` and ``peaks`` (which terms are alive
together at the step's peak); the rest is storage arithmetic, here.
"""
from __future__ import annotations

from typing import Any

from . import nf4
# the names other modules and older code import from here
from .activations import activation_bytes
from .allocator import CUDA_CONTEXT_BYTES, reserve_bytes
from .bnb_kernels import INT8_SCALE_BYTES, bnb_kept_inputs, bnb_terms
from .choices import ATTENTIONS, METHODS, PRECISIONS, QUANTIZED
from .errors import as_bool
from .dora import dora_terms, dora_transient, magnitude_term
from .families import ACTIVATIONS_CHECKED, is_4bit
from .losses import LOSSES, loss_bytes
from .models import quantizable_params, total_params
from .optimizers import OPTIMIZERS, PAGED_MIN_NUMEL, STATE_BYTES, _state_bytes, state_terms
from .peaks import at_peak, moments
from .quantized import FORMATS, split_stored_bytes
from .recipes import (ADAPTER_BYTES, AUTOCAST, DEQUANT_COPIES, HOLDS_LAST_STEP, KBIT_UPCAST, KV_EXPANDED,
                      QUANTIZE_LM_HEAD, QUANTIZES_EVERY_LINEAR, RECIPES)
from .run_settings import MAX_BATCH, MAX_SEQ, RunSettings, read_settings
from .terms import MemoryEstimate, Term, gb, term
from .vision import vision_activation_bytes

__all__ = ["ACTIVATIONS_CHECKED", "ADAPTER_BYTES", "ATTENTIONS", "AUTOCAST", "CUDA_CONTEXT_BYTES",
           "DEQUANT_COPIES", "HOLDS_LAST_STEP", "INT8_SCALE_BYTES", "KBIT_UPCAST", "KV_EXPANDED", "LOSSES",
           "MAX_BATCH", "MAX_SEQ", "METHODS", "MemoryEstimate", "OFFLOAD_LAYERS_ON_CARD", "OPTIMIZERS",
           "PAGED_MIN_NUMEL", "PRECISIONS", "QUANTIZED", "QUANTIZE_LM_HEAD", "QUANTIZES_EVERY_LINEAR", "RECIPES",
           "STATE_BYTES", "Term", "_state_bytes", "activation_bytes", "bnb_kept_inputs", "dora_transient",
           "estimate_memory", "loss_bytes"]

OFFLOAD_LAYERS_ON_CARD = 2  # offloading keeps the layer in use and the one being copied on the card


def _weight_terms(run: RunSettings, notes: list[str]) -> list[Term]:
    """The model's stored weights (and, for LoRA, the adapters), in the dtypes the method and recipe give them."""
    arch, method = run.arch, run.method
    P, V, h = total_params(arch), arch.vocab_size, arch.hidden_size
    if method == "full":
        if run.precision == "mixed":
            return [term("weights", "Weights (bf16 working copy)", 2 * P, f"2 B x {P:,} params"),
                    term("master_weights", "Master weights (fp32)", 4 * P, f"4 B x {P:,} params")]
        return [term("weights", "Weights (bf16)", 2 * P, f"2 B x {P:,} params")]
    every = run.stack.quantizes_every_linear
    Pq = quantizable_params(arch, every)
    lm_params = 0 if arch.tie_word_embeddings else V * h
    head_q = run.head_quantized
    rest = P - Pq - (lm_params if head_q else 0)
    norms = P - Pq - V * h - lm_params          # norms and biases: what stays fp32 in every recipe
    out = []
    if method == "lora" and run.base:
        fmt = FORMATS[run.base_format]
        q_bytes, rest16 = split_stored_bytes(arch, run.base_format)
        Pq16 = P - rest16 // 2
        out.append(term("weights_quantized", f"Frozen linear weights ({fmt.label})", q_bytes,
                        f"{q_bytes * 8 / Pq16:.4g} bits x {Pq16:,} params ({fmt.bits_per_weight:g}-bit codes, "
                        "scales and zeros: loracalc.quantized)"))
        out.append(term("weights_16bit", "Embeddings, lm_head, norms" + (", fused experts, routers" if arch.is_moe
                                                                         else "") + " (bf16)", rest16,
                        f"2 B x {rest16 // 2:,} params"))
        b = run.base
        notes.append(f"{fmt.label} base through peft's {b.peft_layer}: "
                     + ("autograd saves each module's dequantized 16-bit weight for backward"
                        if b.saves_weight else "its autograd function keeps the input and dequantizes again in backward")
                     + ("; measured on a CPU (tests/snippets/quant_base_record.py)" if b.measured_on_cpu else
                        "; read from the library's source, not measured: it is built for CUDA")
                     + "; no prepare_model_for_kbit_training upcast assumed")
    elif method == "lora":
        out.append(term("weights", "Frozen base weights (bf16)", 2 * P, f"2 B x {P:,} params"))
    elif method == "qlora":
        bs, dq = run.block_size, run.double_quant
        q_bytes = nf4.storage_bytes(arch, block_size=bs, double_quant=dq, every_linear=every)
        bits = nf4.bits_per_param(block_size=bs, double_quant=dq)
        if head_q:
            q_bytes += nf4.tensor_storage_bytes(lm_params, bs, dq)
        out.append(term("weights_4bit", "Frozen linear weights (NF4" + (" + double quant)" if dq else ")")
                        + (", lm_head included" if head_q else ""), q_bytes,
                        f"{bits:.5g} bits x {Pq + (lm_params if head_q else 0):,} params (4-bit codes + absmax per {bs})"))
    else:
        rows = sum(r.d_out * r.copies for r in arch.layer_linears()) + (V if head_q else 0)
        n8 = Pq + (lm_params if head_q else 0)
        out.append(term("weights_8bit", "Frozen linear weights (LLM.int8)" + (", lm_head included" if head_q else ""),
                        n8 + INT8_SCALE_BYTES * rows,
                        f"1 B x {n8:,} params + {INT8_SCALE_BYTES} B x {rows:,} output rows (fp32 scale per row)"))
    if run.quantized:
        out.append(term("weights_16bit", "Embeddings, " + ("" if head_q else "lm_head, ") + "norms"
                        + (", fused experts, routers" if arch.is_moe else "") + " (bf16)", 2 * rest,
                        f"2 B x {rest:,} params"))
        if arch.is_moe:
            notes.append("bitsandbytes keeps the fused 3-D expert weights in 16 bit (only nn.Linear is quantized)"
                         + (" and prepare_model_for_kbit_training upcasts them to fp32" if run.upcast != "none" else "")
                         + ": quantizing saves little here")
        if run.upcast == "all":
            out.append(term("kbit_upcast", "fp32 upcast by prepare_model_for_kbit_training", 2 * rest,
                            f"(4 - 2) B x {rest:,} non-quantized params"))
        elif run.upcast == "norms":
            out.append(term("kbit_upcast", "fp32 norms kept by qlora.py", 2 * norms,
                            f"(4 - 2) B x {norms:,} norm and bias params"))
    dtype = "fp32" if run.a == 4 else "bf16"
    Pl = run.counts.lora_params
    out.append(term("adapter", f"LoRA adapter weights ({dtype})", run.a * Pl, f"{run.a} B x {Pl:,} LoRA params"))
    return out


def _trainable_sizes(run: RunSettings) -> tuple[list[int], list[int]]:
    """(sizes of every trainable tensor, sizes of those whose state the optimizer term counts): the model's
    parameter tensors from the family walker's records, or A and B of every adapted module in every layer
    holding it (a fused expert parameter's A and B hold all its experts), with DoRA's magnitudes, whose state
    the magnitude term counts."""
    if run.method == "full":
        sizes = [n for r in run.arch.records for n in (r.weight, r.bias) if n for _ in range(r.copies)]
        return sizes, sizes
    per_module = run.counts.per_module
    sizes = [t for m in per_module for _ in range(m.copies)
             for t in (m.lora_params * m.d_in // (m.d_in + m.d_out), m.lora_params * m.d_out // (m.d_in + m.d_out))]
    if not run.dora:
        return sizes, sizes
    return sizes + [m.d_out for m in per_module for _ in range(m.copies)], sizes


def persistent_sizes(run: RunSettings) -> list[int]:
    """Bytes of each tensor that lives through the whole run (weights as stored, trainable values, their fp32
    masters and optimizer state), for the allocator's rounding (``allocator.rounding_bytes``)."""
    from .quantized import FORMATS
    fmt = FORMATS.get(run.base_format) or FORMATS.get({"qlora": "nf4", "lora_8bit": "int8"}.get(run.method, ""))
    every = run.stack.quantizes_every_linear or run.base_format != "bf16"
    out = []
    for r in run.arch.records:
        quantized = fmt is not None and (is_4bit(r, run.arch.family, every)
                                         or (r.role == "head" and run.head_quantized))
        out += [fmt.per_linear(r.d_out, r.d_in) if quantized else 2 * r.weight] * r.copies if r.weight else []
        out += [2 * r.bias] * r.copies if r.bias else []
    sizes, state_sizes = _trainable_sizes(run)
    if run.method != "full":
        out += [run.a * n for n in sizes]
    elif run.precision == "mixed":
        out += [4 * n for n in sizes]
    per_state = _state_bytes(run.optimizer, run.a)
    out += [int(per_state * n) for n in state_sizes]
    return [n for n in out if n]


def _stored_terms(run: RunSettings, notes: list[str], sizes: list[int],
                  state_sizes: list[int]) -> tuple[list[Term], list[Term]]:
    """(terms on the card, terms in host memory) for what lives through the whole step: weights, adapters
    and the optimizer's state."""
    terms = _weight_terms(run, notes)
    st = _state_bytes(run.optimizer, run.a)
    if run.dora:
        terms.append(magnitude_term(run, st))
    full = run.method == "full"
    trainable = total_params(run.arch) if full else run.counts.lora_params
    where = "on the fp32 master weights" if full and run.precision == "mixed" else (
        "LoRA params" if not full else "params (state in the weights' bf16)")
    card, host, state_notes = state_terms(run.optimizer, run.a, state_sizes, trainable, where, run.on_host)
    notes.extend(state_notes)
    return terms + card, host


def _gradient_terms(run: RunSettings, sizes: list[int]) -> tuple[str, list[Term]]:
    """(the gradients' key, the gradients and the optimizer step's temporaries). All gradients live at the end of
    backward, unless each is applied and freed as it arrives."""
    a, P, Pl = run.a, total_params(run.arch), run.counts.lora_params
    grad_b = 2 if run.method == "full" else a      # full fine-tuning's gradients are bf16, beside fp32 masters
    if run.in_backward:
        big = max(sizes)
        grads = term("gradients", "Gradients (optimizer step fused into backward)", grad_b * big,
                     f"{grad_b} B x {big:,} (largest tensor; each gradient is applied and freed in backward)")
    elif run.method == "full":
        grads = term("gradients", "Gradients (bf16)", 2 * P, f"2 B x {P:,} params")
    else:
        grads = term("adapter_grads", f"LoRA gradients ({'fp32' if a == 4 else 'bf16'})", a * Pl,
                     f"{a} B x {Pl:,} LoRA params")
    out = [grads]
    temp = run.opt.step_temporaries(sizes, _state_bytes(run.optimizer, a), run.in_backward, run.stack.fused_adamw)
    if temp:
        out.append(term("optimizer_temp", "AdamW step's temporary (foreach sqrt of the second moment)", *temp))
    return grads.key, out


def _activation_terms(run: RunSettings, notes: list[str], host: list[Term]) -> list[Term]:
    """Activations kept for backward (checkpointed inputs and the recomputed layer, or every layer's), less what
    offloading moves to host memory (appended to ``host``)."""
    arch, counts, s, T, gc, offload = run.arch, run.counts, run.s, run.tokens, run.gc, run.offload
    L, h = arch.num_hidden_layers, arch.hidden_size
    act = activation_bytes(arch, run.method, counts.rank, counts.requested, run.batch_size, run.seq_len, gc,
                           run.attention, run.dropout, stream_bytes=s, adapter_bytes=run.a, autocast=run.autocast,
                           head_weight_copy=run.head_copy, kv_expanded=run.stack.kv_expanded)
    if arch.model_type not in ACTIVATIONS_CHECKED:
        notes.append(f"the activation term is rough for {arch.model_type}: on a tiny model it differed from what "
                     "autograd saved by more than 10%")
    if act["merged_experts_per_layer"]:
        notes.append(f"peft adapts the fused experts by adding B @ A to their weights in the forward pass: each "
                     f"layer keeps a merged copy for backward ({act['merged_experts_per_layer'] / 1e9:,.2f} GB per "
                     "layer, counted in the activations)")
    kept_on_card = min(L, OFFLOAD_LAYERS_ON_CARD)
    out = []
    if gc:
        kept = L * s * h * T
        moved = kept - kept_on_card * s * h * T if offload else 0
        out.append(term("activations", "Activations: checkpointed layer inputs"
                        + (" (the rest offloaded to CPU)" if offload else "") + " and the head",
                        kept - moved + act["head_other"],
                        f"{kept_on_card if offload else L} layers x {s * h:,} B x {T:,} tokens"
                        + (f" ({L - kept_on_card} more layers in CPU memory)" if offload else "")
                        + " + the final norm and head"))
        # activation_bytes leaves out what the recomputed layer's first op shares with the kept input, and adds
        # the merged experts (and autocast's weight copies) per layer: the text says the same
        merged = act["merged_experts_per_layer"] + act["cast_weights_per_layer"]
        out.append(term("recomputed", "Activations of the layer being recomputed in backward", act["layers"] - kept,
                        f"{act['recomputed_per_token']:,} B/token x {T:,} tokens"
                        + (f" + {merged:,} B (merged experts or autocast's weight copies)" if merged else "")))
    else:
        moved = act["layers"] - act["layers"] * kept_on_card // L if offload else 0
        out.append(term("activations", "Activations saved for backward" + (" (offloaded to CPU)" if offload else ""),
                        act["layers"] - moved + act["head_other"],
                        f"{kept_on_card if offload else L} layers x {act['per_layer_per_token']:,} B/token x "
                        f"{T:,} tokens" + (f" ({L - kept_on_card} more layers in CPU memory)" if offload else "")
                        + " + the final norm and head"))
    if moved:
        host.append(Term("activations_offloaded", "Activations offloaded to CPU memory", moved,
                         f"{L - kept_on_card} layers' saved tensors in pinned host memory"))
    if arch.vision and run.images:
        vb, vf = vision_activation_bytes(arch, counts, run.method, run.batch_size, run.images, run.image_size, gc,
                                         s, run.a)
        if vb:
            out.append(term("vision_activations", "Vision tower and projector activations (rough)", vb, vf))
            notes.append("the vision tower's activation term is rough: 18% to 35% under the saved tensors of tiny "
                         "towers on a CPU (scripts/vlm_activation_check.py)")
        notes.append(f"{run.images} image(s) per sequence add {run.images} x {run.image_tokens:,} tokens to the "
                     f"{run.text_seq_len:,} text tokens: the language model sees {run.seq_len:,}")
    if run.dora:
        out += dora_terms(run, kept_on_card)
    return out


def _loss_terms(run: RunSettings, last_kept: int) -> list[Term]:
    """The loss's own tensors, a LoRA output layer's second gradient, and what a loop holding the last step keeps."""
    arch, s, a, T, logits_b = run.arch, run.s, run.a, run.tokens, run.logits_b
    h, V = arch.hidden_size, arch.vocab_size
    lb, lf = loss_bytes(run.loss, V, T, h, logits_b, s, run.loss_chunks, arch.final_softcap, run.method == "full")
    labels = {"full": "Logits, fp32 log-softmax and its two gradients"}
    out = [term("logits", labels.get(run.loss, f"Loss: {LOSSES[run.loss]}"), lb, lf)]
    lora_head = any(m.name == "lm_head" for m in run.counts.per_module) and run.method != "full"
    if lora_head and not run.autocast and a != logits_b:
        # LoRA on a 16-bit output layer with fp32 adapters: the sum of the two branches is fp32 and is cast
        # back, so backward carries the gradient in both dtypes (measured on CPU with peft: one more
        # logits-sized tensor and one of the head's input size alive when the loss's tensors are)
        # (with dropout, also the gradient of the dropped copy, in the adapters' dtype)
        d_w = a * h if run.dropout > 0 else 0
        out.append(term("head_lora_grads", "LoRA output layer: its gradient in the adapters' dtype too",
                        (logits_b * V + s * h + d_w) * T,
                        f"({logits_b} B x {V:,} vocab + {s} B x {h:,}{f' + {a} B x {h:,}' if d_w else ''}) x {T:,} tokens"))
    if run.stack.holds_last_step:
        out.append(term("last_step", "Last step's logits" + (" and the inputs its graph still keeps" if last_kept else "")
                        + " (the loop holds them until this forward returns)", logits_b * T * V + last_kept,
                        f"{logits_b} B x {T:,} tokens x {V:,} vocab"
                        + (f" + {last_kept:,} B of kept inputs" if last_kept else "")))
        tc = -(-T // run.loss_chunks)
        out.append(term("logits_so_far", "This step's output chunks computed so far", logits_b * (T - tc) * V,
                        f"{logits_b} B x {T - tc:,} tokens x {V:,} vocab"))
    return out


def estimate_memory(model: Any, method: Any = "qlora", rank: Any = 16, targets: Any = "all-linear",
                    batch_size: Any = 1, seq_len: Any = 2048, gradient_checkpointing: Any = True,
                    optimizer: Any = "adamw", attention: Any = "sdpa", precision: Any = "mixed",
                    lora_dropout: Any = 0.0, double_quant: Any = True, block_size: Any = 64,
                    cuda_overhead: Any = True, recipe: Any = "peft", loss: Any = "full", loss_chunks: Any = 8,
                    activation_offload: Any = False, optimizer_in_backward: Any = False,
                    paged_state_on_host: Any = None, dora: Any = False,
                    quantize_lm_head: Any = None, adapter_dtype: Any = None, kbit_upcast: Any = None,
                    old_bitsandbytes: Any = False, autocast: Any = None,
                    gradient_accumulation: Any = 1, adapt: Any = None, images_per_sample: Any = 0,
                    image_size: Any = None, expandable_segments: Any = False,
                    base_format: Any = "bf16") -> MemoryEstimate:
    """Memory for one training step, as labelled terms (bytes) with their formulas.

    Defaults are today's common Hugging Face QLoRA recipe: peft with prepare_model_for_kbit_training, rank
    16 on all linear layers, batch 1, 2,048 tokens, gradient checkpointing, AdamW, fused attention, NF4
    with double quantization (block 64), transformers' full-logits loss. ``total_bytes`` is what the card
    must hold; ``allocated_peak_bytes`` what torch.cuda.max_memory_allocated would report.

    Vision-language models (``loracalc.vision``): ``adapt`` "all" (peft's matching by name, vision tower
    included) or "language"; ``images_per_sample`` images of ``image_size`` pixels (default the tower's) add
    their tokens to ``seq_len``'s text tokens, and a rough term for the vision tower's activations.

    The card holds more than the allocated peak: the CUDA context and what PyTorch's caching allocator keeps
    (``loracalc.allocator``; ``expandable_segments`` for ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``).
    """
    run = read_settings(model, method, rank, targets, batch_size, seq_len, gradient_checkpointing, optimizer,
                        attention, precision, lora_dropout, double_quant, block_size, cuda_overhead, recipe, loss,
                        loss_chunks, activation_offload, optimizer_in_backward, paged_state_on_host, dora,
                        quantize_lm_head, adapter_dtype, kbit_upcast, old_bitsandbytes, autocast,
                        gradient_accumulation, adapt, images_per_sample, image_size, base_format)
    arch = run.arch
    notes: list[str] = list(run.counts.notes)
    sizes, state_sizes = _trainable_sizes(run)
    terms, host = _stored_terms(run, notes, sizes, state_sizes)
    # what changes during the step: the terms alive at the peak moment count, the others are listed apart
    grad_key, changing = _gradient_terms(run, sizes)
    changing += _activation_terms(run, notes, host)
    kept, last_kept = bnb_terms(run)
    changing += kept + _loss_terms(run, last_kept)
    dyn = {t.key: t for t in changing}
    alive = moments(grad_key, run.gc, run.dora, run.stack.holds_last_step, run.accum)
    peak_at, on_peak, off_peak = at_peak(dyn, alive, grad_key)
    terms += on_peak
    notes.append(f"peak at the {peak_at}; not alive then: "
                 + (", ".join(f"{t.label.lower()} {gb(t.bytes)}" for t in off_peak) or "nothing"))
    if arch.model_type == "gemma2" and run.attention == "sdpa":
        notes.append("transformers runs Gemma-2 with eager attention unless FlashAttention-2 is installed; "
                     "choose eager to see that case")
    expandable = as_bool(expandable_segments, "expandable_segments")
    if run.cuda_overhead:
        terms.append(reserve_term(run, expandable))
    if arch.approximate:
        notes.append("model shape approximated from a parameter count")
    settings = {**run.as_dict(), **({"expandable_segments": True} if expandable else {})}
    return MemoryEstimate(model=arch.name, settings=settings, terms=tuple(terms), approximate=arch.approximate,
                          notes=tuple(notes), host=tuple(host), off_peak=tuple(off_peak))


def reserve_term(run: RunSettings, expandable: bool = False) -> Term:
    """The CUDA context and what the caching allocator holds beyond the allocated peak (``loracalc.allocator``)."""
    return term("cuda_context", "CUDA context + caching allocator's reserve (not in the allocated peak)",
                *reserve_bytes(run, persistent_sizes(run), expandable), "reserve")


def settings_of(model: Any, **settings: Any) -> RunSettings:
    """The checked settings ``estimate_memory(model, **settings)`` works from (for modules sizing other things
    from the same run: the allocator's terms, the time model)."""
    import inspect
    sig = inspect.signature(estimate_memory)
    # an estimate's settings dict also carries what was derived from them (image tokens, a preference objective's
    # rows per forward): only estimate_memory's own arguments are read back
    bound = sig.bind(model, **{k: v for k, v in settings.items() if k in sig.parameters})
    bound.apply_defaults()
    args = {k: v for k, v in bound.arguments.items() if k in inspect.signature(read_settings).parameters}
    return read_settings(**args)
