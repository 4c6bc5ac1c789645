"""The memory model: cited per-parameter figures (FACTS.md), structure, and monotonic behaviour."""
from __future__ import annotations

import math

import pytest

import loracalc
from loracalc import LoraCalcError, estimate_memory

NO_ACT = dict(batch_size=1, seq_len=1, cuda_overhead=False)


def test_terms_have_key_label_bytes_formula():
    est = estimate_memory("llama-3.1-8b")
    keys = [t.key for t in est.terms]
    # the terms alive at the peak (here: the loss, before any gradient exists); the rest are listed apart
    assert keys == ["weights_4bit", "weights_16bit", "kbit_upcast", "adapter", "optimizer",
                    "activations", "logits", "cuda_context"]
    assert {t.key for t in est.off_peak} == {"adapter_grads", "optimizer_temp", "recomputed", "dequant_layer"}
    assert est.allocated_peak_bytes == est.total_bytes - est.breakdown["cuda_context"]
    for t in est.terms:
        assert t.label and t.formula and isinstance(t.bytes, int) and t.bytes >= 0
    assert est.total_bytes == sum(est.breakdown.values())
    d = est.to_dict()
    assert d["total_bytes"] == est.total_bytes and d["breakdown"] == est.breakdown
    assert isinstance(d["fits"], list)


def test_full_mixed_precision_is_16_bytes_per_param():
    # FACTS.md: bf16 weight 2 + bf16 grad 2 + fp32 master 4 + fp32 m 4 + fp32 v 4 = 16 bytes
    P = 68_976_648_192
    b = estimate_memory("llama-2-70b", method="full", **NO_ACT).breakdown
    assert b["weights"] + b["gradients"] + b["master_weights"] + b["optimizer"] == 16 * P


def test_full_70b_before_activations_is_1_10_to_1_27_tb():
    # FACTS.md: 16-18 bytes per parameter -> 1.10-1.27 TB before activations for the two 70B models
    for name in ("llama-2-70b", "llama-3.1-70b"):
        b = estimate_memory(name, method="full", **NO_ACT).breakdown
        static = b["weights"] + b["gradients"] + b["master_weights"] + b["optimizer"]
        assert 1.10e12 <= static <= 1.27e12


@pytest.mark.parametrize("name, gb", [("llama-2-70b", 36.4), ("llama-3.1-70b", 39.5)])
def test_qlora_70b_weights(name, gb):
    # FACTS.md: NF4 + double quantization weights about 36.4 GB (Llama-2-70B), 39.5 GB (Llama-3.1-70B)
    b = estimate_memory(name, method="qlora", **NO_ACT).breakdown
    assert b["weights_4bit"] + b["weights_16bit"] == pytest.approx(gb * 1e9, rel=0.005)


def test_lora_70b_bf16_weights_138_to_141_gb():
    # FACTS.md: the bf16 weights alone are 138-141 GB
    for name in ("llama-2-70b", "llama-3.1-70b"):
        w = estimate_memory(name, method="lora", **NO_ACT).breakdown["weights"]
        assert 137.9e9 <= w <= 141.2e9


def test_adapter_r64_all_linear_70b_about_13_gb():
    # FACTS.md: r=64 on all linear layers of a 70B Llama is 828M parameters, about 13 GB with AdamW
    b = estimate_memory("llama-2-70b", method="lora", rank=64, **NO_ACT).breakdown
    assert b["adapter"] + b["adapter_grads"] + b["optimizer"] == 16 * 828_375_040


def test_optimizer_choices():
    Pl = loracalc.count_params("llama-3.1-8b", 16, "all-linear").lora_params
    # a paged optimizer's state is split: tensors of 1e5+ values in CUDA managed memory, the rest ordinary
    # (counted on the card here; by default the managed part is counted in host memory)
    opt = {o: sum(v for k, v in estimate_memory("llama-3.1-8b", optimizer=o,
                                                paged_state_on_host=False if o.startswith("paged") else None)
                  .breakdown.items() if k in ("optimizer", "optimizer_paged")) for o in loracalc.OPTIMIZERS}
    assert opt["adamw"] == 8 * Pl and opt["sgd"] == 4 * Pl
    assert opt["adamw_8bit"] == opt["paged_adamw_8bit"] < opt["sgd"]
    assert opt["paged_adamw"] == opt["adamw"]


