"""loracalc: the numbers behind the LoRA & QLoRA module (standard library only).

Parameters, training memory, GPUs and NF4 for decoder-only transformers. The same files run in
CPython and in the browser (Pyodide), so imports here stay light: no submodule imports anything
outside the standard library.
"""
from __future__ import annotations

from .errors import LoraCalcError
from .models import Architecture, PRESETS, get_model, list_models, model_from_config, model_from_param_count
from .params import (ModuleCount, ParamCount, adapter_file_bytes, count_params, lora_params, parse_targets,
                     square_full_params, square_lora_params, total_params)

__all__ = [
    "LoraCalcError", "Architecture", "PRESETS", "get_model", "list_models", "model_from_config",
    "model_from_param_count", "ModuleCount", "ParamCount", "adapter_file_bytes", "count_params", "lora_params",
    "parse_targets", "square_full_params", "square_lora_params", "total_params",
]

from .memory import ATTENTIONS, METHODS, OPTIMIZERS, MemoryEstimate, Term, estimate_memory
from .gpus import GPU, fits, get_gpu, list_gpus, max_batch_size, max_seq_len
from . import measured

__all__ += ["ATTENTIONS", "METHODS", "OPTIMIZERS", "MemoryEstimate", "Term", "estimate_memory",
            "GPU", "fits", "get_gpu", "list_gpus", "max_batch_size", "max_seq_len", "measured"]
