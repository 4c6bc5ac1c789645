"""Training time and cost: FLOPs per step from the model's tensor records, turned into seconds with the GPU's
peak dense bf16 throughput, memory bandwidth and link bandwidth, and an efficiency calibrated on published runs.

What one optimizer step costs (``T`` tokens on one GPU, ``W`` the weight entries a token passes through,
counted from the same ``Record`` s as parameters and memory, routed experts at their top-k share):

- forward: ``2 T W`` for the matmuls, the output layer's ``2 T h V`` included, plus attention's
  ``4 b s^2 (heads x head_dim)`` per layer (half of it with a causal fused kernel, which skips masked
  blocks; eager attention computes the whole score matrix), plus the adapters' ``2 T r (d_in + d_out)``;
- backward: a weight that trains needs the input gradient and the weight gradient (twice its forward), a
  frozen one only the input gradient (once its forward); attention's backward is twice its forward, the
  adapters' too. Nothing before the first layer trains under LoRA, so that layer's attention projections
  (and their adapters) compute no input gradient (except under checkpointing, below). Full fine-tuning of a dense model with short sequences
  comes to Kaplan's ``6 N`` FLOPs per token;
- gradient checkpointing runs each layer's forward once more in backward (the output layer not), as reentrant
  checkpointing does (transformers' default); torch's non-reentrant checkpoint stops recomputing after the last
  tensor backward needs, which skips each layer's last matmul (a few percent fewer FLOPs, not modelled);
- QLoRA and LLM.int8 dequantize each quantized weight in every pass that uses it (forward, recompute,
  backward): a memory-bandwidth cost of reading the stored bytes and writing and reading a 16-bit copy;
- DoRA computes each adapted weight's column norm from ``W + B A`` in every pass: a rank-r matmul of the
  weight's size and a read of the weight;
- the optimizer step reads and writes the trainable parameters, their gradients and the optimizer state;
- offloading moves the offloaded bytes over PCIe each step; DDP all-reduces the gradients and FSDP
  all-gathers the parameters (once per pass) and reduce-scatters the gradients over the GPUs' link.

Preference and RL objectives (``objective``; what each trainer runs is in ``loracalc.preference``, from TRL's
source): DPO, ORPO and SimPO train on chosen and rejected stacked, 2 x batch sequences; DPO and KTO add a forward
of the reference without gradients over the same sequences (none when the reference is precomputed), KTO also a
no-gradient forward of its KL batch. GRPO first generates batch x accumulation completions at once: the prompts'
forward (compute-bound) and one decode step per completion token, each the larger of its matmul time and the time
to read the weights and every sequence's KV cache (memory-bound at small batches); a reference forward only with
a reference (beta > 0). A forward without gradients costs the frozen model's forward FLOPs (and a quantized base's
dequantization, once).

The matmul FLOPs divide by ``peak x efficiency`` (one efficiency per training stack, calibrated on
published measurements: ``EFFICIENCY``); the byte terms divide by the bandwidths at ``BANDWIDTH_EFFICIENCY``.
The terms are added (no overlap assumed), so multi-GPU and offloaded runs are pessimistic where the stacks
overlap communication with compute.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import LoraCalcError, as_choice, as_int
from .gpus import get_gpu
from .models import get_model
from .params import count_params
from .families import TOWER_LABELS, is_4bit
from .preference import DEFAULT_REFERENCE, PAIRED
from .serving import kv_cache_bytes

# --8<-- [start:efficiency]
# Share of the GPU's peak dense bf16 throughput a stack's matmuls reach (model FLOPs utilisation), fitted so that
# the median ratio of predicted to published time is 1 on the calibration points of
# lora_course/data/published_speed.json (every point whose "calibrate" is true; tests/snippets/test_speed.py
# refits them and checks these values). "eager": PyTorch eager mode (transformers + peft + HF Trainer with
# FlashAttention-2 or SDPA, or torchtune without compile); "fused": the same with fused Triton kernels for LoRA, RoPE,
# norms and cross-entropy (fms-acceleration's foak); "compiled": torchtune with torch.compile.
EFFICIENCY = {"eager": 0.506, "fused": 0.628, "compiled": 0.648}
# --8<-- [end:efficiency]
STACKS = {"eager": "PyTorch eager (transformers + peft + HF Trainer; torchtune without compile)",
          "fused": "eager with fused LoRA / norm / loss kernels (fms-acceleration foak, Liger)",
          "compiled": "torch.compile (torchtune compile: True)"}
BANDWIDTH_EFFICIENCY = 0.8   # share of the nominal memory, PCIe and link bandwidth a copy kernel or NCCL reaches
QUANT_STORED_BYTES = {"qlora": 0.516, "lora_8bit": 1.0}   # bytes per weight read to dequantize (NF4 + absmax; int8)
COMPUTE_BYTES = 2           # the dequantized copy and every 16-bit weight
OPT_STATE_BYTES = {"adamw": 8, "adamw_8bit": 2, "paged_adamw": 8, "paged_adamw_8bit": 2, "sgd": 4}
STRATEGIES = ("single", "ddp", "shard-grad-op", "full-shard")
MAX_TOKENS = 10**15


@dataclass(frozen=True)
class StepFlops:
    """Matmul FLOPs of one optimizer step on one GPU (one micro-batch times the accumulation steps)."""

    forward: int
    backward: int
    recompute: int
    tokens: int

    @property
    def total(self) -> int:
        return self.forward + self.backward + self.recompute

    def to_dict(self) -> dict[str, int]:
        return {"forward": self.forward, "backward": self.backward, "recompute": self.recompute,
                "total": self.total, "tokens": self.tokens}


# --8<-- [start:flops]
def step_flops(model: Any, method: str = "qlora", rank: int = 16, targets: Any = "all-linear",
               batch_size: int = 1, seq_len: int = 2048, gradient_checkpointing: bool = True,
               attention: str = "sdpa", gradient_accumulation: int = 1) -> StepFlops:
    """Forward, backward and recompute FLOPs of one step, summed over the model's tensor records."""
    arch = get_model(model)
    b, s = as_int(batch_size, "batch_size", 1, 1 << 20), as_int(seq_len, "seq_len", 1, 1 << 24)
    T = b * s
    full = method == "full"
    L = arch.num_hidden_layers
    layer_w = 0       # weight entries a token meets in the decoder layers (routed experts at top_k)
    first_attn_w = 0  # one layer's projections reading the attention input (their input gradient is skipped)
    for r in arch.text_records():      # a vision-language model's tower runs on patches, not on these tokens
        if r.kind in ("linear", "conv1d", "router") and r.role != "head":
            layer_w += r.weight * r.copies
            if r.reads == "attn_in" and not full:
                first_attn_w += r.weight
        elif r.kind == "experts":
            layer_w += r.weight * r.top_k // r.experts * r.copies
    head_w = arch.hidden_size * arch.vocab_size
    causal = 1.0 if attention == "eager" else 0.5
    attn = int(4 * b * s * s * arch.num_attention_heads * arch.head_dim * L * causal)
    lora = first_lora_in = 0
    if not full:
        # the tower's adapters are skipped below: count the language model's alone (the tower may refuse a name)
        pc = count_params(arch, rank, targets, adapt="language" if arch.vision else None)
        for m in pc.per_module:
            if m.name.startswith(TOWER_LABELS):
                continue
            share = 1.0
            if m.kind == "experts":
                rec = next(x for x in arch.records if x.kind == "experts" and f"experts.{x.name}" == m.name)
                share = rec.top_k / rec.experts
            lora += int(m.lora_params * m.copies * share)
            if m.name in {x.name for x in arch.records if x.reads == "attn_in"}:
                first_lora_in += m.rank * m.d_in
    fwd_layers = 2 * T * layer_w + attn + 2 * T * lora
    forward = fwd_layers + 2 * T * head_w
    # backward: trained weights twice their forward, frozen ones once; attention and adapters twice
    weights_bwd = (2 if full else 1) * 2 * T * (layer_w + head_w)
    backward = weights_bwd + 2 * attn + 2 * 2 * T * lora
    if not full and not gradient_checkpointing:
        # reentrant checkpointing needs the embeddings' output to require grad (transformers' and peft's
        # enable_input_require_grads), so with it the first layer computes its input gradients too
        backward -= 2 * T * (first_attn_w + first_lora_in)
    recompute = fwd_layers if gradient_checkpointing else 0
    g = as_int(gradient_accumulation, "gradient_accumulation", 1, 1 << 20)
    return StepFlops(forward * g, backward * g, recompute * g, T * g)
