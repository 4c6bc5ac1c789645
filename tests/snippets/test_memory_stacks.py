"""The memory terms of the training stacks (fused losses, offloading, recipes, 8-bit base, DoRA, paged and
in-backward optimizers), each checked on CPU against the real implementation: transformers' own loss,
peft's DoRA modules, bitsandbytes' Linear8bitLt and optimizers, torch.compile's saved tensors, autograd's
saved-tensor hooks. Liger's fused linear cross-entropy and Cut Cross-Entropy need a GPU (Triton), and
torchtune's chunked loss is not installed here: for those the same algorithms are written in torch
ops in stack_losses.py, following each project's source, and measured the same way.

Peaks are measured with the PyTorch profiler's raw allocation events (``profile_memory=True``): every CPU
allocation and free with its time, so the running sum is the live bytes and its maximum the peak.
"""
from __future__ import annotations

import inspect
import os
import sys

import pytest

import loracalc
from loracalc.memory import (INT8_SCALE_BYTES, OFFLOAD_LAYERS_ON_CARD, PAGED_MIN_NUMEL, _state_bytes,
                             loss_bytes)


sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "gpu_labs"))
# torch, its profiler, transformers, peft and bitsandbytes take seconds to import: all of this file is slow,
# and torch is imported inside the tests so that collecting the fast set does not pay for it
pytestmark = pytest.mark.slow


# ------------------------------------------------------------------ losses
def test_full_loss_peak_is_transformers_loss():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    """transformers' ForCausalLMLoss on bf16 logits: logits, fp32 log-softmax and its gradient at the peak."""
    from transformers.loss.loss_utils import ForCausalLMLoss
    x, w, y = _inputs()

    def step():
        logits = (x @ w.t()).unsqueeze(0)             # the model's bf16 logits, alive through backward
        ForCausalLMLoss(logits, y.unsqueeze(0), vocab_size=V).backward()
        return logits
    measured = peak_bytes(step)
    predicted, _ = loss_bytes("full", V, T, H, 2, 2)
    assert measured == pytest.approx(predicted, rel=0.03)


def test_full_16bit_loss_peak_is_cross_entropy_on_bf16_logits():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    """F.cross_entropy straight on bf16 logits (a training loop without an fp32 upcast, torchtune's recipes
    before 0.3): its log-softmax and both gradients stay bf16, so the peak is four 16-bit logits-sized tensors."""
    x, w, y = _inputs()

    def step():
        logits = x @ w.t()
        F.cross_entropy(logits, y).backward()
        return logits
    predicted, _ = loss_bytes("full_16bit", V, T, H, 2, 2)
    assert peak_bytes(step) == pytest.approx(predicted, rel=0.03)
    assert saved_bytes(lambda: F.cross_entropy(x @ w.t(), y), exclude=[w, x]) == pytest.approx(2 * V * T + 8 * T,
                                                                                               rel=0.01)


def test_chunked_loss_torchtune_algorithm():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    x, w, y = _inputs()
    n = 8
    predicted, _ = loss_bytes("chunked", V, T, H, 2, 2, chunks=n)
    assert peak_bytes(lambda: _torchtune_chunked(x, w, y, n).backward()) == pytest.approx(predicted, rel=0.03)
    # what stays for backward: every chunk's fp32 log-softmax (plus the labels)
    assert saved_bytes(lambda: _torchtune_chunked(x, w, y, n), exclude=[w]) == pytest.approx(4 * V * T, rel=0.01)


def test_chunked_loss_compiled_saves_bf16_chunks():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    """torchtune compiles the per-chunk cross-entropy (compile: True); inductor's partition saves the bf16
    chunk and two fp32 values per token (max and log-sum-exp) instead of the fp32 log-softmax."""
    x, w, y = _inputs()
    ce = torch.compile(lambda c, t: F.cross_entropy(c.float(), t, reduction="sum"))
    logits = (x @ w.t()).detach().requires_grad_()
    measured = saved_bytes(lambda: ce(logits, y)) - 8 * T      # the int64 labels are saved too
    predicted, _ = loss_bytes("chunked_compiled", V, T, H, 2, 2, chunks=1)
    one_chunk_gradient = 2 * V * T
    assert measured == predicted - one_chunk_gradient


