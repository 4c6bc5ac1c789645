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
from .families import is_4bit
from .models import get_model, quantizable_params, total_params
from .params import count_params

METHODS = {"full": "Full fine-tuning", "lora": "LoRA (16-bit frozen base)",
           "lora_8bit": "LoRA on an 8-bit base (LLM.int8)", "qlora": "QLoRA (NF4 frozen base)"}
QUANTIZED = ("lora_8bit", "qlora")     # methods whose frozen linears bitsandbytes stores in 8 or 4 bit
OPTIMIZERS = {
    "adamw": "AdamW (fp32 m and v)",
    "adamw_8bit": "8-bit AdamW (bitsandbytes)",
    "paged_adamw": "paged AdamW (bitsandbytes, fp32 state)",
    "paged_adamw_8bit": "paged 8-bit AdamW (bitsandbytes)",
    "sgd": "SGD with momentum",
}
ATTENTIONS = {"sdpa": "fused (PyTorch SDPA)",
              "flash_attention_2": "FlashAttention-2 (transformers' flash_attention_2)",
              "eager": "eager (materialises the score matrix)"}
PRECISIONS = {"mixed": "bf16 compute, fp32 master weights", "bf16": "pure bf16"}
# --8<-- [start:recipes]
# Where the tensors of a LoRA / QLoRA run live, by training stack. The bytes come from each stack's code:
# peft's get_peft_model(autocast_adapter_dtype=True) makes adapters fp32 and prepare_model_for_kbit_training
# casts every non-quantized parameter to fp32; the QLoRA paper's qlora.py runs that function, then casts
# LoRA layers, embed_tokens and lm_head back to bf16 (norms stay fp32); torchtune and LitGPT keep everything
# in bf16 and never call it, and LitGPT's bnb precision plugin also quantizes the output layer.
RECIPES = {
    "peft": "Hugging Face peft (fp32 adapters; 8/4-bit: fp32 upcast of the rest)",
    "qlora-paper": "QLoRA paper's qlora.py (bf16 adapters, embeddings and lm_head)",
    "torchtune": "torchtune (all bf16, no upcast)",
    "litgpt": "LitGPT (all bf16, no upcast, output layer quantized too)",
}
ADAPTER_BYTES = {"peft": 4, "qlora-paper": 2, "torchtune": 2, "litgpt": 2}
# which non-quantized parameters prepare_model_for_kbit_training leaves in fp32 after the recipe is done
KBIT_UPCAST = {"peft": "all", "qlora-paper": "norms", "torchtune": "none", "litgpt": "none"}
QUANTIZE_LM_HEAD = {"peft": False, "qlora-paper": False, "torchtune": False, "litgpt": True}
# whether the recipe trains under torch.autocast (bf16): qlora.py runs HF Trainer with --bf16; the course's labs,
# torchtune and LitGPT (bf16-true) do not. HF Trainer / TRL users with bf16=True should set autocast
AUTOCAST = {"peft": False, "qlora-paper": True, "torchtune": False, "litgpt": False}
# LitGPT's own attention expands k and v to every query head before SDPA ("training: flash attention requires it",
# litgpt/model.py CausalSelfAttention.forward, 2024), so grouped-query models keep full-width k and v
KV_EXPANDED = {"peft": False, "qlora-paper": False, "torchtune": False, "litgpt": True}
# LitGPT's fit() keeps each step's `logits` in a local until the next step's forward returns, and with them that
# step's autograd graph: backward frees what autograd saved, but not what bitsandbytes keeps on ctx. So while the
# next forward runs, the last step's kept inputs and logits are still alive. HF Trainer's training_step returns
# loss.detach() and drops the outputs; torchtune deletes them
HOLDS_LAST_STEP = {"peft": False, "qlora-paper": False, "torchtune": False, "litgpt": True}
# LitGPT builds every model from plain nn.Linear and Lightning's plugin replaces them all, so families whose
# transformers layers bitsandbytes leaves in 16 bit (Falcon's FalconLinear) are quantized there
QUANTIZES_EVERY_LINEAR = {"peft": False, "qlora-paper": False, "torchtune": False, "litgpt": True}
# --8<-- [end:recipes]
LOSSES = {
    "full": "full logits, fp32 cross-entropy (transformers)",
    "chunked": "chunked cross-entropy (torchtune CEWithChunkedOutputLoss, eager)",
    "chunked_compiled": "chunked cross-entropy, torch.compile'd (torchtune with compile: True)",
    "fused_linear": "fused linear cross-entropy (Liger)",
    "cce": "Cut Cross-Entropy (Apple; Unsloth)",
}
PAGED_MIN_NUMEL = 100_000   # bitsandbytes pages only state tensors of at least 1e5 values (get_state_buffer)
OFFLOAD_LAYERS_ON_CARD = 2  # offloading keeps the layer in use and the one being copied on the card
INT8_SCALE_BYTES = 4        # LLM.int8: one fp32 scale (SCB) per output row beside the int8 weight
# Copies a quantized weight makes when its backward dequantizes it (bitsandbytes' MatMul4Bit.backward and
# MatMul8bitLt.backward; torchao's linear_nf4): one in the quant state's dtype, plus a cast copy when that
# differs from the compute dtype. Lightning's BitsandbytesPrecision (LitGPT) quantizes from fp16
# (`_quantize_weight`: weight.to(dtype=torch.half)) and computes in bf16, so it makes two.
DEQUANT_COPIES = {"peft": 1, "qlora-paper": 1, "torchtune": 1, "litgpt": 2}

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
    # "allocated": PyTorch's caching allocator (max_memory_allocated counts it); "managed": CUDA unified
    # memory that bitsandbytes' paged optimizers allocate outside that allocator; "reserve": the CUDA
    # context and the allocator's cached-but-free blocks, which nvidia-smi sees and max_memory_allocated does not
    pool: str = "allocated"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "bytes": self.bytes, "formula": self.formula,
                "pool": self.pool}


