"""Memory for preference and RL tuning (DPO, ORPO, SimPO, KTO, GRPO) as TRL 1.16 runs them, built on the
supervised estimate (``estimate_memory``) with what each trainer adds.

What each trainer does, from its source (trl/trainer/*.py, trl/experimental/*):

* **DPO** (``DPOTrainer``): the chosen and the rejected answers of each pair go through the model in one forward,
  stacked, so the policy keeps activations for 2 x batch sequences; the log-probabilities come from TRL's fused
  head (``add_fused_lm_head``: tiles of the output layer over the scored positions; it saves its input and one fp32
  log-normaliser per token, so it is counted as the ``cce`` loss). The reference log-probabilities are a second
  forward of the same 2 x batch under ``torch.no_grad`` right after the policy's: with peft and no reference model,
  on the same weights with the adapter switched off (``use_adapter``); otherwise on a second model
  (``ref_model``), or read from the dataset (``precompute_ref_log_probs``).
* **ORPO** and **SimPO** (``trl.experimental``'s ORPO and CPO trainers): chosen and rejected in one forward as well,
  no reference model; their log-softmax runs over full logits (counted as the ``full`` loss).
* **KTO**: unpaired answers (batch), plus a mismatched "KL" batch scored under ``no_grad``; a reference as DPO.
* **GRPO** (``GRPOTrainer``): generation first, under ``no_grad``: ``generation_batch_size`` = batch x
  ``steps_per_generation`` (= gradient accumulation by default) sequences at once per device, each holding a KV
  cache of prompt + completion tokens (``model.generate``), or a vLLM engine sharing the card (``colocate``,
  a fixed share of its memory) or on other GPUs (``server``). Then training on batch completions per
  micro-step through the fused head. ``beta`` is 0 by default, so no reference model; with ``beta`` > 0 and
  peft, the adapter switched off gives the reference, scored under ``no_grad`` batch by batch.

A forward under ``no_grad`` keeps nothing for backward: it holds one layer's working tensors at a time. That is
counted as the ``reference_forward`` term: the layer's input and output streams and its widest projection's
output, three times (an MLP's gate, up and their product), for every token of the batch (an upper bound of one
layer's transient, not measured per family).
"""
from __future__ import annotations

from typing import Any

from .choices import GENERATIONS, OBJECTIVES, REFERENCES
from .errors import LoraCalcError, as_choice, as_float, as_int
from .memory import estimate_memory
from .models import Architecture, get_model
from .peaks import ORDER, moments
from .recipes import HOLDS_LAST_STEP
from .serving import kv_cache_bytes
from .terms import MemoryEstimate, Term, gb, term

# --8<-- [start:objectives]
PAIRED = ("dpo", "orpo", "simpo")          # chosen and rejected stacked into one batch
LOSS = {"dpo": "cce", "kto": "cce", "grpo": "cce", "orpo": "full", "simpo": "full"}   # TRL's fused head = cce
DEFAULT_REFERENCE = {"dpo": "adapter-off", "kto": "adapter-off", "grpo": "none", "orpo": "none", "simpo": "none"}
DEFAULT_VLLM_SHARE = 0.3                   # GRPOConfig.vllm_gpu_memory_utilization's default
# --8<-- [end:objectives]


def _no_grad_forward(arch: Architecture, tokens: int, stream_bytes: int) -> tuple[int, str]:
    """One layer's working tensors in a forward without gradients, over `tokens` tokens (the upper bound above)."""
    h = arch.hidden_size
    widest = max(r.d_out for r in arch.layer_linears())
    per_token = 2 * h + 3 * widest
    return (stream_bytes * per_token * tokens,
            f"{stream_bytes} B x {tokens:,} tokens x (2 x {h:,} streams + 3 x {widest:,} widest outputs)")


def _reference_weights(base: MemoryEstimate) -> Term:
    """A second base model for the reference: the policy's stored base weights again (4-bit stays 4-bit; a full
    fine-tune's reference is its bf16 copy, without fp32 masters)."""
    keys = ("weights_4bit", "weights_8bit", "weights_quantized", "weights_16bit", "weights")
    parts = [t for t in base.terms if t.key in keys]
    total = sum(t.bytes for t in parts)
    return term("reference_weights", "Reference model: a second copy of the base weights", total,
                " + ".join(f"{gb(t.bytes)} ({t.label.lower()})" for t in parts))


