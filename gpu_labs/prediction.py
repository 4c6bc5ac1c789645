"""What loracalc predicts for a run, and the measured peak set beside it.

The prediction needs only the model's config.json, so a lab prints it before the weights load, and an
out-of-memory error can say what the run was predicted to need and which flags lower it.
Standard library only at import time (loracalc itself is pure Python).
"""

from __future__ import annotations

from gpu_labs.core import human_bytes
from gpu_labs.labkit import gpu_total_bytes


def predict_memory(config_dict: dict, args):
    """(estimate or None, note). The estimate is loracalc's model of GPU memory for exactly this run."""
    try:
        import loracalc
    except ImportError:
        return None, "loracalc is not installed (pip install -e . from the repository root)"
    # A full fine-tune here trains the 16-bit weights directly (no fp32 master copy): loracalc's "bf16".
    precision = "bf16" if args.method == "full" and args.compute_dtype != "fp32" else "mixed"
    try:
        estimate = loracalc.estimate_memory(
            loracalc.model_from_config(config_dict), method=args.method, rank=args.rank, targets=args.targets,
            batch_size=args.batch_size, seq_len=args.seq_len, gradient_checkpointing=args.gradient_checkpointing,
            optimizer=args.optimizer, precision=precision, lora_dropout=args.dropout or 0.0,
            dora=bool(getattr(args, "use_dora", False)))   # DoRA's weight-norm temporaries (see --use-dora)
        return estimate, "GPU memory for one step at full --seq-len"
    except loracalc.LoraCalcError as err:
        # a model the engine does not describe (its one-line reason is printed); any other exception is a bug
        # in the engine and is raised, so the GPU test's check of the prediction cannot vanish silently
        return None, f"loracalc could not predict: {err}"


def predict_speed(config_dict: dict, args, device_name: str | None) -> tuple[float | None, str]:
    """(tokens/s loracalc predicts for this run on this GPU, or None; what it is or why there is none)."""
    try:
        import loracalc
        from loracalc.gpus import find_gpu
        from loracalc.speed import estimate_time
    except ImportError:
        return None, "loracalc is not installed"
    if not device_name:
        return None, "loracalc's time model is for GPUs; the tokens/s measured on this CPU are printed at the end"
    card = find_gpu(device_name)
    if card is None or not card.peak_bf16_tflops:
        return None, f"{device_name} is not in loracalc's GPU catalog with speed figures (python -m loracalc gpus)"
    precision = "bf16" if args.method == "full" and args.compute_dtype != "fp32" else "mixed"
    try:
        t = estimate_time(loracalc.model_from_config(config_dict), card.name, method=args.method, rank=args.rank,
                          targets=args.targets, batch_size=args.batch_size, seq_len=args.seq_len,
                          gradient_checkpointing=args.gradient_checkpointing, optimizer=args.optimizer,
                          precision=precision)
    except loracalc.LoraCalcError as err:
        return None, f"loracalc could not predict the speed: {err}"
    return t.tokens_per_second, f"on {card.display_name}, eager stack, full --seq-len batches"


def context_bytes(estimate) -> int:
    """The part of the estimate outside PyTorch's tensors (CUDA context, allocator allowance), which
    torch.cuda.max_memory_allocated does not see."""
    return sum(t.bytes for t in estimate.terms if t.key == "cuda_context")


def loracalc_lora_params(config_dict: dict, args) -> str:
    """loracalc's own count of the adapter, to set beside peft's: the two should agree exactly."""
    try:
        import loracalc

        count = loracalc.count_params(loracalc.model_from_config(config_dict), rank=args.rank, targets=args.targets)
        return f"{count.lora_params:,} LoRA params on a {count.total_params:,}-param base"
    except Exception as err:  # noqa: BLE001 - informational only
        return f"n/a ({type(err).__name__}: {err})"


def describe_estimate(estimate) -> str:
    terms = sorted((t for t in estimate.terms if t.key != "cuda_context"), key=lambda t: t.bytes, reverse=True)[:3]
    parts = ", ".join(f"{t.label} {human_bytes(t.bytes)}" for t in terms)
    tensors = estimate.total_bytes - context_bytes(estimate)
    return (f"{human_bytes(estimate.total_bytes)} on the GPU = {human_bytes(tensors)} of tensors "
            f"+ {human_bytes(context_bytes(estimate))} CUDA context and allocator (largest tensors: {parts})")


def oom_message(args, estimate, where: str) -> str:
    total = gpu_total_bytes()
    need = human_bytes(estimate.total_bytes) if estimate else "unknown (loracalc unavailable)"
    have = human_bytes(total) if total else "unknown"
    tips = []
    if args.batch_size > 1:
        tips.append(f"--batch-size {max(1, args.batch_size // 2)} --grad-accum {args.grad_accum * 2} (same effective batch)")
    if not args.gradient_checkpointing:
        tips.append("--gradient-checkpointing")
    if args.seq_len > 256:
        tips.append(f"--seq-len {args.seq_len // 2}")
    if args.optimizer != "paged_adamw_8bit" and args.method != "full":
        tips.append("--optimizer paged_adamw_8bit")
    if args.method != "qlora":
        tips.append("--method qlora (4-bit base)")
    if args.rank > 8:
        tips.append(f"--rank {args.rank // 2}")
    return (f"out of GPU memory at {where}. loracalc predicts this run needs {need}; the GPU has {have} in total. "
            f"Try: {'; '.join(tips) or 'a smaller model or a larger GPU'}.")


def memory_report(estimate, peak: int, peak_kind: str, reserved: int | None) -> str:
    """The measured peak next to the prediction: on a GPU as a share of the predicted tensors, on a CPU
    (where the process's RSS holds Python and the libraries too) only side by side."""
    if estimate and reserved is not None:
        tensors = estimate.total_bytes - context_bytes(estimate)
        return (f"memory: loracalc predicted {human_bytes(tensors)} of tensors, measured peak "
                f"{human_bytes(peak)} ({peak_kind}, {100 * peak / tensors:.0f}% of the prediction); "
                f"reserved by the allocator {human_bytes(reserved)}, "
                f"predicted with CUDA context {human_bytes(estimate.total_bytes)}")
    predicted = describe_estimate(estimate).split(" (largest")[0] if estimate else "n/a"
    return (f"memory: loracalc predicted {predicted}; measured {human_bytes(peak)} ({peak_kind}: "
            "Python, PyTorch and libraries included, so not comparable with a GPU figure)")