def test_fused_linear_cross_entropy_liger_algorithm():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    x, w, y = _inputs()
    predicted, _ = loss_bytes("fused_linear", V, T, H, 2, 2)
    assert saved_bytes(lambda: _FusedLinearCE.apply(x, w, y), exclude=[w]) == 2 * H * T
    rows = 1 << max(0, (-(-T // -(-V // H)) - 1).bit_length())
    measured = peak_bytes(lambda: _FusedLinearCE.apply(x, w, y).backward())
    fp32_chunk_work = 3 * 4 * rows * V                  # the torch-op temporaries Triton avoids
    backward_copy = 2 * H * T                           # grad_x * grad_out, a new tensor in this version
    assert predicted <= measured <= 1.02 * (predicted + fp32_chunk_work + backward_copy)


def test_cut_cross_entropy_algorithm():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    x, w, y = _inputs()
    predicted, _ = loss_bytes("cce", V, T, H, 2, 2)
    # saved: the input (bf16), the int64 targets and the fp32 lse; the engine counts the input and lse
    assert saved_bytes(lambda: _CutCrossEntropy.apply(x * 1, w, y), exclude=[w]) == 2 * H * T + 8 * T + 4 * T
    # at the peak the input's gradient joins it; the fp32 accumulator and one block are this version's own
    measured = peak_bytes(lambda: _CutCrossEntropy.apply(x * 1, w, y).backward())
    block_work = 4 * H * T + 3 * 4 * 256 * T
    assert predicted <= measured + 8 * T <= predicted + block_work + 8 * T + 2 * H * T
    full, _ = loss_bytes("full", V, T, H, 2, 2)
    assert predicted < full / 20


# ------------------------------------------------------------------ optimizers
def test_optimizer_state_dtypes_follow_the_libraries():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    import bitsandbytes as bnb
    p = torch.nn.Parameter(torch.randn(64, 32, dtype=torch.bfloat16))
    p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW([p])
    opt.step()
    torch_state = sum(t.numel() * t.element_size() for t in opt.state[p].values() if t.dim() > 0)
    assert torch_state / p.numel() == _state_bytes("adamw", 2)          # torch keeps m, v in bf16
    q = torch.nn.Parameter(torch.randn(64, 32, dtype=torch.bfloat16))
    q.grad = torch.randn_like(q)
    bopt = bnb.optim.AdamW([q], optim_bits=32)
    bopt.step()
    bnb_state = sum(t.numel() * t.element_size() for t in bopt.state[q].values() if torch.is_tensor(t) and t.dim() > 0)
    assert bnb_state / q.numel() == _state_bytes("paged_adamw", 2) == 8  # bitsandbytes' 32-bit: fp32 always


def test_paged_state_is_managed_memory_for_large_tensors_only():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    """bitsandbytes pages a state buffer only for tensors of 1e5 values or more, with cudaMallocManaged
    (get_paged), which PyTorch's allocator and so max_memory_allocated never see."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as bf
    src = inspect.getsource(bnb.optim.optimizer.Optimizer8bit.get_state_buffer)
    assert f"p.numel() < {PAGED_MIN_NUMEL:.0e}".replace("+0", "") in src and "get_paged" in src
    assert "cget_managed_ptr" in inspect.getsource(bf.get_paged)


def test_optimizer_in_backward_holds_one_gradient_at_a_time():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    """torchtune's optimizer_in_bwd: a post-accumulate-grad hook steps each parameter and frees its gradient,
    so the live gradient bytes never exceed the largest parameter's."""
    torch.manual_seed(0)
    layers = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Linear(256, 32), torch.nn.Linear(32, 8))
    params = list(layers.parameters())
    opts = {p: torch.optim.SGD([p], lr=0.1) for p in params}
    live = []

    def hook(p):
        live.append(sum(q.grad.numel() * q.grad.element_size() for q in params if q.grad is not None))
        opts[p].step()
        p.grad = None
    for p in params:
        p.register_post_accumulate_grad_hook(hook)
    layers(torch.randn(16, 64)).sum().backward()
    assert max(live) == max(p.numel() for p in params) * 4
    est = loracalc.estimate_memory("llama-3.2-1b", method="full", precision="bf16", optimizer_in_backward=True)
    assert est.term("gradients").bytes == 2 * 128_256 * 2048     # the embedding, the largest tensor


def test_accumulated_gradients_stay_alive_and_grow_in_place(tmp_path):
    """Gradient accumulation: after the first micro-batch's backward every trainable parameter holds a gradient
    of the engine's size, and the next micro-batch's forward and backward run with those same tensors alive
    (backward adds into them in place). Measured on a real tiny Llama, full fine-tuning in bf16."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = dict(TINY, num_hidden_layers=2, tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg), dtype=torch.bfloat16)
    model.train()
    ids = torch.randint(0, cfg["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    first = {id(p): p.grad for p in model.parameters()}
    ptrs = {k: g.data_ptr() for k, g in first.items()}
    alive_in_forward = []
    hook = model.model.layers[-1].register_forward_hook(
        lambda *_: alive_in_forward.append(sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)))
    model(input_ids=ids, labels=ids).loss.backward()
    hook.remove()
    assert all(p.grad.data_ptr() == ptrs[id(p)] for p in model.parameters())       # added in place
    arch = loracalc.model_from_config({k: v for k, v in cfg.items() if k != "max_position_embeddings"})
    est = loracalc.estimate_memory(arch, method="full", precision="bf16", batch_size=2, seq_len=16,
                                   gradient_checkpointing=False, gradient_accumulation=2)
    assert alive_in_forward == [est.term("gradients").bytes]


# ------------------------------------------------------------------ 8-bit base
def test_int8_storage_is_bitsandbytes_linear8bitlt():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    import bitsandbytes as bnb
    cfg = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000}
    arch = loracalc.model_from_config(cfg, name="tiny")
    stored = 0
    for d_in, d_out in arch.linear_shapes().values():
        lin = bnb.nn.Linear8bitLt(d_in, d_out, bias=False, has_fp16_weights=False)
        lin.weight = bnb.nn.Int8Params(torch.randn(d_out, d_in, dtype=torch.float16), requires_grad=False,
                                       has_fp16_weights=False)
        lin = lin.to("cpu")                                   # quantizes, as .cuda() does on a GPU
        sd = lin.state_dict()
        assert sd["weight"].dtype == torch.int8 and sd["SCB"].dtype == torch.float32
        stored += sd["weight"].numel() + sd["SCB"].numel() * sd["SCB"].element_size()
    est = loracalc.estimate_memory(arch, method="lora_8bit", rank=4)
    assert est.term("weights_8bit").bytes == arch.num_hidden_layers * stored
    assert INT8_SCALE_BYTES == 4


def _int8_lora_model(model_dir, cfg: dict, targets: str, dropout: float, upcast: bool):
    """A tiny bf16 Llama loaded in LLM.int8 on CPU with peft LoRA (r 8); ``upcast``: peft's
    prepare_model_for_kbit_training (fp32 stream), else kept in bf16 as LitGPT keeps its models."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    torch.set_num_threads(1)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg), dtype=torch.bfloat16).save_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=BitsAndBytesConfig(load_in_8bit=True),
                                                 dtype=torch.bfloat16, device_map={"": "cpu"},
                                                 attn_implementation="sdpa")
    if upcast:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    names = "all-linear" if targets == "all-linear" else [f"{t}_proj" for t in targets.split(",")]
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, lora_dropout=dropout, target_modules=names,
                                             task_type="CAUSAL_LM"))
    model.train()
    return model


def _kept_outside_autograd(model, ids, after_backward: bool = False) -> int:
    """Bytes bitsandbytes' own autograd functions hold on ``ctx`` (``ctx.A``, ``ctx.tensors``) that no
    saved-tensor hook sees: walk the graph from the loss and count each storage once, leaving out what
    autograd saved anyway and the parameters. After backward autograd's saved tensors are freed, so only
    the parameters are left out: what a loop that keeps the output (LitGPT's ``logits``) still holds."""
    import torch
    import memory_measure as mm
    tracker = mm.SavedTensorTracker(mm.storage_ptrs(model))
    with tracker.hooks():
        loss = model(input_ids=ids, labels=ids).loss
    saved, params = set(tracker.refs), mm.storage_ptrs(model)
    if after_backward:
        loss.backward()
        saved = set()
    kept: dict[int, int] = {}
    seen, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for attr in ("A", "tensors"):
            value = getattr(node, attr, None)
            for t in value if isinstance(value, (tuple, list)) else [value]:
                if torch.is_tensor(t):
                    ptr = t.untyped_storage().data_ptr()
                    if ptr not in saved and ptr not in params:
                        kept[ptr] = t.untyped_storage().nbytes()
        stack.extend(f for f, _ in node.next_functions)
    return sum(kept.values())


