"""Several GPUs for one run: what each rank holds, what loracalc predicts it holds, free ports, and
accelerate's sharded checkpoints.

The engines do the distributed work: accelerate launches the processes and wraps the model in DDP or
FSDP2 (`torch.distributed.fsdp.fully_shard`), whose config files sit next to this module
(`accelerate_ddp.yaml`, `accelerate_fsdp_lora.yaml`, `accelerate_fsdp_qlora.yaml`). This module only
measures and reports; nothing here splits tensors or moves gradients by hand.

Only the standard library is imported at module level; torch inside the functions.
"""

from __future__ import annotations

import socket
from pathlib import Path

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
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    return bool(plugin is not None and getattr(plugin.cpu_offload, "offload_params", plugin.cpu_offload))