def test_checkpointing_and_eager():
    on = estimate_memory("llama-3.1-8b", seq_len=4096, gradient_checkpointing=True).breakdown["activations"]
    off = estimate_memory("llama-3.1-8b", seq_len=4096, gradient_checkpointing=False).breakdown["activations"]
    eager = estimate_memory("llama-3.1-8b", seq_len=4096, gradient_checkpointing=False,
                            attention="eager").breakdown["activations"]
    assert on < off < eager


def test_logits_grow_with_vocabulary():
    # Llama-3.1-8B and Mistral-7B share every shape but the vocabulary (128,256 vs 32,000)
    a = estimate_memory("llama-3.1-8b", method="lora").term("logits").bytes
    b = estimate_memory("mistral-7b", method="lora").term("logits").bytes
    assert a / b == pytest.approx(128_256 / 32_000)


@pytest.mark.parametrize("kw, field", [
    (dict(method="dora"), "method"), (dict(loss="flash"), "loss"), (dict(recipe="axolotl"), "recipe"),
    (dict(method="full", dora=True), "dora"), (dict(adapter_dtype="fp8"), "adapter_dtype"),
    (dict(loss_chunks=0), "loss_chunks"), (dict(activation_offload="sometimes"), "activation_offload"), (dict(optimizer="adam"), "optimizer"), (dict(attention="flash3"), "attention"),
    (dict(batch_size=0), "batch_size"), (dict(batch_size=-2), "batch_size"), (dict(batch_size=1.5), "batch_size"),
    (dict(seq_len=float("nan")), "seq_len"), (dict(seq_len=float("inf")), "seq_len"), (dict(seq_len="long"), "seq_len"),
    (dict(rank=0), "rank"), (dict(targets="no_such_proj"), "targets"), (dict(gradient_checkpointing="maybe"),
                                                                      "gradient_checkpointing"),
])
def test_bad_settings(kw, field):
    with pytest.raises(LoraCalcError) as e:
        estimate_memory("llama-3.1-8b", **kw)
    assert e.value.field == field


def test_gpu_fit_and_largest():
    g = loracalc.get_gpu("rtx-4090")
    # usable bytes as CUDA reports them: a published torch printout says total_memory=24563MB (MiB)
    assert g.memory_bytes == 24563 * 2**20
    kw = dict(method="qlora", rank=16, targets="all-linear", seq_len=2048)
    b = loracalc.max_batch_size("llama-3.1-8b", g, **kw)
    assert b >= 1
    assert estimate_memory("llama-3.1-8b", batch_size=b, **kw).total_bytes <= g.memory_bytes
    assert estimate_memory("llama-3.1-8b", batch_size=b + 1, **kw).total_bytes > g.memory_bytes
    s = loracalc.max_seq_len("llama-3.1-8b", g, method="qlora", batch_size=1)
    assert estimate_memory("llama-3.1-8b", seq_len=s, method="qlora").total_bytes <= g.memory_bytes
    assert estimate_memory("llama-3.1-8b", seq_len=s + 1, method="qlora").total_bytes > g.memory_bytes
    assert loracalc.max_batch_size("llama-3.1-405b", "rtx-3090", method="full") == 0


def test_gpu_catalog_covers_the_issue():
    names = {g.name for g in loracalc.list_gpus()}
    assert {"rtx-3090", "rtx-4090", "rtx-5090", "l4", "a10", "rtx-a6000", "l40s", "a100-40gb", "a100-80gb",
            "h100-80gb", "h200", "b200", "mi300x"} <= names
    with pytest.raises(LoraCalcError) as e:
        loracalc.get_gpu("tpu")
    assert e.value.field == "gpu"


def test_approximate_model_is_flagged():
    est = estimate_memory(loracalc.model_from_param_count(7e9))
    assert est.approximate and est.to_dict()["approximate"]
    assert all(math.isfinite(t.bytes) for t in est.terms)


