"""Memory to serve a (tuned) model with vLLM: weights, the KV cache for a context and batch, LoRA slots.

What vLLM 0.11+ allocates, read from its source (``vllm/v1/kv_cache_interface.py``, ``vllm/lora/layers/``):

* **KV cache**, in blocks of ``KV_BLOCK_TOKENS`` tokens per sequence. A global attention layer keeps keys and values
  for every token: ``2 x kv_heads x head_dim`` values per token (``FullAttentionSpec``). A local (sliding-window)
  layer keeps at most its window, plus one block because the window need not start on a block edge
  (``SlidingWindowSpec``). Multi-head latent attention (DeepSeek) keeps one compressed vector per token,
  ``kv_lora_rank + qk_rope_head_dim`` values, instead of per-head keys and values (``MLAAttentionSpec``).
  Under tensor parallelism each GPU holds its share of the kv heads (at least one); MLA's vector is on every GPU.
* **LoRA slots**: ``--max-loras`` adapters at ``--max-lora-rank``, allocated up front for every linear layer of the
  model whatever each adapter targets, in the model's dtype (``lora_a_stacked`` / ``lora_b_stacked``).
* **Weights** in the precision served: bf16 or any format of ``quantized.py`` (fp8, int8, NF4, HQQ, GPTQ, AWQ...).

Not counted: the activations of vLLM's profiling forward pass and the CUDA graphs, which vLLM measures at start-up
and takes from the same budget; the capacity below is therefore an upper bound. Layers that are not attention
(Mamba-2, linear attention, short convolutions in hybrids) keep a fixed state per sequence that is not modelled:
the estimate says so rather than guessing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import LoraCalcError, as_choice, as_float, as_int
from .gpus import get_gpu
from .models import Architecture, get_model
from .params import count_params
from .quantized import FORMATS, stored_bytes

KV_BLOCK_TOKENS = 16                 # vLLM's default block_size on CUDA (cache_config.block_size)
DEFAULT_UTILIZATION = 0.9            # vLLM's default --gpu-memory-utilization
from .allocator import CUDA_CONTEXT_BYTES  # the same context the training estimate counts
WEIGHT_FORMATS = {"bf16": "bf16", **{name: f.label for name, f in FORMATS.items()}}
# vllm/config/lora.py: LoRAConfig.max_loras default 1, max_lora_rank default 16, allowed ranks MaxLoRARanks
VLLM_LORA_SOURCE = "vllm/config/lora.py: LoRAConfig (max_loras, max_lora_rank, MaxLoRARanks)"
VLLM_DEFAULT_MAX_LORAS = 1
VLLM_DEFAULT_MAX_LORA_RANK = 16
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
KV_DTYPES = {"auto": 2, "bf16": 2, "fp16": 2, "fp8": 1}     # bytes per cached value ("auto": the model's bf16)


@dataclass(frozen=True)
class ServingEstimate:
    model: str
    context: int
    batch: int
    weights_bytes: int
    kv_bytes_per_sequence: int
    lora_slot_bytes: int
    context_bytes: int
    kv_bytes_per_token: dict[str, int]          # per layer kind: what one more token of context adds
    notes: tuple[str, ...] = ()
    gpu: str | None = None
    budget_bytes: int | None = None             # the card's usable bytes x gpu_memory_utilization
    utilization: float = DEFAULT_UTILIZATION
    tensor_parallel: int = 1
    terms: tuple[tuple[str, str, int], ...] = field(default=(), repr=False)

    @property
    def kv_bytes(self) -> int:
        return self.kv_bytes_per_sequence * self.batch

    @property
    def total_bytes(self) -> int:
        """Per GPU: weights, the batch's KV cache, the LoRA slots and the CUDA context."""
        return self.weights_bytes + self.kv_bytes + self.lora_slot_bytes + self.context_bytes

    @property
    def kv_budget_bytes(self) -> int | None:
        """What the card's budget leaves for the KV cache after weights, slots and the CUDA context."""
        if self.budget_bytes is None:
            return None
        return self.budget_bytes - self.weights_bytes - self.lora_slot_bytes - self.context_bytes

    @property
    def max_sequences(self) -> int | None:
        """Sequences of this context that fit in what the budget leaves for the KV cache (an upper bound)."""
        left = self.kv_budget_bytes
        if left is None or not self.kv_bytes_per_sequence:
            return None
        return max(0, left // self.kv_bytes_per_sequence)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "context": self.context, "batch": self.batch,
                "tensor_parallel": self.tensor_parallel, "weights_bytes": self.weights_bytes,
                "kv_bytes_per_token": self.kv_bytes_per_token, "kv_bytes_per_sequence": self.kv_bytes_per_sequence,
                "kv_bytes": self.kv_bytes, "lora_slot_bytes": self.lora_slot_bytes,
                "cuda_context_bytes": self.context_bytes, "total_bytes": self.total_bytes, "gpu": self.gpu,
                "budget_bytes": self.budget_bytes, "kv_budget_bytes": self.kv_budget_bytes,
                "max_sequences": self.max_sequences, "notes": list(self.notes),
                "terms": [{"key": k, "label": label, "bytes": b} for k, label, b in self.terms]}


