"""NF4 (4-bit NormalFloat) from first principles, standard library only.

The 16 levels are quantiles of a standard normal distribution, rescaled to [-1, 1] with an exact zero
(Dettmers et al. 2023, built as in bitsandbytes' ``create_normal_map``). Weights are quantized in
blocks: each block stores its absolute maximum, and each weight the index of the nearest level.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Sequence

from .errors import LoraCalcError, as_bool, as_int
from .families import is_4bit
from .models import get_model, quantizable_params, total_params

# bitsandbytes' create_normal_map uses this offset: the outermost quantile sits halfway between
# 1 - 1/(2*15) and 1 - 1/(2*16), so that neither tail level is infinite.
OFFSET = 0.9677083


# --8<-- [start:code_book]
def _linspace(a: float, b: float, n: int) -> list[float]:
    return [a + (b - a) * k / (n - 1) for k in range(n)]


def code_book() -> list[float]:
    """The 16 NF4 levels: 8 positive and 7 negative normal quantiles, zero, divided by the largest."""
    ppf = NormalDist().inv_cdf
    positive = [ppf(p) for p in _linspace(OFFSET, 0.5, 9)[:-1]]     # 8 levels above zero
    negative = [-ppf(p) for p in _linspace(OFFSET, 0.5, 8)[:-1]]    # 7 levels below zero
    levels = sorted(positive + negative + [0.0])
    top = max(levels)
    return [v / top for v in levels]
# --8<-- [end:code_book]


# bitsandbytes' FP4 (get_4bit_type("fp4")): a sign bit, 2 exponent and 1 mantissa bits, scaled to [-1, 1].
FP4_LEVELS = sorted({s * v / 12 for s in (1, -1) for v in (0, 0.0625, 2, 3, 4, 6, 8, 12)})
# Plain symmetric 4-bit integers: -7..7 times absmax/7 (15 levels, evenly spaced).
INT4_LEVELS = [k / 7 for k in range(-7, 8)]

MAX_VALUES = 1_000_000


def _values(values: Any) -> list[float]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise LoraCalcError("values", "values must be a list of numbers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise LoraCalcError("values", f"values must be finite numbers (got {v!r})")
        out.append(float(v))
        if len(out) > MAX_VALUES:
            raise LoraCalcError("values", f"at most {MAX_VALUES:,} values")
    if not out:
        raise LoraCalcError("values", "values is empty: give at least one number")
    return out


def _nearest(x: float, levels: Sequence[float]) -> int:
    return min(range(len(levels)), key=lambda k: (abs(levels[k] - x), k))


# --8<-- [start:blockwise]
def quantize_blockwise(values: Any, block_size: Any = 64, levels: Sequence[float] | None = None) -> dict:
    """Split ``values`` into blocks; per block keep absmax and, per value, the nearest level's index."""
    xs = _values(values)
    bs = as_int(block_size, "block_size", 1, MAX_VALUES, "block size")
    levels = list(levels) if levels is not None else code_book()
    codes, absmax = [], []
    for start in range(0, len(xs), bs):
        block = xs[start:start + bs]
        m = max(abs(v) for v in block)
        absmax.append(m)
        codes.extend(_nearest(v / m if m else 0.0, levels) for v in block)
    return {"codes": codes, "absmax": absmax, "block_size": bs, "levels": levels, "n": len(xs)}


def dequantize_blockwise(q: dict) -> list[float]:
    """Level times its block's absmax, for every stored index."""
    bs, levels = q["block_size"], q["levels"]
    return [levels[c] * q["absmax"][k // bs] for k, c in enumerate(q["codes"])]
# --8<-- [end:blockwise]


def _errors(xs: list[float], ys: list[float]) -> dict:
    d = [y - x for x, y in zip(xs, ys)]
    return {"mean_abs_error": sum(abs(e) for e in d) / len(d),
            "rmse": math.sqrt(sum(e * e for e in d) / len(d)),
            "max_abs_error": max(abs(e) for e in d)}


def compare_formats(values: Any, block_size: Any = 64) -> dict:
    """NF4, plain int4 and FP4 on the same values with the same blocks: codes, dequantized values, errors."""
    xs = _values(values)
    out = {}
    for name, levels in (("nf4", code_book()), ("int4", INT4_LEVELS), ("fp4", FP4_LEVELS)):
        q = quantize_blockwise(xs, block_size, levels)
        deq = dequantize_blockwise(q)
        out[name] = {"codes": q["codes"], "absmax": q["absmax"], "dequantized": deq, **_errors(xs, deq)}
    return out


# --8<-- [start:bits_per_param]
def bits_per_param(block_size: Any = 64, double_quant: Any = True, dq_block_size: int = 256) -> float:
    """4 bits per weight plus its share of the block's absmax: 32/64 bits in fp32 (4.5 in total), or with
    double quantization 8/64 bits for an 8-bit absmax plus 32/(64*256) for the second-level constant."""
    bs = as_int(block_size, "block_size", 1, 1 << 20, "block size")
    if as_bool(double_quant, "double_quant"):
        return 4 + 8 / bs + 32 / (bs * dq_block_size)
    return 4 + 32 / bs
# --8<-- [end:bits_per_param]


def tensor_storage_bytes(n: int, block_size: int = 64, double_quant: bool = True) -> int:
    """Bytes bitsandbytes keeps for one 4-bit weight of n values: the packed codes (two per byte), an absmax
    per block (fp32; or, double-quantized, uint8 plus an fp32 per 256 blocks, an fp32 offset and the 256-entry
    fp32 table that decodes the 8-bit absmax), and the weight's 16-entry fp32 code table."""
    blocks = -(-n // block_size)
    packed = -(-n // 2)
    if double_quant:
        stats = blocks + 4 * -(-blocks // 256) + 4 + DYNAMIC_MAP_BYTES
    else:
        stats = 4 * blocks
    return packed + stats + 16 * 4


DYNAMIC_MAP_BYTES = 256 * 4   # bitsandbytes' 8-bit code table for the absmax values, one copy per weight


def storage_bytes(model: Any, block_size: Any = 64, double_quant: Any = True, every_linear: bool = False) -> int:
    """Bytes of every 4-bit weight of a model (see ``is_4bit``; biases stay 16-bit)."""
    arch = get_model(model)
    bs = as_int(block_size, "block_size", 16, 4096, "block size")
    dq = as_bool(double_quant, "double_quant")
    return sum(tensor_storage_bytes(r.weight, bs, dq) * r.copies for r in arch.records
               if is_4bit(r, arch.family, every_linear))


def weight_storage_bytes(model: Any, block_size: Any = 64, double_quant: Any = True) -> int:
    """All weights of a model loaded in 4 bit: NF4 linears plus 16-bit embeddings, lm_head, norms, biases."""
    arch = get_model(model)
    return storage_bytes(arch, block_size, double_quant) + 2 * (total_params(arch) - quantizable_params(arch))