# ------------------------------------------------------------------ bitsandbytes' own kept tensors
def test_old_bitsandbytes_qlora_keeps_what_llm_int8_keeps():
    """bitsandbytes before 0.43.2 kept A in MatMul4Bit exactly as MatMul8bitLt still does (the 8-bit case is
    measured on a real model in test_memory_stacks.py): same modules, same stream, so the same bytes."""
    for model, targets, dropout in (("llama-3.1-8b", "q,v", 0.05), ("qwen3-8b", "all-linear", 0.1),
                                    ("gemma-3-4b-text", "o", 0.0)):
        kw = dict(rank=16, targets=targets, lora_dropout=dropout, batch_size=2, seq_len=512)
        old = loracalc.estimate_memory(model, method="qlora", old_bitsandbytes=True, **kw)
        int8 = loracalc.estimate_memory(model, method="lora_8bit", **kw)
        new = loracalc.estimate_memory(model, method="qlora", **kw)
        assert "bnb_inputs" not in new.breakdown
        assert old.term("bnb_inputs").bytes == int8.term("bnb_inputs").bytes > 0


def test_paged_state_on_host_needs_a_paged_optimizer():
    with pytest.raises(loracalc.LoraCalcError, match="paged"):
        loracalc.estimate_memory("llama-3.1-8b", optimizer="adamw", paged_state_on_host=True)
    est = loracalc.estimate_memory("llama-3.1-8b", optimizer="paged_adamw", paged_state_on_host=True)
    assert est.host_bytes > 0


def test_a_paged_optimizers_state_is_counted_on_the_host_unless_asked():
    """The QLoRA paper (Dettmers et al. 2023, section 3, "Paged Optimizers"): the state is evicted to CPU RAM when
    the GPU runs out of memory and paged back for the optimizer update, so by default it is not counted as resident
    on the card; paged_state_on_host=False counts it there (an upper bound). An unpaged optimizer is unchanged."""
    kw = dict(method="qlora", rank=64, optimizer="paged_adamw")
    default = loracalc.estimate_memory("llama-3.1-8b", **kw)
    on_card = loracalc.estimate_memory("llama-3.1-8b", paged_state_on_host=False, **kw)
    paged = on_card.term("optimizer_paged")
    assert "optimizer_paged" not in default.breakdown and default.host_bytes == paged.bytes > 0
    assert default.settings["paged_state_on_host"] is True and on_card.settings["paged_state_on_host"] is False
    assert on_card.total_bytes - default.total_bytes == paged.bytes
    plain = loracalc.estimate_memory("llama-3.1-8b", method="qlora", optimizer="adamw")
    assert plain.host_bytes == 0 and plain.settings["paged_state_on_host"] is False


def test_litgpt_dequantizes_its_quantized_output_layer_twice():
    """Lightning's BitsandbytesPrecision quantizes from fp16 and computes in bf16: the output layer's backward
    makes an fp16 and a bf16 copy of the whole (vocab x hidden) matrix; peft's recipe leaves it unquantized."""
    lit = loracalc.estimate_memory("llama-3.1-8b", method="qlora", recipe="litgpt", gradient_checkpointing=False)
    assert lit.term("dequant_head").bytes == 2 * 2 * 128_256 * 4096
    peft = loracalc.estimate_memory("llama-3.1-8b", method="qlora", gradient_checkpointing=False)
    assert "dequant_head" not in {t.key for t in peft.terms + peft.off_peak}


def test_dequantized_layer_copies_per_stack():
    """With checkpointing, backward dequantizes the largest 4-bit layer weight (Llama-3.1-8B's MLP: 4096 x
    14,336 entries). bitsandbytes' MatMul4Bit.backward makes one bf16 copy (measured in test_memory_stacks.py);
    torchtune's base is torchao's NF4Tensor, whose LinearNF4.backward computes ``grad_output @
    weight.to(grad_output.dtype)`` (torchao/dtypes/nf4tensor.py): one bf16 copy too; Lightning's plugin
    (LitGPT) keeps an fp16 quant state, so an fp16 and a bf16 copy."""
    entries = 4096 * 14_336
    for recipe, copies in (("peft", 1), ("torchtune", 1), ("qlora-paper", 1), ("litgpt", 2)):
        est = loracalc.estimate_memory("llama-3.1-8b", method="qlora", recipe=recipe, gradient_checkpointing=True)
        assert {t.key: t.bytes for t in est.terms + est.off_peak}["dequant_layer"] == copies * 2 * entries, recipe