def _blocks(tokens: int) -> int:
    return -(-tokens // KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS


def layer_caches(arch: Architecture, tensor_parallel: int = 1) -> tuple[list[tuple[int, int]], int]:
    """(values per token, window) for each attention layer on one GPU, and the count of non-attention layers.

    window 0: a global layer. Values are per token, keys and values together (MLA: the one latent vector)."""
    c, fam = arch.config, arch.family
    layers = c["num_hidden_layers"]
    attn = fam.attn_layers(c) if fam.attn_layers else layers
    if attn == 0:   # a family whose attention is described apart (gemma4_text's per-layer shapes): not modelled
        raise LoraCalcError("model", f"{arch.model_type}'s KV cache is not modelled by loracalc (its attention "
                                     "layers have per-layer shapes the cache formula does not read yet)")
    if fam.attention == "mla":
        per_token = c["kv_lora_rank"] + c["qk_rope_head_dim"]
    else:
        kv_heads = max(1, -(-c["num_key_value_heads"] // tensor_parallel))
        per_token = 2 * kv_heads * c["head_dim"]
    windows = fam.sliding(c, arch.raw_config) if fam.sliding else (0,) * layers
    return [(per_token, windows[i] if i < len(windows) else 0) for i in range(attn)], layers - attn


def kv_cache_bytes(arch: Architecture, context: int, kv_dtype: str = "auto", tensor_parallel: int = 1) -> dict:
    """Bytes one sequence of CONTEXT tokens keeps, per layer kind, and what one more token adds."""
    nbytes = KV_DTYPES[kv_dtype]
    caches, _ = layer_caches(arch, tensor_parallel)
    full = sum(v for v, w in caches if not w) * nbytes
    local = [(v * nbytes, w) for v, w in caches if w]
    local_seq = sum(v * (_blocks(min(context, w)) + (KV_BLOCK_TOKENS if context > w else 0)) for v, w in local)
    return {"global_per_token": full, "local_per_token": sum(v for v, _ in local),
            "local_windows": sorted({w for _, w in local}), "sequence": full * _blocks(context) + local_seq}


def estimate_serving(model: Any, context: Any = 8192, batch: Any = 1, weights: str = "bf16", kv_dtype: str = "auto",
                     max_loras: Any = 0, max_lora_rank: Any = VLLM_DEFAULT_MAX_LORA_RANK, gpu: Any = None,
                     gpu_memory_utilization: Any = DEFAULT_UTILIZATION, tensor_parallel: Any = 1) -> ServingEstimate:
    """Memory per GPU to serve MODEL at CONTEXT tokens for BATCH sequences at once (see the module's docstring)."""
    arch = model if isinstance(model, Architecture) else get_model(model)
    context = as_int(context, "context", 1, 10_000_000, "context (tokens per sequence)")
    batch = as_int(batch, "batch", 1, 100_000, "sequences at once")
    tp = as_int(tensor_parallel, "tensor_parallel", 1, 64, "tensor-parallel GPUs")
    max_loras = as_int(max_loras, "max_loras", 0, 1024, "LoRA slots (max_loras)")
    max_lora_rank = as_int(max_lora_rank, "max_lora_rank", 1, 512, "max_lora_rank")
    if max_lora_rank not in VLLM_LORA_RANKS:
        allowed = ", ".join(map(str, VLLM_LORA_RANKS))
        raise LoraCalcError("max_lora_rank", f"vLLM allocates LoRA slots at one of these ranks: {allowed} (got "
                            f"{max_lora_rank}); give the next one up from your largest adapter's rank")
    util = as_float(gpu_memory_utilization, "gpu_memory_utilization", 0.05, 1.0, "gpu_memory_utilization")
    weights = as_choice(weights, "weights", WEIGHT_FORMATS, "weight format")
    kv_dtype = as_choice(kv_dtype, "kv_dtype", KV_DTYPES, "KV cache dtype")
    kv = kv_cache_bytes(arch, context, kv_dtype, tp)
    _, others = layer_caches(arch, tp)
    notes = []
    if others:
        notes.append(f"{others} of {arch.num_hidden_layers} layers are not attention (state-space, linear attention "
                     f"or convolution): each keeps a fixed state per sequence that this estimate leaves out")
    if kv["local_windows"]:
        notes.append("local layers keep at most " + " / ".join(f"{w:,}" for w in kv["local_windows"])
                     + " tokens each, so a long context costs mainly the global layers")
    slots = 0
    if max_loras:
        slots = max_loras * count_params(arch, rank=max_lora_rank, targets="all-linear").lora_params * 2 // tp
    w = -(-stored_bytes(arch, weights) // tp)
    g = get_gpu(gpu) if gpu else None
    terms = (("weights", f"weights, {WEIGHT_FORMATS[weights]}" + (f", 1/{tp} per GPU" if tp > 1 else ""), w),
             ("kv_cache", f"KV cache: {batch} x {context:,} tokens", kv["sequence"] * batch),
             ("lora_slots", f"LoRA slots: {max_loras} x rank {max_lora_rank}, every linear layer", slots),
             ("cuda_context", "CUDA context", CUDA_CONTEXT_BYTES))
    return ServingEstimate(model=arch.display_name, context=context, batch=batch, weights_bytes=w,
                           kv_bytes_per_sequence=kv["sequence"], lora_slot_bytes=slots,
                           context_bytes=CUDA_CONTEXT_BYTES,
                           kv_bytes_per_token={"global": kv["global_per_token"], "local": kv["local_per_token"]},
                           notes=tuple(notes), gpu=g.name if g else None,
                           budget_bytes=int(g.memory_bytes * util) if g else None, utilization=util,
                           tensor_parallel=tp, terms=tuple(t for t in terms if t[2] or t[0] != "lora_slots"))