# --8<-- [end:flops]


@dataclass(frozen=True)
class TimeEstimate:
    model: str
    gpu: str
    gpus: int
    strategy: str
    stack: str
    flops: StepFlops
    seconds: dict[str, float]          # per step on one GPU, by term
    tokens_per_step: int               # all GPUs together
    total_tokens: int
    price_per_gpu_hour: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def seconds_per_step(self) -> float:
        return sum(self.seconds.values())

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_step / self.seconds_per_step

    @property
    def steps(self) -> float:
        return self.total_tokens / self.tokens_per_step

    @property
    def total_seconds(self) -> float:
        return self.total_tokens / self.tokens_per_second

    @property
    def gpu_hours(self) -> float:
        return self.total_seconds * self.gpus / 3600

    @property
    def cost(self) -> float | None:
        return None if self.price_per_gpu_hour is None else self.gpu_hours * self.price_per_gpu_hour

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "gpu": self.gpu, "gpus": self.gpus, "strategy": self.strategy,
                "stack": self.stack, "efficiency": EFFICIENCY[self.stack], "flops_per_step": self.flops.to_dict(),
                "seconds_by_term": dict(self.seconds), "tokens_per_step": self.tokens_per_step,
                "tokens_per_second": self.tokens_per_second, "seconds_per_step": self.seconds_per_step,
                "steps": self.steps, "total_tokens": self.total_tokens, "total_seconds": self.total_seconds,
                "gpu_hours": self.gpu_hours, "price_per_gpu_hour": self.price_per_gpu_hour, "cost": self.cost,
                "notes": list(self.notes)}


