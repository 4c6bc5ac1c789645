"""Activations: the bytes autograd keeps for backward in one training step, by part of the model.

``activation_bytes(...)`` sums the parts below over the layers; each part is one function a reader can hold:
the norms, attention (by kernel), a layer's MLP and trained base inputs, the LoRA adapters' kept inputs,
the output layer, and what gradient checkpointing keeps instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import LoraCalcError
from .families import (ACTIVATION_SAVES, LN, NO_PARAMS, dropout_probs, is_parallel, layer_norm_names,
                       mlp_reads_attn_input)
from .params import lora_targets, parse_targets


# --8<-- [start:activations]
@dataclass(frozen=True)
class _Step:
    """What every part reads: the model, the stream's and adapters' bytes, and the step's switches."""
    arch: Any
    s: int                 # bytes per value of the hidden stream
    a: int                 # bytes per adapter value
    full: bool             # full fine-tuning: every base layer trains
    device: str
    autocast: bool
    lora_dropout: float
    rank: int
    drop: dict             # dropout probabilities the model itself applies, by site

    @property
    def fam(self):
        return self.arch.family

    @property
    def c(self) -> dict:
        return self.arch.config

    def mask(self, nbytes: int) -> int:
        """Bytes per value of the mask dropout keeps on a tensor of ``nbytes`` values: CUDA's fused kernel keeps
        a bool mask, the CPU's composite dropout a scaled mask in the tensor's dtype."""
        return 1 if self.device == "cuda" else nbytes


def _norm_bytes(fam, width: int, s: int, weight_trains: bool) -> int:
    """Bytes one norm over ``width`` keeps per token (a stream of s bytes per value)."""
    if fam.norm == LN:
        return s * width + 8          # nn.LayerNorm keeps its input in the stream's dtype, and fp32 mean and 1/std
    if fam.norm == NO_PARAMS:
        return 4 * width + 8          # OLMo's parameter-free LayerNorm runs on an fp32 copy of its input
    # RMS-style: fp32 copies of the input and 1/rms; a trained weight also keeps the normalised input, in fp32
    # when the weight multiplies it before the cast back (Gemma, OLMo-2, GPT-OSS, Cohere), else cast back
    trained = (4 if fam.norm_weight_fp32 else s) * width if weight_trains else 0
    return 4 * width * max(1, fam.norm_centred_copies) + 4 + trained


def _adapter_keeps(st: _Step, rec, r: int, in_b: int, seen: set, kept_anyway: bool = False) -> tuple[int, int]:
    """(bytes per token, bytes per step) one LoRA module keeps for backward: A's output, and its input as
    the adapter reads it: a dropped copy and its mask, autocast's bf16 cast, a cast copy per module when
    the dtypes differ, else the input itself, once per tensor (``seen``) unless ``kept_anyway``; under
    autocast also its cached bf16 copies of fp32 A and B."""
    a, autocast, lora_dropout = st.a, st.autocast, st.lora_dropout
    keep = (2 if autocast else a) * r
    if autocast and lora_dropout > 0:
        keep += (2 + st.mask(a)) * rec.d_in       # the dropped copy, in bf16 for the matmul, and the mask
    elif autocast and (in_b != 2 or a != 2):
        keep += 2 * rec.d_in                      # autocast's bf16 cast: a new tensor per module
    elif lora_dropout > 0:
        keep += (a + st.mask(a)) * rec.d_in
    elif in_b != a:
        keep += a * rec.d_in                      # a separate cast copy per module
    elif rec.reads not in seen:
        seen.add(rec.reads)
        if not kept_anyway:                       # e.g. attention already keeps it as its output
            keep += a * rec.d_in
    weights = 2 * r * (rec.d_in + rec.d_out) if (autocast and a != 2) else 0
    return keep, weights


@dataclass(frozen=True)
class _Widths:
    """Attention's widths as the kernels see them."""
    mla: bool
    kv: int                # k/v heads reaching attention
    qd: int                # query width
    kvd: int               # key (and value) width
    v_store: int           # what the values' tensor holds (a view of a wider output in MLA)
    out_w: int             # attention's output width, o_proj's input


