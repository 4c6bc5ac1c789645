"""NF4 against bitsandbytes itself (code book, quantization, stored bytes) and against FACTS.md."""
from __future__ import annotations

import random

import pytest

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gpu_labs"))
from memory_measure import quant_state_tensors, tensor_bytes  # noqa: E402  (stdlib at import; the labs' count)

import loracalc
from loracalc import LoraCalcError, nf4

# FACTS.md: bitsandbytes get_4bit_type("nf4"), to 7 decimals
FACTS_NF4 = [-1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0, 0.0795803,
             0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0]


def test_code_book_matches_facts():
    assert nf4.code_book() == pytest.approx(FACTS_NF4, abs=1e-7)
    assert 0.0 in nf4.code_book() and len(set(nf4.code_book())) == 16


def test_code_book_equals_bitsandbytes():
    F = pytest.importorskip("bitsandbytes.functional")
    ref = F.get_4bit_type("nf4", device="cpu").tolist()
    assert nf4.code_book() == pytest.approx(ref, abs=1e-6)


def test_fp4_levels_equal_bitsandbytes():
    F = pytest.importorskip("bitsandbytes.functional")
    ref = sorted(set(F.get_4bit_type("fp4", device="cpu").tolist()))   # bitsandbytes stores +0 and -0
    assert nf4.FP4_LEVELS == pytest.approx(ref, abs=1e-6)


def test_bits_per_param_facts():
    # FACTS.md: 4.5 bits without double quantization, 4 + 8/64 + 32/(64*256) = 4.127 with it
    assert nf4.bits_per_param(64, False) == 4.5
    assert nf4.bits_per_param(64, True) == pytest.approx(4.127, abs=5e-4)
    assert nf4.bits_per_param(64, True) == 4 + 8 / 64 + 32 / (64 * 256)


def test_blockwise_round_trip_equals_bitsandbytes():
    torch = pytest.importorskip("torch")
    F = pytest.importorskip("bitsandbytes.functional")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64 * 40, generator=g)
    packed, state = F.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=False)
    ref = F.dequantize_4bit(packed, state).flatten().tolist()
    q = nf4.quantize_blockwise(x.tolist(), 64)
    assert q["absmax"] == pytest.approx(state.absmax.tolist(), rel=1e-6)
    ours = nf4.dequantize_blockwise(q)
    same = sum(abs(a - b) <= 1e-5 * max(1.0, abs(b)) for a, b in zip(ours, ref))
    assert same / len(ref) > 0.999          # ties at a level midpoint may round either way in fp32


def test_nf4_beats_int4_and_fp4_on_normal_weights():
    # QLoRA paper: NF4 is built for normally distributed weights
    rng = random.Random(1)
    xs = [rng.gauss(0, 1) for _ in range(64 * 200)]
    cmp = nf4.compare_formats(xs, 64)
    assert cmp["nf4"]["mean_abs_error"] < cmp["int4"]["mean_abs_error"]
    assert cmp["nf4"]["mean_abs_error"] < cmp["fp4"]["mean_abs_error"]


def test_zero_block_and_bad_values():
    q = nf4.quantize_blockwise([0.0] * 10, 4)
    assert nf4.dequantize_blockwise(q) == [0.0] * 10
    for bad in ([], [float("nan")], [1, "x"], "abc", None):
        with pytest.raises(LoraCalcError):
            nf4.quantize_blockwise(bad)
    with pytest.raises(LoraCalcError):
        nf4.bits_per_param(0)


@pytest.mark.slow
@pytest.mark.parametrize("double_quant", [True, False])
def test_storage_equals_what_bitsandbytes_stores(double_quant, tmp_path):
    """A small Llama quantized on CPU: packed weights + weight.quant_state statistics, byte for byte."""
    import os
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig
    import loracalc

    cfg = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=8,
               num_key_value_heads=4, vocab_size=1000)
    AutoModelForCausalLM.from_config(LlamaConfig(**cfg), dtype=torch.bfloat16).save_pretrained(tmp_path)
    bnb_cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                 bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=bnb_cfg, device_map={"": "cpu"})
    packed = [p.data for p in model.parameters() if getattr(p, "quant_state", None) is not None]
    stored = tensor_bytes(packed + quant_state_tensors(model))   # the labs' own count, each storage once
    arch = loracalc.model_from_config({"model_type": "llama", **cfg})
    assert stored == nf4.storage_bytes(arch, 64, double_quant)
    # get_memory_footprint counts the packed weights but not the quant_state statistics (FACTS.md)
    assert model.get_memory_footprint() < nf4.weight_storage_bytes(arch, 64, double_quant)


# ------------------------------------------------------------ which tensors load_in_4bit quantizes, per family
BNB_SHAPES = {
    "llama": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, vocab_size=128),
    "gpt2": dict(n_embd=128, n_head=2, n_layer=1, vocab_size=128, n_positions=64),
    "falcon": dict(hidden_size=128, num_attention_heads=2, num_hidden_layers=1, vocab_size=128),
    "phi3": dict(hidden_size=128, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                 vocab_size=128, pad_token_id=0),
    "mixtral": dict(hidden_size=128, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=1, vocab_size=128, num_local_experts=2),
    "qwen2_moe": dict(hidden_size=128, intermediate_size=128, moe_intermediate_size=64,
                      shared_expert_intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=128, num_experts=2, num_experts_per_tok=1),
    "gpt_oss": dict(hidden_size=128, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=64, vocab_size=128, num_local_experts=2, num_experts_per_tok=1),
    "deepseek_v3": dict(hidden_size=128, intermediate_size=128, moe_intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=2, vocab_size=128, n_routed_experts=2,
                        n_shared_experts=1, num_experts_per_tok=1, first_k_dense_replace=1, q_lora_rank=64,
                        kv_lora_rank=64, qk_rope_head_dim=64, qk_nope_head_dim=64, v_head_dim=64, n_group=1,
                        topk_group=1),
    "gemma3_text": dict(hidden_size=128, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                        num_key_value_heads=1, head_dim=64, vocab_size=128),
    # DBRX: its router is a plain nn.Linear (ffn.router.layer) and its experts bare 2-D parameters
    "dbrx": dict(d_model=128, n_heads=2, n_layers=1, vocab_size=128,
                 attn_config={"kv_n_heads": 1, "rope_theta": 10000, "clip_qkv": 8},
                 ffn_config={"ffn_hidden_size": 128, "moe_num_experts": 2, "moe_top_k": 1}),
}


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(BNB_SHAPES))
def test_4bit_weights_are_what_bitsandbytes_quantizes(model_type, tmp_path):
    """Load a tiny random model with load_in_4bit on CPU (inputs in multiples of 64, as bitsandbytes' CPU path
    needs) and compare the weights it stored in 4 bit with the engine's: fused experts, routers, embeddings
    and the output layer stay 16-bit; Falcon's FalconLinear is left alone entirely."""
    import torch
    import bitsandbytes as bnb
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

    kw = BNB_SHAPES[model_type]
    AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **kw)).save_pretrained(tmp_path)
    q = AutoModelForCausalLM.from_pretrained(
        tmp_path, device_map="cpu", quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16))
    four_bit = sum(m.in_features * m.out_features for m in q.modules() if isinstance(m, bnb.nn.Linear4bit))
    arch = loracalc.model_from_config({"model_type": model_type, **kw})
    assert loracalc.models.quantizable_params(arch) == four_bit