def run_tokens(tokens: Any = None, samples: Any = None, avg_tokens: Any = None, epochs: Any = 1) -> int:
    """Tokens a run trains on: given directly, or samples x average tokens per sample x epochs."""
    if tokens is not None:
        if samples is not None:
            raise LoraCalcError("tokens", "give either tokens or samples with avg_tokens, not both")
        return as_int(tokens, "tokens", 1, MAX_TOKENS)
    if samples is None or avg_tokens is None:
        raise LoraCalcError("tokens", "give the run's size: tokens, or samples with avg_tokens (and epochs)")
    try:
        ep = float(epochs)
    except (TypeError, ValueError):
        raise LoraCalcError("epochs", f"epochs must be a number (got {epochs!r})") from None
    if not (0 < ep <= 10_000):
        raise LoraCalcError("epochs", f"epochs must be between 0 and 10,000 (got {epochs!r})")
    n = as_int(samples, "samples", 1, 10**12) * as_int(avg_tokens, "avg_tokens", 1, 1 << 24) * ep
    if n > MAX_TOKENS:
        raise LoraCalcError("tokens", "the run is larger than 10^15 tokens")
    return max(1, int(n))


def estimate_time(model: Any, gpu: Any, method: Any = "qlora", rank: Any = 16, targets: Any = "all-linear",
                  batch_size: Any = 1, seq_len: Any = 2048, gradient_checkpointing: bool = True,
                  attention: Any = "sdpa", gradient_accumulation: Any = 1, optimizer: Any = "adamw",
                  precision: str = "mixed", dora: bool = False, gpus: Any = 1, strategy: Any = None,
                  offload_optimizer: bool = False, offload_params: bool = False, stack: Any = "eager",
                  recipe: Any = "peft", tokens: Any = None, samples: Any = None, avg_tokens: Any = None, epochs: Any = 1,
                  price_per_gpu_hour: Any = "default", objective: Any = "sft", reference: Any = None,
                  num_generations: Any = 8, completion_len: Any = 512, generation: Any = "generate",
                  base_format: Any = "bf16", adapt: Any = None, **_ignored: Any) -> TimeEstimate:
    """Seconds per step, tokens per second, time, GPU-hours and cost of a run (``tokens``, or ``samples`` x
    ``avg_tokens`` x ``epochs``; one step's tokens when neither is given).

    ``objective`` other than sft (see the module's docstring): batch_size counts pairs (dpo, orpo, simpo), answers
    (kto) or completions (grpo) per device, as TRL's per_device_train_batch_size, and the run is ``samples`` (pairs,
    answers or prompts) x ``epochs``, each sequence ``seq_len`` tokens (GRPO: prompt + ``completion_len``)."""
    from .choices import ATTENTIONS, METHODS
    from .optimizers import OPTIMIZERS
    from .recipes import DEQUANT_COPIES, QUANTIZES_EVERY_LINEAR, RECIPES
    arch = get_model(model)
    card = get_gpu(gpu)
    method = as_choice(method, "method", METHODS)
    as_choice(attention, "attention", ATTENTIONS)
    optimizer = as_choice(optimizer, "optimizer", OPTIMIZERS)
    stack = as_choice(stack, "stack", EFFICIENCY)
    recipe = as_choice(recipe, "recipe", RECIPES)
    n = as_int(gpus, "gpus", 1, 1 << 16)
    strategy = strategy or ("single" if n == 1 else "ddp")
    strategy = as_choice(strategy, "strategy", STRATEGIES)
    if strategy == "single" and n > 1:
        raise LoraCalcError("strategy", "several GPUs need a strategy: ddp, shard-grad-op or full-shard")
    if not card.peak_bf16_tflops:
        raise LoraCalcError("gpu", f"{card.name} has no cited peak throughput in the catalog")
    r = as_int(rank, "rank", 1, 65536)
    obj = _Objective.read(objective, reference, method, batch_size, seq_len, gradient_accumulation,
                          num_generations, completion_len, generation, tokens, avg_tokens)
    fl = step_flops(arch, method, r, targets, obj.rows, seq_len, gradient_checkpointing, attention,
                    gradient_accumulation)
    g = fl.tokens // (obj.rows * int(seq_len))
    bw = card.memory_bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY
    sec: dict[str, float] = {"matmuls": fl.total / (card.peak_bf16_tflops * 1e12 * EFFICIENCY[stack])}
    notes: list[str] = list(obj.notes)
    if arch.vision:
        notes.append("the vision tower's and projector's FLOPs are not counted: text tokens through the language "
                     "model only")
    full = method == "full"
    pc = None if full else count_params(arch, r, targets, adapt=adapt)
    every = QUANTIZES_EVERY_LINEAR[recipe]
    quant_w = sum(rec.weight * rec.copies for rec in arch.records if method in QUANT_STORED_BYTES
                  and is_4bit(rec, arch.family, every))
    stored_w = QUANT_STORED_BYTES.get(method, 0.0)      # bytes per quantized weight at rest
    per = stored_w + 2 * COMPUTE_BYTES * DEQUANT_COPIES[recipe] if quant_w else 0.0
    passes = 3 if gradient_checkpointing else 2
    base = _base_dequant(arch, method, base_format, dora)
    if base:
        # LoRA on a GPTQ, AWQ, HQQ or torchao base: its own dequantization (loracalc.quantized.LORA_BACKWARD)
        quant_w, stored_w, copies, saves = base
        per = stored_w + 2 * COMPUTE_BYTES * copies
        passes = (2 if gradient_checkpointing else 1) + (0 if saves else 1)   # a saved 16-bit weight serves backward
        notes.append(f"the {base_format} base's dequantization is counted from the bytes it reads and writes "
                     "(loracalc.quantized), not from a measured kernel time")
    if quant_w:
        # read the stored bytes, write the 16-bit copy, read it in the matmul; a second copy (LitGPT casts from the
        # fp16 quant state to bf16) is written and read once more
        sec["dequantize"] = g * passes * quant_w * per / bw
    sec.update(obj.seconds(arch, card, stack, g, (quant_w, per), r, targets, attention, method))
    if dora and pc is not None:
        passes = 3 if gradient_checkpointing else 2
        dw = sum(m.frozen_params * m.copies for m in pc.per_module)
        sec["dora_norm"] = g * passes * dw * COMPUTE_BYTES / bw + \
            g * passes * 2 * dw * r / (card.peak_bf16_tflops * 1e12 * EFFICIENCY[stack])
    trainable = arch_total = 0
    from .models import total_params
    arch_total = total_params(arch)
    trainable = arch_total if full else pc.lora_params
    w_bytes = 4 if (full and precision == "mixed") or (not full) else 2
    opt_bytes = trainable * (2 * OPT_STATE_BYTES[optimizer] + 2 * w_bytes + w_bytes)
    shard = n if strategy in ("shard-grad-op", "full-shard") else 1
    if offload_optimizer:
        sec["offload"] = 2 * trainable * w_bytes / shard / (card.pcie_gbs * 1e9 * BANDWIDTH_EFFICIENCY)
        notes.append("the optimizer steps on the CPU; its time there is not counted")
    else:
        sec["optimizer"] = opt_bytes / shard / bw
    if offload_params:
        sec["offload"] = sec.get("offload", 0.0) + g * 2 * arch_total * COMPUTE_BYTES / shard / (
            card.pcie_gbs * 1e9 * BANDWIDTH_EFFICIENCY)
    if n > 1:
        link = card.link_gbs * 1e9 * BANDWIDTH_EFFICIENCY
        ring = (n - 1) / n
        grad_bytes = trainable * w_bytes
        if strategy == "ddp":
            comm = 2 * ring * grad_bytes
        else:
            stored = arch_total * COMPUTE_BYTES if not quant_w else \
                (arch_total - quant_w) * COMPUTE_BYTES + quant_w * stored_w
            gathers = 1 if strategy == "shard-grad-op" else (3 if gradient_checkpointing else 2)
            comm = g * gathers * ring * stored + ring * grad_bytes
        sec["communication"] = comm / link
    if price_per_gpu_hour == "default":
        price = card.price_per_hour or None
    elif price_per_gpu_hour is None:
        price = None
    else:
        try:
            price = float(price_per_gpu_hour)
        except (TypeError, ValueError):
            raise LoraCalcError("price_per_gpu_hour", f"price must be a number (got {price_per_gpu_hour!r})") \
                from None
        if not (0 <= price <= 10_000):
            raise LoraCalcError("price_per_gpu_hour", f"price must be between 0 and 10,000 (got {price})")
    per_step = fl.tokens * n
    if obj.objective != "sft" and samples is not None:
        # the run in pairs, answers or prompts: each brings the tokens one of them adds to a step
        total = max(1, int(run_tokens(None, samples, 1, epochs) * per_step / (obj.samples_per_micro_step * g * n)))
    else:
        total = per_step if tokens is None and samples is None else run_tokens(tokens, samples, avg_tokens, epochs)
    return TimeEstimate(arch.name, card.name, n, strategy, stack, fl, sec, per_step, total, price, tuple(notes))


