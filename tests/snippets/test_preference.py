"""Preference and RL tuning (loracalc.preference) against what TRL 1.16 does: which forwards run, on how many
sequences, with or without gradients and the adapter; how many completions GRPO generates at once; and the
bytes autograd keeps in a real DPO step on CPU. The fast tests hold the engine to those facts; the slow ones
observe them in TRL itself."""
from __future__ import annotations

import os
import sys

import pytest

import loracalc
from loracalc.preference import preference_memory
from loracalc.serving import kv_cache_bytes

MODEL = "llama-3.1-8b"


def _keys(est):
    return {t.key for t in est.terms}


def test_dpo_stacks_chosen_and_rejected_into_one_forward():
    """trl/trainer/dpo_trainer.py _compute_loss: one model call on the batch [chosen, rejected] (logps.chunk(2)),
    through the fused head (no full logits): activations as for 2 x batch sequences with the cce-like loss."""
    dpo = preference_memory(MODEL, "dpo", batch_size=3, seq_len=512)
    sft = loracalc.estimate_memory(MODEL, batch_size=6, seq_len=512, loss="cce")
    assert dpo.term("activations").bytes == sft.term("activations").bytes
    assert dpo.settings["rows_per_forward"] == 6 and dpo.settings["batch_size"] == 3


def test_orpo_and_simpo_have_full_logits_and_no_reference():
    """trl.experimental's ORPO and CPO trainers log-softmax over the full logits; they build no reference model."""
    for objective in ("orpo", "simpo"):
        est = preference_memory(MODEL, objective, batch_size=1, seq_len=512)
        assert est.settings["loss"] == "full" and "reference_forward" not in _keys(est) | {t.key for t in est.off_peak}
        with pytest.raises(loracalc.LoraCalcError) as err:
            preference_memory(MODEL, objective, reference="separate")
        assert err.value.field == "reference"


def test_a_separate_reference_stores_the_base_again():
    """A reference model without peft is the base loaded again (TRL's create_model_from_path, with the same
    quantization_config): the policy's stored base weights a second time, nothing trainable."""
    for method, keys in (("qlora", ("weights_4bit", "weights_16bit")), ("lora", ("weights",))):
        off = preference_memory(MODEL, "dpo", method=method)
        sep = preference_memory(MODEL, "dpo", method=method, reference="separate")
        assert sep.term("reference_weights").bytes == sum(off.term(k).bytes for k in keys)
    with pytest.raises(loracalc.LoraCalcError) as err:
        preference_memory(MODEL, "dpo", method="full", reference="adapter-off")
    assert err.value.field == "reference"


def test_grpo_generation_batch_must_divide_into_groups():
    """GRPOConfig.__post_init__: generation_batch_size (batch x steps_per_generation, = accumulation by default)
    must be a multiple of num_generations."""
    with pytest.raises(loracalc.LoraCalcError) as err:
        preference_memory(MODEL, "grpo", batch_size=3, gradient_accumulation=1, num_generations=8)
    assert err.value.field == "num_generations"
    preference_memory(MODEL, "grpo", batch_size=4, gradient_accumulation=2, num_generations=8)


def test_grpo_kv_cache_is_every_generated_sequence_at_once():
    """transformers' generate keeps a cache per sequence (checked against DynamicCache in test_serving.py);
    TRL generates batch x accumulation sequences of prompt + completion at once."""
    est = preference_memory(MODEL, "grpo", batch_size=8, gradient_accumulation=4, seq_len=1024)
    arch = loracalc.get_model(MODEL)
    cache = next(t for t in est.terms + est.off_peak if t.key == "kv_cache")
    assert cache.bytes == 32 * kv_cache_bytes(arch, 1024)["sequence"]
    served = preference_memory(MODEL, "grpo", batch_size=8, gradient_accumulation=4, seq_len=1024,
                               generation="vllm-server")
    assert "kv_cache" not in {t.key for t in served.terms + served.off_peak}
    colocated = preference_memory(MODEL, "grpo", batch_size=8, gradient_accumulation=4, seq_len=1024,
                                  generation="vllm-colocate", gpu_bytes=80e9)
    assert colocated.term("vllm_pool").bytes == pytest.approx(0.3 * 80e9)   # GRPOConfig's 0.3 default


# ----------------------------------------------------------------------------------------------- real TRL, slow
TINY = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 512,
        "tie_word_embeddings": False}