def _attention_widths(arch, kv_expanded: bool) -> _Widths:
    fam, c = arch.family, arch.config
    nh, kv = arch.num_attention_heads, arch.num_key_value_heads
    if fam.attention == "mla":
        qk_head, v_head = c["qk_nope_head_dim"] + c["qk_rope_head_dim"], c["v_head_dim"]
        qd = nh * qk_head                # kv_b_proj expands the latent to full-width keys and values
        v_store = nh * (c["qk_nope_head_dim"] + v_head)   # v is a view of kv_b_proj's whole output
        return _Widths(True, kv, qd, qd, v_store, nh * v_head)
    if kv_expanded or (fam.kv_expanded(c) if callable(fam.kv_expanded) else fam.kv_expanded):
        kv = nh                          # k and v reach attention expanded to every query head
    qd, kvd = nh * arch.head_dim, kv * arch.head_dim
    return _Widths(False, kv, qd, kvd, kvd, qd)


def _layer_norms(st: _Step) -> tuple[int, int]:
    """(one norm's bytes per token, all of a layer's norms' bytes per token)."""
    fam, c, s, h = st.fam, st.c, st.s, st.arch.hidden_size
    norm = _norm_bytes(fam, h, s, st.full)
    norm_names = layer_norm_names(fam, c)
    norms = len(norm_names) * norm
    if is_parallel(fam, c) and len(norm_names) == 2 and fam.norm == LN:
        norms -= s * h                   # two LayerNorms read the same stream: one saved input (GPT-NeoX)
    if fam.attention == "mla":
        norms += _norm_bytes(fam, c["kv_lora_rank"], s, st.full)
        if c.get("q_lora_rank"):
            norms += _norm_bytes(fam, c["q_lora_rank"], s, st.full)
    return norm, norms


def _attention_core(st: _Step, attention: str, w: _Widths, S: int) -> tuple[int, bool, int]:
    """(bytes per token, whether attention's kept output is o_proj's input, o_proj's input width) of the
    attention kernel itself, by kind: FlashAttention-2, fused SDPA, SDPA's math path, eager."""
    fam, arch, s, autocast, device = st.fam, st.arch, st.s, st.autocast, st.device
    nh, qd, kvd, out_w = arch.num_attention_heads, w.qd, w.kvd, w.out_w
    rope = fam.positions is None
    qkv_views = fam.qkv_views(st.c) if callable(fam.qkv_views) else fam.qkv_views
    p_scores = st.drop.get("scores", 0.0)
    cols = S + (1 if fam.sinks else 0)   # GPT-OSS's sink is one more column in the softmax
    math_path = attention == "sdpa" and ((w.kv < nh and not fam.sdpa_gqa) or (p_scores > 0 and device == "cpu"))
    if attention == "flash_attention_2":
        # FlashAttention-2 keeps q, k, v (grouped k and v as they are), its output and an fp32 log-sum-exp, all
        # 16-bit: transformers casts an fp32 q, k, v (peft's fp32 stream) to the model's dtype first, making new
        # tensors; latent attention pads v to the q/k head width and crops the output, so o_proj gets a copy
        if w.mla:
            qkv, out_w = 2 * 3 * qd, qd
        elif s != 2 or autocast or not qkv_views:
            qkv = 2 * (qd + 2 * kvd)
        else:
            qkv = 2 * (qd + 2 * kvd) + (2 * (qd + kvd) if rope else 0)   # v still a view of the fused output
        return qkv + 2 * out_w + 4 * nh, not w.mla, out_w
    if attention == "sdpa" and not math_path:
        ca = 2 if autocast else s             # autocast hands attention bf16 copies of q, k and v
        if qkv_views:
            qkv = ca * (qd + 2 * kvd) + (ca * (qd + kvd) if rope else 0)
        else:
            qkv = ca * (qd + kvd + w.v_store)
        attn = qkv + ca * out_w + 4 * nh + (s * S if fam.sdpa_mask else 0)
        # the output is o_proj's input, unless a CPU kernel wrote it in the query's (b, h, s, d) layout, which
        # a query made by concatenation has (partial rotary embeddings, MLA): then o_proj gets a copy
        return attn, not (device == "cpu" and ((rope and fam.query_copied) or w.mla)), out_w
    if math_path:
        # fp32 copies of q and of k, v expanded to every head, and the fp32 softmax; dropout adds its mask and
        # the dropped scores
        return 4 * 3 * qd + 4 * nh * S + ((st.mask(4) + 4) * nh * S if p_scores > 0 else 0), False, out_w
    attn = s * (qd + kvd + w.v_store) if w.mla else s * 3 * qd
    if fam.softmax_fp32:
        # the softmax runs in fp32; its copy in the stream's dtype is a new tensor unless that is fp32 too
        # (with dropout the dropped copy is kept instead)
        attn += (4 + (s if (s != 4 or p_scores > 0) else 0)) * nh * cols
    else:
        attn += s * nh * cols + (s * nh * cols if p_scores > 0 else 0)
    if p_scores > 0:
        attn += st.mask(s) * nh * cols
    if fam.sinks:
        attn += 8 * nh                            # the row max subtracted before the softmax keeps its indices
    if arch.attn_softcap:
        attn += s * nh * S                        # Gemma-2's tanh soft-cap keeps its output
    return attn, False, out_w