def test_one_loss_chunk_is_the_whole_sequence():
    """A chunk count is a count: torchtune's chunked loss with one chunk (num_output_chunks=1) runs the whole
    sequence as one chunk, so the in-flight fp32 chunk is every token's (4 B x tokens x vocab on top of the
    16-bit logits and their fp32 log-softmax)."""
    est = loracalc.estimate_memory("llama-3.2-1b", method="lora", loss="chunked", loss_chunks=1, batch_size=1,
                                   seq_len=512, gradient_checkpointing=True)
    assert est.settings["loss_chunks"] == 1
    assert est.term("logits").bytes == (2 + 4 + 4) * 512 * 128_256


def test_litgpt_qlora_runs_without_autocast():
    """LitGPT's finetune/lora.py, with --quantize bnb.*: ``if "mixed" in precision: raise ValueError("Quantization
    and mixed precision is not supported.")``, then BitsandbytesPrecision(..., dtype) with precision None: a
    quantized LitGPT run is bf16-true, never autocast. The QLoRA paper's qlora.py runs HF Trainer with --bf16
    (autocast)."""
    lit = loracalc.estimate_memory("llama-3.1-8b", method="qlora", recipe="litgpt")
    assert lit.settings["autocast"] is False
    assert loracalc.estimate_memory("llama-3.1-8b", method="qlora", recipe="qlora-paper").settings["autocast"] is True


@pytest.mark.parametrize("gc", [False, True])
def test_qlora_paper_is_peft_with_three_settings_changed(gc):
    """artidoro/qlora's qlora.py builds a transformers model, calls prepare_model_for_kbit_training and
    get_peft_model, and trains with HF Trainer: peft's stack (the same attention, loss, kernels and optimizer),
    except that it casts the adapters to bf16, keeps only the norms in fp32 and passes --bf16 (autocast). With
    those three set, the two recipes give the same estimate, on a grouped-query model."""
    kw = dict(method="qlora", rank=16, targets="all-linear", batch_size=2, seq_len=1024, gradient_checkpointing=gc,
              adapter_dtype="bf16", kbit_upcast="norms", autocast=True)
    paper = loracalc.estimate_memory("llama-3.1-8b", recipe="qlora-paper", **kw)
    peft = loracalc.estimate_memory("llama-3.1-8b", recipe="peft", **kw)
    assert paper.breakdown == peft.breakdown
    assert {t.key: t.bytes for t in paper.off_peak} == {t.key: t.bytes for t in peft.off_peak}


def test_litgpt_keeps_k_and_v_expanded_to_every_head():
    """LitGPT's CausalSelfAttention expands k and v to every query head before SDPA (litgpt/model.py, 2024:
    "training: flash attention requires it"); torchtune's recipe, otherwise the same bf16 stack, does not.
    Llama-3.1-8B has 32 query heads and 8 key/value heads of 128: 2 tensors x 2 B x (4096 - 1024) more per
    token and layer."""
    kw = dict(method="lora", rank=8, targets="q,v", batch_size=1, seq_len=512, gradient_checkpointing=False,
              loss="chunked")
    lit = loracalc.estimate_memory("llama-3.1-8b", recipe="litgpt", **kw)
    tt = loracalc.estimate_memory("llama-3.1-8b", recipe="torchtune", **kw)
    extra = lit.breakdown["activations"] - tt.breakdown["activations"]
    assert extra == 32 * 512 * 2 * 2 * (4096 - 1024)
    mha = loracalc.estimate_memory("llama-2-7b", recipe="litgpt", **kw).breakdown["activations"]
    assert mha == loracalc.estimate_memory("llama-2-7b", recipe="torchtune", **kw).breakdown["activations"]