@pytest.mark.parametrize("targets, dropout", [("q,v", 0.0), ("q,v", 0.05), ("o", 0.0), ("gate,up,down", 0.1),
                                              ("all-linear", 0.0)])
def test_llm_int8_keeps_layer_inputs_outside_autograd(tmp_path, targets, dropout):
    """bitsandbytes' 8-bit matmul (MatMul8bitFp on CPU, MatMul8bitLt on CUDA) keeps its input on ctx, where
    saved-tensor hooks (and so activation offloading) never see it. Measured on a real peft LLM.int8 model:
    the bytes held that way equal the engine's bnb_inputs term, including layer 0, where a matmul whose input
    needs no gradient records nothing, and the groups whose input LoRA (no dropout) saves anyway."""
    import torch
    cfg = dict(TINY, num_hidden_layers=2, tie_word_embeddings=False)
    model = _int8_lora_model(tmp_path, cfg, targets, dropout, upcast=True)
    b, seq = 2, 32
    ids = torch.randint(0, cfg["vocab_size"], (b, seq), generator=torch.Generator().manual_seed(0))
    measured = _kept_outside_autograd(model, ids)
    arch = loracalc.model_from_config({k: v for k, v in cfg.items() if k != "max_position_embeddings"})
    est = loracalc.estimate_memory(arch, method="lora_8bit", rank=8, targets=targets, batch_size=b, seq_len=seq,
                                   gradient_checkpointing=False, lora_dropout=dropout)
    predicted = {t.key: t.bytes for t in est.terms + est.off_peak}.get("bnb_inputs", 0)
    assert predicted == measured
    if targets != "all-linear":
        assert measured > 0


@pytest.mark.parametrize("targets, dropout", [("q,v", 0.05), ("o", 0.0), ("all-linear", 0.0)])
def test_a_kept_output_keeps_bitsandbytes_inputs_after_backward(tmp_path, targets, dropout):
    """Backward frees what autograd saved but not what bitsandbytes put on ``ctx``: while the loop still
    references the step's output (LitGPT's fit() keeps ``logits`` until the next forward returns), every kept
    input stays alive, including those autograd had saved too. Measured on a real peft LLM.int8 model kept in
    bf16 as LitGPT keeps its models (no fp32 upcast), the bytes still held after backward equal the engine's
    last-step term less its logits."""
    import torch
    cfg = dict(TINY, num_hidden_layers=3, tie_word_embeddings=False)
    model = _int8_lora_model(tmp_path, cfg, targets, dropout, upcast=False)    # adapters fp32, peft's default
    b, seq = 2, 32
    ids = torch.randint(0, cfg["vocab_size"], (b, seq), generator=torch.Generator().manual_seed(0))
    before = _kept_outside_autograd(model, ids)
    held = _kept_outside_autograd(model, ids, after_backward=True)
    arch = loracalc.model_from_config({k: v for k, v in cfg.items() if k != "max_position_embeddings"})
    # LitGPT's stack with this model's choices: fp32 adapters, the output layer left in bf16
    est = loracalc.estimate_memory(arch, method="lora_8bit", rank=8, targets=targets, batch_size=b, seq_len=seq,
                                   gradient_checkpointing=False, lora_dropout=dropout, recipe="litgpt",
                                   adapter_dtype="fp32", quantize_lm_head=False)
    terms = {t.key: t.bytes for t in est.terms + est.off_peak}
    assert terms["bnb_inputs"] == before > 0
    assert terms["last_step"] - 2 * b * seq * cfg["vocab_size"] == held
    assert held > before      # o_proj's input, which fused attention had saved too, is now held by ctx alone


