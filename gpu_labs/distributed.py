"""Several GPUs for one run: what each rank holds, what loracalc predicts it holds, free ports, and the
adapter gathered from FSDP's shards. (Sharded checkpoints are the Trainer's: accelerate's save_fsdp_model.)

The engines do the distributed work: accelerate launches the processes and wraps the model in DDP or
FSDP2 (`torch.distributed.fsdp.fully_shard`), whose config files sit next to this module
(`accelerate_ddp.yaml`, `accelerate_fsdp_lora.yaml`, `accelerate_fsdp_qlora.yaml`). This module only
measures and reports; nothing here splits tensors or moves gradients by hand.

Only the standard library is imported at module level; torch inside the functions.
"""

from __future__ import annotations

import socket
from pathlib import Path

from gpu_labs.core import human_bytes

LABS_DIR = Path(__file__).resolve().parent
CONFIGS = {"ddp": LABS_DIR / "accelerate_ddp.yaml", "fsdp-lora": LABS_DIR / "accelerate_fsdp_lora.yaml",
           "fsdp-qlora": LABS_DIR / "accelerate_fsdp_qlora.yaml"}


def free_port() -> int:
    """A TCP port the OS says is free now, for MASTER_PORT (a fixed port collides with other runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _storage_bytes(tensor, seen: set) -> int:
    """Bytes of the memory behind a tensor (a DTensor's local shard, padding included), each storage once."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    storage = local.untyped_storage()
    if storage.data_ptr() in seen:
        return 0
    seen.add(storage.data_ptr())
    return storage.nbytes()


def _quant_stats(weight) -> list:
    """The tensors of a bitsandbytes 4-bit weight's quant_state (absmax, code tables, nested state)."""
    qs = getattr(weight, "quant_state", None)
    out = []
    while qs is not None:
        out += [t for t in (qs.absmax, qs.code, getattr(qs, "offset", None)) if t is not None]
        qs = getattr(qs, "state2", None)
    return out


def rank_bytes(model, optimizer=None) -> dict[str, int]:
    """What this rank holds after a step: parameter, gradient and optimizer-state bytes (AdamW's m and v;
    its scalar step counters reported apart), and the 4-bit quantization statistics, which are not
    parameters. On a sharded model these are the rank's own shards."""
    seen: set = set()
    params = grads = 0
    stats = 0
    stats_seen: set = set()
    for module in model.modules():
        for t in _quant_stats(getattr(module, "weight", None)) + _quant_stats(module):
            stats += _storage_bytes(t, stats_seen)
    for p in model.parameters():
        params += _storage_bytes(p, seen)
        if p.grad is not None:
            grads += _storage_bytes(p.grad, seen)
    opt = steps = 0
    if optimizer is not None:
        for state in optimizer.state.values():
            for key, value in state.items():
                if key == "step":
                    steps += _storage_bytes(value, seen) if hasattr(value, "untyped_storage") else 0
                elif hasattr(value, "untyped_storage"):
                    opt += _storage_bytes(value, seen)
    return {"params": params, "grads": grads, "optimizer": opt, "optimizer_step_counters": steps,
            "quant_stats": stats}


def gathered_bytes_now(model) -> int:
    """Bytes of the parameters FSDP holds unsharded at this moment (plain tensors where DTensor shards sit
    otherwise): the working set of gathered layers."""
    seen: set = set()
    return sum(_storage_bytes(p, seen) for p in model.parameters() if not hasattr(p, "to_local"))


# Which predicted terms land in which measured quantity (loracalc.sharding keys).
PARAM_KEYS = ("weights", "weights_4bit", "weights_16bit", "kbit_upcast", "adapter", "master_weights")
GRAD_KEYS = ("gradients", "adapter_grads")


def predicted_rank_bytes(sharded) -> dict[str, int]:
    """loracalc.sharding's prediction, grouped like `rank_bytes` (GPU and host together: on CPU both are
    the same memory)."""
    t = {term.key: term.gpu_bytes + term.host_bytes for term in sharded.terms}
    return {"params": sum(t.get(k, 0) for k in PARAM_KEYS if k != "master_weights"),
            "grads": sum(t.get(k, 0) for k in GRAD_KEYS),
            "optimizer": t.get("optimizer", 0) + t.get("master_weights", 0),
            "quant_stats": t.get("weights_4bit_stats", 0),
            "gathered": t.get("gathered", 0), "ddp_buckets": t.get("ddp_buckets", 0)}


def strategy_of(accelerator) -> str:
    """loracalc's strategy name for what accelerate set up."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        return "ddp"
    plugin = accelerator.state.fsdp_plugin
    reshard = getattr(plugin, "reshard_after_forward", True)
    # FSDP1 names a ShardingStrategy, FSDP2 a bool; both mean "free gathered layers after forward"
    full = reshard is True or "FULL_SHARD" in str(reshard)
    return "full-shard" if full else "shard-grad-op"


def offload_of(accelerator) -> bool:
    """Whether FSDP keeps the shards in host memory: FSDP2's CPUOffloadPolicy, or FSDP1's
    CPUOffload(offload_params=True)."""
    from torch.distributed.fsdp import CPUOffloadPolicy

    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    if plugin is None or not is_fsdp(accelerator):
        return False
    policy = plugin.cpu_offload
    return isinstance(policy, CPUOffloadPolicy) or getattr(policy, "offload_params", False) is True


# --- accelerate's FSDP on a machine without GPUs -----------------------------------------------------

def use_fsdp_without_gpu(accelerator) -> bool:
    """Give gloo processes the FSDP that `accelerate launch --config_file accelerate_fsdp_*.yaml` asked for.

    accelerate 1.x selects DistributedType.FSDP only for accelerator backends (state.py checks MULTI_GPU,
    MULTI_NPU, MULTI_XPU, ...); CPU processes become MULTI_CPU and get DDP. torch's fully_shard itself runs
    on CPU with gloo, so here accelerate receives its own FSDP plugin, built from the same environment
    variables the launcher set, and its own prepare() then wraps the model exactly as on GPUs.
    Returns True when it did so. Does nothing on a GPU machine or without an FSDP config."""
    import os

    import torch
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    wants_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if not wants_fsdp or torch.cuda.is_available() or accelerator.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin()
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    accelerator.state.fsdp_plugin = plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    return True


def is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


# --- what each GPU holds: predicted before, measured after ------------------------------------------

def predict_per_gpu(estimate, config_dict: dict, accelerator):
    """loracalc.sharding's split of the one-GPU estimate for this launch (None when it cannot say)."""
    try:
        import loracalc
        from loracalc.sharding import shard_estimate

        offload = offload_of(accelerator)
        return shard_estimate(estimate, loracalc.model_from_config(config_dict), accelerator.num_processes,
                              strategy_of(accelerator), offload_params=offload)
    except Exception:  # noqa: BLE001 - a prediction must never stop a training run
        return None


def describe_per_gpu(sharded) -> str:
    top = sorted(sharded.terms, key=lambda t: -t.gpu_bytes)[:3]
    host = f"; host memory {human_bytes(sharded.host_bytes_total)} in all" if sharded.host_bytes_total else ""
    return (f"{human_bytes(sharded.per_gpu_bytes)} per GPU on {sharded.gpus} GPUs with {sharded.strategy} "
            f"(one GPU alone: {human_bytes(sharded.single_gpu_bytes)}; largest: "
            + ", ".join(f"{t.label} {human_bytes(t.gpu_bytes)}" for t in top) + f"){host}")


def report_ranks(accelerator, model, optimizer, sharded, log) -> dict:
    """Every rank's parameter and optimizer bytes (and peak GPU memory when there is a GPU), next to the
    prediction; collective: call it on every rank."""
    import torch
    import torch.distributed as dist

    mine = rank_bytes(model, optimizer)
    if torch.cuda.is_available():
        mine["peak_allocated"] = torch.cuda.max_memory_allocated()
    ranks = [None] * accelerator.num_processes
    dist.all_gather_object(ranks, mine)
    predicted = predicted_rank_bytes(sharded) if sharded else {}
    for r, m in enumerate(ranks):
        line = (f"rank {r}: parameters {human_bytes(m['params'])} (predicted {human_bytes(predicted.get('params', 0))}),"
                f" optimizer state {human_bytes(m['optimizer'])} (predicted {human_bytes(predicted.get('optimizer', 0))})")
        if "peak_allocated" in m and sharded:
            tensors = sharded.per_gpu_bytes - sum(t.gpu_bytes for t in sharded.terms if t.key == "cuda_context")
            line += f", peak allocated {human_bytes(m['peak_allocated'])} (predicted {human_bytes(tensors)} of tensors)"
        log(line)
    return {"measured": ranks, "predicted": predicted}


# --- the adapter under FSDP ---------------------------------------------------------------------------

def _trainable_state(model, full: bool = False) -> dict:
    """The trainable parameters' state dict (the adapter), as DTensor shards or gathered whole."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    names = {n for n, p in model.named_parameters() if p.requires_grad}
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=False))
    state = {k: v for k, v in state.items() if k in names}
    if full:   # collective: every rank gathers, so call this on every rank
        state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu() for k, v in state.items()}
    return state


def full_adapter_state(model) -> dict:
    """The adapter gathered whole on every rank (collective), for saving once as a normal peft adapter."""
    return _trainable_state(model, full=True)
