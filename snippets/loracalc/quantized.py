"""Stored bytes of a model whose linear layers are kept in a quantized format: what a base holds on the card when
peft trains adapters on it, or when it is served.

Each format is the tensors its library keeps for one ``nn.Linear`` weight of ``d_out x d_in`` values, read from
the library's source and, where the library runs on a CPU, measured (``scripts/quant_storage_check.py`` writes
``lora_course/data/quant_storage_check.json``; ``tests/snippets/test_quantized.py`` compares):

* ``nf4``: bitsandbytes 4-bit NormalFloat, blocks of 64, double quantization (``nf4.tensor_storage_bytes``).
* ``int8``: bitsandbytes LLM.int8: one int8 per weight and an fp32 scale per output row (``Int8Params.SCB``).
* ``fp8``: torchao ``Float8WeightOnlyConfig``: one e4m3 byte per weight and an fp32 scale per output row.
* ``torchao-int8``: torchao ``Int8WeightOnlyConfig``: int8 weights, an fp32 scale and an int8 zero point per row.
* ``hqq-4bit``: HQQ 4-bit, groups of 64: two codes per byte, a bf16 scale and a bf16 zero per group.
* ``torchao-int4``: torchao ``Int4WeightOnlyConfig`` (CUDA, tile-packed), groups of 128: two codes per byte and a
  bf16 scale and zero per group (``scale_and_zero``); its kernels need CUDA, so from source only.
* ``gptq-4bit``: GPTQ (AutoGPTQ / GPTQModel checkpoints), groups of 128: int32 ``qweight`` (eight codes each),
  int32 ``qzeros`` (eight per int32), fp16 ``scales`` per group and output, int32 ``g_idx`` per input;
  from the checkpoints' tensor layout (CUDA kernels: from source only).
* ``awq-4bit``: AWQ GEMM checkpoints, groups of 128: as GPTQ without ``g_idx``.

Only the decoder layers' linear weights are quantized; embeddings, the output layer, norms, biases and fused 3-D
expert parameters stay in bf16 (two bytes), as ``nf4.is_4bit`` measures for bitsandbytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import as_choice
from .families import is_4bit
from .models import get_model, total_params
from .nf4 import tensor_storage_bytes


def _groups(d_in: int, group: int) -> int:
    return -(-d_in // group)


@dataclass(frozen=True)
class QuantFormat:
    label: str
    bits_per_weight: float              # the codes alone, before scales and zeros
    per_linear: Callable[[int, int], int]   # bytes kept for one (d_out x d_in) weight
    library: str
    source: str                         # where the layout is read (and measured, where it runs on a CPU)
    measured_on_cpu: bool


FORMATS: dict[str, QuantFormat] = {
    "nf4": QuantFormat("bitsandbytes NF4 (QLoRA)", 4, lambda o, i: tensor_storage_bytes(o * i), "bitsandbytes",
                       "bitsandbytes/nn/modules.py Params4bit + QuantState", True),
    "int8": QuantFormat("bitsandbytes LLM.int8", 8, lambda o, i: o * i + 4 * o, "bitsandbytes",
                        "bitsandbytes/nn/modules.py Int8Params (CB int8, SCB fp32 per row)", True),
    "fp8": QuantFormat("fp8 e4m3, a scale per row (torchao)", 8, lambda o, i: o * i + 4 * o, "torchao",
                       "torchao Float8WeightOnlyConfig -> Float8Tensor (qdata, scale)", True),
    "torchao-int8": QuantFormat("int8 weight-only (torchao)", 8, lambda o, i: o * i + 5 * o, "torchao",
                                "torchao Int8WeightOnlyConfig -> Int8Tensor (qdata, scale, zero_point)", True),
    "hqq-4bit": QuantFormat("HQQ 4-bit, groups of 64", 4, lambda o, i: o * i // 2 + 4 * o * _groups(i, 64), "hqq",
                            "hqq/core/quantize.py HQQLinear (W_q uint8, meta scale and zero in bf16)", True),
    "torchao-int4": QuantFormat("int4 weight-only, groups of 128 (torchao, CUDA)", 4,
                                lambda o, i: o * i // 2 + 4 * o * _groups(i, 128), "torchao",
                                "torchao Int4TilePackedTo4dTensor (qdata, scale_and_zero bf16)", False),
    "gptq-4bit": QuantFormat("GPTQ 4-bit, groups of 128", 4,
                             lambda o, i: o * i // 2 + _groups(i, 128) * (o // 2 + 2 * o) + 4 * i, "gptqmodel",
                             "GPTQ checkpoints: qweight, qzeros int32; scales fp16; g_idx int32", False),
    "awq-4bit": QuantFormat("AWQ 4-bit, groups of 128", 4,
                            lambda o, i: o * i // 2 + _groups(i, 128) * (o // 2 + 2 * o), "autoawq",
                            "AWQ GEMM checkpoints (WQLinear_GEMM): qweight, qzeros int32; scales fp16", False),
}


def check_format(fmt: Any) -> str:
    return as_choice(fmt, "weights", ["bf16", *FORMATS], "weight format")


def quantized_linears(model: Any, fmt: Any = "nf4") -> tuple[int, int]:
    """(bytes FMT keeps for the linear weights it quantizes, how many weights those are)."""
    arch = get_model(model)
    fmt = check_format(fmt)
    if fmt == "bf16":
        return 0, 0
    quantized = weights = 0
    per_linear = FORMATS[fmt].per_linear
    every_linear = FORMATS[fmt].library != "bitsandbytes"   # bitsandbytes leaves Falcon's FalconLinear in 16 bit
    for r in arch.records:
        if is_4bit(r, arch.family, every_linear):
            quantized += per_linear(r.d_out, r.d_in) * r.copies
            weights += r.weight * r.copies
    return quantized, weights


def stored_bytes(model: Any, fmt: Any = "nf4") -> int:
    """Bytes of every weight of MODEL with its decoder layers' linear weights in FMT and the rest in bf16."""
    arch = get_model(model)
    quantized, weights = quantized_linears(arch, fmt)
    return quantized + 2 * (total_params(arch) - weights)