def test_4bit_backward_dequantizes_the_whole_weight(tmp_path):
    """bitsandbytes' MatMul4Bit.backward dequantizes the packed weight to a full (out, in) tensor in the quant
    state's dtype: the engine's transient dequant term is that tensor for the largest 4-bit layer weight.
    Recorded with a dispatch mode over one real backward pass of a peft QLoRA model on CPU."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    import memory_measure as mm
    torch.set_num_threads(1)
    cfg = dict(TINY, num_hidden_layers=2, tie_word_embeddings=False)
    run = mm.RunSpec(method="qlora", rank=8, targets="q,v", batch_size=2, seq_len=24,
                     gradient_checkpointing=True, attention="sdpa")
    model = mm.build_model(cfg, run, model_dir=str(tmp_path))
    ids = torch.randint(0, cfg["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(0))
    loss = model(input_ids=ids, labels=ids).loss
    # 48 tokens: no (tokens, width) activation can take a weight's shape
    made: dict[tuple, int] = {}     # (shape, dtype) -> bytes, for every 2-D tensor an op produced in backward

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if torch.is_tensor(t) and t.dim() == 2:
                    made[(tuple(t.shape), t.dtype)] = t.numel() * t.element_size()
            return out

    with Record():
        loss.backward()
    arch = loracalc.model_from_config({k: v for k, v in cfg.items() if k != "max_position_embeddings"})
    weights = {(r.d_out, r.d_in) for r in arch.layer_linears()}
    dequantized = {key: n for key, n in made.items() if key[0] in weights}
    # one copy per weight, in the quant state's dtype (bf16 here: the compute dtype, so no cast copy)
    assert dequantized and {dtype for _, dtype in dequantized} == {torch.bfloat16}
    est = loracalc.estimate_memory(arch, method="qlora", rank=8, targets="q,v", batch_size=2, seq_len=24)
    term = {t.key: t.bytes for t in est.terms + est.off_peak}["dequant_layer"]
    assert term == max(dequantized.values())


# ------------------------------------------------------------------ DoRA and offloading on a real model
TINY = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 512}


def test_dora_magnitudes_counted_like_peft_on_the_meta_device():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    from peft import LoraConfig, get_peft_model
    from tests.snippets.hf import meta_model
    arch = loracalc.get_model("llama-3.1-8b")
    pm = get_peft_model(meta_model(arch), LoraConfig(r=16, target_modules=["q_proj", "v_proj"], use_dora=True))
    mags = sum(p.numel() for n, p in pm.named_parameters() if "lora_magnitude_vector" in n)
    est = loracalc.estimate_memory(arch, method="lora", rank=16, targets="q,v", dora=True)
    a, st = 4, _state_bytes("adamw", 4)
    assert est.term("dora_magnitude").bytes == (2 * a + st) * mags


def _tiny_lora(dora: bool, layers: int = 4, gc: bool = False):
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(**{**TINY, "num_hidden_layers": layers})
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.config.use_cache = False
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=dora))


def test_dora_activations_match_peft_saved_tensors():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    import memory_measure as mm
    b, s = 2, 64
    ids = torch.randint(0, TINY["vocab_size"], (b, s), generator=torch.Generator().manual_seed(0))
    peaks = {}
    for dora in (False, True):
        model = _tiny_lora(dora)
        tracker = mm.SavedTensorTracker(mm.storage_ptrs(model))
        with tracker.hooks():
            model(input_ids=ids, labels=ids).loss.backward()
        peaks[dora] = tracker.peak
    arch = loracalc.model_from_config(TINY, name="tiny")
    est = loracalc.estimate_memory(arch, method="lora", rank=8, targets="q,v", batch_size=b, seq_len=s,
                                   gradient_checkpointing=False, dora=True)
    assert peaks[True] - peaks[False] == pytest.approx(est.term("dora_activations").bytes, rel=0.02)


# DoRA's weight norm: a config whose adapted modules are all shapes (out != in both ways, as q_proj 128 -> 256
# and down_proj 384 -> 128), so a formula with the wrong dimension squared fails; widths are multiples of 64
# for bitsandbytes' CPU 4-bit path
DORA_TINY = dict(TINY, num_hidden_layers=2, head_dim=64, intermediate_size=384, tie_word_embeddings=False)


def _dora_model(model_dir, method: str, targets: str, adapter: str, gc: bool = False, dora: bool = True,
                dropout: float = 0.0):
    """A peft DoRA model: bf16 base (lora), NF4 + double quant or LLM.int8 after prepare_model_for_kbit_training
    (qlora, lora_8bit); fp32 adapters (peft's autocast_adapter_dtype) or adapters cast to bf16."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from peft.tuners.lora import LoraLayer
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig
    cfg = AutoConfig.for_model(**DORA_TINY)
    torch.manual_seed(0)
    if method == "lora":
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    else:
        if not os.path.exists(os.path.join(model_dir, "config.json")):
            AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(model_dir)
        quant = BitsAndBytesConfig(load_in_8bit=True) if method == "lora_8bit" else BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant, dtype=torch.bfloat16,
                                                     device_map={"": "cpu"}, attn_implementation="sdpa")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model.config.use_cache = False
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    names = "all-linear" if targets == "all-linear" else [f"{t}_proj" for t in targets.split(",")]
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=names, use_dora=dora,
                                             lora_dropout=dropout))
    if adapter == "bf16":
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for p in module.parameters():
                    if p.requires_grad:
                        p.data = p.data.to(torch.bfloat16)
    model.train()
    return model


def _dora_forward_peaks(model, run) -> dict[str, int]:
    """For each adapted module name (q_proj, ...), the most live CPU bytes above what was live when its DoRA
    forward (DoraLinearLayer.forward) began, over every call ``run()`` makes (layers, recomputation). From the
    profiler's raw allocation events, with a record_function range around each call."""
    from torch.profiler import ProfilerActivity, profile, record_function
    from peft.tuners.lora import LoraLayer
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            dora = module.lora_magnitude_vector["default"]

            def timed(*args, _forward=dora.forward, _name=name.rsplit(".", 1)[-1], **kwargs):
                with record_function("dora_forward:" + _name):
                    return _forward(*args, **kwargs)
            dora.forward = timed
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = list(prof.profiler.kineto_results.events())
    allocs = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    peaks: dict[str, int] = {}
    for e in events:
        if not e.name().startswith("dora_forward:"):
            continue
        live, at_start, most = 0, None, 0
        for when, nbytes in allocs:
            if when > e.end_ns():
                break
            if when >= e.start_ns() and at_start is None:
                at_start = live
            live += nbytes
            if at_start is not None:
                most = max(most, live - at_start)
        name = e.name().split(":", 1)[1]
        peaks[name] = max(peaks.get(name, 0), most)
    return peaks


# 8-bit with bf16 adapters peaks inside bitsandbytes' dequantization, where `* 7.874e-3` and the scaling make
# two 0-dim scalar tensors (8 + 4 bytes) that are alive at that instant; everywhere else the peak is exact
SCALARS = 16


@pytest.mark.parametrize("method, targets, adapter", [
    ("lora", "q,v", "fp32"), ("lora", "all-linear", "fp32"), ("lora", "all-linear", "bf16"),
    ("qlora", "q,v", "fp32"), ("qlora", "all-linear", "fp32"), ("qlora", "q,v", "bf16"),
    ("qlora", "all-linear", "bf16"), ("lora_8bit", "all-linear", "fp32"), ("lora_8bit", "all-linear", "bf16")])