def test_gradient_accumulation_keeps_gradients_through_later_micro_batches():
    # PyTorch adds each micro-batch's gradients into .grad until zero_grad: from the second micro-batch on,
    # the loss runs with every gradient alive; torchtune refuses accumulation with the step in backward
    kw = dict(method="full", precision="bf16", batch_size=2, seq_len=4096, gradient_checkpointing=False)
    one = loracalc.estimate_memory("llama-3.2-1b", **kw)
    four = loracalc.estimate_memory("llama-3.2-1b", gradient_accumulation=4, **kw)
    assert one.notes[-1].startswith("peak at the loss") and four.notes[-1].startswith("peak at the loss")
    assert four.allocated_peak_bytes - one.allocated_peak_bytes == four.term("gradients").bytes
    assert four.settings["gradient_accumulation"] == 4 and one.settings["gradient_accumulation"] == 1
    with pytest.raises(loracalc.LoraCalcError) as e:
        loracalc.estimate_memory("llama-3.2-1b", gradient_accumulation=4, optimizer_in_backward=True, **kw)
    assert e.value.field == "gradient_accumulation"
    for bad in (0, -1, "two", 2.5):
        with pytest.raises(loracalc.LoraCalcError):
            loracalc.estimate_memory("llama-3.2-1b", gradient_accumulation=bad)


def test_litgpt_output_chunks_so_far():
    """LitGPT's finetune/lora.py calls ``model(input_ids, lm_head_chunk_size=128)``, and GPT.forward returns
    ``[self.lm_head(x_i) for x_i in x.split(lm_head_chunk_size, dim=1)]``: while the last chunk is computed, the
    first 1024 - 128 positions' bf16 logits are alive. With 8 loss chunks of a 1024-token sequence the engine's
    chunks are those."""
    est = loracalc.estimate_memory("llama-3.1-8b", method="qlora", recipe="litgpt", batch_size=1, seq_len=1024,
                                   loss="chunked", loss_chunks=8, gradient_checkpointing=True)
    assert {t.key: t.bytes for t in est.terms + est.off_peak}["logits_so_far"] == 2 * (1024 - 128) * 128_256


def test_litgpt_loop_holds_the_last_steps_output():
    # litgpt/finetune/lora.py fit(): `logits = model(input_ids, lm_head_chunk_size=128)` is replaced only when
    # the next forward returns, so the last step's logits (and, under old bitsandbytes, its kept inputs) are
    # alive in that forward; Hugging Face's Trainer drops them
    kw = dict(method="qlora", rank=32, targets="q,v", batch_size=2, seq_len=512, gradient_checkpointing=False,
              loss="chunked", loss_chunks=4, double_quant=False)
    old = loracalc.estimate_memory("llama-2-7b", recipe="litgpt", old_bitsandbytes=True, **kw)
    new = loracalc.estimate_memory("llama-2-7b", recipe="litgpt", **kw)
    T, V = 1024, 32_000
    terms = {t.key: t.bytes for t in old.terms + old.off_peak}
    assert terms["last_step"] > 2 * T * V and terms["last_step"] - 2 * T * V >= terms["bnb_inputs"]
    assert {t.key: t.bytes for t in new.terms + new.off_peak}["last_step"] == 2 * T * V
    hf = loracalc.estimate_memory("llama-2-7b", recipe="peft", old_bitsandbytes=True, **kw)
    assert "last_step" not in {t.key for t in hf.terms + hf.off_peak}


