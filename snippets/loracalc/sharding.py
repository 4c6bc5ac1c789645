"""Training memory per GPU when several GPUs share one run: data parallel, FSDP SHARD_GRAD_OP and FULL_SHARD.

``shard_estimate(estimate, arch, gpus, strategy)`` takes what ``estimate_memory`` returned for one GPU
and says what each GPU holds, term by term, and what the host holds for anything offloaded.
``smallest_gpu_count(...)`` answers "how many of this GPU", per strategy.

What each strategy does, as PyTorch FSDP2 (``torch.distributed.fsdp.fully_shard``, torch 2.13) implements it
(DeepSpeed's stages are compared below):

* ``ddp``: every GPU holds everything; DistributedDataParallel adds flat gradient buckets as large as
  the gradients (``gradient_as_bucket_view=False``, the default that accelerate keeps).
* ``shard-grad-op`` (FSDP ``SHARD_GRAD_OP``, ``reshard_after_forward=False``): parameters, gradients and optimizer
  state are stored as 1/N shards (dim-0 chunks, padded to equal size), but every layer gathered in
  forward stays gathered until its backward, so at the end of forward the whole model is resident in the
  compute dtype.
* ``full-shard`` (FSDP ``FULL_SHARD``, ``reshard_after_forward=True``; DeepSpeed ZeRO-3 shards the same way): the
  same shards; a layer is gathered just
  before it runs and freed after, so the gathered working set is the root group (embeddings, final norm,
  lm_head: gathered at the start of forward and again for the whole backward) plus two decoder layers
  (the one computing and the one prefetched).

DeepSpeed ZeRO-2 is not ``SHARD_GRAD_OP``: it partitions gradients and optimizer state (with the fp32 master
weights) but never the 16-bit weights, which every GPU keeps whole for the whole run. At the peak that is about
this module's ``shard-grad-op`` figure less the weight shard (SHARD_GRAD_OP holds its 1/N shard beside the gathered
whole model), before DeepSpeed's own communication buckets; ZeRO-1 partitions only the optimizer state.

Offload: ``offload_params`` is FSDP's ``CPUOffloadPolicy``: the sharded parameters, their gradients and
the optimizer state live in host memory and the optimizer steps on the CPU; only the gathered working
set is on the GPU. ``offload_optimizer`` alone is DeepSpeed's ZeRO-Offload (optimizer state and fp32
master weights on the host); FSDP has no optimizer-only switch.

Each moment of the step (``loracalc.peaks``: the loss, backward through a recomputed layer, the optimizer step)
is split over the GPUs on its own and the largest is kept: sharding divides gradients and optimizer state but
not activations, so the moment that peaks on one GPU need not peak on each of N. At the optimizer step every
unit has been resharded, so nothing is gathered.

FSDP1 (``FullyShardedDataParallel``, ``fsdp_version=1``; accelerate's default and what its 1.0 releases used)
differs in two ways the estimate follows. With reentrant checkpointing (transformers 4's default) and a layer
whose own flat parameter is frozen, it keeps every later layer's input gradient until backward ends, so the
peak moves to the first layer's backward (``fsdp1_retained_bytes``). And accelerate casts a 16-bit full
fine-tune's flat parameters to fp32 when mixed precision is on (``upcast_by_accelerate``).

Terms are handled by their key (``RULES``). A key this module does not know is kept whole on every GPU
(the safe side of an estimate) and named in the notes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .choices import STRATEGIES
from .errors import LoraCalcError, as_bool, as_choice, as_int
from .gpus import get_gpu
from .memory import MemoryEstimate, estimate_memory, settings_of
from .models import get_model, quantizable_params, total_params
from .params import count_params
from .peaks import moments

MAX_GPUS = 4096
COMPUTE_BYTES = 2   # FSDP gathers in MixedPrecisionPolicy.param_dtype: bf16 in every recipe the course uses

# --8<-- [start:rules]
# How each term of estimate_memory is split. "param": parameter storage, sharded under FSDP;
# "param4": 4-bit weights, whose packed codes are parameters (sharded) but whose quantization statistics
# live in weight.quant_state, outside the parameters, so every GPU keeps all of them; "grad": gradients;
# "optim": optimizer state (with fp32 master weights, which ZeRO-Offload moves with it); "act": activations
# and logits, never sharded (each GPU runs its own micro-batch); "context": recomputed per GPU.
RULES = {
    "weights": "param", "weights_16bit": "param", "kbit_upcast": "param", "adapter": "param",
    # LLM.int8 weights are parameters too; DoRA's magnitude vectors are parameters, counted with their
    # gradients and optimizer state in one small term
    "weights_8bit": "param", "dora_magnitude": "param",
    "weights_4bit": "param4",
    "gradients": "grad", "adapter_grads": "grad",
    "optimizer": "optim", "master_weights": "optim",
    "optimizer_temp": "optim",      # the step's temporary is made per shard of the state
    "activations": "act", "logits": "act", "recomputed": "act", "dora_activations": "act",
    "dora_transient": "act",        # computed on the gathered weight, whole on every GPU
    "activations_offloaded": "act",
    # inputs bitsandbytes keeps for its own backward, and a weight dequantized whole in backward (after FSDP
    # gathered it): per micro-batch, or full size, on every GPU
    "bnb_inputs": "act", "dequant_head": "act", "dequant_layer": "act",
    # LitGPT's loop holds the last step's logits and kept inputs into the next forward: per micro-batch too
    "last_step": "act", "logits_so_far": "act", "head_lora_grads": "act", "dora_weights": "act",
    # LoRA on a GPTQ/AWQ/HQQ/torchao base: GPTQ's and AWQ's packed weights are buffers (qweight, qzeros, scales),
    # which FSDP does not shard, so every GPU keeps them whole (an upper bound for HQQ and torchao, whose weights
    # are parameters); the 16-bit copies autograd saves are per micro-batch work, whole on every GPU
    "weights_quantized": "act", "dequant_saved": "act",
    "cuda_context": "context",
}
# --8<-- [end:rules]


@dataclass(frozen=True)
class ShardTerm:
    key: str
    label: str
    gpu_bytes: int       # on each GPU
    host_bytes: int      # in host memory, for each GPU's share (offloaded)
    formula: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "gpu_bytes": self.gpu_bytes, "host_bytes": self.host_bytes,
                "formula": self.formula}


@dataclass(frozen=True)
class ShardedEstimate:
    model: str
    gpus: int
    strategy: str
    offload_optimizer: bool
    offload_params: bool
    terms: tuple[ShardTerm, ...]
    single_gpu_bytes: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def per_gpu_bytes(self) -> int:
        return sum(t.gpu_bytes for t in self.terms)

    @property
    def host_bytes_per_gpu(self) -> int:
        return sum(t.host_bytes for t in self.terms)

    @property
    def host_bytes_total(self) -> int:
        return self.gpus * self.host_bytes_per_gpu

    @property
    def breakdown(self) -> dict[str, int]:
        return {t.key: t.gpu_bytes for t in self.terms}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "gpus": self.gpus, "strategy": self.strategy,
                "offload_optimizer": self.offload_optimizer, "offload_params": self.offload_params,
                "per_gpu_bytes": self.per_gpu_bytes, "per_gpu_gb": round(self.per_gpu_bytes / 1e9, 3),
                "host_bytes_per_gpu": self.host_bytes_per_gpu, "host_bytes_total": self.host_bytes_total,
                "single_gpu_bytes": self.single_gpu_bytes, "breakdown": self.breakdown,
                "terms": [t.to_dict() for t in self.terms], "notes": list(self.notes)}


def _share(nbytes: int, n: int) -> int:
    """One rank's shard: FSDP pads every tensor to a multiple of N rows, so round up."""
    return -(-int(nbytes) // n)


# --8<-- [start:working_set]
def layer_sizes(arch, settings: dict) -> dict[str, int]:
    """Parameters of one decoder layer and of the root group (embeddings, final norm, lm_head), from the
    same walker that counts the whole model: a copy of the architecture with no layers is the root."""
    root = total_params(replace(arch, config={**arch.config, "num_hidden_layers": 0}))
    per_layer = (total_params(arch) - root) // arch.num_hidden_layers
    q_layer = quantizable_params(arch) // arch.num_hidden_layers
    lora_layer = count_params(arch, rank=settings["rank"], targets=settings["targets"]).lora_params_per_layer
    return {"root": root, "layer": per_layer, "layer_4bit": q_layer, "layer_lora": lora_layer,
            "layers": arch.num_hidden_layers}


def gathered_bytes(sizes: dict[str, int], method: str, layers_in_flight: int) -> dict[str, int]:
    """Bytes FSDP all-gathers in the compute dtype: 4-bit codes stay packed (half a byte a weight, whatever
    container dtype holds them), every other parameter (adapters included) is cast to bf16."""
    if method == "qlora":
        layer = sizes["layer_4bit"] // 2 + COMPUTE_BYTES * (sizes["layer"] - sizes["layer_4bit"])
    else:
        layer = COMPUTE_BYTES * sizes["layer"]
    if method != "full":
        layer += COMPUTE_BYTES * sizes["layer_lora"]
    return {"root": COMPUTE_BYTES * sizes["root"], "layer": layer, "layers": layers_in_flight * layer}
# --8<-- [end:working_set]


def _split_terms(terms, arch, n: int, strategy: str, off_opt: bool, off_par: bool, has_master: bool, add, notes,
                 widen: int = 1):
    """Each one-GPU term as what one GPU holds (and the host, when offloaded); ``widen`` 2 for 16-bit trainable
    parameters, gradients and optimizer state held in fp32 instead. Returns the CUDA context term."""
    sharded = strategy != "ddp"
    context = None
    for t in terms:
        kind = RULES.get(t.key)
        if kind is None:
            notes.append(f"{t.key}: not known to the sharding rules, kept whole on every GPU")
            add(t.key, t.label, t.bytes, 0, "whole on every GPU (unknown term)")
            continue
        if kind == "context":
            context = t
            continue
        if kind == "param4":
            codes = quantizable_params(arch) // 2
            stats = max(t.bytes - codes, 0)
            share = _share(codes, n) if sharded else codes
            add(t.key, t.label + (" (codes sharded)" if sharded else " (codes)"), 0 if off_par else share,
                share if off_par else 0, f"{codes:,} B of packed codes" + (f" / {n}" if sharded else ""))
            add(t.key + "_stats", "4-bit quantization statistics (not sharded)", stats, 0,
                "absmax and code tables live in quant_state, outside the parameters FSDP shards")
            continue
        if kind == "act" or not sharded:
            add(t.key, t.label, t.bytes, 0, "each GPU its own" if kind == "act" else "a full copy per GPU")
            continue
        if kind == "param" and t.key == "weights" and has_master:
            # mixed-precision full fine-tuning under FSDP: the fp32 sharded parameter is the master copy
            # and the bf16 weights exist only as the gathered working set counted below
            continue
        share = _share(t.bytes * widen, n)
        offloaded = (kind == "optim" and off_opt) or (kind in ("param", "grad") and off_par)
        add(t.key, t.label + (" (upcast to fp32)" if widen > 1 else ""), 0 if offloaded else share,
            share if offloaded else 0, f"{t.bytes:,} B" + (f" x {widen}" if widen > 1 else "") + f" / {n}"
            + (" in host memory" if offloaded else ""))
    return context


# --8<-- [start:fsdp1_retained]
def fsdp1_retained_bytes(estimate: MemoryEstimate, arch: Any, strategy: str, fsdp_version: int,
                         reentrant: bool) -> int:
    """Input gradients FSDP1 keeps alive until backward ends, at the backward of the first decoder layer.

    Under FSDP1 (``FullyShardedDataParallel``) a unit whose flat parameter is frozen gets its reshard hook from
    ``register_multi_grad_hook`` on the unit's inputs (torch ``fsdp/_runtime_utils.py``,
    ``_register_post_backward_reshard_only_hook``), and the hook keeps each input's gradient accumulator, hence
    the input and its ``.grad``, until ``_finalize_params`` removes it when the whole backward ends. With
    reentrant checkpointing every layer's recompute registers that hook on a detached leaf whose ``.grad`` the
    reentrant backward fills: so each layer's input gradient outlives its use. At layer 0 the gradients of
    layers 2 to L-1 are extra (layer 1's is the incoming gradient any backward holds). Zero when it cannot
    happen: FSDP2 (``fully_shard``), non-reentrant checkpointing, no checkpointing, or a layer whose flat
    parameter also holds trainable weights (full fine-tuning; peft's ``fsdp_auto_wrap_policy`` makes each
    adapter a unit of its own, so a LoRA layer's own flat parameter is frozen)."""
    s = estimate.settings
    if strategy == "ddp" or fsdp_version != 1 or not reentrant or not s.get("gradient_checkpointing"):
        return 0
    if s.get("method") == "full":
        return 0
    # a preference objective's batch counts pairs or completions: the forward sees rows_per_forward sequences
    run = settings_of(arch, **{**s, "batch_size": s.get("rows_per_forward", s["batch_size"])})
    return max(arch.num_hidden_layers - 2, 0) * run.s * arch.hidden_size * run.tokens
# --8<-- [end:fsdp1_retained]


def _moment_terms(estimate: MemoryEstimate, arch: Any) -> dict[str, list]:
    """Each moment of the step (``loracalc.peaks``) and the one-GPU terms alive at it, stored terms included:
    sharding divides some terms and not others, so the moment that peaks on one GPU need not peak on each of N."""
    run = settings_of(arch, **estimate.settings)
    every = list(estimate.terms) + list(estimate.off_peak)
    grad_key = "adapter_grads" if any(t.key == "adapter_grads" for t in every) else "gradients"
    alive = moments(grad_key, run.gc, run.dora, run.stack.holds_last_step, run.accum)
    changing = {k for keys in alive.values() for k in keys}
    return {m: [t for t in every if t.key not in changing or t.key in keys] for m, keys in alive.items()}


def upcast_by_accelerate(estimate: MemoryEstimate, strategy: str, fsdp_version: int, mixed_precision: bool) -> bool:
    """accelerate's ``prepare_model`` under FSDP1 with mixed precision on (what HF Trainer's ``bf16=True`` sets)
    casts every FSDP unit's flat parameter that requires grad to fp32 when it was loaded in 16 bits
    (``accelerator.py``, "Upcasted low precision parameters ... because mixed precision turned on in FSDP"): a
    full fine-tune loaded in bf16 then keeps fp32 shards, fp32 gradients and fp32 optimizer state, and computes
    in bf16 through ``MixedPrecision(param_dtype=bf16)``."""
    s = estimate.settings
    return (strategy != "ddp" and fsdp_version == 1 and mixed_precision and s.get("method") == "full"
            and s.get("precision") == "bf16")


def shard_estimate(estimate: MemoryEstimate, arch: Any, gpus: Any = 1, strategy: Any = "ddp",
                   offload_optimizer: Any = False, offload_params: Any = False, fsdp_version: Any = 2,
                   reentrant: Any = False, mixed_precision: Any = True) -> ShardedEstimate:
    """Per-GPU memory, term by term, for ``estimate`` (one GPU's ``estimate_memory``) run on ``gpus`` GPUs: each
    moment of the step is split over the GPUs and the largest is kept.

    ``fsdp_version`` 2 is ``fully_shard``; 1 is ``FullyShardedDataParallel`` (accelerate's default), which
    with ``reentrant`` checkpointing (transformers 4's default) keeps layer input gradients longer
    (``fsdp1_retained_bytes``), and under which accelerate upcasts a 16-bit full fine-tune when ``mixed_precision``
    is on (``upcast_by_accelerate``; HF Trainer's ``bf16=True`` or ``fp16=True`` turn it on)."""
    arch = get_model(arch)
    n = as_int(gpus, "gpus", 1, MAX_GPUS, "number of GPUs")
    strategy = as_choice(strategy, "strategy", STRATEGIES)
    off_opt = as_bool(offload_optimizer, "offload_optimizer")
    off_par = as_bool(offload_params, "offload_params")
    version = as_int(fsdp_version, "fsdp_version", 1, 2, "FSDP version (1: FullyShardedDataParallel, 2: fully_shard)")
    reentrant = as_bool(reentrant, "reentrant")
    mixed = as_bool(mixed_precision, "mixed_precision")
    if strategy == "ddp" and (off_opt or off_par):
        raise LoraCalcError("strategy", "CPU offload needs a sharded strategy: choose shard-grad-op or full-shard "
                                        "(data parallel keeps everything on every GPU)")
    off_opt = off_opt or off_par     # CPUOffloadPolicy moves the optimizer state along with the parameters
    retained = fsdp1_retained_bytes(estimate, arch, strategy, version, reentrant)
    upcast = upcast_by_accelerate(estimate, strategy, version, mixed)
    best = None
    for moment, one_gpu in _moment_terms(estimate, arch).items():
        kept = retained if moment == "backward through a recomputed layer" else 0
        terms, notes = _per_gpu_terms(estimate, one_gpu, arch, n, strategy, off_opt, off_par, kept, upcast,
                                      after_backward=moment == "end of backward")
        total = sum(t.gpu_bytes for t in terms)
        if best is None or total > best[0]:
            best = (total, moment, terms, notes)
    _, moment, terms, notes = best
    if moment == "backward through a recomputed layer" and retained:
        notes.append("peak at the backward of the first decoder layer: FSDP1 has kept every later layer's input "
                     "gradient since its recompute")
    else:
        notes.append(f"peak on each GPU at the {moment}")
    if upcast:
        notes.append("accelerate upcasts the trainable 16-bit flat parameters to fp32 under FSDP1 with mixed "
                     "precision: fp32 shards, gradients and optimizer state")
    if n == 1 and strategy != "ddp":
        notes.append("FSDP on one GPU shards nothing but still gathers: use it only for its CPU offload")
    return ShardedEstimate(model=estimate.model, gpus=n, strategy=strategy, offload_optimizer=off_opt,
                           offload_params=off_par, terms=tuple(terms), single_gpu_bytes=estimate.total_bytes,
                           notes=tuple(notes))


def _per_gpu_terms(estimate: MemoryEstimate, one_gpu_terms, arch, n: int, strategy: str, off_opt: bool,
                   off_par: bool, retained: int, upcast: bool = False,
                   after_backward: bool = False) -> tuple[list[ShardTerm], list[str]]:
    """What each GPU holds at one moment of the step: ``one_gpu_terms`` split by ``RULES``, the gathered
    parameters, the buffers a strategy adds, and (``retained`` > 0) FSDP1's kept input gradients at the backward
    of the first layer, where nothing is left to prefetch. ``after_backward``: the optimizer step, when every
    unit is resharded and its gradients reduced, so nothing is gathered; ``upcast``: fp32 shards (accelerate)."""
    method = estimate.settings.get("method", "lora")
    sharded = strategy != "ddp"
    terms: list[ShardTerm] = []
    notes: list[str] = []

    def add(key, label, gpu, host, formula):
        terms.append(ShardTerm(key, label, int(round(gpu)), int(round(host)), formula))

    has_master = any(t.key == "master_weights" for t in one_gpu_terms)
    context = _split_terms(one_gpu_terms, arch, n, strategy, off_opt, off_par, has_master, add, notes,
                           2 if upcast else 1)
    grads = sum(t.bytes for t in one_gpu_terms if RULES.get(t.key) == "grad")
    if strategy == "ddp" and n > 1:
        # the buckets are allocated once and kept across steps, whether or not the gradients are alive
        buckets = sum(t.bytes for t in list(estimate.terms) + list(estimate.off_peak) if RULES.get(t.key) == "grad")
        add("ddp_buckets", "DDP gradient buckets (flat copy of the gradients)", buckets, 0,
            "gradient_as_bucket_view=False keeps a second copy of every gradient for all-reduce")
    if sharded and after_backward:
        add("gathered", "Gathered parameters (none: every unit resharded after backward)", 0, 0,
            "the optimizer steps on the shards")
    elif sharded:
        sizes = layer_sizes(arch, estimate.settings)
        if strategy == "shard-grad-op":
            g = gathered_bytes(sizes, method, sizes["layers"])
            add("gathered", "Gathered parameters (whole model, held from forward to backward)",
                g["root"] + g["layers"], 0, f"root {g['root']:,} B + {sizes['layers']} layers x {g['layer']:,} B bf16")
        elif retained:
            g = gathered_bytes(sizes, method, 1)
            add("gathered", "Gathered parameters (root group + the first layer; nothing left to prefetch)",
                g["root"] + g["layers"], 0, f"root {g['root']:,} B + 1 layer x {g['layer']:,} B bf16")
        else:
            g = gathered_bytes(sizes, method, 2)
            add("gathered", "Gathered parameters (root group + 2 layers in flight)", g["root"] + g["layers"], 0,
                f"root {g['root']:,} B + 2 layers x {g['layer']:,} B bf16 (computing + prefetched)")
        if n > 1 and grads:
            layer_grads = grads // sizes["layers"]
            add("unsharded_grads", "One layer's unsharded gradients before reduce-scatter", layer_grads, 0,
                f"{grads:,} B / {sizes['layers']} layers")
    if retained:
        L = arch.num_hidden_layers
        add("fsdp1_retained", "Layer input gradients FSDP1 keeps until backward ends", retained, 0,
            f"{L - 2} layers x {retained // max(L - 2, 1):,} B (layers 2 to {L - 1}; reentrant checkpointing, "
            "frozen layer parameters)")
    if context is not None:
        # each GPU runs the same per-GPU batch, so the one-GPU run's allocator reserve applies per GPU
        add("cuda_context", context.label, context.bytes, 0, context.formula + " (per GPU)")
    return terms, notes


def estimate_sharded(model: Any, gpus: Any = 1, strategy: Any = "ddp", offload_optimizer: Any = False,
                     offload_params: Any = False, fsdp_version: Any = 2, reentrant: Any = False,
                     mixed_precision: Any = True, **settings) -> ShardedEstimate:
    """``estimate_memory(model, **settings)`` split over ``gpus`` GPUs with ``strategy``."""
    arch = get_model(model)
    return shard_estimate(estimate_memory(arch, **settings), arch, gpus, strategy, offload_optimizer,
                          offload_params, fsdp_version, reentrant, mixed_precision)


def smallest_gpu_count(model: Any, gpu: Any, strategy: Any = "full-shard", offload_optimizer: Any = False,
                       offload_params: Any = False, **settings) -> int | None:
    """Fewest GPUs of type ``gpu`` whose per-GPU memory fits, or None when no count does (the part every GPU
    keeps whole, such as activations and the gathered layers, is already too large).

    Per-GPU memory never grows with N, so a bisection over 1..MAX_GPUS finds the smallest count."""
    arch = get_model(model)
    cap = get_gpu(gpu).memory_bytes
    strategy = as_choice(strategy, "strategy", STRATEGIES)
    est = estimate_memory(arch, **settings)

    def ok(n: int) -> bool:
        return shard_estimate(est, arch, n, strategy, offload_optimizer, offload_params).per_gpu_bytes <= cap

    if est.total_bytes <= cap:
        return 1                          # it fits on one GPU as it is: nothing to share
    if strategy == "ddp":
        return None                       # more data-parallel GPUs never lower one GPU's memory
    if not ok(MAX_GPUS):
        return None
    lo, hi = 1, MAX_GPUS
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def gpus_needed(model: Any, gpu: Any, offload: bool = False, **settings) -> dict[str, int | None]:
    """The smallest GPU count per strategy (with CPU offload of parameters when ``offload``)."""
    out = {}
    for s in STRATEGIES:
        if s == "ddp":
            out[s] = smallest_gpu_count(model, gpu, s, **settings)
        else:
            out[s] = smallest_gpu_count(model, gpu, s, offload_params=offload, **settings)
    return out