def test_dora_transient_is_peft_forward_peak(tmp_path, method, targets, adapter):
    """peft's DoRA forward makes weight-sized tensors for the weight norm (the identity, B A, the base weight in
    the input's dtype, the scaled product, the sum): the engine's dora_transient against the most live bytes
    inside each real DoraLinearLayer.forward, module by module and for the largest, on CPU with 4 tokens (the
    token-sized tensors come after the peak). peft recipe: fp32 adapters, fp32 stream for the 8- and 4-bit
    bases; bf16: adapters cast to bf16, as the QLoRA paper's script and torchtune keep them."""
    import torch
    from loracalc.memory import dora_transient
    torch.set_num_threads(1)
    model = _dora_model(str(tmp_path), method, targets, adapter)
    ids = torch.randint(0, DORA_TINY["vocab_size"], (1, 4), generator=torch.Generator().manual_seed(0))
    measured = _dora_forward_peaks(model, lambda: model(input_ids=ids, labels=ids))
    arch = loracalc.model_from_config({k: v for k, v in DORA_TINY.items() if k != "max_position_embeddings"})
    a, s = (4 if adapter == "fp32" else 2), (2 if method == "lora" else 4)
    for name, peak in measured.items():
        assert dora_transient(arch, method, (name,), 8, a, s, False)[0] == pytest.approx(peak, abs=SCALARS), name
    est = loracalc.estimate_memory(arch, method=method, rank=8, targets=targets, dora=True, adapter_dtype=adapter,
                                   gradient_checkpointing=False, batch_size=1, seq_len=4)
    term = {t.key: t for t in est.terms + est.off_peak}["dora_transient"]
    assert term.bytes == pytest.approx(max(measured.values()), abs=SCALARS)
    # which module is largest depends on the identity (input width squared): down_proj, not the wider gate_proj
    assert (" in down_proj" if targets == "all-linear" else " in q_proj") in term.formula


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_dora_transient_again_in_recompute_and_not_in_backward(tmp_path, method):
    """The weight norm is detached and B A's graph dies with the forward, so backward itself makes no
    weight-sized tensor beyond plain LoRA's (a dispatch mode lists the weight-shaped tensors its ops make: the
    same with and without DoRA; QLoRA's dequantized weights are in both); with checkpointing, recomputing a
    layer in backward runs the same forward again, with the same peak as the engine's term."""
    import collections
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from loracalc.memory import dora_transient
    torch.set_num_threads(1)
    ids = torch.randint(0, DORA_TINY["vocab_size"], (1, 4), generator=torch.Generator().manual_seed(0))
    arch = loracalc.model_from_config({k: v for k, v in DORA_TINY.items() if k != "max_position_embeddings"})
    # 4 tokens: no activation takes any of these shapes
    shapes = {s for r in arch.layer_linears() for s in ((r.d_out, r.d_in), (r.d_in, r.d_out), (r.d_in, r.d_in))}
    made = {}
    for dora in (False, True):
        model = _dora_model(str(tmp_path), method, "all-linear", "fp32", dora=dora)
        loss = model(input_ids=ids, labels=ids).loss
        census: collections.Counter = collections.Counter()

        class Census(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in out if isinstance(out, (tuple, list)) else [out]:
                    if torch.is_tensor(t) and tuple(t.shape) in shapes:
                        census[(tuple(t.shape), t.dtype)] += 1
                return out
        with Census():
            loss.backward()
        made[dora] = census
    assert made[True] == made[False]
    model = _dora_model(str(tmp_path), method, "all-linear", "fp32", gc=True)
    loss = model(input_ids=ids, labels=ids).loss
    recomputed = _dora_forward_peaks(model, loss.backward)
    assert set(recomputed) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    s = 2 if method == "lora" else 4
    for name, peak in recomputed.items():
        assert dora_transient(arch, method, (name,), 8, 4, s, False)[0] == peak, name


def test_dora_transient_under_autocast(tmp_path, monkeypatch):
    """Under autocast (HF Trainer or qlora.py with bf16) lora_A and lora_B run on the identity in bf16, and
    peft's bitsandbytes layers skip the cast to the adapters' dtype (they ask torch.is_autocast_enabled(),
    which means CUDA's autocast), so B A, the base weight and the sum take the input's dtype: fp32 from the
    upcast norms, bf16 for attention's output. On CPU that question answers False, so it is pointed at the
    CPU's autocast here, which is what the GPU sees. peft's own Linear casts whatever autocast says: checked
    as it is, where the measured bytes also hold autocast's cached bf16 copies of fp32 A and B (persistent,
    counted in the activations as the cached casts)."""
    import torch
    from loracalc.memory import dora_transient
    torch.set_num_threads(1)
    ids = torch.randint(0, DORA_TINY["vocab_size"], (1, 4), generator=torch.Generator().manual_seed(0))
    arch = loracalc.model_from_config({k: v for k, v in DORA_TINY.items() if k != "max_position_embeddings"})
    shapes = {r.name: (r.d_in, r.d_out) for r in arch.layer_linears()}

    def autocast_forward(model):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model(input_ids=ids, labels=ids)
        return run

    # peft recipe, bf16 base, fp32 adapters, HF Trainer's bf16=True
    model = _dora_model(str(tmp_path), "lora", "all-linear", "fp32")
    measured = _dora_forward_peaks(model, autocast_forward(model))
    for name, peak in measured.items():
        cached_casts = 2 * 8 * sum(shapes[name])
        assert dora_transient(arch, "lora", (name,), 8, 4, 2, True)[0] + cached_casts == peak, name
    est = loracalc.estimate_memory(arch, method="lora", rank=8, dora=True, autocast=True, batch_size=1, seq_len=4)
    assert {t.key: t.bytes for t in est.terms + est.off_peak}["dora_transient"] == max(
        peak - 2 * 8 * sum(shapes[n]) for n, peak in measured.items())

    # the QLoRA paper's qlora.py: bf16 adapters, fp32 norms, autocast as on the GPU
    AutoModel = __import__("transformers").AutoModelForCausalLM
    AutoModel.from_config(__import__("transformers").AutoConfig.for_model(**DORA_TINY),
                          dtype=torch.bfloat16).save_pretrained(tmp_path / "paper")
    cuda_meaning = torch.is_autocast_enabled
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *device: cuda_meaning(*(device or ("cpu",))))
    model = _qlora_paper_model(str(tmp_path / "paper"), False, dora=True)
    measured = _dora_forward_peaks(model, autocast_forward(model))
    for name, peak in measured.items():
        assert dora_transient(arch, "qlora", (name,), 8, 2, 4, True)[0] == peak, name
    est = loracalc.estimate_memory(arch, method="qlora", recipe="qlora-paper", rank=8, dora=True, batch_size=1,
                                   seq_len=4)
    assert est.settings["autocast"]
    assert {t.key: t.bytes for t in est.terms + est.off_peak}["dora_transient"] == max(measured.values())


