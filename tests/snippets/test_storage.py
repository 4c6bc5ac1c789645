"""Stored bytes measured with the real libraries in the fast set: bitsandbytes' 4-bit weights with their
quantization statistics, the 70B weights to the byte, and the state real optimizers keep per parameter."""
from __future__ import annotations

import pytest

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gpu_labs"))
from memory_measure import tensor_bytes  # noqa: E402  (stdlib at import; the labs' count)

import loracalc
from loracalc import estimate_memory, nf4

NO_ACT = dict(batch_size=1, seq_len=1, cuda_overhead=False)


def bnb_stored_bytes(n: int, double_quant: bool, block_size: int = 64) -> int:
    """Bytes bitsandbytes keeps for one 4-bit weight of n values: the packed codes and every tensor of its
    quant_state (absmax, the nested absmax, offset and code tables), each storage counted once."""
    import torch
    F = pytest.importorskip("bitsandbytes.functional")
    packed, qs = F.quantize_4bit(torch.zeros(n, dtype=torch.bfloat16), blocksize=block_size, quant_type="nf4",
                                 compress_statistics=double_quant)
    tensors = [packed]
    while qs is not None:
        tensors += [t for t in (qs.absmax, qs.offset, qs.code) if t is not None]
        qs = qs.state2
    return tensor_bytes(tensors)   # the labs' own count: each storage once


@pytest.mark.parametrize("double_quant", [True, False])
@pytest.mark.parametrize("n", [64, 64 * 256, 64 * 256 + 64, 688 * 256, 64 * 1000 + 2])
def test_tensor_storage_equals_bitsandbytes(n, double_quant):
    assert nf4.tensor_storage_bytes(n, 64, double_quant) == bnb_stored_bytes(n, double_quant)


# Llama-2-70B's and Llama-3.1-70B's published config.json (meta-llama/Llama-2-70b-hf, meta-llama/Llama-3.1-70B):
# hidden 8192, MLP 28672, 64 heads of 128, 8 key/value heads, 80 layers (the vocabularies differ);
# FACTS.md: 68,976,648,192 and 70,553,706,496 parameters in all, and about 36.4 and 39.5 GB in NF4.
LLAMA_70B_LINEARS = [(8192, 8192), (8192, 1024), (8192, 1024), (8192, 8192), (8192, 28672), (8192, 28672),
                     (28672, 8192)]
LLAMA_70B_LAYERS = 80
LLAMA_70B = {"llama-2-70b": (68_976_648_192, 36.4), "llama-3.1-70b": (70_553_706_496, 39.5)}


@pytest.mark.parametrize("model", sorted(LLAMA_70B))
@pytest.mark.parametrize("double_quant", [True, False])
def test_llama_70b_weights_to_the_byte(model, double_quant):
    """bitsandbytes' bytes per weight tensor are affine in its size when the size is a whole number of
    second-level blocks (64 x 256 values), as every 70B linear is: measured at two such sizes, extended to
    each 70B shape, summed over 80 layers; the rest of the parameters stay in bf16 (FACTS.md)."""
    unit = 64 * 256
    small, large = bnb_stored_bytes(unit * 4, double_quant), bnb_stored_bytes(unit * 12, double_quant)
    per_value = (large - small) / (unit * 8)
    fixed = small - per_value * unit * 4

    def stored(n):
        assert n % unit == 0
        return round(fixed + per_value * n)

    params, facts_gb = LLAMA_70B[model]
    four_bit = LLAMA_70B_LAYERS * sum(stored(a * b) for a, b in LLAMA_70B_LINEARS)
    sixteen_bit = 2 * (params - LLAMA_70B_LAYERS * sum(a * b for a, b in LLAMA_70B_LINEARS))
    b = estimate_memory(model, method="qlora", double_quant=double_quant, **NO_ACT).breakdown
    assert b["weights_4bit"] == four_bit
    assert b["weights_16bit"] == sixteen_bit
    assert b["kbit_upcast"] == sixteen_bit          # prepare_model_for_kbit_training: bf16 -> fp32, +2 B each
    assert nf4.weight_storage_bytes(model, 64, double_quant) == four_bit + sixteen_bit
    if double_quant:
        assert (four_bit + sixteen_bit) / 1e9 == pytest.approx(facts_gb, abs=0.05)


def _state_bytes_per_value(opt_cls, dtype, n=4096 * 5, **kw):
    """One step of a real optimizer on one tensor of n values: bytes of its per-value state, per value."""
    import torch
    p = torch.nn.Parameter(torch.zeros(n, dtype=dtype))
    opt = opt_cls([p], lr=1e-3, **kw)
    p.grad = torch.full_like(p, 0.5)
    opt.step()
    state = [v for v in opt.state[p].values() if torch.is_tensor(v) and v.dim() > 0 and v.numel() > 256]
    absmax = [v for k, v in opt.state[p].items() if k.startswith("absmax")]
    return (sum(v.nbytes for v in state) + sum(v.nbytes for v in absmax)) / n


def _optimizers():
    import torch
    out = {"adamw": (torch.optim.AdamW, {}), "sgd": (torch.optim.SGD, {"momentum": 0.9})}
    try:
        import bitsandbytes as bnb
        out["adamw_8bit"] = (bnb.optim.AdamW8bit, {})
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "adamw_8bit"])
def test_optimizer_state_per_lora_param(optimizer):
    import torch
    opts = _optimizers()
    if optimizer not in opts:
        pytest.skip("bitsandbytes is not installed")
    cls, kw = opts[optimizer]
    per_value = _state_bytes_per_value(cls, torch.float32, **kw)     # peft keeps adapters in fp32
    Pl = loracalc.count_params("llama-3.2-1b", 16, "all-linear").lora_params
    est = estimate_memory("llama-3.2-1b", method="lora", rank=16, optimizer=optimizer, **NO_ACT).breakdown
    assert est["optimizer"] == round(per_value * Pl)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_pure_bf16_full_finetune_keeps_bf16_state(optimizer):
    import torch
    cls, kw = _optimizers()[optimizer]
    per_value = _state_bytes_per_value(cls, torch.bfloat16, **kw)
    P = loracalc.total_params(loracalc.get_model("llama-3.2-1b"))
    est = estimate_memory("llama-3.2-1b", method="full", precision="bf16", optimizer=optimizer, **NO_ACT).breakdown
    assert est["optimizer"] == round(per_value * P)
    assert est["weights"] == est["gradients"] == 2 * P
    assert "master_weights" not in est


def test_mixed_precision_full_finetune_keeps_fp32_state_on_the_master_copy():
    import torch
    per_value = _state_bytes_per_value(torch.optim.AdamW, torch.float32)
    P = loracalc.total_params(loracalc.get_model("llama-3.2-1b"))
    est = estimate_memory("llama-3.2-1b", method="full", precision="mixed", optimizer="adamw", **NO_ACT).breakdown
    assert est["optimizer"] == round(per_value * P) and est["master_weights"] == 4 * P