def preference_memory(model: Any, objective: Any = "dpo", *, reference: Any = None, batch_size: Any = 1,
                      seq_len: Any = 2048, generation: Any = "generate", num_generations: Any = 8,
                      completion_len: Any = 512, vllm_share: Any = DEFAULT_VLLM_SHARE, gpu_bytes: Any = None,
                      **memory_kwargs) -> MemoryEstimate:
    """Memory for one training step of OBJECTIVE (see OBJECTIVES), per GPU.

    batch_size is what TRL's per_device_train_batch_size means: pairs for DPO/ORPO/SimPO, answers for KTO,
    completions for GRPO. seq_len is the longest prompt + answer (GRPO: prompt + completion_len, TRL's
    max_completion_length).
    The other keyword arguments are estimate_memory's (method, rank, optimizer, gradient_accumulation, ...).
    """
    objective = as_choice(objective, "objective", OBJECTIVES, "training objective")
    if objective == "sft":
        return estimate_memory(model, batch_size=batch_size, seq_len=seq_len, **memory_kwargs)
    arch = model if isinstance(model, Architecture) else get_model(model)
    batch = as_int(batch_size, "batch_size", 1, 100_000, "batch size (per device)")
    reference = as_choice("default" if reference is None else reference, "reference", REFERENCES, "reference model")
    method = memory_kwargs.get("method", "qlora")
    if reference == "default":   # TRL: peft's adapter switched off when there is one, else a second model
        reference = DEFAULT_REFERENCE[objective]
        if reference == "adapter-off" and method == "full":
            reference = "separate"
    if objective in ("orpo", "simpo") and reference != "none":
        raise LoraCalcError("reference", f"{objective.upper()} has no reference model; use reference='none'")
    if reference == "adapter-off" and method == "full":
        raise LoraCalcError("reference", "a full fine-tune has no adapter to switch off: use reference='separate' "
                                         "or 'precomputed'")
    memory_kwargs.setdefault("loss", LOSS[objective])
    rows = 2 * batch if objective in PAIRED else batch
    base = estimate_memory(arch, batch_size=rows, seq_len=seq_len, **memory_kwargs)
    s = base.settings
    T = rows * s["seq_len"]
    extra_static: list[Term] = []
    extra_moments: dict[str, tuple[list[str], list[Term]]] = {}
    notes = [f"{objective.upper()} as TRL 1.16 runs it: {OBJECTIVES[objective]}"]
    stream = 2                                        # the bf16 residual stream
    if reference == "separate":
        extra_static.append(_reference_weights(base))
    if reference in ("adapter-off", "separate") or objective == "kto":
        ref = term("reference_forward", "Reference forward without gradients (one layer at a time, transient)",
                   *_no_grad_forward(arch, T, stream))
        # right after the policy's forward: everything it keeps is alive (and earlier micro-batches' gradients)
        extra_moments["reference forward (no gradients)"] = (["activations", "vision_activations", "bnb_inputs",
                                                              "dora_activations"], [ref],
                                                             True)
    if objective == "grpo":
        _grpo(arch, batch, s, generation, num_generations, completion_len, vllm_share, gpu_bytes, extra_static,
              extra_moments, notes)
    return _assemble(base, extra_static, extra_moments, notes, objective, reference, batch)