def _attention_extras(st: _Step, w: _Widths) -> int:
    """Bytes per token of q/k norms and of the residual branches' dropout masks."""
    fam, arch, s = st.fam, st.arch, st.s
    nh, h = arch.num_attention_heads, arch.hidden_size
    extra = 0
    if arch.qk_norm:
        qkw = w.qd + w.kvd
        if fam.qk_norm in ("head_ln", "heads_ln"):
            extra += s * qkw + 8 * (nh + w.kv)        # nn.LayerNorm per head: q and k, mean and 1/std per head
        else:
            # the family's RMS-style norm on q and k: 1/rms per head, or one per token for OLMo-2's over all heads
            rs = 4 * 2 if fam.qk_norm == "width" else 4 * (nh + w.kv)
            qk_w = (4 if fam.norm_weight_fp32 else s) * qkw if st.full else 0
            extra += 4 * qkw * max(1, fam.norm_centred_copies) + rs + qk_w
    # dropout on the residual branches keeps a mask of width h each
    extra += st.mask(s) * h * sum(1 for site in ("attn_out", "mlp_out") if st.drop.get(site, 0.0) > 0)
    return extra


def _mlp(st: _Step, moe) -> tuple[int, int, int]:
    """(MLP's saved bytes per token, the width the down projections read, each routed expert's gathered input
    plus the router's fp32 copy) of a dense (``moe`` None) or sparse layer."""
    c, s, h = st.c, st.s, st.arch.hidden_size
    if not moe:
        i = c["intermediate_size"]
        mlp = (1 + ACTIVATION_SAVES.get(c.get("_act", ""), 0)) * s * i if st.fam.mlp == "plain" else 3 * s * i
        return mlp, i, 0
    k, w = c[moe.top_k], c[moe.width]
    sw = moe.shared_width(c) if moe.shared_width else 0
    E = c[moe.experts]
    # each routed token: the expert's gated activation, its output for the weighted sum; the router's
    # fp32 logits and routing weights per token; a shared expert's SwiGLU and, when gated, its output
    mlp = moe.glu_saves * s * k * w + s * k * h + 8 * E + 8 * k + 3 * s * sw
    if moe.shared_gate:
        mlp += s * h + s
    expert_base = s * k * h                   # each expert's gathered input
    if moe.router_fp32:
        expert_base += 4 * h                  # the router's fp32 copy of its input
    return mlp, k * w + sw, expert_base