@dataclass(frozen=True)
class MemoryEstimate:
    model: str
    settings: dict
    terms: tuple[Term, ...]
    approximate: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    host: tuple[Term, ...] = field(default_factory=tuple)   # what the options moved to CPU memory
    off_peak: tuple[Term, ...] = field(default_factory=tuple)  # allocated during the step, not at its peak

    @property
    def total_bytes(self) -> int:
        """Needed on the card: allocated peak, allocator reserve, CUDA context and paged state (nvidia-smi)."""
        return sum(t.bytes for t in self.terms)

    @property
    def allocated_peak_bytes(self) -> int:
        """Comparable to torch.cuda.max_memory_allocated (and torchtune's peak active bytes)."""
        return sum(t.bytes for t in self.terms if t.pool == "allocated")

    def term(self, key: str) -> Term:
        """A term by key, whether at the peak, off it, or in CPU memory."""
        for t in self.terms + self.off_peak + self.host:
            if t.key == key:
                return t
        raise KeyError(key)

    @property
    def host_bytes(self) -> int:
        return sum(t.bytes for t in self.host)

    @property
    def breakdown(self) -> dict[str, int]:
        return {t.key: t.bytes for t in self.terms}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "approximate": self.approximate, "settings": dict(self.settings),
                "total_bytes": self.total_bytes, "total_gb": round(self.total_bytes / 1e9, 3),
                "total_means": "needed on the card (reserved + CUDA context; compare with nvidia-smi)",
                "allocated_peak_bytes": self.allocated_peak_bytes,
                "allocated_peak_gb": round(self.allocated_peak_bytes / 1e9, 3),
                "allocated_peak_means": "PyTorch allocator peak (compare with torch.cuda.max_memory_allocated)",
                "host_bytes": self.host_bytes, "host": [t.to_dict() for t in self.host],
                "off_peak": [t.to_dict() for t in self.off_peak],
                "breakdown": self.breakdown, "terms": [t.to_dict() for t in self.terms],
                "fits": fits(self.total_bytes), "notes": list(self.notes)}


def _gb(n: float) -> str:
    return f"{n / 1e9:,.2f} GB"