def _base_dequant(arch, method: str, base_format: Any, dora: bool = False) -> tuple[int, float, int, bool] | None:
    """(quantized weights, stored bytes per weight, 16-bit weight-sized tensors written per dequantization, whether
    autograd saves the copy for backward) for LoRA on a base another library quantized; None for a bf16 base."""
    from .quantized import LORA_BACKWARD, quantized_linears
    from .run_settings import _base_format
    fmt = _base_format(base_format, method, dora)      # the memory estimate's checks and messages
    if fmt == "bf16":
        return None
    q_bytes, n = quantized_linears(arch, fmt)
    if not n:
        return None                                     # nothing this format quantizes in the model
    b = LORA_BACKWARD[fmt]
    return n, q_bytes / n, b.transient_copies + (1 if b.saves_weight else 0), b.saves_weight


@dataclass(frozen=True)
class _Objective:
    """What a preference or RL objective adds to a step's time, read from estimate_time's arguments."""
    objective: str
    reference: str
    rows: int                   # sequences the policy trains on per micro-step
    samples_per_micro_step: float   # pairs, answers or prompts
    seq_len: int
    completion: int
    at_once: int                # GRPO: completions generated together
    notes: tuple[str, ...]

    @staticmethod
    def read(objective, reference, method, batch_size, seq_len, accum, num_generations, completion_len, generation,
             tokens, avg_tokens) -> "_Objective":
        from .choices import GENERATIONS, OBJECTIVES, REFERENCES
        objective = as_choice(objective, "objective", OBJECTIVES, "training objective")
        b = as_int(batch_size, "batch_size", 1, 1 << 20)
        S = as_int(seq_len, "seq_len", 1, 1 << 24)
        g = as_int(accum, "gradient_accumulation", 1, 1 << 20)
        if objective == "sft":
            return _Objective("sft", "none", b, b, S, 0, 0, ())
        if tokens is not None or avg_tokens is not None:
            raise LoraCalcError("samples", f"for {objective.upper()} give the run as samples (pairs, answers or "
                                           "prompts) and epochs; seq_len is each sequence's length")
        ref = as_choice("default" if reference is None else reference, "reference", REFERENCES, "reference model")
        if ref == "default":
            ref = "separate" if DEFAULT_REFERENCE[objective] == "adapter-off" and method == "full" \
                else DEFAULT_REFERENCE[objective]
        if objective in ("orpo", "simpo") and ref != "none":
            raise LoraCalcError("reference", f"{objective.upper()} has no reference model; use reference 'none'")
        rows = 2 * b if objective in PAIRED else b
        notes = [f"{objective.upper()} as TRL runs it: " + OBJECTIVES[objective]]
        if objective != "grpo":
            return _Objective(objective, ref, rows, b, S, 0, 0, tuple(notes))
        as_choice(generation, "generation", GENERATIONS, "where completions are generated")
        groups = as_int(num_generations, "num_generations", 2, 4096, "completions per prompt (num_generations)")
        completion = as_int(completion_len, "completion_len", 1, S, "completion length (at most seq_len)")
        if (b * g) % groups:
            raise LoraCalcError("num_generations", f"TRL needs the generation batch (batch x accumulation = {b * g}) "
                                                   f"to be a multiple of num_generations ({groups})")
        notes.append(f"{b * g} completions generated together, decoded at the card's memory bandwidth "
                     + ("(vLLM on other GPUs of this type: the trainer waits for it)" if generation == "vllm-server"
                        else "(transformers' generate adds per-token overhead not counted here)"
                        if generation == "generate" else "(vLLM sharing the card)"))
        return _Objective(objective, ref, rows, b / groups, S, completion, b * g, tuple(notes))

    def seconds(self, arch, card, stack: str, accum: int, quant: tuple[int, float], rank: int, targets,
                attention: str, method: str) -> dict[str, float]:
        """Seconds per optimizer step the objective adds: reference and KL forwards, GRPO's generation.
        ``quant``: (quantized weights, bytes each costs per pass to dequantize and read)."""
        dequant_bytes = quant[0] * quant[1]
        if self.objective == "sft":
            return {}
        flops_s = card.peak_bf16_tflops * 1e12 * EFFICIENCY[stack]
        bw = card.memory_bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY

        def no_grad_forward(rows: int) -> float:
            fwd = step_flops(arch, "full", rank, targets, rows, self.seq_len, False, attention).forward
            return accum * (fwd / flops_s + dequant_bytes / bw)
        out: dict[str, float] = {}
        ref_rows = {"kto": 2 * self.rows}.get(self.objective, self.rows)    # KTO scores the KL batch too
        if self.reference in ("adapter-off", "separate"):
            out["reference_forward"] = no_grad_forward(ref_rows)
        if self.objective == "kto":
            out["kl_forward"] = no_grad_forward(self.rows)
        if self.objective == "grpo":
            out.update(self._generation(arch, flops_s, bw, quant, method, rank, targets, attention))
        return out

    def _generation(self, arch, flops_s, bw, quant, method, rank, targets, attention) -> dict:
        """The prompts' forward, then one decode step per completion token for all sequences at once: each step
        the larger of its matmuls and reading the weights (a quantized base dequantized) and every KV cache."""
        G, C = self.at_once, self.completion
        prompt = self.seq_len - C
        h, V, L = arch.hidden_size, arch.vocab_size, arch.num_hidden_layers
        prefill = step_flops(arch, method, rank, targets, G, max(prompt, 1), False, attention).forward
        prefill -= 2 * G * (max(prompt, 1) - 1) * h * V       # generate keeps only the last position's logits
        per_token_w = step_flops(arch, method, rank, targets, 1, 1, False, attention).forward // 2
        # every weight a token meets, read once per step: 16-bit, or dequantized from the stored bytes
        weight_bytes = COMPUTE_BYTES * (per_token_w - quant[0]) + quant[0] * quant[1]
        attn_per_ctx = 4 * arch.num_attention_heads * arch.head_dim * L
        decode = 0.0
        step = max(1, C // 512)                                # sampled steps, each standing for `step` tokens
        for t in range(1, C + 1, step):
            ctx = prompt + t
            flops = G * (2 * per_token_w + attn_per_ctx * ctx)
            nbytes = weight_bytes + G * kv_cache_bytes(arch, ctx)["sequence"]
            decode += min(step, C + 1 - t) * max(flops / flops_s, nbytes / bw)
        return {"generation_prefill": prefill / flops_s, "generation_decode": decode}