def _layer_lora(st: _Step, moe, chosen, merged_kinds: set, expert_base: int, out_is_o_input: bool,
                fa2: bool) -> tuple[int, int, int]:
    """(bytes per token, merged expert weights per layer, autocast's weight copies per layer) that the LoRA
    adapters of one dense or sparse layer keep, and that peft's merged experts make trainable."""
    c, s, a, h, rank = st.c, st.s, st.a, st.arch.hidden_size, st.rank
    lora = merged = cast = 0
    if moe and merged_kinds:
        # peft's ParamWrapper adds B @ A to the fused weights in the forward pass: those weights train,
        # so the experts keep their inputs as in full fine-tuning, and every layer a merged copy
        if "experts" in merged_kinds:
            lora += expert_base - (4 * h if moe.router_fp32 else 0) + s * c[moe.top_k] * c[moe.width]
        if "router" in merged_kinds:
            lora += (4 if moe.router_fp32 else s) * h
    seen: set = set()
    for rec, mult in chosen:
        if rec.role in ("head", "embedding"):
            continue
        in_sparse = rec.role in ("experts", "router", "shared_expert")
        if in_sparse != bool(moe) and rec.role != "attention":
            continue
        if rec.kind in ("experts", "router"):
            # the merged weight W + B @ A, and B and A cast to the weight's dtype for that product
            merged += s * (rec.weight + rec.bias)
            if a != s:
                merged += s * rank * mult * max(1, rec.experts) * (rec.d_in + rec.d_out)
            continue
        # the dtype of what the module reads: attention's output is bf16 under autocast
        in_b = 2 if ((st.autocast or fa2) and rec.reads == "attn_out") else s
        kept, weights = _adapter_keeps(st, rec, rank * mult, in_b, seen, rec.reads == "attn_out" and out_is_o_input)
        lora += kept
        cast += weights
    return lora, merged, cast


def _head(st: _Step, norm: int, chosen, T: int, S: int, head_weight_copy: int) -> int:
    """Bytes the final norm, the output layer, the logits and their adapters keep for the whole batch."""
    arch, s, a, h, V = st.arch, st.s, st.a, st.arch.hidden_size, st.arch.vocab_size
    head = (norm + (s * h if st.full else 0)) * T + 4 * V * T + 8 * T + 2 * S * arch.head_dim * s + head_weight_copy
    # LoRA on the output layer keeps what an adapter on a layer keeps, reading the final norm's output (which
    # the frozen head itself does not keep); autocast caches bf16 copies of fp32 A and B. LoRA on the
    # embeddings keeps the token ids (int64) and A's output
    for rec, mult in chosen:
        if rec.role == "head":
            kept, weights = _adapter_keeps(st, rec, st.rank * mult, s, set())
            head += kept * T + weights
    head += sum((8 + a * st.rank * mult) * T for rec, mult in chosen if rec.role == "embedding")
    if arch.final_softcap:
        head += s * V * T                             # tanh of the logits, in the logits' dtype
    return head


def _checkpoint_shared(st: _Step, chosen) -> int:
    """What the recomputed layer's first op saves that is the kept input itself: a LayerNorm's input; an RMS
    norm's fp32 input when the stream is fp32 already (QLoRA; Cohere's keeps centred copies instead); OLMo-2's
    q/k/v projections, which read the layer input unnormalised (its own when they train, the adapters' when no
    cast copy is needed)."""
    fam, s, h = st.fam, st.s, st.arch.hidden_size
    if not fam.norm_first:
        return s * h if (st.full or (s == st.a and not st.lora_dropout and chosen)) else 0
    if fam.norm == LN:
        return s * h
    return 4 * h if (s == 4 and not fam.norm_centred_copies) else 0


def _chosen_adapters(arch, method: str, targets) -> list:
    if method == "full":
        return []
    names = targets if isinstance(targets, tuple) and targets and targets[0] != "all-linear" \
        else parse_targets(targets if targets else "all-linear", arch)
    # the language model's adapters only: a vision tower's are counted apart (loracalc.vision)
    return lora_targets(arch, tuple(names), "language")[0]