# --8<-- [start:activations]
def _norm_bytes(fam, width: int, s: int, weight_trains: bool) -> int:
    """Bytes one norm over ``width`` keeps per token (a stream of s bytes per value)."""
    from .families import LN, NO_PARAMS
    if fam.norm == LN:
        return s * width + 8          # nn.LayerNorm keeps its input in the stream's dtype, and fp32 mean and 1/std
    if fam.norm == NO_PARAMS:
        return 4 * width + 8          # OLMo's parameter-free LayerNorm runs on an fp32 copy of its input
    # RMS-style: fp32 copies of the input and 1/rms; a trained weight also keeps the normalised input, in fp32
    # when the weight multiplies it before the cast back (Gemma, OLMo-2, GPT-OSS, Cohere), else cast back
    trained = (4 if fam.norm_weight_fp32 else s) * width if weight_trains else 0
    return 4 * width * max(1, fam.norm_centred_copies) + 4 + trained


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
    from .families import (ACTIVATION_SAVES, LN, dropout_probs, is_parallel, layer_norm_names,
                           mlp_reads_attn_input)
    from .params import lora_targets, parse_targets
    if device not in ("cuda", "cpu"):
        raise LoraCalcError("device", f"device must be cuda or cpu (got {device!r})")
    fam, c = arch.family, arch.config
    h, V = arch.hidden_size, arch.vocab_size
    nh, kv = arch.num_attention_heads, arch.num_key_value_heads
    L, T, S = arch.num_hidden_layers, batch_size * seq_len, seq_len
    # the stream's bytes: a caller that knows the recipe says; else peft's QLoRA (fp32 after the upcast)
    s = stream_bytes if stream_bytes else (4 if method == "qlora" else 2)
    a = adapter_bytes
    full = method == "full"
    drop = dropout_probs(fam, arch.raw_config)

    def mask(nbytes: int) -> int:
        """Bytes per value of the mask dropout keeps on a tensor of ``nbytes`` values: CUDA's fused kernel keeps
        a bool mask, the CPU's composite dropout a scaled mask in the tensor's dtype."""
        return 1 if device == "cuda" else nbytes
    def adapter_keeps(rec, r: int, in_b: int, seen: set, kept_anyway: bool = False) -> tuple[int, int]:
        """(bytes per token, bytes per step) one LoRA module keeps for backward: A's output, and its input as
        the adapter reads it: a dropped copy and its mask, autocast's bf16 cast, a cast copy per module when
        the dtypes differ, else the input itself, once per tensor (``seen``) unless ``kept_anyway``; under
        autocast also its cached bf16 copies of fp32 A and B."""
        keep = (2 if autocast else a) * r
        if autocast and lora_dropout > 0:
            keep += (2 + mask(a)) * rec.d_in          # the dropped copy, in bf16 for the matmul, and the mask
        elif autocast and (in_b != 2 or a != 2):
            keep += 2 * rec.d_in                      # autocast's bf16 cast: a new tensor per module
        elif lora_dropout > 0:
            keep += (a + mask(a)) * rec.d_in
        elif in_b != a:
            keep += a * rec.d_in                      # a separate cast copy per module
        elif rec.reads not in seen:
            seen.add(rec.reads)
            if not kept_anyway:                       # e.g. attention already keeps it as its output
                keep += a * rec.d_in
        weights = 2 * r * (rec.d_in + rec.d_out) if (autocast and a != 2) else 0
        return keep, weights

    mla = fam.attention == "mla"
    if mla:
        qk_head, v_head = c["qk_nope_head_dim"] + c["qk_rope_head_dim"], c["v_head_dim"]
        qd = kvd = nh * qk_head          # kv_b_proj expands the latent to full-width keys and values
        v_store = nh * (c["qk_nope_head_dim"] + v_head)   # v is a view of kv_b_proj's whole output
        out_w = nh * v_head
    else:
        if kv_expanded or (fam.kv_expanded(c) if callable(fam.kv_expanded) else fam.kv_expanded):
            kv = nh                      # k and v reach attention expanded to every query head
        qd, kvd = nh * arch.head_dim, kv * arch.head_dim
        v_store, out_w = kvd, qd
    rope = fam.positions is None
    qkv_views = fam.qkv_views(c) if callable(fam.qkv_views) else fam.qkv_views
    norm = _norm_bytes(fam, h, s, full)
    norm_names = layer_norm_names(fam, c)
    norms = len(norm_names) * norm
    if is_parallel(fam, c) and len(norm_names) == 2 and fam.norm == LN:
        norms -= s * h                   # two LayerNorms read the same stream: one saved input (GPT-NeoX)
    if mla:
        norms += _norm_bytes(fam, c["kv_lora_rank"], s, full)
        if c.get("q_lora_rank"):
            norms += _norm_bytes(fam, c["q_lora_rank"], s, full)

    # attention
    p_scores = drop.get("scores", 0.0)
    cols = S + (1 if fam.sinks else 0)   # GPT-OSS's sink is one more column in the softmax
    fa2 = attention == "flash_attention_2"
    math_path = attention == "sdpa" and ((kv < nh and not fam.sdpa_gqa) or (p_scores > 0 and device == "cpu"))
    if fa2:
        # FlashAttention-2 keeps q, k, v (grouped k and v as they are), its output and an fp32 log-sum-exp, all
        # 16-bit: transformers casts an fp32 q, k, v (peft's fp32 stream) to the model's dtype first, making new
        # tensors; latent attention pads v to the q/k head width and crops the output, so o_proj gets a copy
        if mla:
            qkv, out_w = 2 * 3 * qd, qd
        elif s != 2 or autocast or not qkv_views:
            qkv = 2 * (qd + 2 * kvd)
        else:
            qkv = 2 * (qd + 2 * kvd) + (2 * (qd + kvd) if rope else 0)   # v still a view of the fused output
        attn = qkv + 2 * out_w + 4 * nh
        out_is_o_input = not mla
    elif attention == "sdpa" and not math_path:
        ca = 2 if autocast else s             # autocast hands attention bf16 copies of q, k and v
        if qkv_views:
            qkv = ca * (qd + 2 * kvd) + (ca * (qd + kvd) if rope else 0)
        else:
            qkv = ca * (qd + kvd + v_store)
        attn = qkv + ca * out_w + 4 * nh + (s * S if fam.sdpa_mask else 0)
        # the output is o_proj's input, unless a CPU kernel wrote it in the query's (b, h, s, d) layout, which
        # a query made by concatenation has (partial rotary embeddings, MLA): then o_proj gets a copy
        out_is_o_input = not (device == "cpu" and ((rope and fam.query_copied) or mla))
    elif math_path:
        # fp32 copies of q and of k, v expanded to every head, and the fp32 softmax; dropout adds its mask and
        # the dropped scores
        attn = 4 * 3 * qd + 4 * nh * S + ((mask(4) + 4) * nh * S if p_scores > 0 else 0)
        out_is_o_input = False
    else:
        attn = s * (qd + kvd + v_store) if mla else s * 3 * qd
        if fam.softmax_fp32:
            # the softmax runs in fp32; its copy in the stream's dtype is a new tensor unless that is fp32 too
            # (with dropout the dropped copy is kept instead)
            attn += (4 + (s if (s != 4 or p_scores > 0) else 0)) * nh * cols
        else:
            attn += s * nh * cols + (s * nh * cols if p_scores > 0 else 0)
        if p_scores > 0:
            attn += mask(s) * nh * cols
        if fam.sinks:
            attn += 8 * nh                            # the row max subtracted before the softmax keeps its indices
        if arch.attn_softcap:
            attn += s * nh * S                        # Gemma-2's tanh soft-cap keeps its output
        out_is_o_input = False
    if arch.qk_norm:
        qkw = qd + kvd
        if fam.qk_norm in ("head_ln", "heads_ln"):
            attn += s * qkw + 8 * (nh + kv)           # nn.LayerNorm per head: q and k, mean and 1/std per head
        else:
            # the family's RMS-style norm on q and k: 1/rms per head, or one per token for OLMo-2's over all heads
            rs = 4 * 2 if fam.qk_norm == "width" else 4 * (nh + kv)
            qk_w = (4 if fam.norm_weight_fp32 else s) * qkw if full else 0
            attn += 4 * qkw * max(1, fam.norm_centred_copies) + rs + qk_w
    # dropout on the residual branches keeps a mask of width h each
    attn += mask(s) * h * sum(1 for site in ("attn_out", "mlp_out") if drop.get(site, 0.0) > 0)

    # LoRA: which tensors the adapters keep, and which frozen tensors peft's merged experts make trainable
    chosen = []
    if not full:
        names = targets if isinstance(targets, tuple) and targets and targets[0] != "all-linear" \
            else parse_targets(targets if targets else "all-linear", arch)
        chosen, _ = lora_targets(arch, tuple(names))
    merged_kinds = {rec.kind for rec, _ in chosen if rec.kind in ("experts", "router")}

    def layer(sparse: bool) -> tuple[int, int]:
        """(bytes per token, bytes per layer independent of tokens) of one dense or sparse layer."""
        moe = fam.moe if sparse else None
        if moe:
            k, w = c[moe.top_k], c[moe.width]
            sw = moe.shared_width(c) if moe.shared_width else 0
            E = c[moe.experts]
            # each routed token: the expert's gated activation, its output for the weighted sum; the router's
            # fp32 logits and routing weights per token; a shared expert's SwiGLU and, when gated, its output
            mlp = moe.glu_saves * s * k * w + s * k * h + 8 * E + 8 * k + 3 * s * sw
            if moe.shared_gate:
                mlp += s * h + s
            i_in = k * w + sw                         # widths the down projections read
        else:
            i = c["intermediate_size"]
            mlp = (1 + ACTIVATION_SAVES.get(c.get("_act", ""), 0)) * s * i if fam.mlp == "plain" else 3 * s * i
            i_in = i
        # inputs a trained base layer keeps: attention's and the MLP's inputs, the down projections'
        base = s * (2 * h + i_in) - (s * h if mlp_reads_attn_input(fam, c) else 0)
        base += 0 if out_is_o_input else s * out_w
        if mla:
            base += s * (c["kv_lora_rank"] + (c["q_lora_rank"] or 0))
        expert_base = 0
        if moe:
            expert_base = s * k * h                   # each expert's gathered input
            if moe.router_fp32:
                expert_base += 4 * h                  # the router's fp32 copy of its input
        lora = merged = cast = 0
        if not full:
            if moe and merged_kinds:
                # peft's ParamWrapper adds B @ A to the fused weights in the forward pass: those weights train,
                # so the experts keep their inputs as in full fine-tuning, and every layer a merged copy
                if "experts" in merged_kinds:
                    lora += expert_base - (4 * h if moe.router_fp32 else 0) + s * k * w
                if "router" in merged_kinds:
                    lora += (4 if moe.router_fp32 else s) * h
            seen = set()
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
                in_b = 2 if ((autocast or fa2) and rec.reads == "attn_out") else s
                kept, weights = adapter_keeps(rec, rank * mult, in_b, seen,
                                              rec.reads == "attn_out" and out_is_o_input)
                lora += kept
                cast += weights
        per_tok = norms + attn + mlp + lora + ((base + expert_base) if full else 0)
        return per_tok, merged + cast, merged

    moe = fam.moe
    kinds = [bool(moe and arch.is_moe and moe.sparse_layer(c, li)) for li in range(L)]
    per = {sp: layer(sp) for sp in set(kinds)}
    # LoRA on the embeddings adds a trained term to layer 0's input, so the stream needs a gradient from there
    embed_lora = [rec for rec, _ in chosen if rec.role == "embedding"]
    if input_requires_grad is None:
        input_requires_grad = full or gradient_checkpointing or bool(embed_lora)
    # nothing upstream of layer 0 needs a gradient, so its first norm keeps nothing (OLMo-2's first norm
    # follows the attention, whose adapters already need one)
    first_layer_saving = 0 if (input_requires_grad or not fam.norm_first) else norm
    if not input_requires_grad and lora_dropout > 0:
        # nor does dropout keep a mask for the adapters reading layer 0's input: no gradient flows into it
        first_layer_saving += sum(mask(a) * rec.d_in for rec, _ in chosen if rec.reads == "attn_in")
    # the embeddings' dropout mask lives until backward reaches them
    embed_drop = mask(s) * h * T if (drop.get("embed", 0.0) > 0 and input_requires_grad) else 0
    head = (norm + (s * h if full else 0)) * T + 4 * V * T + 8 * T + 2 * S * arch.head_dim * s + head_weight_copy
    # LoRA on the output layer keeps what an adapter on a layer keeps, reading the final norm's output (which
    # the frozen head itself does not keep); autocast caches bf16 copies of fp32 A and B. LoRA on the
    # embeddings keeps the token ids (int64) and A's output
    for rec, mult in chosen:
        if rec.role == "head":
            kept, weights = adapter_keeps(rec, rank * mult, s, set())
            head += kept * T + weights
    head += sum((8 + a * rank * mult) * T for rec, mult in chosen if rec.role == "embedding")
    if arch.final_softcap:
        head += s * V * T                             # tanh of the logits, in the logits' dtype
    worst = max(per.values())
    per_layer, merged, experts_merged = worst
    if gradient_checkpointing:
        kept = L * s * h * T + embed_drop
        # what the recomputed layer's first op saves may be the kept input itself: a LayerNorm's input; an RMS
        # norm's fp32 input when the stream is fp32 already (QLoRA; Cohere's keeps centred copies instead);
        # OLMo-2's q/k/v projections, which read the layer input unnormalised (its own when they train, the
        # adapters' when no cast copy is needed)
        if not fam.norm_first:
            shared = s * h if (full or (s == a and not lora_dropout and chosen)) else 0
        elif fam.norm == LN:
            shared = s * h
        else:
            shared = 4 * h if (s == 4 and not fam.norm_centred_copies) else 0
        recomputed = (per_layer - shared) * T + merged
        recomputed_per_token = per_layer - shared
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