def test_offloading_moves_what_checkpointing_keeps_per_layer():
    from tests.snippets.stack_losses import (torch, F, V, T, H, peak_bytes, saved_bytes, _inputs,  # noqa: F401
                                             _torchtune_chunked, _FusedLinearCE, _CutCrossEntropy)
    """With checkpointing, each layer adds only its input to what autograd keeps (the tensor an offloading
    hook moves to the host); the engine moves all but OFFLOAD_LAYERS_ON_CARD of them."""
    import memory_measure as mm
    b, s = 2, 64
    ids = torch.randint(0, TINY["vocab_size"], (b, s), generator=torch.Generator().manual_seed(0))
    kept = {}
    for layers in (2, 4):
        model = _tiny_lora(False, layers=layers, gc=True)
        tracker = mm.SavedTensorTracker(mm.storage_ptrs(model))
        with tracker.hooks():
            loss = model(input_ids=ids, labels=ids).loss
        kept[layers] = tracker.live
        del loss
    per_layer = (kept[4] - kept[2]) / 2
    assert per_layer == 2 * TINY["hidden_size"] * b * s                  # the bf16 layer input
    arch = loracalc.model_from_config(TINY, name="tiny")
    est = loracalc.estimate_memory(arch, method="lora", rank=8, targets="q,v", batch_size=b, seq_len=s,
                                   activation_offload=True)
    assert est.term("activations_offloaded").bytes == (4 - OFFLOAD_LAYERS_ON_CARD) * per_layer


# ------------------------------------------------------------------ autocast (HF Trainer with bf16=True)
AC_TINY = dict(TINY, tie_word_embeddings=False)


def _saved_peak(model, ids, autocast: bool) -> int:
    import torch
    import memory_measure as mm
    tracker = mm.SavedTensorTracker(mm.storage_ptrs(model))
    with tracker.hooks():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    return tracker.peak