def activation_bytes(arch, method: str, rank: int, targets, batch_size: int, seq_len: int,
                     gradient_checkpointing: bool, attention: str, lora_dropout: float = 0.0,
                     input_requires_grad: bool | None = None, stream_bytes: int | None = None,
                     adapter_bytes: int = 4, device: str = "cuda", autocast: bool = False,
                     head_weight_copy: int = 0, kv_expanded: bool = False) -> dict[str, int]:
    """Bytes autograd keeps for backward, by part. Per token and layer (s = bytes of the hidden stream:
    2 in a bf16 model, 4 in QLoRA, whose norms and embeddings prepare_model_for_kbit_training made fp32):

    * each RMSNorm: its fp32 input 4h and 1/rms 4 (+ s*h when its weight trains; 4h where the weight multiplies
      the fp32 input), per-head q/k norms the same on q_dim + kv_dim; nn.LayerNorm its input s*h and mean, 1/std;
    * attention, fused: q, k, v and the output s*(2*q_dim + 2*kv_dim) plus the fp32 log-sum-exp 4*heads (a fused
      qkv split into views keeps the whole fused output; latent attention keeps q, k, the k/v expansion and the
      output; Falcon's explicit mask s*seq_len); SDPA's math path (k/v heads it cannot group, or dropout on a
      CPU) fp32 q and expanded k, v 12*q_dim
      and the fp32 scores 4*heads*seq_len (with dropout: a mask and the dropped copy);
      eager: q and the expanded k, v s*3*q_dim, the softmax 4*heads*seq_len (fp32) and its s-byte copy (none
      when s = 4), Gemma-2's tanh soft-cap s*heads*seq_len, GPT-OSS's sink column and the max's indices;
    * MLP (SwiGLU): gate, up and silu outputs 3*s*i; a plain MLP the activation's input (more for gelu_new);
      mixture of experts: each of top_k experts the same on its width, each expert's output s*h (the weighted
      sum needs it), the router's probabilities and indices;
    * trainable base layers (full, and peft's merged experts): their inputs s*(2h + i) (+ s*q_dim for o_proj
      when attention does not keep its output; the latent inputs of MLA; each expert's gathered input);
    * LoRA on a module of input width d_in, adapters of a bytes (4: peft's fp32; 2: bf16 stacks): the input
      in the adapter's dtype, a*d_in (a cast copy per module when a != s, else shared by the modules reading
      that tensor), and A's output a*r; dropout makes it a mask and a dropped copy, (a + m)*d_in;
    * dropout configured in the model (GPT-2's default 0.1): a mask per dropped tensor, m bytes per value:
      1 on CUDA (a bool mask), the tensor's own dtype on a CPU (``device="cpu"``, where SDPA also drops to
      its math path when its scores take dropout, and writes its output in the query's layout, so a query
      made new by rotary embeddings gives o_proj a copy).
    With gradient checkpointing only each layer's input s*h is kept, plus one layer recomputed in backward
    (whose first op may keep that same input: a LayerNorm, an RMSNorm on an fp32 stream, OLMo-2's projections).

    Under autocast (HF Trainer or accelerate with bf16=True) matmuls and fused attention run in bf16: attention
    saves bf16 q, k, v and output; an adapter's matmul saves a bf16 cast of its input, a new tensor per module
    unless the input is bf16 already and the adapters are bf16 too (then the modules reading it share it, as
    above), and with dropout the dropped copy in bf16 plus the mask; A's output is bf16. A frozen fp32 output
    layer (peft's upcast) is cast to bf16 for its matmul, and that copy is saved: ``head_weight_copy`` bytes;
    so are autocast's cached bf16 casts of fp32 adapter weights (per layer, whatever the tokens).
    ``kv_expanded``: the training stack repeats k and v for every query head before attention (LitGPT's model).
    """
    if device not in ("cuda", "cpu"):
        raise LoraCalcError("device", f"device must be cuda or cpu (got {device!r})")
    fam, c = arch.family, arch.config
    h, V = arch.hidden_size, arch.vocab_size
    L, T, S = arch.num_hidden_layers, batch_size * seq_len, seq_len
    # the stream's bytes: a caller that knows the recipe says; else peft's QLoRA (fp32 after the upcast)
    s = stream_bytes if stream_bytes else (4 if method == "qlora" else 2)
    st = _Step(arch, s, adapter_bytes, method == "full", device, autocast, lora_dropout, rank,
               dropout_probs(fam, arch.raw_config))
    w = _attention_widths(arch, kv_expanded)
    norm, norms = _layer_norms(st)
    attn, out_is_o_input, out_w = _attention_core(st, attention, w, S)
    attn += _attention_extras(st, w)
    # LoRA: which tensors the adapters keep, and which frozen tensors peft's merged experts make trainable
    chosen = _chosen_adapters(arch, method, targets)
    merged_kinds = {rec.kind for rec, _ in chosen if rec.kind in ("experts", "router")}

    def layer(sparse: bool) -> tuple[int, int, int]:
        """(bytes per token, bytes per layer independent of tokens, of which merged experts) of one layer."""
        moe = fam.moe if sparse else None
        mlp, i_in, expert_base = _mlp(st, moe)
        # inputs a trained base layer keeps: attention's and the MLP's inputs, the down projections'
        base = s * (2 * h + i_in) - (s * h if mlp_reads_attn_input(fam, c) else 0)
        base += 0 if out_is_o_input else s * out_w
        if w.mla:
            base += s * (c["kv_lora_rank"] + (c["q_lora_rank"] or 0))
        lora = merged = cast = 0
        if not st.full:
            lora, merged, cast = _layer_lora(st, moe, chosen, merged_kinds, expert_base, out_is_o_input,
                                             attention == "flash_attention_2")
        per_tok = norms + attn + mlp + lora + ((base + expert_base) if st.full else 0)
        return per_tok, merged + cast, merged

    moe = fam.moe
    kinds = [bool(moe and arch.is_moe and moe.sparse_layer(c, li)) for li in range(L)]
    per = {sp: layer(sp) for sp in set(kinds)}
    # LoRA on the embeddings adds a trained term to layer 0's input, so the stream needs a gradient from there
    embed_lora = [rec for rec, _ in chosen if rec.role == "embedding"]
    if input_requires_grad is None:
        input_requires_grad = st.full or gradient_checkpointing or bool(embed_lora)
    # nothing upstream of layer 0 needs a gradient, so its first norm keeps nothing (OLMo-2's first norm
    # follows the attention, whose adapters already need one)
    first_layer_saving = 0 if (input_requires_grad or not fam.norm_first) else norm
    if not input_requires_grad and lora_dropout > 0:
        # nor does dropout keep a mask for the adapters reading layer 0's input: no gradient flows into it
        first_layer_saving += sum(st.mask(adapter_bytes) * rec.d_in for rec, _ in chosen if rec.reads == "attn_in")
    # the embeddings' dropout mask lives until backward reaches them
    embed_drop = st.mask(s) * h * T if (st.drop.get("embed", 0.0) > 0 and input_requires_grad) else 0
    head = _head(st, norm, chosen, T, S, head_weight_copy)
    per_layer, merged, experts_merged = max(per.values())
    if gradient_checkpointing:
        kept = L * s * h * T + embed_drop
        recomputed_per_token = per_layer - _checkpoint_shared(st, chosen)
        recomputed = recomputed_per_token * T + merged
        layers = kept + recomputed
        peak = kept + max(head, recomputed)     # the head's tensors are freed before layers recompute
    else:
        recomputed_per_token = 0
        layers = sum(per[sp][0] * T + per[sp][1] for sp in kinds) - first_layer_saving * T + embed_drop
        peak = layers + head
    return {"per_layer_per_token": per_layer, "layers": layers, "logits_saved": 4 * V * T,
            "head_other": head - 4 * V * T, "saved_total": peak, "merged_experts_per_layer": experts_merged,
            "cast_weights_per_layer": merged - experts_merged, "recomputed_per_token": recomputed_per_token,
            "embed_dropout_mask": embed_drop}
# --8<-- [end:activations]