def _state_bytes(optimizer: str, param_bytes: int) -> float:
    """Optimizer state bytes per trainable parameter of ``param_bytes``: torch's AdamW and SGD keep their
    state in the parameter's dtype (zeros_like); bitsandbytes' 32-bit optimizers always keep it in fp32."""
    if optimizer in ("adamw", "sgd"):
        return STATE_BYTES[optimizer] * param_bytes / 4
    return STATE_BYTES[optimizer]


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# --8<-- [start:losses]
def loss_bytes(loss: str, vocab: int, tokens: int, hidden: int, logits_bytes: int, stream_bytes: int,
               chunks: int = 8, softcap: bool = False, head_trainable: bool = False) -> tuple[int, str]:
    """Bytes the loss holds at its peak beyond the layers' activations, and the formula as text.

    * full (transformers): the logits, their fp32 log-softmax (saved), and in backward the fp32 gradient
      arriving at the log-softmax and the one it returns, all alive at once;
    * chunked (torchtune, eager): the output chunks (alive while the loss runs), every chunk's fp32
      log-softmax (saved), one chunk's fp32 upcast in flight;
    * chunked, compiled: the compiled loss saves the 16-bit chunks and an fp32 max and log-sum-exp per token; its
      backward is one fused kernel per chunk that writes the chunk's 16-bit gradient;
    * fused linear (Liger): the input's gradient, computed in forward and saved, plus one chunk of logits
      whose rows are next_pow2(tokens / ceil(vocab / hidden)); the output layer's fp32 weight gradient too
      when it trains;
    * Cut Cross-Entropy: the saved input and, in backward, its gradient, plus an fp32 log-sum-exp per token.
    """
    V, T, h = vocab, tokens, hidden
    if loss == "full":
        cap = logits_bytes if softcap else 0
        return ((logits_bytes + 12 + cap) * V * T,
                f"({logits_bytes} + 4 + 4 + 4{f' + {cap} soft-cap' if cap else ''}) B x {T:,} tokens x {V:,} vocab")
    tc = -(-T // chunks)
    if loss == "chunked":
        return ((logits_bytes + 4) * V * T + 4 * V * tc,
                f"({logits_bytes} + 4) B x {T:,} tokens x {V:,} vocab + 4 B x {tc:,} tokens x {V:,} (one of {chunks} chunks)")
    if loss == "chunked_compiled":
        return (logits_bytes * V * T + logits_bytes * V * tc + 8 * T,
                f"{logits_bytes} B x {T:,} tokens x {V:,} vocab + {logits_bytes} B x {tc:,} tokens x {V:,} "
                f"(one chunk's gradient) + 8 B x {T:,} (fp32 max and log-sum-exp)")
    if loss == "fused_linear":
        rows = min(T, _next_pow2(-(-T // -(-V // h))))
        w = 4 * V * h if head_trainable else 0
        return (stream_bytes * h * T + logits_bytes * rows * V + w,
                f"{stream_bytes} B x {T:,} tokens x {h:,} (input gradient) + {logits_bytes} B x {rows:,} rows x {V:,} vocab"
                + (f" + 4 B x {V * h:,} (output layer's weight gradient)" if w else ""))
    return (2 * stream_bytes * h * T + 4 * T,
            f"2 x {stream_bytes} B x {T:,} tokens x {h:,} (input and its gradient) + 4 B x {T:,} log-sum-exp")
# --8<-- [end:losses]


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
    from .params import lora_targets
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
            # while lora_A runs on the identity: the fp32 identity and autocast's bf16 copy of it
            moments.append(((a + 2) * i * i + 2 * i * r, f"({a} + 2) B x {i:,} x {i:,} (identity and its bf16 copy) + "
                            f"2 B x {i:,} x {r} (A on it)", []))
        for nbytes, head, parts in moments:
            if nbytes > best:
                best = nbytes
                formula = head + (f" + ({' + '.join(str(n) for n, _ in parts if n)}) B x {o:,} x {i:,} "
                                  f"({', '.join(w for n, w in parts if n)})" if parts else "") + f" in {rec.name}"
    return best, formula


def estimate_memory(model: Any, method: Any = "qlora", rank: Any = 16, targets: Any = "all-linear",
                    batch_size: Any = 1, seq_len: Any = 2048, gradient_checkpointing: Any = True,
                    optimizer: Any = "adamw", attention: Any = "sdpa", precision: Any = "mixed",
                    lora_dropout: Any = 0.0, double_quant: Any = True, block_size: Any = 64,
                    cuda_overhead: Any = True, recipe: Any = "peft", loss: Any = "full", loss_chunks: Any = 8,
                    activation_offload: Any = False, optimizer_in_backward: Any = False,
                    paged_state_on_host: Any = None, dora: Any = False,
                    quantize_lm_head: Any = None, adapter_dtype: Any = None, kbit_upcast: Any = None,
                    old_bitsandbytes: Any = False, autocast: Any = None,
                    gradient_accumulation: Any = 1) -> MemoryEstimate:
    """Memory for one training step, as labelled terms (bytes) with their formulas.

    Defaults are today's common Hugging Face QLoRA recipe: peft with prepare_model_for_kbit_training, rank
    16 on all linear layers, batch 1, 2,048 tokens, gradient checkpointing, AdamW, fused attention, NF4
    with double quantization (block 64), transformers' full-logits loss. ``total_bytes`` is what the card
    must hold; ``allocated_peak_bytes`` what torch.cuda.max_memory_allocated would report.
    """
    arch = get_model(model)
    method = as_choice(method, "method", METHODS)
    optimizer = as_choice(optimizer, "optimizer", OPTIMIZERS)
    attention = as_choice(attention, "attention", ATTENTIONS)
    precision = as_choice(precision, "precision", PRECISIONS)
    recipe = as_choice(recipe, "recipe", RECIPES)
    loss = as_choice(loss, "loss", LOSSES)
    b = as_int(batch_size, "batch_size", 1, MAX_BATCH, "batch size")
    S = as_int(seq_len, "seq_len", 1, MAX_SEQ, "sequence length")
    gc = as_bool(gradient_checkpointing, "gradient_checkpointing")
    dropout = as_float(lora_dropout, "lora_dropout", 0.0, 0.99, "LoRA dropout")
    dq = as_bool(double_quant, "double_quant")
    bs = as_int(block_size, "block_size", 16, 4096, "block size")
    overhead = as_bool(cuda_overhead, "cuda_overhead")
    n_chunks = as_int(loss_chunks, "loss_chunks", 1, 4096, "loss chunks")
    offload = as_bool(activation_offload, "activation_offload")
    in_bwd = as_bool(optimizer_in_backward, "optimizer_in_backward")
    # None: where bitsandbytes' paging puts it. A paged optimizer's state is evicted to host memory whenever the
    # card runs short and paged back for the optimizer step (Dettmers et al. 2023, section 3), so the card need
    # not hold it at the step's peak; pass False to count it on the card anyway
    on_host = None if paged_state_on_host is None else as_bool(paged_state_on_host, "paged_state_on_host")
    use_dora = as_bool(dora, "dora")
    old_bnb = as_bool(old_bitsandbytes, "old_bitsandbytes")
    accum = as_int(gradient_accumulation, "gradient_accumulation", 1, MAX_BATCH, "gradient accumulation steps")
    if accum > 1 and in_bwd:
        # torchtune's recipes raise the same: each gradient is applied and freed as it arrives
        raise LoraCalcError("gradient_accumulation", "the optimizer step in backward applies each gradient as it "
                                                     "arrives, so nothing accumulates: set gradient accumulation to 1 "
                                                     "or turn the step in backward off")
    ac = AUTOCAST[recipe] if autocast is None else as_bool(autocast, "autocast")
    if ac and method == "full":
        if autocast is not None:
            raise LoraCalcError("autocast", "for full fine-tuning, precision mixed is autocast over fp32 weights: "
                                            "choose precision mixed or bf16 instead")
        ac = False
    q_head = QUANTIZE_LM_HEAD[recipe] if quantize_lm_head is None else as_bool(quantize_lm_head, "quantize_lm_head")
    adapter_b = ADAPTER_BYTES[recipe] if adapter_dtype is None else \
        {"fp32": 4, "bf16": 2}[as_choice(adapter_dtype, "adapter_dtype", ("fp32", "bf16"), "adapter dtype")]
    if use_dora and method == "full":
        raise LoraCalcError("dora", "DoRA is a LoRA variant: choose method lora, lora_8bit or qlora with dora")
    counts = count_params(arch, rank=rank, targets=targets)
    if use_dora and any(m.kind in ("experts", "router") for m in counts.per_module):
        # peft's ParamWrapper, which adapts fused experts and routers, raises for use_dora=True
        raise LoraCalcError("dora", "peft's DoRA does not work on fused experts or routers: leave them out of the "
                                    "targets (attention names such as q,k,v,o) or turn DoRA off")
    P, Pl = total_params(arch), counts.lora_params
    L, h, V = arch.num_hidden_layers, arch.hidden_size, arch.vocab_size
    T = b * S
    terms: list[Term] = []
    host: list[Term] = []
    notes: list[str] = list(counts.notes)
    if dropout > 0 and any(m.kind in ("experts", "router") for m in counts.per_module):
        # peft's ParamWrapper (LoRA on a bare parameter) raises for lora_dropout != 0
        raise LoraCalcError("lora_dropout", "peft adapts fused experts and routers only with lora_dropout 0; "
                                            "set it to 0 or leave those modules out of the targets")

    def add(key, label, nbytes, formula, pool="allocated"):
        terms.append(Term(key, label, int(round(nbytes)), formula, pool))

    quantized = method in QUANTIZED
    # a stack may prepare the quantized model its own way (fms-acceleration's bnb plugin skips the upcast)
    upcast = (KBIT_UPCAST[recipe] if kbit_upcast is None else
              as_choice(kbit_upcast, "kbit_upcast", ("all", "norms", "none"), "fp32 upcast")) if quantized else "none"
    s = 4 if upcast != "none" else 2           # bytes of the hidden stream (fp32 after peft's upcast)
    a = 4 if method == "full" and precision == "mixed" else (2 if method == "full" else adapter_b)
    logits_b = 4 if upcast == "all" and not ac else 2   # peft's upcast makes lm_head, and so the logits, fp32
    # under autocast an fp32 output layer is cast to bf16 for its matmul, and the copy is saved for backward
    head_copy = 2 * V * h if (ac and upcast == "all") else 0
    paged = optimizer.startswith("paged")
    if on_host is None:
        on_host = paged
    elif on_host and not paged:
        raise LoraCalcError("paged_state_on_host", "only a paged optimizer's state can move to host memory: "
                                                   "choose paged_adamw or paged_adamw_8bit, or leave it off")
    trainable_tensors: list[int] = []          # sizes of the trainable tensors (paging, optimizer-in-backward)

    if method == "full":
        # every parameter tensor of the model, from the family walker's records
        trainable_tensors = [n for r in arch.records for n in (r.weight, r.bias) if n for _ in range(r.copies)]
        if precision == "mixed":
            add("weights", "Weights (bf16 working copy)", 2 * P, f"2 B x {P:,} params")
            add("master_weights", "Master weights (fp32)", 4 * P, f"4 B x {P:,} params")
        else:
            add("weights", "Weights (bf16)", 2 * P, f"2 B x {P:,} params")
        grad_b = 2
        Ptrain = P
    else:
        Pq = quantizable_params(arch, QUANTIZES_EVERY_LINEAR[recipe])
        lm_params = 0 if arch.tie_word_embeddings else V * h
        head_q = quantized and q_head and lm_params > 0
        rest = P - Pq - (lm_params if head_q else 0)
        norms = P - Pq - V * h - lm_params          # norms and biases: what stays fp32 in every recipe
        if method == "lora":
            add("weights", "Frozen base weights (bf16)", 2 * P, f"2 B x {P:,} params")
        elif method == "qlora":
            q_bytes = nf4.storage_bytes(arch, block_size=bs, double_quant=dq, every_linear=QUANTIZES_EVERY_LINEAR[recipe])
            bits = nf4.bits_per_param(block_size=bs, double_quant=dq)
            if head_q:
                q_bytes += nf4.tensor_storage_bytes(lm_params, bs, dq)
            add("weights_4bit", "Frozen linear weights (NF4" + (" + double quant)" if dq else ")")
                + (", lm_head included" if head_q else ""), q_bytes,
                f"{bits:.5g} bits x {Pq + (lm_params if head_q else 0):,} params (4-bit codes + absmax per {bs})")
        else:
            rows = sum(r.d_out * r.copies for r in arch.layer_linears()) + (V if head_q else 0)
            n8 = Pq + (lm_params if head_q else 0)
            add("weights_8bit", "Frozen linear weights (LLM.int8)" + (", lm_head included" if head_q else ""),
                n8 + INT8_SCALE_BYTES * rows,
                f"1 B x {n8:,} params + {INT8_SCALE_BYTES} B x {rows:,} output rows (fp32 scale per row)")
        if quantized:
            add("weights_16bit", "Embeddings, " + ("" if head_q else "lm_head, ") + "norms"
                + (", fused experts, routers" if arch.is_moe else "") + " (bf16)", 2 * rest, f"2 B x {rest:,} params")
            if arch.is_moe:
                notes.append("bitsandbytes keeps the fused 3-D expert weights in 16 bit (only nn.Linear is quantized)"
                             + (" and prepare_model_for_kbit_training upcasts them to fp32" if upcast != "none" else "")
                             + ": quantizing saves little here")
            if upcast == "all":
                add("kbit_upcast", "fp32 upcast by prepare_model_for_kbit_training", 2 * rest,
                    f"(4 - 2) B x {rest:,} non-quantized params")
            elif upcast == "norms":
                add("kbit_upcast", "fp32 norms kept by qlora.py", 2 * norms, f"(4 - 2) B x {norms:,} norm and bias params")
        # A and B of every adapted module in every layer holding it (a fused expert parameter's A and B
        # hold all its experts)
        trainable_tensors = [t for m in counts.per_module for _ in range(m.copies)
                             for t in (m.lora_params * m.d_in // (m.d_in + m.d_out),
                                       m.lora_params * m.d_out // (m.d_in + m.d_out))]
        dtype = "fp32" if a == 4 else "bf16"
        add("adapter", f"LoRA adapter weights ({dtype})", a * Pl, f"{a} B x {Pl:,} LoRA params")
        Ptrain = Pl
        if use_dora:
            Pm = sum(m.d_out * m.copies for m in counts.per_module)
            state_tensors = list(trainable_tensors)   # the magnitudes' state is in the term below
            trainable_tensors += [m.d_out for m in counts.per_module for _ in range(m.copies)]
            st = _state_bytes(optimizer, a)
            add("dora_magnitude", "DoRA magnitude vectors, their gradients and optimizer state",
                (2 * a + st) * Pm, f"({a} + {a} + {st:g}) B x {Pm:,} magnitudes (one per output row)")
        grad_b = a
    if method == "full" or not use_dora:
        state_tensors = trainable_tensors
    st = _state_bytes(optimizer, a)
    state_label = f"Optimizer state: {OPTIMIZERS[optimizer]}"
    if optimizer in ("adamw", "sgd") and st != STATE_BYTES[optimizer]:
        # torch keeps the state in the parameters' dtype: bf16 parameters, bf16 state
        state_label = f"Optimizer state: {'AdamW (bf16 m and v)' if optimizer == 'adamw' else 'SGD momentum (bf16)'}"
    if paged:
        # bitsandbytes allocates paged state with cudaMallocManaged, outside PyTorch's allocator; only tensors
        # of PAGED_MIN_NUMEL values or more are paged, smaller ones get ordinary tensors
        big = sum(t for t in state_tensors if t >= PAGED_MIN_NUMEL)
        small = Ptrain - big
        add("optimizer", state_label + " (tensors under 100k values)", st * small, f"{st:g} B x {small:,} params")
        paged_term = Term("optimizer_paged", state_label + " (paged, CUDA managed memory)", int(round(st * big)),
                          f"{st:g} B x {big:,} params in tensors of 100k values or more", "managed")
        if on_host:
            host.append(paged_term)
            notes.append("paged optimizer state counted in host memory (evicted there under memory pressure)")
        else:
            terms.append(paged_term)
    else:
        where = "on the fp32 master weights" if method == "full" and precision == "mixed" else (
            "LoRA params" if method != "full" else "params (state in the weights' bf16)")
        add("optimizer", state_label, st * Ptrain, f"{st:g} B x {Ptrain:,} {where}")

    # --- what changes during the step. Three moments compete for the peak: the loss (every kept activation,
    # the head and the loss's own tensors; gradients were set to None by zero_grad), backward through a
    # checkpointed layer (kept inputs, that layer's recomputed activations, gradients so far) and the end of
    # backward (all gradients). The terms shown are those alive at the largest; the others are listed apart.
    dyn: dict[str, Term] = {}

    def piece(key, label, nbytes, formula):
        dyn[key] = Term(key, label, int(round(nbytes)), formula)

    # gradients: all of them live at the end of backward, unless each is applied and freed as it arrives
    if in_bwd:
        big = max(trainable_tensors)
        piece("gradients", "Gradients (optimizer step fused into backward)", grad_b * big,
              f"{grad_b} B x {big:,} (largest tensor; each gradient is applied and freed in backward)")
    elif method == "full":
        piece("gradients", "Gradients (bf16)", 2 * P, f"2 B x {P:,} params")
    else:
        piece("adapter_grads", f"LoRA gradients ({'fp32' if a == 4 else 'bf16'})", a * Pl, f"{a} B x {Pl:,} LoRA params")
    grad_key = "gradients" if (in_bwd or method == "full") else "adapter_grads"
    # torch's AdamW, unless fused (torchtune's configs) or bitsandbytes', runs its step with foreach kernels
    # (the default on CUDA): _foreach_sqrt makes a temporary of the second moment's size for every tensor at once,
    # alive with all gradients; stepping in backward, one tensor's
    if optimizer == "adamw" and recipe != "torchtune":
        v_b = st / 2
        n_v = max(trainable_tensors) if in_bwd else sum(state_tensors) + (
            sum(m.d_out * m.copies for m in counts.per_module) if (use_dora and method != "full") else 0)
        piece("optimizer_temp", "AdamW step's temporary (foreach sqrt of the second moment)", v_b * n_v,
              f"{v_b:g} B x {n_v:,} " + ("(largest tensor)" if in_bwd else "trainable params"))
    act = activation_bytes(arch, method, counts.rank, counts.requested, b, S, gc, attention, dropout,
                           stream_bytes=s, adapter_bytes=a, autocast=ac, head_weight_copy=head_copy,
                           kv_expanded=KV_EXPANDED[recipe])
    from .families import ACTIVATIONS_CHECKED
    if arch.model_type not in ACTIVATIONS_CHECKED:
        notes.append(f"the activation term is rough for {arch.model_type}: on a tiny model it differed from what "
                     "autograd saved by more than 10%")
    if act["merged_experts_per_layer"]:
        notes.append(f"peft adapts the fused experts by adding B @ A to their weights in the forward pass: each "
                     f"layer keeps a merged copy for backward ({act['merged_experts_per_layer'] / 1e9:,.2f} GB per "
                     "layer, counted in the activations)")
    kept_on_card = min(L, OFFLOAD_LAYERS_ON_CARD)
    # DoRA's forward keeps the base output for the magnitude's gradient: the base layer's (stream dtype) without
    # dropout; with dropout, peft recomputes it from the dropped input in the adapters' dtype (bf16 under autocast)
    base_out_b = (2 if ac else a) if dropout > 0 else s
    dora_feats = sum(m.d_out for m in counts.per_module if m.kind in ("linear", "conv1d")) if use_dora else 0
    dora_tok = (a + base_out_b) * dora_feats
    if gc:
        kept = L * s * h * T
        moved = kept - kept_on_card * s * h * T if offload else 0
        kept_card = kept - moved
        recomputed = act["layers"] - kept
        piece("activations", "Activations: checkpointed layer inputs" + (" (the rest offloaded to CPU)" if offload else "")
              + " and the head", kept_card + act["head_other"],
              f"{kept_on_card if offload else L} layers x {s * h:,} B x {T:,} tokens"
              + (f" ({L - kept_on_card} more layers in CPU memory)" if offload else "") + " + the final norm and head")
        # activation_bytes leaves out what the recomputed layer's first op shares with the kept input, and adds
        # the merged experts (and autocast's weight copies) per layer: the text says the same
        per_tok = act["recomputed_per_token"]
        merged = act["merged_experts_per_layer"] + act["cast_weights_per_layer"]
        piece("recomputed", "Activations of the layer being recomputed in backward", recomputed,
              f"{per_tok:,} B/token x {T:,} tokens" + (f" + {merged:,} B (merged experts or autocast's weight "
                                                     "copies)" if merged else ""))
    else:
        moved = act["layers"] - act["layers"] * kept_on_card // L if offload else 0
        piece("activations", "Activations saved for backward" + (" (offloaded to CPU)" if offload else ""),
              act["layers"] - moved + act["head_other"],
              f"{kept_on_card if offload else L} layers x {act['per_layer_per_token']:,} B/token x {T:,} tokens"
              + (f" ({L - kept_on_card} more layers in CPU memory)" if offload else "") + " + the final norm and head")
    if moved:
        host.append(Term("activations_offloaded", "Activations offloaded to CPU memory", moved,
                         f"{L - kept_on_card} layers' saved tensors in pinned host memory"))
    if use_dora:
        # DoRA's forward keeps the base layer's output (stream dtype) and the LoRA branch's output (adapter
        # dtype) for the magnitude's gradient: (a + s) B per output feature per token, in every layer kept
        n_layers = 1 if gc else (kept_on_card if offload else L)
        piece("dora_activations", "DoRA activations (base and LoRA outputs kept)", dora_tok * n_layers * T,
              f"({a} + {base_out_b}) B x {dora_feats:,} output features x {n_layers} "
              f"layer{'s' if n_layers > 1 else ''} x {T:,} tokens")
        # with dropout that recomputed base output is F.linear(dropped x, W) on the weight converted to x's dtype
        # (a dequantized or cast copy; bf16 under autocast): autograd keeps that copy for backward in every
        # module whose input needs a gradient (not layer 0's attention inputs without checkpointing); a 16-bit
        # weight already in x's dtype is the parameter itself
        x_b = 2 if ac else a
        w_b = x_b if (quantized or x_b != 2) else 0
        if dropout > 0 and w_b:
            recs = [r for r in arch.layer_linears() if r.name in {m.name for m in counts.per_module}]
            per_layer_w = sum(r.weight * min(1.0, r.copies / L) for r in recs)
            n_full = 1 if gc else (kept_on_card if offload else L)
            # in layer 0 without checkpointing, the first adapted modules read a tensor nothing upstream trains
            first_reads = recs[0].reads if recs else None
            skip0 = 0 if (gc or offload) else sum(r.weight * min(1.0, r.copies / L) for r in recs
                                                  if r.reads == first_reads)
            w_total = per_layer_w * n_full - skip0
            piece("dora_weights", "DoRA with dropout: each module's converted weight, kept for backward",
                  w_b * w_total, f"{w_b} B x {int(round(w_total)):,} weight entries of the adapted modules in "
                                 f"{n_full} layer{'s' if n_full > 1 else ''}"
                                 + (" (less layer 0's first ones, whose input needs no gradient)" if skip0 else ""))
        # the weight norm's weight-sized temporaries inside one module's forward (largest module): alive on top of
        # what is kept so far, and again while backward recomputes a checkpointed layer
        tr, tr_f = dora_transient(arch, method, counts.requested, counts.rank, a, s, ac)
        if tr:
            piece("dora_transient", "DoRA weight norm's temporaries, largest adapted module (transient)", tr, tr_f)
    # inputs that bitsandbytes' 8-bit (and old 4-bit) matmul keeps outside autograd's saved tensors
    chosen_names = {m.name for m in counts.per_module}
    kept_tok, kept_layer0, held_tok, held_layer0, kept_why = bnb_kept_inputs(
        arch, method, chosen_names, attention, dropout, s, a, old_bnb, QUANTIZES_EVERY_LINEAR[recipe])
    last_kept = 0      # what the last step's graph still holds after its backward (see HOLDS_LAST_STEP)
    if kept_tok:
        n_layers = 1 if gc else L
        # without checkpointing nothing upstream of layer 0 needs a gradient: its first groups keep nothing
        skip = 0 if gc else kept_tok - kept_layer0
        # a quantized output layer keeps the final norm's output too, checkpointing or not
        head_tok = s * h if head_q else 0
        piece("bnb_inputs", f"Layer inputs {kept_why} for backward (outside autograd, not offloaded)",
              (kept_tok * n_layers - skip + head_tok) * T,
              f"({kept_tok:,} B/token x {n_layers} layer{'s' if n_layers > 1 else ''}"
              + (f" - {skip:,} B/token in layer 0" if skip else "")
              + (f" + {head_tok:,} B/token at the output layer" if head_tok else "") + f") x {T:,} tokens")
        # backward frees checkpointed layers' recomputed graphs, not the output layer's ctx; in the others it
        # frees autograd's saved tensors, so the inputs ctx shared with them count now (layer 0's as before)
        last_kept = head_tok * T if gc else (held_tok * (L - 1) + held_layer0 + head_tok) * T
    # a quantized weight is dequantized whole in its backward: the output layer's (when quantized) while the
    # loss's tensors are alive; the largest layer matrix's while a checkpointed layer runs backward
    deq_head = deq_layer = 0
    if quantized:
        copies = DEQUANT_COPIES[recipe]
        if head_q:
            deq_head = 2 * copies * V * h
            piece("dequant_head", "Output layer dequantized in its backward (transient)", deq_head,
                  f"{copies} x 2 B x {V:,} x {h:,}" + (" (fp16 quant state, then a bf16 copy)" if copies > 1 else ""))
        big_w = max((r.weight for r in arch.layer_linears() if is_4bit(r, arch.family, QUANTIZES_EVERY_LINEAR[recipe])),
                    default=0)
        if gc and big_w:
            deq_layer = 2 * copies * big_w
            piece("dequant_layer", "Largest layer weight dequantized in backward (transient)", deq_layer,
                  f"{copies} x 2 B x {big_w:,} entries")
    lb, lf = loss_bytes(loss, V, T, h, logits_b, s, n_chunks, arch.final_softcap, method == "full")
    labels = {"full": "Logits, fp32 log-softmax and its two gradients"}
    piece("logits", labels.get(loss, f"Loss: {LOSSES[loss]}"), lb, lf)
    lora_head = any(m.name == "lm_head" for m in counts.per_module) and method != "full"
    if lora_head and not ac and a != logits_b:
        # LoRA on a 16-bit output layer with fp32 adapters: the sum of the two branches is fp32 and is cast
        # back, so backward carries the gradient in both dtypes (measured on CPU with peft: one more
        # logits-sized tensor and one of the head's input size alive when the loss's tensors are)
        # (with dropout, also the gradient of the dropped copy, in the adapters' dtype)
        d_w = a * h if dropout > 0 else 0
        piece("head_lora_grads", "LoRA output layer: its gradient in the adapters' dtype too",
              (logits_b * V + s * h + d_w) * T,
              f"({logits_b} B x {V:,} vocab + {s} B x {h:,}{f' + {a} B x {h:,}' if d_w else ''}) x {T:,} tokens")
    moments = {"loss": ["activations", "logits", "head_lora_grads"]
               + ([] if gc else (["dora_activations", "dora_weights"] if use_dora else []))
               + ([] if gc else ["bnb_inputs"]) + ["dequant_head"],
               "end of backward": [grad_key, "optimizer_temp"]}
    if use_dora and not gc:
        # a DoRA module's forward in the last layer (everything kept so far, counted whole: an upper bound); with
        # checkpointing the first pass keeps no graph, so the identity dies sooner, and the recompute holds more
        moments["forward through a DoRA layer"] = ["activations", "dora_activations", "dora_weights", "bnb_inputs",
                                                   "last_step", "dora_transient"]
    if HOLDS_LAST_STEP[recipe]:
        # the output layer's forward: the last step's logits and kept inputs are alive, this step's logits so
        # far (all chunks but one), and a quantized head is dequantized in forward as in backward
        piece("last_step", "Last step's logits" + (" and the inputs its graph still keeps" if last_kept else "")
              + " (the loop holds them until this forward returns)", logits_b * T * V + last_kept,
              f"{logits_b} B x {T:,} tokens x {V:,} vocab" + (f" + {last_kept:,} B of kept inputs" if last_kept else ""))
        tc = -(-T // n_chunks)
        piece("logits_so_far", "This step's output chunks computed so far", logits_b * (T - tc) * V,
              f"{logits_b} B x {T - tc:,} tokens x {V:,} vocab")
        moments["forward through the output layer"] = (["activations"] + ([] if gc else ["bnb_inputs"])
                                                       + ["last_step", "logits_so_far", "dequant_head"])
    if accum > 1:
        # the earlier micro-batches' gradients stay alive through every later forward and backward
        for k in moments:
            if k != "end of backward":
                moments[k].append(grad_key)
    if gc:
        moments["backward through a recomputed layer"] = ["activations", "recomputed", grad_key] + (
            ["dora_activations", "dora_weights"] if use_dora else []) + ["bnb_inputs", "dequant_layer"]
        if use_dora:
            # recomputing a layer rebuilds its weight norms before its backward dequantizes anything: the
            # transients never meet; the layer's recomputed activations are counted whole (an upper bound)
            moments["recompute of a DoRA layer in backward"] = ["activations", "recomputed", grad_key,
                                                                "dora_activations", "dora_weights", "bnb_inputs",
                                                                "dora_transient"]
    moments = {k: [x for x in v if x in dyn] for k, v in moments.items()}
    peak_at = max(moments, key=lambda k: sum(dyn[x].bytes for x in moments[k]))
    order = ["activations", "recomputed", "bnb_inputs", "dora_activations", "dora_weights", "dora_transient",
             "last_step",
             "logits_so_far", "logits", "head_lora_grads", "dequant_head", "dequant_layer", grad_key,
             "optimizer_temp"]
    grads_first = [grad_key] + [k for k in order if k != grad_key]
    for k in grads_first:
        if k in dyn and k in moments[peak_at]:
            terms.append(dyn[k])
    off_peak = [dyn[k] for k in grads_first if k in dyn and k not in moments[peak_at]]
    notes.append(f"peak at the {peak_at}; not alive then: "
                 + (", ".join(f"{t.label.lower()} {_gb(t.bytes)}" for t in off_peak) or "nothing"))
    if arch.model_type == "gemma2" and attention == "sdpa":
        notes.append("transformers runs Gemma-2 with eager attention unless FlashAttention-2 is installed; "
                     "choose eager to see that case")
    if overhead:
        allocated = sum(t.bytes for t in terms if t.pool == "allocated")
        add("cuda_context", "CUDA context + allocator reserve (not in the allocated peak)",
            CUDA_CONTEXT_BYTES + ALLOCATOR_SLACK * allocated,
            f"{CUDA_CONTEXT_BYTES / 2**20:.0f} MiB context + {ALLOCATOR_SLACK:.0%} of the allocated peak", "reserve")
    settings = {"method": method, "rank": counts.rank, "targets": list(counts.requested), "batch_size": b,
                "seq_len": S, "gradient_checkpointing": gc, "optimizer": optimizer, "attention": attention,
                "precision": precision, "lora_dropout": dropout, "double_quant": dq, "block_size": bs,
                "recipe": recipe, "loss": loss, "loss_chunks": n_chunks, "activation_offload": offload,
                "optimizer_in_backward": in_bwd, "paged_state_on_host": on_host, "dora": use_dora,
                "quantize_lm_head": q_head, "adapter_dtype": "fp32" if a == 4 else "bf16", "kbit_upcast": upcast,
                "old_bitsandbytes": old_bnb, "autocast": ac, "gradient_accumulation": accum}
    if arch.approximate:
        notes.append("model shape approximated from a parameter count")
    return MemoryEstimate(model=arch.name, settings=settings, terms=tuple(terms), approximate=arch.approximate,
                          notes=tuple(notes), host=tuple(host), off_peak=tuple(off_peak))
