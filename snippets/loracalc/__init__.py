"""loracalc: parameters, training memory, GPU fit and NF4 for decoder-only transformers.

Standard library only, so the same files run in CPython 3.11+ and in Pyodide. Three lines to use it::

    import loracalc
    arch = loracalc.model_from_config("path/to/config.json")      # or loracalc.get_model("llama-3.1-8b")
    print(loracalc.estimate_memory(arch, method="qlora", rank=16).total_bytes)

Modules: ``models`` (architectures: presets, config.json, a bare size), ``params`` (exact parameter and
LoRA counts), ``memory`` (training memory by term), ``gpus`` (a GPU catalog), ``fit`` (largest batch and
sequence that fit), ``sharding`` (memory per GPU when several GPUs share a run), ``speed`` (training time, GPU-hours and cost), ``nf4`` (the 4-bit NormalFloat format), ``errors`` (the one exception and its
validators), ``cli`` (``python -m loracalc``). Bad input raises ``LoraCalcError`` with a one-line message.
"""
from __future__ import annotations

from .errors import LoraCalcError
from .models import (PRESETS, Architecture, get_model, list_models, model_from_config, model_from_param_count,
                     total_params)
from .params import (ModuleCount, ParamCount, adapter_file_bytes, count_params, lora_params, parse_targets,
                     square_full_params, square_lora_params)
from .memory import ATTENTIONS, METHODS, OPTIMIZERS, MemoryEstimate, Term, estimate_memory
from .gpus import GPU, fits, get_gpu, list_gpus
from .fit import max_batch_size, max_seq_len
from .sharding import STRATEGIES, ShardedEstimate, estimate_sharded, shard_estimate, smallest_gpu_count
from .speed import TimeEstimate, estimate_time, step_flops

__all__ = [
    "LoraCalcError",
    "PRESETS", "Architecture", "get_model", "list_models", "model_from_config", "model_from_param_count",
    "total_params",
    "ModuleCount", "ParamCount", "adapter_file_bytes", "count_params", "lora_params", "parse_targets",
    "square_full_params", "square_lora_params",
    "ATTENTIONS", "METHODS", "OPTIMIZERS", "MemoryEstimate", "Term", "estimate_memory",
    "GPU", "fits", "get_gpu", "list_gpus",
    "max_batch_size", "max_seq_len",
    "STRATEGIES", "ShardedEstimate", "estimate_sharded", "shard_estimate", "smallest_gpu_count",
    "TimeEstimate", "estimate_time", "step_flops",
]
