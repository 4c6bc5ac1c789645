"""Training memory, term by term: what a GPU holds for one training step of a decoder-only model.

``estimate_memory(...)`` returns every term with its key, a label, its bytes and its formula as text,
so a reader can see where the total comes from. The activation model follows what autograd really
saves in transformers' Llama-style layers (checked against ``saved_tensors_hooks`` in
``gpu_labs/memory_probe.py``); the rest is storage arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import nf4
from .errors import LoraCalcError, as_bool, as_choice, as_float, as_int
from .gpus import fits
from .models import get_model, quantizable_params, total_params
from .params import count_params

METHODS = {"full": "Full fine-tuning", "lora": "LoRA (16-bit frozen base)", "qlora": "QLoRA (NF4 frozen base)"}
OPTIMIZERS = {
    "adamw": "AdamW (fp32 m and v)",
    "adamw_8bit": "8-bit AdamW (bitsandbytes)",
    "paged_adamw": "paged AdamW (bitsandbytes, fp32 state)",
    "paged_adamw_8bit": "paged 8-bit AdamW (bitsandbytes)",
    "sgd": "SGD with momentum",
}
ATTENTIONS = {"sdpa": "fused (SDPA / FlashAttention)", "eager": "eager (materialises the score matrix)"}
PRECISIONS = {"mixed": "bf16 compute, fp32 master weights", "bf16": "pure bf16"}

MAX_BATCH = 1 << 20
MAX_SEQ = 1 << 24
CUDA_CONTEXT_BYTES = 512 * 2**20      # CUDA context + cuBLAS workspace, outside PyTorch's allocator
ALLOCATOR_SLACK = 0.05                # caching-allocator fragmentation: reserved exceeds allocated

# --8<-- [start:optimizer_state]
# Optimizer state bytes per trainable parameter. bitsandbytes' 8-bit optimizers store each state in
# one byte plus an fp32 absmax per block of 256 values (and keep tensors under 4096 values in 32 bit).
STATE_BYTES = {
    "adamw": 8.0,                      # m and v in fp32
    "paged_adamw": 8.0,                # same bytes, in paged (unified) memory
    "adamw_8bit": 2 * (1 + 4 / 256),   # m and v in 8 bit with blockwise fp32 absmax
    "paged_adamw_8bit": 2 * (1 + 4 / 256),
    "sgd": 4.0,                        # one momentum buffer in fp32
}
# --8<-- [end:optimizer_state]


@dataclass(frozen=True)
class Term:
    key: str
    label: str
    bytes: int
    formula: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "bytes": self.bytes, "formula": self.formula}


@dataclass(frozen=True)
class MemoryEstimate:
    model: str
    settings: dict
    terms: tuple[Term, ...]
    approximate: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.terms)

    @property
    def breakdown(self) -> dict[str, int]:
        return {t.key: t.bytes for t in self.terms}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "approximate": self.approximate, "settings": dict(self.settings),
                "total_bytes": self.total_bytes, "total_gb": round(self.total_bytes / 1e9, 3),
                "breakdown": self.breakdown, "terms": [t.to_dict() for t in self.terms],
                "fits": fits(self.total_bytes), "notes": list(self.notes)}


def _gb(n: float) -> str:
    return f"{n / 1e9:,.2f} GB"


# --8<-- [start:activations]
def activation_bytes(arch, method: str, rank: int, targets, batch_size: int, seq_len: int,
                     gradient_checkpointing: bool, attention: str, lora_dropout: float = 0.0,
                     input_requires_grad: bool | None = None) -> dict[str, int]:
    """Bytes autograd keeps for backward, by part. Per token and layer (s = bytes of the hidden stream:
    2 in a bf16 model, 4 in QLoRA, whose norms and embeddings prepare_model_for_kbit_training made fp32):

    * each RMSNorm: its fp32 input 4h and 1/rms 4 (+ s*h when its weight trains; 4h for Gemma's norm),
      Qwen3's per-head q/k norms the same on q_dim + kv_dim;
    * attention, fused: q, k, v and the output s*(2*q_dim + 2*kv_dim) plus the fp32 log-sum-exp 4*heads;
      eager: q and the expanded k, v s*3*q_dim, the fp32 softmax 4*heads*seq_len and its s-byte copy
      (none when s = 4), and Gemma-2's tanh soft-cap s*heads*seq_len;
    * MLP (SwiGLU): gate, up and silu outputs 3*s*i;
    * trainable base layers (full): their inputs s*(2h + i) (+ s*q_dim for o_proj with eager attention);
    * LoRA on a module of input width d_in: the input cast to the adapter's fp32, 4*d_in (shared within a
      group reading the same input when no cast is needed), and A's output 4*r; dropout adds 5*d_in.
    With gradient checkpointing only each layer's input s*h is kept, plus one layer recomputed in backward
    (whose first norm saves that same input when the stream is fp32).
    """
    from .params import lora_targets, parse_targets
    h, i, V = arch.hidden_size, arch.mlp_width_per_token, arch.vocab_size
    fam = arch.family
    if fam.attention == "mla":
        c = arch.config
        qd = arch.num_attention_heads * (c["qk_nope_head_dim"] + c["qk_rope_head_dim"])
        kvd = qd     # kv_b_proj expands the latent to full-width keys and values before attention
    else:
        qd, kvd = arch.num_attention_heads * arch.head_dim, arch.num_key_value_heads * arch.head_dim
    nh = arch.num_attention_heads
    L, T, S = arch.num_hidden_layers, batch_size * seq_len, seq_len
    s = 4 if method == "qlora" else 2
    full = method == "full"
    # a trainable norm weight also keeps the normalised input: in the stream's dtype (Llama), fp32 (Gemma)
    gemma_norm = arch.model_type in ("gemma", "gemma2", "gemma3_text")
    norm = 4 * h + 4 + ((4 * h if gemma_norm else s * h) if full else 0)
    from .families import LN, NO_PARAMS
    if fam.norm == LN:
        norm = s * h + 8          # nn.LayerNorm keeps its input in the stream's dtype, and fp32 mean and 1/std
    elif fam.norm == NO_PARAMS:
        norm = 4 * h + 8          # OLMo's parameter-free LayerNorm runs on an fp32 copy of its input
    n_norms = len(fam.layer_norms(arch.config) if callable(fam.layer_norms) else fam.layer_norms)
    if attention == "sdpa":
        attn = s * (2 * qd + 2 * kvd) + 4 * nh
    else:
        # the softmax runs in fp32; its copy in the stream's dtype is a new tensor unless that is fp32 too
        attn = s * 3 * qd + (4 + (s if s != 4 else 0)) * nh * S
        if arch.attn_softcap:
            attn += s * nh * S                        # Gemma-2's tanh soft-cap keeps its output
    # gated MLP: gate, up and the activation's output; a plain MLP: fc1's output and the activation's.
    # For MoE, i is the width a token passes through (top_k experts plus shared), and the router adds
    # its fp32 logits and routing weights per token.
    mlp = (2 if fam.mlp == "plain" else 3) * s * i
    from .families import ACTIVATION_SAVES
    mlp += ACTIVATION_SAVES.get(arch.config.get("_act", ""), 0) * s * i
    if arch.is_moe:
        E = arch.config[fam.moe.experts]
        mlp += 8 * E + 8 * arch.config[fam.moe.top_k]
    base_inputs = s * (2 * h + i) + (s * qd if (full and attention == "eager") else 0)
    if arch.is_moe:
        # trained experts: each of a token's top_k experts keeps its gathered input, and the weighted sum
        # that scatters the outputs back keeps each expert's output
        base_inputs += 2 * s * arch.config[fam.moe.top_k] * h
    lora = 0
    merged = 0     # bytes per layer, independent of tokens: see below
    if not full:
        names = targets if isinstance(targets, tuple) and targets and targets[0] != "all-linear" \
            else parse_targets(targets if targets else "all-linear", arch)
        chosen, _ = lora_targets(arch, tuple(names))
        # modules reading the same tensor share one fp32 copy of it when no dropout forces a copy each
        outputs = {fam.names[-1], fam.mlp_names[-1]}
        seen = set()
        for rec, mult in chosen:
            if rec.role in ("head", "embedding"):
                continue
            if rec.kind == "experts":
                # peft's ParamWrapper adds B @ A to the fused 3-D weight in the forward pass (a
                # parametrization), so every layer keeps a merged copy of its experts for backward
                merged += s * (rec.weight + rec.bias) * rec.copies // L
            d_in = rec.d_in
            share = rec.copies / L if rec.copies < L else 1
            k = rec.top_k / max(1, rec.experts) * rec.experts if rec.kind == "experts" else 1
            lora += 4 * rank * mult * k * share
            if lora_dropout > 0:
                lora += 5 * d_in * share
            elif s != 4:
                lora += 4 * d_in * share                # a separate fp32 copy per module
            else:
                group = (rec.path, rec.name if rec.name in outputs else "in")
                if group not in seen:
                    seen.add(group)
                    # the fp32 input itself; the fused attention's output already is o_proj's input
                    if not (rec.name == fam.names[-1] and rec.role == "attention" and attention == "sdpa"):
                        lora += 4 * d_in * share
        lora = int(round(lora))
    qk_norm = (4 * (qd + kvd) + 4 * (nh + arch.num_key_value_heads) + (s * (qd + kvd) if full else 0)
               if arch.qk_norm else 0)
    per_layer = n_norms * norm + qk_norm + attn + mlp + (base_inputs if full else 0) + lora
    if input_requires_grad is None:
        input_requires_grad = full or gradient_checkpointing
    first_layer_saving = 0 if input_requires_grad else norm   # nothing upstream of layer 0 needs a gradient
    head = (norm + (s * h if full else 0)) * T + 4 * V * T + 8 * T + 2 * S * arch.head_dim * s
    if arch.final_softcap:
        head += s * V * T                             # tanh of the logits, in the logits' dtype
    if gradient_checkpointing:
        kept = L * s * h * T
        # an fp32 stream (QLoRA) lets the recomputed layer's first norm save the kept input itself
        recomputed = (per_layer - (4 * h if s == 4 else 0)) * T + merged
        layers = kept + recomputed
        peak = kept + max(head, recomputed)     # the head's tensors are freed before layers recompute
    else:
        layers = (L * per_layer - first_layer_saving) * T + L * merged
        peak = layers + head
    return {"per_layer_per_token": per_layer, "layers": layers, "logits_saved": 4 * V * T,
            "head_other": head - 4 * V * T, "saved_total": peak, "merged_experts_per_layer": merged}
# --8<-- [end:activations]


def estimate_memory(model: Any, method: Any = "qlora", rank: Any = 16, targets: Any = "all-linear",
                    batch_size: Any = 1, seq_len: Any = 2048, gradient_checkpointing: Any = True,
                    optimizer: Any = "adamw", attention: Any = "sdpa", precision: Any = "mixed",
                    lora_dropout: Any = 0.0, double_quant: Any = True, block_size: Any = 64,
                    cuda_overhead: Any = True) -> MemoryEstimate:
    """Memory for one training step, as labelled terms (bytes) with their formulas.

    Defaults are a common QLoRA recipe: rank 16 on all linear layers, batch 1, 2,048 tokens, gradient
    checkpointing, AdamW, fused attention, NF4 with double quantization (block 64).
    """
    arch = get_model(model)
    method = as_choice(method, "method", METHODS)
    optimizer = as_choice(optimizer, "optimizer", OPTIMIZERS)
    attention = as_choice(attention, "attention", ATTENTIONS)
    precision = as_choice(precision, "precision", PRECISIONS)
    b = as_int(batch_size, "batch_size", 1, MAX_BATCH, "batch size")
    S = as_int(seq_len, "seq_len", 1, MAX_SEQ, "sequence length")
    gc = as_bool(gradient_checkpointing, "gradient_checkpointing")
    dropout = as_float(lora_dropout, "lora_dropout", 0.0, 0.99, "LoRA dropout")
    dq = as_bool(double_quant, "double_quant")
    bs = as_int(block_size, "block_size", 16, 4096, "block size")
    overhead = as_bool(cuda_overhead, "cuda_overhead")
    counts = count_params(arch, rank=rank, targets=targets)
    P, Pl = total_params(arch), counts.lora_params
    terms: list[Term] = []
    notes: list[str] = list(counts.notes)
    if dropout > 0 and any(m.kind in ("experts", "router") for m in counts.per_module):
        # peft's ParamWrapper (LoRA on a bare parameter) raises for lora_dropout != 0
        raise LoraCalcError("lora_dropout", "peft adapts fused experts and routers only with lora_dropout 0; "
                                            "set it to 0 or leave those modules out of the targets")

    def add(key, label, nbytes, formula):
        terms.append(Term(key, label, int(round(nbytes)), formula))

    state = STATE_BYTES[optimizer]
    if method == "full":
        if precision == "mixed":
            add("weights", "Weights (bf16 working copy)", 2 * P, f"2 B x {P:,} params")
            add("master_weights", "Master weights (fp32)", 4 * P, f"4 B x {P:,} params")
            add("gradients", "Gradients (bf16)", 2 * P, f"2 B x {P:,} params")
            add("optimizer", f"Optimizer state: {OPTIMIZERS[optimizer]}", state * P,
                f"{state:g} B x {P:,} params (on the fp32 master weights)")
        else:
            add("weights", "Weights (bf16)", 2 * P, f"2 B x {P:,} params")
            add("gradients", "Gradients (bf16)", 2 * P, f"2 B x {P:,} params")
            st = state / 2 if optimizer in ("adamw", "paged_adamw", "sgd") else state
            add("optimizer", f"Optimizer state: {OPTIMIZERS[optimizer]}", st * P,
                f"{st:g} B x {P:,} params (state in the weights' bf16)")
    else:
        if method == "lora":
            add("weights", "Frozen base weights (bf16)", 2 * P, f"2 B x {P:,} params")
        else:
            Pq = quantizable_params(arch)
            q_bytes = nf4.storage_bytes(arch, block_size=bs, double_quant=dq)
            bits = nf4.bits_per_param(block_size=bs, double_quant=dq)
            add("weights_4bit", "Frozen linear weights (NF4" + (" + double quant)" if dq else ")"), q_bytes,
                f"{bits:.5g} bits x {Pq:,} params (4-bit codes + absmax per {bs})")
            rest = P - Pq
            add("weights_16bit", "Embeddings, lm_head, norms" + (", fused experts, routers" if arch.is_moe else "")
                + " (bf16)", 2 * rest, f"2 B x {rest:,} params")
            if arch.is_moe:
                notes.append("bitsandbytes keeps the fused 3-D expert weights in 16 bit (only nn.Linear becomes 4-bit) "
                             "and prepare_model_for_kbit_training upcasts them to fp32: QLoRA saves little here")
            add("kbit_upcast", "fp32 upcast by prepare_model_for_kbit_training", 2 * rest,
                f"(4 - 2) B x {rest:,} non-4-bit params")
        add("adapter", "LoRA adapter weights (fp32)", 4 * Pl, f"4 B x {Pl:,} LoRA params")
        add("adapter_grads", "LoRA gradients (fp32)", 4 * Pl, f"4 B x {Pl:,} LoRA params")
        add("optimizer", f"Optimizer state: {OPTIMIZERS[optimizer]}", state * Pl, f"{state:g} B x {Pl:,} LoRA params")
    if optimizer.startswith("paged"):
        notes.append("paged optimizer state can move to CPU memory under pressure; counted here as on the GPU")
    act = activation_bytes(arch, method, counts.rank, counts.requested, b, S, gc, attention, dropout)
    from .families import ACTIVATIONS_CHECKED
    if arch.model_type not in ACTIVATIONS_CHECKED:
        notes.append(f"the activation term is rough for {arch.model_type}: on a tiny model it differed from what "
                     "autograd saved by more than 10%")
    if act["merged_experts_per_layer"]:
        notes.append(f"peft adapts the fused experts by adding B @ A to their weights in the forward pass: each "
                     f"layer keeps a merged copy for backward ({act['merged_experts_per_layer'] / 1e9:,.2f} GB per "
                     "layer, counted in the activations)")
    act_bytes = act["layers"] + act["head_other"]
    add("activations", "Activations saved for backward" + (" (checkpointed)" if gc else ""), act_bytes,
        (f"{arch.num_hidden_layers} layers x {arch.hidden_size * (4 if method == 'qlora' else 2):,} B x {b * S:,} "
         f"tokens kept + one layer recomputed ({act['per_layer_per_token']:,} B/token)") if gc else
        f"{arch.num_hidden_layers} layers x {act['per_layer_per_token']:,} B/token x {b * S:,} tokens")
    lm_bytes = 4 if method == "qlora" else 2
    V = arch.vocab_size
    cap = lm_bytes if arch.final_softcap else 0
    add("logits", "Logits, fp32 log-softmax and its gradient",
        (lm_bytes + 8 + cap) * V * b * S,
        f"({lm_bytes} + 4 + 4{f' + {cap} soft-cap' if cap else ''}) B x {b:,} x {S:,} x {V:,} vocab")
    if arch.model_type == "gemma2" and attention == "sdpa":
        notes.append("transformers runs Gemma-2 with eager attention unless FlashAttention-2 is installed; "
                     "choose eager to see that case")
    if overhead:
        subtotal = sum(t.bytes for t in terms)
        add("cuda_context", "CUDA context + allocator allowance", CUDA_CONTEXT_BYTES + ALLOCATOR_SLACK * subtotal,
            f"{CUDA_CONTEXT_BYTES / 2**20:.0f} MiB context + {ALLOCATOR_SLACK:.0%} fragmentation")
    settings = {"method": method, "rank": counts.rank, "targets": list(counts.requested), "batch_size": b,
                "seq_len": S, "gradient_checkpointing": gc, "optimizer": optimizer, "attention": attention,
                "precision": precision, "lora_dropout": dropout, "double_quant": dq, "block_size": bs}
    if arch.approximate:
        notes.append("model shape approximated from a parameter count")
    return MemoryEstimate(model=arch.name, settings=settings, terms=tuple(terms), approximate=arch.approximate,
                          notes=tuple(notes))