def _tiny(tmp_path):
    """A tiny Llama with the labs' tokenizer (chat template), saved as a Hub model, and a LoRA on it."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    import torch
    from gpu_labs import labmodels
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    tok = labmodels.build_tokenizer(chat_template=True)
    cfg = LlamaConfig(**{k: v for k, v in TINY.items() if k != "model_type"}, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg.vocab_size = len(tok)
    torch.manual_seed(0)
    # bf16 weights, as the engine's LoRA counts them (peft keeps the adapters in fp32)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.bfloat16)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return tmp_path / "m", tok, lora, get_peft_model


class _Calls:
    """Records every forward of the model: rows, tokens, whether autograd is on, and which adapter answers
    (None when peft's adapters are switched off)."""

    def __init__(self, peft_model):
        import torch
        self.rows: list[tuple[int, int, bool, str | None]] = []
        base = peft_model.get_base_model()

        def hook(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is not None:
                lora = base.model.layers[0].self_attn.q_proj
                active = None if lora.disable_adapters else lora.active_adapters[0]
                self.rows.append((ids.shape[0], ids.shape[1], torch.is_grad_enabled(), active))
        base.model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.slow
def test_trl_dpo_runs_policy_then_reference_on_2x_batch(tmp_path):
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(1)
    path, tok, lora, get_peft_model = _tiny(tmp_path)
    from transformers import AutoModelForCausalLM
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16), lora)
    rows = [{"prompt": [{"role": "user", "content": f"Say a word number {i}."}],
             "chosen": [{"role": "assistant", "content": "yes"}], "rejected": [{"role": "assistant", "content": "no"}]}
            for i in range(8)]
    args = DPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=1, report_to="none",
                     use_cpu=True, logging_steps=1, save_strategy="no", gradient_checkpointing=False,
                     bf16=False, fp16=False)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    calls = _Calls(trainer.model)
    trainer.train()
    train = [c for c in calls.rows]
    # the policy's forward with gradients and the trained adapter, then the reference's without gradients, with
    # peft's adapters off or (a PeftModel handed in: TRL copies its adapter as "ref") the untrained copy; both 2 x 4
    assert train[0][0] == 8 and train[0][2] and train[0][3] == "default", train
    assert train[1][0] == 8 and not train[1][2] and train[1][3] in (None, "ref"), train
    assert len(train) == 2, train


@pytest.mark.slow
def test_trl_dpo_saved_activations_match_the_estimate(tmp_path):
    """The bytes autograd keeps during a real DPO step (policy forward + reference forward + loss) against the
    engine's activation and loss terms for 2 x batch sequences (eager backward, no checkpointing, fp32)."""
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "gpu_labs"))
    import memory_measure as mm

    torch.set_num_threads(1)
    path, tok, lora, get_peft_model = _tiny(tmp_path)
    from transformers import AutoModelForCausalLM
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16), lora)
    answer = " ".join(["word"] * 40)
    rows = [{"prompt": [{"role": "user", "content": "Say it " * 10}],
             "chosen": [{"role": "assistant", "content": answer}], "rejected": [{"role": "assistant", "content": answer}]}
            for _ in range(4)]
    args = DPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=1, report_to="none",
                     use_cpu=True, save_strategy="no", gradient_checkpointing=False, bf16=False, fp16=False)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    seq = batch["input_ids"].shape[1]
    tracker = mm.SavedTensorTracker(mm.storage_ptrs(trainer.model))
    with tracker.hooks():
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
    arch = loracalc.model_from_config({**TINY, "vocab_size": len(tok)}, name="tiny")
    est = preference_memory(arch, "dpo", method="lora", rank=8, targets="q,v", batch_size=4, seq_len=seq,
                            gradient_checkpointing=False, adapter_dtype="fp32", autocast=False)
    predicted = est.term("activations").bytes
    print(f"DPO step saved {tracker.peak:,} B, estimate {predicted:,} B ({tracker.peak / predicted - 1:+.2%})")
    assert tracker.peak == pytest.approx(predicted, rel=0.05), (tracker.peak, predicted, seq)


@pytest.mark.slow
def test_trl_grpo_generates_batch_times_accumulation_at_once(tmp_path):
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    path, tok, lora, get_peft_model = _tiny(tmp_path)
    from transformers import AutoModelForCausalLM
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16), lora)
    seen = []
    original = model.generate

    def generate(*a, **kw):
        seen.append(kw["input_ids"].shape[0] if "input_ids" in kw else a[0].shape[0])
        return original(*a, **kw)
    model.generate = generate
    rows = [{"prompt": [{"role": "user", "content": f"Count to {i}."}]} for i in range(16)]
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=2,
                      num_generations=4, max_completion_length=8, max_steps=1, report_to="none", use_cpu=True,
                      save_strategy="no", bf16=False, fp16=False, logging_steps=1)
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **_: [float(len(c)) for c in completions],
                          args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    assert trainer.ref_model is None               # beta = 0.0 by default: no reference
    trainer.train()
    assert seen and seen[0] == 4 * 2, seen          # batch x steps_per_generation (= accumulation)
    est = preference_memory(loracalc.model_from_config({**TINY, "vocab_size": len(tok)}, name="tiny"), "grpo",
                            method="lora", rank=8, targets="q,v", batch_size=4, gradient_accumulation=2,
                            num_generations=4, seq_len=64, completion_len=8)
    assert any("8 completions generated at once" in n for n in est.notes)