def _grpo(arch, batch, s, generation, num_generations, completion_len, vllm_share, gpu_bytes, extra_static,
          extra_moments, notes) -> None:
    """GRPO's generation: TRL generates generation_batch_size = batch x steps_per_generation sequences at once, at
    the start of an optimizer step (no gradients alive yet)."""
    generation = as_choice(generation, "generation", GENERATIONS, "where completions are generated")
    groups = as_int(num_generations, "num_generations", 2, 4096, "completions per prompt (num_generations)")
    completion = as_int(completion_len, "completion_len", 1, s["seq_len"],
                        "completion length (max_completion_length; at most seq_len)")
    prompt = s["seq_len"] - completion
    at_once = batch * s["gradient_accumulation"]
    if at_once % groups:
        raise LoraCalcError("num_generations", f"TRL needs the generation batch (batch x accumulation = {at_once}) to "
                                               f"be a multiple of num_generations ({groups})")
    prompts = at_once // groups
    notes.append(f"{at_once} completions generated at once ({prompts} prompt{'s' if prompts > 1 else ''} x {groups}), then trained "
                 f"on {batch} per micro-step")
    if generation == "generate":
        kv = kv_cache_bytes(arch, s["seq_len"])["sequence"]
        cache = term("kv_cache", "KV cache while generating (no gradients)", kv * at_once,
                     f"{gb(kv)} per sequence of {s['seq_len']:,} tokens x {at_once} sequences")
        # the prompts' forward (prefill) is the largest generation step: every prompt token at once
        step = term("generation_forward", "Prompt forward while generating, one layer at a time (transient)",
                    *_no_grad_forward(arch, at_once * max(prompt, 1), 2))
        extra_moments["generation"] = (["dequant_layer"], [cache, step], False)
    elif generation == "vllm-colocate":
        if gpu_bytes is None:
            raise LoraCalcError("gpu", "vLLM colocated with training reserves a share of the card: give the GPU")
        share = as_float(vllm_share, "vllm_share", 0.05, 0.95, "vLLM's share of the card (gpu_memory_utilization)")
        extra_static.append(term("vllm_pool", f"vLLM engine (colocated): {share:.0%} of the card", share * gpu_bytes,
                                 f"{share:g} x {gb(gpu_bytes)} (vllm_gpu_memory_utilization; its weights and KV cache)"))
    else:
        notes.append("generation runs on a vLLM server's GPUs: nothing of it on the training card")


def _assemble(base: MemoryEstimate, extra_static: list[Term], extra_moments: dict, notes: list[str],
              objective: str, reference: str, batch: int) -> MemoryEstimate:
    """The base estimate's terms with the objective's: the peak chosen again over every moment."""
    s = base.settings
    dyn_keys = set(ORDER) | {"adapter_grads", "gradients"}
    every = base.terms + base.off_peak
    dyn = {t.key: t for t in every if t.key in dyn_keys}
    static = [t for t in base.terms if t.key not in dyn_keys and t.pool == "allocated"] + extra_static
    grad_key = "gradients" if "gradients" in dyn else "adapter_grads"
    alive = moments(grad_key, s["gradient_checkpointing"], s["dora"], HOLDS_LAST_STEP[s["recipe"]],
                    s["gradient_accumulation"])
    for name, (keys, terms, with_grads) in extra_moments.items():
        dyn.update({t.key: t for t in terms})
        alive[name] = keys + [t.key for t in terms] + ([grad_key] if with_grads and s["gradient_accumulation"] > 1
                                                        else [])
    order = list(ORDER) + [k for k in dyn if k not in ORDER and k not in ("adapter_grads", "gradients")]
    alive = {k: [x for x in v if x in dyn] for k, v in alive.items()}
    peak_at = max(alive, key=lambda k: sum(dyn[x].bytes for x in alive[k]))
    shown = [grad_key] + order
    on = [dyn[k] for k in shown if k in dyn and k in alive[peak_at]]
    off = [dyn[k] for k in shown if k in dyn and k not in alive[peak_at]]
    terms = static + on
    # the host terms and the allocator's reserve, sized by the base run (whose batch is the rows per forward)
    terms += [t for t in base.terms if t.key not in dyn_keys and t.pool != "allocated"]
    kept = [n for n in base.notes if not n.startswith("peak at the ")]
    notes.append(f"peak at the {peak_at}; not alive then: "
                 + (", ".join(f"{t.label.lower()} {gb(t.bytes)}" for t in off) or "nothing"))
    settings = dict(s, objective=objective, reference=reference, batch_size=batch,
                    rows_per_forward=s["batch_size"])
    return MemoryEstimate(model=base.model, settings=settings, terms=tuple(terms), approximate=base.approximate,
                          notes=tuple(notes + kept), host=base.host, off_peak=tuple(off))


__all__ = ["GENERATIONS", "OBJECTIVES", "REFERENCES", "preference_memory"]
