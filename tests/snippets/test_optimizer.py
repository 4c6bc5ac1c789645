"""Optimizer-state bytes: loracalc's per-parameter figures against the state real optimizers keep."""
from __future__ import annotations

import pytest

import loracalc
from loracalc.memory import STATE_BYTES


def _lora_model():
    import os
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=8,
               num_key_value_heads=4, vocab_size=1000)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**cfg))
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, target_modules="all-linear"))
    arch = loracalc.model_from_config({"model_type": "llama", **cfg})
    return model, arch


def _one_step(model, opt):
    import torch
    ids = torch.randint(0, 1000, (1, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()


def _state(opt):
    import torch
    return [(k, v) for s in opt.state.values() for k, v in s.items() if torch.is_tensor(v)]


@pytest.mark.slow
def test_adamw_state_after_one_step():
    import torch
    model, arch = _lora_model()
    n = loracalc.count_params(arch, 16, "all-linear").lora_params
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == n
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    _one_step(model, opt)
    state = _state(opt)
    moments = sum(v.nbytes for k, v in state if k in ("exp_avg", "exp_avg_sq"))
    assert moments == STATE_BYTES["adamw"] * n                 # fp32 m and v
    # besides m and v, AdamW keeps one scalar step counter per tensor (not modelled: 4 B per tensor)
    assert {k for k, _ in state} == {"exp_avg", "exp_avg_sq", "step"}
    est = loracalc.estimate_memory(arch, method="lora", rank=16, targets="all-linear", optimizer="adamw")
    assert est.breakdown["optimizer"] == moments


@pytest.mark.slow
def test_sgd_momentum_state():
    import torch
    model, arch = _lora_model()
    n = loracalc.count_params(arch, 16, "all-linear").lora_params
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    _one_step(model, opt)
    assert sum(v.nbytes for _, v in _state(opt)) == STATE_BYTES["sgd"] * n


@pytest.mark.slow
def test_bitsandbytes_adamw_8bit_state_on_cpu():
    """bitsandbytes' 8-bit AdamW runs on CPU (0.50): uint8 m and v plus an fp32 absmax per 256 values.
    Tensors under 4096 values stay in fp32 and each 8-bit tensor carries two 256-entry code tables; the
    estimate leaves both out, which the assertion below bounds."""
    import bitsandbytes as bnb
    model, arch = _lora_model()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = bnb.optim.AdamW8bit(params, lr=1e-4)
    _one_step(model, opt)
    big = [p for p in params if p.numel() >= 4096]
    n_big = sum(p.numel() for p in big)
    st = [(k, v) for p in big for k, v in opt.state[p].items() if hasattr(v, "nbytes")]
    per_value = sum(v.nbytes for k, v in st if k in ("state1", "state2", "absmax1", "absmax2"))
    assert per_value == sum(2 * p.numel() + 2 * 4 * -(-p.numel() // 256) for p in big)
    assert per_value == pytest.approx(STATE_BYTES["adamw_8bit"] * n_big, rel=1e-9)
    tables = sum(v.nbytes for k, v in st if k in ("qmap1", "qmap2"))
    assert tables == len(big) * 2 * 256 * 4


@pytest.mark.parametrize("hidden, head_dim, rank, paged", [(11_111, 271, 9, False), (12_500, 125, 8, True)])
def test_paged_state_starts_at_100k_values(hidden, head_dim, rank, paged):
    """bitsandbytes 0.50 (optim/optimizer.py, Optimizer8bit.get_state_buffer): ``if not self.is_paged or
    p.numel() < 1e5`` the state is an ordinary tensor, else a paged one. LoRA on q_proj at rank r makes A
    (r x hidden) and B (hidden x r): 99,999 values each (ordinary) and 100,000 values each (paged), on
    one-layer configs of those widths; AdamW keeps 8 B per fp32 value."""
    arch = loracalc.model_from_config({"model_type": "llama", "hidden_size": hidden, "intermediate_size": 256,
                                       "num_hidden_layers": 1, "num_attention_heads": hidden // head_dim,
                                       "num_key_value_heads": hidden // head_dim, "vocab_size": 1000})
    est = loracalc.estimate_memory(arch, method="lora", rank=rank, targets="q", optimizer="paged_adamw",
                                   paged_state_on_host=False)
    state = {t.key: t.bytes for t in est.terms + est.off_peak}
    assert rank * hidden in (99_999, 100_000)
    assert state["optimizer_paged"] == (8 * 2 * rank * hidden if paged else 0)
    assert state["optimizer"] == (0 if paged else 8 * 2 * rank * hidden)


@pytest.mark.parametrize("adapter_dtype,dtype", [("fp32", "fp32"), ("bf16", "bf16")])
def test_adamw_state_label_names_the_parameters_dtype(adapter_dtype, dtype):
    """torch.optim.AdamW creates exp_avg and exp_avg_sq with torch.zeros_like(p) (torch/optim/adamw.py,
    _init_group): the state takes the parameter's dtype, and the label must say which (its bytes are checked in
    test_memory_stacks.py::test_optimizer_state_dtypes_follow_the_libraries)."""
    import loracalc
    est = loracalc.estimate_memory("llama-3.1-8b", method="lora", optimizer="adamw", adapter_dtype=adapter_dtype)
    label = est.term("optimizer").label
    assert f"{dtype} m and v" in label, label