def _qlora_paper_model(model_dir, gc: bool, dora: bool = False):
    """The model as artidoro/qlora's qlora.py (get_accelerate_model, --bf16) builds it: 4-bit base in bf16,
    prepare_model_for_kbit_training, LoRA on every linear layer, then adapters cast to bf16, norms to fp32,
    embeddings and lm_head to bf16."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True,
                             bnb_4bit_quant_type="nf4")
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=bnb, dtype=torch.bfloat16,
                                                 device_map={"": "cpu"}, attn_implementation="sdpa")
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                            gradient_checkpointing_kwargs={"use_reentrant": True})
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0,
                                             bias="none", task_type="CAUSAL_LM", use_dora=dora))
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            module.to(torch.bfloat16)
        if "norm" in name:
            module.to(torch.float32)
        if ("lm_head" in name or "embed_tokens" in name) and getattr(module, "weight", None) is not None \
                and module.weight.dtype == torch.float32:
            module.to(torch.bfloat16)
    model.train()
    return model


@pytest.mark.parametrize("recipe, method, gc", [("peft", "lora", False), ("peft", "lora", True),
                                                 ("peft", "qlora", False), ("peft", "qlora", True),
                                                 ("qlora-paper", "qlora", False), ("qlora-paper", "qlora", True)])
def test_autocast_activations_match_saved_tensors(tmp_path, recipe, method, gc):
    """Under torch.autocast in bf16 (what HF Trainer does with bf16=True, and qlora.py always) attention and
    the adapters' matmuls save 16-bit tensors: the engine's autocast model against autograd's saved tensors on
    real peft models, for peft's recipe (LoRA and QLoRA) and the QLoRA paper's script. No dropout: on CPU
    dropout keeps its mask in the input's dtype (CUDA's fused kernel keeps one byte), which the engine models
    for the GPU. Tolerance: 0.5% without checkpointing; with it the engine's recomputed-layer model is 1.5%
    low even without autocast (as measured at this size), so 2.5%."""
    import torch
    import memory_measure as mm
    from loracalc.memory import activation_bytes
    torch.set_num_threads(1)
    b, seq = 2, 48
    ids = torch.randint(0, AC_TINY["vocab_size"], (b, seq), generator=torch.Generator().manual_seed(0))
    if recipe == "qlora-paper":
        torch.manual_seed(0)
        from transformers import AutoConfig, AutoModelForCausalLM
        AutoModelForCausalLM.from_config(AutoConfig.for_model(**AC_TINY), dtype=torch.bfloat16).save_pretrained(tmp_path)
        model = _qlora_paper_model(str(tmp_path), gc)
    else:
        run = mm.RunSpec(method=method, rank=8, targets="all-linear", batch_size=b, seq_len=seq,
                         gradient_checkpointing=gc, attention="sdpa")
        model = mm.build_model(AC_TINY, run, model_dir=str(tmp_path))
    measured = _saved_peak(model, ids, autocast=True)
    arch = loracalc.model_from_config({k: v for k, v in AC_TINY.items() if k != "max_position_embeddings"})
    est = loracalc.estimate_memory(arch, method=method, recipe=recipe, rank=8, targets="all-linear", batch_size=b,
                                   seq_len=seq, gradient_checkpointing=gc, autocast=True)
    s = est.settings
    stream = 4 if method == "qlora" else 2
    adapter = 2 if s["adapter_dtype"] == "bf16" else 4
    head_copy = 2 * arch.vocab_size * arch.hidden_size if (recipe == "peft" and method == "qlora") else 0
    act = activation_bytes(arch, method, 8, loracalc.parse_targets("all-linear"), b, seq, gc, "sdpa",
                           stream_bytes=stream, adapter_bytes=adapter, autocast=True, head_weight_copy=head_copy)
    assert act["saved_total"] == pytest.approx(measured, rel=0.025 if gc else 0.005)
    # and autocast really changes what is saved: the estimate without it is further off
    plain = activation_bytes(arch, method, 8, loracalc.parse_targets("all-linear"), b, seq, gc, "sdpa",
                             stream_bytes=stream, adapter_bytes=adapter)
    assert abs(plain["saved_total"] - measured) > abs(act["saved_total"] - measured)


# ------------------------------------------------------------------ the optimizer step's own temporaries
def _step_peak_new_bytes(opt) -> int:
    """Peak bytes of the tensors the step itself creates and holds at once (each storage once), followed with
    a dispatch mode: every op's output storage counts from its creation until its last tensor is gone."""
    import weakref
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    live: dict[int, list[int]] = {}
    state = {"now": 0, "peak": 0}

    def release(ptr):
        ref = live.get(ptr)
        if ref is None:
            return
        ref[1] -= 1
        if ref[1] == 0:
            state["now"] -= ref[0]
            del live[ptr]

    known = {t.untyped_storage().data_ptr() for g in opt.param_groups for p in g["params"]
             for t in [p, p.grad] + [v for v in opt.state.get(p, {}).values() if torch.is_tensor(v)]
             if t is not None}

    class Follow(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if torch.is_tensor(t) and t.numel() > 1:
                    ptr = t.untyped_storage().data_ptr()
                    if ptr in known:
                        continue
                    if ptr not in live:
                        live[ptr] = [t.untyped_storage().nbytes(), 0]
                        state["now"] += live[ptr][0]
                        state["peak"] = max(state["peak"], state["now"])
                    live[ptr][1] += 1
                    weakref.finalize(t, release, ptr)
            return out

    with Follow():
        opt.step()
    return state["peak"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_foreach_adamw_step_makes_one_second_moment_sized_temporary(dtype):
    """torch's AdamW with foreach kernels (its default on CUDA; forced here on CPU) makes _foreach_sqrt of the
    second moment for every tensor at once: one temporary of the state's size and dtype, which the engine
    adds at the end of backward for full fine-tuning and LoRA alike (fused AdamW, torchtune's, makes none)."""
    import torch
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    params = [torch.nn.Parameter(torch.randn(shape, dtype=dt)) for shape in ((256, 128), (128, 512), (64,), (512, 128))]
    opt = torch.optim.AdamW(params, lr=1e-3, foreach=True)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()                                  # the first step creates the state; the second is the steady case
    for p in params:
        p.grad = torch.randn_like(p)
    peak = _step_peak_new_bytes(opt)
    n = sum(p.numel() for p in params)
    assert peak == n * params[0].element_size()
    fused = torch.optim.AdamW(params, lr=1e-3, fused=True)
    for p in params:
        p.grad = torch.randn_like(p)
    fused.step()
    assert _step_peak_new_bytes(fused) < peak / 100

    # the engine's term for the same count: full fine-tuning of a tiny model, pure 16-bit and mixed precision
    tiny = loracalc.model_from_config({k: v for k, v in TINY.items() if k != "max_position_embeddings"})
    P = loracalc.total_params(tiny)
    for precision, v_bytes in (("bf16", 2), ("mixed", 4)):
        est = loracalc.estimate_memory(tiny, method="full", precision=precision, gradient_checkpointing=True)
        temp = {t.key: t.bytes for t in est.terms + est.off_peak}["optimizer_temp"]
        assert temp == v_bytes * P
    tt = loracalc.estimate_memory(tiny, method="full", precision="bf16", recipe="torchtune")
    assert "optimizer_temp" not in {t.key for t in tt.terms + tt.off_peak}


# ------------------------------------------------------------------ FlashAttention-2 (needs CUDA: emulated)
def _register_flash_attention_2_emulation() -> str:
    """transformers' flash_attention_forward with flash_attn's FlashAttnFunc written in torch ops, registered
    as an attention implementation. What matters for memory is what each keeps for backward: transformers
    transposes q, k, v to (batch, seq, heads, dim) and casts an fp32 q, k, v to the model's dtype
    (get_target_dtype, the same function); FlashAttnFunc then saves q, k, v as they are (grouped k and v not
    expanded), its output and an fp32 log-sum-exp per head and token. The forward runs SDPA without grad."""
    import torch
    from transformers import AttentionInterface
    from transformers.integrations.flash_attention import get_target_dtype

    class FlashAttnFunc(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, scale):
            with torch.no_grad():
                out = torch.nn.functional.scaled_dot_product_attention(
                    q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=scale,
                    enable_gqa=True).transpose(1, 2).contiguous()
            lse = torch.empty(q.shape[0], q.shape[2], q.shape[1], dtype=torch.float32)
            ctx.save_for_backward(q, k, v, out, lse)
            return out

        @staticmethod
        def backward(ctx, grad):   # not used: the test measures what the forward keeps
            raise NotImplementedError

    def flash_attention_2_emulated(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kw):
        q, k, v = (t.transpose(1, 2) for t in (query, key, value))
        target = get_target_dtype(query, module)
        if target is not None:
            q, k, v = q.to(target), k.to(target), v.to(target)
        return FlashAttnFunc.apply(q, k, v, scaling), None

    AttentionInterface.register("fa2_emulated", flash_attention_2_emulated)
    return "fa2_emulated"


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_flash_attention_2_keeps_16_bit_grouped_q_k_v(tmp_path, method):
    """The engine's flash_attention_2 against the emulation above, on a grouped-query Llama (4 heads, 2 k/v
    heads): bytes saved for backward at the end of the forward pass (their peak), checkpointing off, on CPU."""
    import torch
    import memory_measure as mm
    from loracalc.memory import activation_bytes
    torch.set_num_threads(1)
    name = _register_flash_attention_2_emulation()
    b, seq = 2, 48
    run = mm.RunSpec(method=method, rank=8, targets="all-linear", batch_size=b, seq_len=seq,
                     gradient_checkpointing=False, attention=name)
    model = mm.build_model(AC_TINY, run, model_dir=str(tmp_path))
    ids = torch.randint(0, AC_TINY["vocab_size"], (b, seq), generator=torch.Generator().manual_seed(0))
    tracker = mm.SavedTensorTracker(mm.storage_ptrs(model))
    with tracker.hooks():
        model(input_ids=ids, labels=ids)
    arch = loracalc.model_from_config({k: v for k, v in AC_TINY.items() if k != "max_position_embeddings"})
    targets = loracalc.parse_targets("all-linear")
    fa2 = activation_bytes(arch, method, 8, targets, b, seq, False, "flash_attention_2", device="cpu")
    assert fa2["saved_total"] == pytest.approx(tracker.live, rel=0.005)
    sdpa = activation_bytes(arch, method, 8, targets, b, seq, False, "sdpa", device="cpu")
    if method == "qlora":   # fp32 stream: SDPA keeps fp32 q, k, v; FlashAttention-2 16-bit casts
        assert sdpa["saved_total"] > fa2["saved_total"]


# ------------------------------------------------------------------ LoRA on the output layer and the embeddings
EDGE_TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 3000, "tie_word_embeddings": False}


def _edge_run(targets, dropout, fp32_adapters, autocast=False):
    """(bytes autograd saved, peak bytes allocated during forward + backward) of a tiny bf16 peft model."""
    import contextlib
    import torch
    import memory_measure as mm
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM
    from tests.snippets.stack_losses import peak_bytes
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(AutoConfig.for_model(**EDGE_TINY), dtype=torch.bfloat16,
                                         attn_implementation="sdpa")
    m.config.use_cache = False
    pm = get_peft_model(m, LoraConfig(r=8, lora_alpha=8, lora_dropout=dropout, target_modules=targets),
                        autocast_adapter_dtype=fp32_adapters)
    pm.train()
    ids = torch.randint(0, EDGE_TINY["vocab_size"], (2, 48), generator=torch.Generator().manual_seed(0))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    tracker = mm.SavedTensorTracker(mm.storage_ptrs(pm))
    with tracker.hooks(), ctx():
        pm(input_ids=ids, labels=ids).loss
    saved = tracker.live

    def step():
        with ctx():
            loss = pm(input_ids=ids, labels=ids).loss
        loss.backward()
    return saved, peak_bytes(step)


@pytest.mark.parametrize("extra, dropout, fp32, autocast", [
    ("lm_head", 0.0, True, False), ("lm_head", 0.1, True, False), ("lm_head", 0.0, False, False),
    ("lm_head", 0.1, False, False), ("lm_head", 0.0, True, True), ("lm_head", 0.1, True, True),
    ("embed_tokens", 0.0, True, False), ("embed_tokens", 0.1, False, False)])
def test_lora_on_the_output_layer_and_embeddings_matches_peft(extra, dropout, fp32, autocast):
    """What LoRA on lm_head or embed_tokens adds, against a real peft model on CPU: the saved tensors (the
    engine's activation model on device cpu, where dropout keeps its mask in the tensor's dtype), and, for
    a 16-bit output layer with fp32 adapters, the gradients backward carries in both dtypes (the profiler's
    peak minus the saved tensors equals the engine's head_lora_grads term)."""
    from loracalc.memory import activation_bytes
    base, with_extra = _edge_run(["q_proj", "v_proj"], dropout, fp32, autocast), \
        _edge_run(["q_proj", "v_proj", extra], dropout, fp32, autocast)
    arch = loracalc.model_from_config(EDGE_TINY, name="tiny")
    kw = dict(batch_size=2, seq_len=48, gradient_checkpointing=False, attention="sdpa", lora_dropout=dropout,
              stream_bytes=2, adapter_bytes=4 if fp32 else 2, device="cpu", autocast=autocast)
    engine = (activation_bytes(arch, "lora", 8, ("q_proj", "v_proj", extra), **kw)["saved_total"]
              - activation_bytes(arch, "lora", 8, ("q_proj", "v_proj"), **kw)["saved_total"])
    assert with_extra[0] - base[0] == engine > 0
    if extra == "lm_head":
        est = loracalc.estimate_memory(arch, method="lora", rank=8, targets="q,v,lm_head", batch_size=2, seq_len=48,
                                       gradient_checkpointing=False, lora_dropout=dropout, autocast=autocast,
                                       adapter_dtype="fp32" if fp32 else "bf16")
        grads = {t.key: t.bytes for t in est.terms + est.off_peak}.get("head_lora_grads", 0)
        transient = (with_extra[1] - base[1]) - (with_extra[0] - base[0])
        assert abs(transient - grads) <= 16            # the profiler's peak counts a few bytes of bookkeeping
        assert (grads > 0) == (fp32 and not autocast)


@pytest.mark.parametrize("method, adapter", [("lora", "fp32"), ("lora", "bf16"), ("qlora", "fp32"), ("qlora", "bf16")])
@pytest.mark.parametrize("targets", ["q,v", "all-linear", "o", "gate,up,down"])
def test_dora_with_dropout_keeps_each_modules_converted_weight(tmp_path, method, adapter, targets):
    """With lora_dropout > 0 peft's DoRA recomputes the base output as F.linear(dropped x, W) on the weight
    converted to x's dtype, so autograd keeps that copy (and a base output in the adapters' dtype) in every
    module whose input needs a gradient. What dropout adds to DoRA's saved tensors on a real peft model equals
    what it adds to the engine's DoRA terms."""
    import torch
    import memory_measure as mm
    torch.set_num_threads(1)
    b, S = 2, 16
    ids = torch.randint(0, DORA_TINY["vocab_size"], (b, S), generator=torch.Generator().manual_seed(0))

    def saved(model) -> int:
        tracker = mm.SavedTensorTracker(mm.storage_ptrs(model))
        with tracker.hooks():
            model(input_ids=ids, labels=ids).loss
        return tracker.live

    arch = loracalc.model_from_config({k: v for k, v in DORA_TINY.items() if k != "max_position_embeddings"})
    measured, engine = {}, {}
    for drop in (0.0, 0.1):
        measured[drop] = (saved(_dora_model(tmp_path, method, targets, adapter, dora=True, dropout=drop))
                          - saved(_dora_model(tmp_path, method, targets, adapter, dora=False, dropout=drop)))
        est = loracalc.estimate_memory(arch, method=method, rank=8, targets=targets, batch_size=b, seq_len=S,
                                       gradient_checkpointing=False, lora_dropout=drop, dora=True,
                                       adapter_dtype=adapter)
        terms = {t.key: t.bytes for t in est.terms + est.off_peak}
        engine[drop] = terms["dora_activations"] + terms.get("dora_weights", 0)
    assert measured[0.1] - measured[0.0] == engine[0.1] - engine[0.0]
    if method == "qlora" or adapter == "fp32":
        assert engine[0.1] > engine[0.0]       # a dequantized or cast copy per module


def test_stack_records_remeasured():
    """The DoRA bytes recorded in tests/snippets/data/stack_measured.json (which test_dora_recorded.py and test_losses_recorded.py asks the
    fast engine tests to predict) are measured again with the libraries installed now and must be the same;
    with RECORD_STACKS=1 the file is rewritten from this measurement instead (versions and date on every row)."""
    import json
    from tests.snippets import stack_record
    fresh = stack_record.measure_all()
    if os.environ.get("RECORD_STACKS") == "1":
        stack_record.write(fresh)
    recorded = json.loads(stack_record.OUT.read_text())
    assert recorded["config"] == fresh["config"]
    settings = lambda r: {k: v for k, v in r.items() if k not in ("measured_bytes", "torch", "transformers",  # noqa: E731
                                                                   "peft", "bitsandbytes", "date", "device")}
    assert [settings(r) for r in recorded["rows"]] == [settings(r) for r in fresh["rows"]]
    for old, new in zip(recorded["rows"], fresh["rows"]):
        assert old["measured_bytes"] == new["measured_bytes"], settings(old)