def test_kbit_upcast_overrides_the_recipe():
    # fms-acceleration's bnb plugin calls peft's get_peft_model (fp32 adapters) but its own copy of
    # prepare_model_for_kbit_training without the upcast: recipe peft with kbit_upcast none
    kw = dict(method="qlora", rank=16, targets="q,k,v,o", batch_size=4, seq_len=4096)
    peft = loracalc.estimate_memory("mistral-7b", **kw)
    plain = loracalc.estimate_memory("mistral-7b", kbit_upcast="none", **kw)
    tt = loracalc.estimate_memory("mistral-7b", recipe="torchtune", adapter_dtype="fp32", **kw)
    keys = {t.key for t in plain.terms + plain.off_peak}
    assert "kbit_upcast" in {t.key for t in peft.terms} and "kbit_upcast" not in keys
    assert plain.settings["kbit_upcast"] == "none" and peft.settings["kbit_upcast"] == "all"
    # the same stream and weights as torchtune's stack with fp32 adapters; only the optimizer step differs
    same = ("weights_4bit", "weights_16bit", "activations", "recomputed", "logits")
    assert [plain.term(k).bytes for k in same if k in keys] == [tt.term(k).bytes for k in same if k in keys]
    with pytest.raises(loracalc.LoraCalcError) as e:
        loracalc.estimate_memory("mistral-7b", kbit_upcast="some", **kw)
    assert e.value.field == "kbit_upcast"
    # a 16-bit base has nothing to upcast: the override changes nothing there
    assert loracalc.estimate_memory("mistral-7b", method="lora", kbit_upcast="all").total_bytes == \
        loracalc.estimate_memory("mistral-7b", method="lora").total_bytes


def test_litgpt_quantizes_every_linear_even_where_transformers_does_not():
    # transformers' load_in_4bit leaves Falcon's FalconLinear layers in 16 bit (measured, families.py);
    # LitGPT builds Falcon from plain nn.Linear and Lightning's plugin replaces every one with NF4
    from loracalc import nf4
    arch = loracalc.model_from_config({"model_type": "falcon", "hidden_size": 4544, "num_hidden_layers": 32,
                                       "num_attention_heads": 71, "multi_query": True, "parallel_attn": True,
                                       "bias": False, "vocab_size": 65024, "tie_word_embeddings": False})
    kw = dict(method="qlora", targets="all-linear", double_quant=False)
    hf = {t.key: t.bytes for t in loracalc.estimate_memory(arch, **kw).terms}
    lit = {t.key: t.bytes for t in loracalc.estimate_memory(arch, recipe="litgpt", **kw).terms}
    layers = [(r.weight, r.copies) for r in arch.layer_linears()]
    head = arch.vocab_size * arch.hidden_size      # LitGPT's output layer is quantized too
    assert lit["weights_4bit"] == nf4.tensor_storage_bytes(head, 64, False) + sum(
        nf4.tensor_storage_bytes(w, 64, False) * n for w, n in layers)
    assert hf.get("weights_4bit", 0) == 0 and hf["weights_16bit"] >= 2 * sum(w * n for w, n in layers)


def test_dora_transient_is_weight_sized_and_alive_in_a_dora_forward():
    # peft's DoRA forward builds weight-sized tensors for the weight norm (measured against peft in
    # test_memory_stacks.py): no DoRA, no term; the same bytes whatever the tokens
    plain = estimate_memory("llama-3.1-8b", method="qlora")
    assert "dora_transient" not in {t.key for t in plain.terms + plain.off_peak}
    small, big = (estimate_memory("llama-3.1-8b", method="qlora", dora=True, seq_len=n, batch_size=b)
                  for n, b in ((512, 1), (4096, 2)))
    transient = {t.key: t.bytes for t in small.terms + small.off_peak}["dora_transient"]
    assert transient == {t.key: t.bytes for t in big.terms + big.off_peak}["dora_transient"] > 0
    # checkpointing: alive while backward recomputes a layer, not with that backward's dequantized weight;
    # a loss small next to it (Cut Cross-Entropy) leaves that moment the peak
    est = estimate_memory("llama-3.1-8b", method="qlora", dora=True, seq_len=512, loss="cce")
    keys = {t.key for t in est.terms}
    assert any(n.startswith("peak at the recompute of a DoRA layer in backward") for n in est.notes)
    assert {"dora_transient", "recomputed", "adapter_grads"} <= keys and "dequant_layer" not in keys
    # without checkpointing: alive in the forward, over every activation kept so far, before any logits
    est = estimate_memory("llama-3.1-8b", method="qlora", dora=True, seq_len=512, loss="cce",
                          gradient_checkpointing=False)
    keys = {t.key for t in est.terms}
    assert any(n.startswith("peak at the forward through a DoRA layer") for n in est.notes)
    assert {"dora_transient", "activations", "dora_activations"} <= keys and not keys & {"logits", "adapter_grads"}