# --8<-- [start:lora_backward]
@dataclass(frozen=True)
class LoraBackward:
    """How peft's LoRA layer for a backend runs the frozen quantized matmul in a training step (peft 0.21.2)."""
    peft_layer: str
    saves_weight: bool          # autograd saves the 16-bit weight the forward dequantized (a new tensor per module)
    saved_bytes_per_row: int    # saved beside it per output row (torchao int8: its scale, cast to bf16)
    keeps_input: bool           # the library's own autograd.Function saves the module's input, not the weight
    transient_copies: int       # 16-bit weight-sized temporaries beyond a saved copy while one weight dequantizes
    measured_on_cpu: bool       # tests/snippets/quant_base_record.py measured it (else read from the source)
    source: str
    refused: str = ""           # peft refuses LoRA on this base: why, and what to choose instead


LORA_BACKWARD: dict[str, LoraBackward] = {
    "hqq-4bit": LoraBackward(
        "HqqLoraLinear", False, 0, True, 3, True,
        "hqq HQQLinear.forward_pytorch_backprop (the default): HQQMatmulNoCacheMul saves the input only and its "
        "backward dequantizes the weight again (unpack, minus zero, times scale: three weight-sized tensors)"),
    "torchao-int8": LoraBackward(
        "TorchaoLoraLinear", True, 2, False, 0, True,
        "torchao Int8Tensor's linear: the int8 weight cast to the input's dtype, a matmul, times the scale; "
        "autograd saves the cast weight and the scale"),
    "fp8": LoraBackward(
        "TorchaoLoraLinear", True, 0, False, 4, True,
        "torchao Float8Tensor's weight-only linear: dequantized through fp32 to the input's dtype, then F.linear, "
        "which saves the 16-bit weight"),
    "torchao-int4": LoraBackward(
        "TorchaoLoraLinear", False, 0, False, 0, False, "peft/tuners/lora/torchao.py _check_dtype_supported",
        refused="peft's TorchaoLoraLinear refuses int4 weights (it supports int8 only): choose torchao-int8, "
                "hqq-4bit, or method qlora"),
    "gptq-4bit": LoraBackward(
        "GPTQLoraLinear", True, 0, False, 1, False,
        "GPTQModel TorchQuantLinear (the kernel it trains with; CUDA-only kernels switch to it in train mode): "
        "dequantize_weight, then torch.matmul, which saves the 16-bit weight"),
    "awq-4bit": LoraBackward(
        "AwqLoraLinear", True, 0, False, 1, False,
        "GPTQModel AwqTorchLinear: dequantize_gemm, then torch.matmul, which saves the 16-bit weight (its CUDA "
        "AwqGEMMQuantLinear instead keeps an fp16 copy of the input and dequantizes again in backward)"),
}
# --8<-- [end:lora_backward]

# LoRA's base_format choices: a 16-bit base, or a format peft trains adapters on that is not bitsandbytes' own
# (those are the methods qlora and lora_8bit)
BASE_FORMATS: dict[str, str] = {"bf16": "16-bit (as the method stores it)",
                                **{k: FORMATS[k].label for k in LORA_BACKWARD}}


def split_stored_bytes(model: Any, fmt: str) -> tuple[int, int]:
    """(bytes of the quantized linear weights, bytes of everything kept in bf16) of ``stored_bytes``."""
    arch = get_model(model)
    quantized, weights = quantized_linears(arch, fmt)
    return quantized, 2 * (total_params(arch) - weights)
