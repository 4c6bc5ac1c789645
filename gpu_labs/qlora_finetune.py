"""QLoRA (or LoRA, or full) fine-tuning of a causal language model on instruction/response pairs.

One GPU, QLoRA on an 8B model (before training the script prints loracalc's memory estimate for this
exact run; `python -m loracalc memory ...` gives the same number before you rent a GPU):

    python gpu_labs/qlora_finetune.py --model meta-llama/Llama-3.1-8B \
        --dataset gpu_labs/data/instructions.jsonl --method qlora --rank 16 --targets all-linear \
        --optimizer paged_adamw_8bit --max-steps 200 --output-dir runs/llama8b-qlora

Several GPUs (DDP through accelerate; each GPU holds a full 4-bit copy and a share of the batches):

    accelerate launch --num_processes 4 gpu_labs/qlora_finetune.py --model ... --output-dir runs/ddp
    torchrun --nproc_per_node 4 gpu_labs/qlora_finetune.py --model ... --output-dir runs/ddp

A model too large for one GPU needs FSDP to shard the 4-bit weights: run under
`accelerate launch --config_file fsdp.yaml` and pass `--quant-storage bf16`, so bitsandbytes packs the
NF4 weights into bf16 tensors that FSDP can flatten together with the bf16 norms and embeddings.

No GPU? The whole script runs on a CPU with a tiny model (bitsandbytes >= 0.46 does NF4 on CPU):

    python gpu_labs/labkit.py tiny-model runs/tiny-llama
    python gpu_labs/qlora_finetune.py --model runs/tiny-llama --max-steps 30 --output-dir runs/tiny-qlora

Re-running the same command after a crash or kill resumes from the last complete checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import labkit  # noqa: E402 - standard library only, so --help stays instant
from labkit import LabError  # noqa: E402

OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")
# Settings that change the data order, step count or learning-rate schedule: a resumed run must match them.
RESUME_KEYS = ("model", "dataset", "method", "rank", "alpha", "dropout", "targets", "lr", "warmup_ratio",
               "epochs", "max_steps", "batch_size", "grad_accum", "seq_len", "pack", "optimizer", "seed",
               "weight_decay", "compute_dtype", "world_size")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    # What to train
    add("--model", required=True, help="Hugging Face model id or local folder with config.json and weights")
    add("--dataset", default=str(labkit.DEFAULT_DATASET), help="local .jsonl of instruction/response pairs, or a Hub dataset name")
    add("--instruction-field", default="instruction", help="JSON key (or column) holding the prompt")
    add("--response-field", default="response", help="JSON key (or column) holding the answer to learn")
    add("--method", choices=("qlora", "lora", "full"), default="qlora", help="qlora: 4-bit frozen base + adapters; lora: 16-bit base + adapters; full: train every weight")
    # The adapter
    add("--rank", type=int, default=16, help="LoRA rank r: more capacity and more trainable params as it grows")
    add("--alpha", type=float, default=32, help="LoRA alpha; the update is scaled by alpha/rank")
    add("--dropout", type=float, default=0.05, help="dropout on the adapter input; regularises small datasets")
    add("--targets", default="all-linear", help="modules to adapt: q,v | all-linear | comma list of module names")
    # The optimisation
    add("--lr", type=float, default=2e-4, help="peak learning rate (QLoRA used 2e-4 up to 13B, 1e-4 above)")
    add("--warmup-ratio", type=float, default=0.03, help="fraction of steps spent warming the learning rate up")
    add("--epochs", type=float, default=1.0, help="passes over the dataset (ignored if --max-steps is set)")
    add("--max-steps", type=int, default=None, help="optimizer steps to run; overrides --epochs")
    add("--batch-size", type=int, default=4, help="examples per device per micro-batch: memory grows with it")
    add("--grad-accum", type=int, default=4, help="micro-batches summed per optimizer step: larger batch, no extra memory")
    add("--seq-len", type=int, default=512, help="longest example in tokens; longer ones are cut")
    add("--pack", action="store_true", help="concatenate examples into full --seq-len blocks: no padding, fixed shapes")
    add("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True, help="recompute activations in backward: less memory, ~30%% more compute")
    add("--optimizer", choices=OPTIMIZERS, default="adamw", help="adamw: 8 B/param state; adamw_8bit: 2 B/param; paged_adamw_8bit: 2 B/param and spills to CPU (CUDA only)")
    add("--weight-decay", type=float, default=0.0, help="AdamW weight decay on the trained weights")
    add("--max-grad-norm", type=float, default=1.0, help="clip the gradient norm to this; 0 turns clipping off")
    add("--compute-dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto", help="matmul dtype; auto = bf16 on GPUs that have it, fp32 on CPU")
    add("--quant-storage", choices=("uint8", "bf16"), default="uint8", help="container dtype of the packed 4-bit weights; bf16 is needed for FSDP")
    add("--seed", type=int, default=42, help="seed for the adapter init, dropout and data order")
    # Where it goes
    add("--output-dir", default="runs/qlora", help="checkpoints, the training log and the final adapter go here")
    add("--save-every", type=int, default=50, help="save a resumable checkpoint every N optimizer steps")
    add("--keep-checkpoints", type=int, default=2, help="how many recent checkpoints to keep on disk")
    add("--resume", action=argparse.BooleanOptionalAction, default=True, help="continue from the last complete checkpoint in --output-dir")
    return p


def validate_args(args) -> None:
    """Checks that need no model: fail in the first second, not after loading 16 GB."""
    if args.rank < 1:
        raise LabError(f"--rank {args.rank}: the rank must be a positive integer (try 8 or 16).")
    if not 0 <= args.dropout < 1:
        raise LabError(f"--dropout {args.dropout}: must be in [0, 1).")
    for name in ("batch_size", "grad_accum", "seq_len", "save_every"):
        if getattr(args, name) < 1:
            raise LabError(f"--{name.replace('_', '-')} must be at least 1.")
    if args.max_steps is not None and args.max_steps < 1:
        raise LabError("--max-steps must be at least 1.")
    if args.method == "full" and args.quant_storage != "uint8":
        raise LabError("--quant-storage only applies to --method qlora.")


# --- the model ---------------------------------------------------------------------------------------

def resolve_targets(spec: str):
    """'all-linear' stays a string (peft expands it, skipping lm_head); 'q,v' -> ['q_proj', 'v_proj']."""
    if spec.strip() == "all-linear":
        return "all-linear"
    names = [s.strip() for s in spec.split(",") if s.strip()]
    return [labkit.TARGET_ALIASES.get(n, n) for n in names]


def check_targets_and_rank(model, targets, rank: int) -> None:
    """Fail with the list of real module names if a target does not exist, and if the rank exceeds
    the smallest targeted matrix (B @ A cannot have a rank above min(in, out))."""
    import torch

    linear = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            linear.setdefault(name.rsplit(".", 1)[-1], module)
    wanted = sorted(linear) if targets == "all-linear" else targets
    missing = [t for t in wanted if t not in linear]
    if missing:
        raise LabError(f"--targets: this model has no module named {', '.join(missing)}. Its linear layers are: "
                       f"{', '.join(sorted(linear))}. Use q,v, all-linear, or names from that list.")
    smallest = min(wanted, key=lambda t: min(linear[t].in_features, linear[t].out_features))
    width = min(linear[smallest].in_features, linear[smallest].out_features)
    if rank > width:
        raise LabError(f"--rank {rank} is larger than {smallest} allows: that layer maps {linear[smallest].in_features} "
                       f"-> {linear[smallest].out_features} features, so an update B @ A has rank at most {width}. "
                       f"Use --rank {min(width, 64)} or lower.")


def load_model(args, compute_dtype, device_index):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {"dtype": compute_dtype}
    if args.method == "qlora":
        storage = {"uint8": torch.uint8, "bf16": torch.bfloat16}[args.quant_storage]
        # --8<-- [start:bnb_config]
        bnb_config = BitsAndBytesConfig(
            load_in_4bit=True,                      # frozen base weights packed as 4-bit codes
            bnb_4bit_quant_type="nf4",              # NormalFloat4: code values at normal quantiles
            bnb_4bit_use_double_quant=True,         # quantize the per-64-weight scales too (~0.37 bit saved)
            bnb_4bit_compute_dtype=compute_dtype,   # dequantize to bf16 for every matmul
            bnb_4bit_quant_storage=storage,         # uint8 normally; bf16 so FSDP can shard the packed weights
        )
        # --8<-- [end:bnb_config]
        kwargs["quantization_config"] = bnb_config
    if device_index is not None:
        kwargs["device_map"] = {"": device_index}  # the whole model on this process's GPU
    try:
        return AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    except OSError as err:
        raise LabError(f"could not load --model {args.model}: {err}. Pass a local folder with config.json and "
                       "weights, or a Hub id (with network access; HF_HUB_OFFLINE=1 blocks downloads).") from None


def add_adapters(model, args, targets):
    """Freeze and prepare the base, then wrap it with LoRA adapters (qlora / lora)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    ckpt_kwargs = {"use_reentrant": False}  # the non-reentrant form works with DDP and frozen inputs
    if args.method == "qlora":
        # --8<-- [start:prepare_kbit]
        # Freezes the base, casts norms/embeddings to fp32 for stable training, and turns on
        # gradient checkpointing with input gradients so the frozen 4-bit layers pass gradients through.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=args.gradient_checkpointing,
            gradient_checkpointing_kwargs=ckpt_kwargs,
        )
        # --8<-- [end:prepare_kbit]
    elif args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
        model.enable_input_require_grads()
    # --8<-- [start:lora_config]
    lora_config = LoraConfig(
        r=args.rank,                   # inner width of B (d x r) and A (r x k)
        lora_alpha=args.alpha,         # update is scaled by alpha / r
        lora_dropout=args.dropout,     # dropout on the adapter's input only
        target_modules=targets,        # ["q_proj", "v_proj"] or "all-linear" (every linear but lm_head)
        bias="none",                   # biases stay frozen
        task_type="CAUSAL_LM",
    )
    # --8<-- [end:lora_config]
    # --8<-- [start:get_peft_model]
    model = get_peft_model(model, lora_config)  # A random, B zero: training starts at the base model
    trainable, total = model.get_nb_trainable_parameters()  # counts a packed 4-bit weight as its real size
    # --8<-- [end:get_peft_model]
    return model, trainable, total


def build_optimizer(params, args):
    import torch

    # --8<-- [start:optimizer]
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    else:
        import bitsandbytes as bnb
        # 8-bit AdamW keeps both moments in 8 bits (2 B/param instead of 8); the paged variant lives in
        # CUDA unified memory, so state pages out to CPU RAM during a spike instead of crashing.
        cls = bnb.optim.PagedAdamW8bit if args.optimizer == "paged_adamw_8bit" else bnb.optim.AdamW8bit
        optimizer = cls(params, lr=args.lr, weight_decay=args.weight_decay)
    # --8<-- [end:optimizer]
    return optimizer


def build_schedule(optimizer, total_steps: int, warmup_ratio: float):
    from transformers import get_cosine_schedule_with_warmup

    # --8<-- [start:schedule]
    warmup_steps = math.ceil(total_steps * warmup_ratio)
    # Linear warmup from 0 to --lr, then half a cosine down to 0 at the last step. The schedule is a
    # pure function of the step count, so a resumed run lands on exactly the same learning rates.
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    # --8<-- [end:schedule]
    return scheduler


# --- what loracalc predicts ------------------------------------------------------------------------

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
            optimizer=args.optimizer, precision=precision, lora_dropout=args.dropout)
        return estimate, "GPU memory for one step at full --seq-len"
    except loracalc.LoraCalcError as err:
        # a model the engine does not describe (its one-line reason is printed); any other exception is a bug
        # in the engine and is raised, so the GPU test's check of the prediction cannot vanish silently
        return None, f"loracalc could not predict: {err}"


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
    parts = ", ".join(f"{t.label} {labkit.human_bytes(t.bytes)}" for t in terms)
    tensors = estimate.total_bytes - context_bytes(estimate)
    return (f"{labkit.human_bytes(estimate.total_bytes)} on the GPU = {labkit.human_bytes(tensors)} of tensors "
            f"+ {labkit.human_bytes(context_bytes(estimate))} CUDA context and allocator (largest tensors: {parts})")


def oom_message(args, estimate, where: str) -> str:
    total = labkit.gpu_total_bytes()
    need = labkit.human_bytes(estimate.total_bytes) if estimate else "unknown (loracalc unavailable)"
    have = labkit.human_bytes(total) if total else "unknown"
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


# --- checkpoints -----------------------------------------------------------------------------------

def checkpoint_dirs(output_dir: Path) -> list[Path]:
    root = output_dir / "checkpoints"
    found = [p for p in root.glob("step-*") if p.is_dir()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]) if p.name.split("-")[1].isdigit() else -1,
                  reverse=True)


def save_checkpoint(output_dir: Path, step: int, model, optimizer, scheduler, settings: dict, args) -> Path:
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    final = output_dir / "checkpoints" / f"step-{step:06d}"
    with labkit.atomic_directory(final) as staging:
        if args.method == "full":
            model.save_pretrained(staging / "model")
        else:
            state = {k: v.contiguous() for k, v in get_peft_model_state_dict(model).items()}
            save_file(state, staging / "adapter.safetensors")
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        torch.save({"cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                   staging / "rng.pt")
        (staging / "trainer_state.json").write_text(json.dumps({"step": step, "settings": settings}, indent=1))
    for old in checkpoint_dirs(output_dir)[args.keep_checkpoints:]:
        import shutil
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest_checkpoint(output_dir: Path, model, optimizer, scheduler, settings: dict, args, log):
    """Restore the newest complete checkpoint; skip (and say so) any that is half-written or unreadable.
    Returns the step to continue from (0 if none)."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    for ckpt in checkpoint_dirs(output_dir):
        if not labkit.is_complete(ckpt):
            log(f"skipping {ckpt}: half-written (no {labkit.COMPLETE_MARKER} marker), probably killed while saving")
            continue
        try:
            state = json.loads((ckpt / "trainer_state.json").read_text())
            saved = state["settings"]
            changed = [k for k in RESUME_KEYS if saved.get(k) != settings.get(k)]
            if changed:
                diffs = "; ".join(f"--{k.replace('_', '-')} was {saved.get(k)!r}, now {settings.get(k)!r}" for k in changed)
                raise LabError(f"{output_dir} holds checkpoints of a different run ({diffs}). Re-run the original "
                               "command to resume it, or use a new --output-dir (or --no-resume to start over).")
            if args.method == "full":
                from accelerate.utils import load_checkpoint_in_model
                load_checkpoint_in_model(model, ckpt / "model")
            else:
                set_peft_model_state_dict(model, load_file(ckpt / "adapter.safetensors"))
            optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=False))
            scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
            rng = torch.load(ckpt / "rng.pt", weights_only=False)
            torch.set_rng_state(rng["cpu"])
            if rng["cuda"] is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        except LabError:
            raise
        except Exception as err:  # noqa: BLE001 - any unreadable file means: use an older checkpoint
            log(f"skipping {ckpt}: cannot be read ({type(err).__name__}: {err})")
            continue
        log(f"resuming from {ckpt} (step {state['step']})")
        return state["step"]
    return 0


# --- training --------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    validate_args(args)
    labkit.quiet_libraries()
    rows = labkit.load_dataset_rows(args.dataset, args.instruction_field, args.response_field)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm
    from transformers import AutoConfig, AutoTokenizer

    # cpu=True on a machine without CUDA lets torchrun / accelerate launch start gloo processes there.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    is_main = accelerator.is_main_process
    log = (lambda msg: print(msg, flush=True)) if is_main else (lambda msg: None)

    if args.optimizer == "paged_adamw_8bit":
        labkit.require_cuda("--optimizer paged_adamw_8bit", "Paging uses CUDA unified memory; on CPU use "
                            "--optimizer adamw or adamw_8bit.")
    compute_dtype = labkit.resolve_compute_dtype(args.compute_dtype)
    dtype_name = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[compute_dtype]
    set_seed(args.seed)
    output_dir = Path(args.output_dir)

    # The prediction needs only config.json, so it is ready before the weights load (and for an OOM there).
    try:
        config_dict = AutoConfig.from_pretrained(args.model).to_dict()
    except OSError as err:
        raise LabError(f"could not read the config of --model {args.model}: {err}. Pass a local folder with "
                       "config.json and weights, or a Hub id (HF_HUB_OFFLINE=1 blocks downloads).") from None
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = labkit.tokenize_pairs(rows, tokenizer, args.seq_len)
    train_examples = labkit.pack_examples(examples, args.seq_len) if args.pack else examples

    # DDP: each process loads its own full copy onto its GPU. FSDP: no device_map; accelerate loads the
    # weights on one rank (fsdp_cpu_ram_efficient_loading) and shards them over the GPUs in prepare().
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    device_index = accelerator.local_process_index if torch.cuda.is_available() and not fsdp else None
    estimate, note = predict_memory(config_dict, args)
    labkit.reset_peak_memory()
    try:
        model = load_model(args, compute_dtype, device_index)
    except torch.OutOfMemoryError:
        raise LabError(oom_message(args, estimate, "loading the model")) from None
    targets = resolve_targets(args.targets)
    if args.method == "full":
        if args.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainable = total = sum(p.numel() for p in model.parameters())
    else:
        check_targets_and_rank(model, targets, args.rank)
        model, trainable, total = add_adapters(model, args, targets)
    model.config.use_cache = False  # the generation cache is useless in training and clashes with checkpointing

    log(f"model {args.model} ({args.method}, compute {dtype_name}) on {accelerator.device} x{accelerator.num_processes}")
    log(f"trainable params: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)")
    if args.method != "full":
        log(f"loracalc counts: {loracalc_lora_params(config_dict, args)}")
    log(f"loracalc predicts: {describe_estimate(estimate) if estimate else 'n/a'} [{note}]")
    gpu_bytes = labkit.gpu_total_bytes()
    if estimate and gpu_bytes and estimate.total_bytes > gpu_bytes:
        log(f"warning: that is more than this GPU's {labkit.human_bytes(gpu_bytes)}; expect an out-of-memory error. "
            + oom_message(args, estimate, "start").split("Try: ", 1)[1])

    # Data order: one fixed permutation per epoch from --seed, split across processes by accelerate.
    def epoch_loader(epoch: int):
        order = torch.randperm(len(train_examples), generator=torch.Generator().manual_seed(args.seed + epoch)).tolist()
        # Its own generator: a DataLoader otherwise draws a seed from the global RNG each time it is
        # iterated, which would shift the dropout masks of a resumed run.
        loader = DataLoader(Subset(train_examples, order), batch_size=args.batch_size, shuffle=False,
                            collate_fn=labkit.pad_collate(tokenizer.pad_token_id),
                            generator=torch.Generator().manual_seed(args.seed))
        return accelerator.prepare(loader)

    micro_per_epoch = len(epoch_loader(0))
    total_steps = args.max_steps or max(1, math.ceil(args.epochs * micro_per_epoch / args.grad_accum))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, args)
    scheduler = build_schedule(optimizer, total_steps, args.warmup_ratio)
    model, optimizer = accelerator.prepare(model, optimizer)

    settings = {k: v for k, v in vars(args).items()}
    settings.update(compute_dtype=dtype_name, world_size=accelerator.num_processes, total_steps=total_steps)
    start_step = 0
    log_path = output_dir / "train_log.jsonl"
    if args.resume:
        start_step = load_latest_checkpoint(output_dir, accelerator.unwrap_model(model), optimizer, scheduler,
                                            settings, args, log)
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        old = log_path.read_text().splitlines() if start_step and log_path.exists() else []
        log_path.write_text("".join(line + "\n" for line in old if json.loads(line)["step"] <= start_step))
    log(f"{len(examples)} examples{f' packed into {len(train_examples)} blocks of {args.seq_len} tokens' if args.pack else ''}, {micro_per_epoch} micro-batches/epoch/process, {total_steps} optimizer steps "
        f"(batch {args.batch_size} x accum {args.grad_accum} x {accelerator.num_processes} processes)")

    stop = {"signal": None}

    def request_stop(signum, _frame):
        stop["signal"] = signum  # finish the current step, save, exit: the re-run resumes from here

    signal.signal(signal.SIGTERM, request_stop)

    def micro_batches(first_micro: int):
        epoch, offset = divmod(first_micro, micro_per_epoch)
        while True:
            loader = epoch_loader(epoch)
            yield from (accelerator.skip_first_batches(loader, offset) if offset else loader)
            epoch, offset = epoch + 1, 0

    batches = micro_batches(start_step * args.grad_accum)
    model.train()
    bar = tqdm(total=total_steps, initial=start_step, disable=not is_main, desc="training", dynamic_ncols=True)
    step, tokens_seen, train_seconds, loss_value = start_step, 0, 0.0, float("nan")
    try:
        while step < total_steps:
            started = time.perf_counter()
            step_loss = torch.zeros((), device=accelerator.device)
            step_tokens = torch.zeros((), device=accelerator.device, dtype=torch.long)
            for micro in range(args.grad_accum):
                batch = next(batches)
                sync = micro == args.grad_accum - 1
                with (accelerator.no_sync(model) if not sync else _nullcontext()):
                    loss = model(**batch).loss / args.grad_accum
                    accelerator.backward(loss)
                step_loss += loss.detach()
                step_tokens += batch["attention_mask"].sum()
            if args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, args.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = accelerator.reduce(step_loss, "mean").item()
            tokens = accelerator.reduce(step_tokens, "sum").item()
            elapsed = time.perf_counter() - started
            tokens_seen, train_seconds = tokens_seen + tokens, train_seconds + elapsed
            memory = labkit.memory_now_bytes()
            if is_main:
                with log_path.open("a") as handle:
                    handle.write(json.dumps({"step": step, "lr": lr, "loss": loss_value,
                                             "tokens_per_s": tokens / elapsed, "memory_bytes": memory}) + "\n")
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens / elapsed:,.0f}",
                                mem=labkit.human_bytes(memory))
                bar.update(1)
            if step % args.save_every == 0 or step == total_steps or stop["signal"]:
                if is_main:
                    save_checkpoint(output_dir, step, accelerator.unwrap_model(model), optimizer, scheduler,
                                    settings, args)
                accelerator.wait_for_everyone()
            if stop["signal"]:
                bar.close()
                log(f"stopped by signal {stop['signal']} after step {step}; checkpoint saved. "
                    "Re-run the same command to continue.")
                return 128 + stop["signal"]
            _test_delay()
    except torch.OutOfMemoryError:
        raise LabError(oom_message(args, estimate, f"step {step + 1}")) from None
    bar.close()

    peak, peak_kind = labkit.peak_memory()
    unwrapped = accelerator.unwrap_model(model)
    probe = {"adapter": labkit.probe_loss(unwrapped, examples, tokenizer.pad_token_id)}
    if args.method != "full":
        with unwrapped.disable_adapter():
            probe["base"] = labkit.probe_loss(unwrapped, examples, tokenizer.pad_token_id)
    tokens_per_s = tokens_seen / train_seconds if train_seconds else float("nan")
    results = {"trainable_params": trainable, "total_params": total, "final_loss": loss_value,
               "tokens_per_s_this_session": tokens_per_s, "steps": step,
               "predicted_bytes": estimate.total_bytes if estimate else None,
               "predicted_tensor_bytes": estimate.total_bytes - context_bytes(estimate) if estimate else None,
               "measured_reserved_bytes": torch.cuda.max_memory_reserved() if torch.cuda.is_available() else None,
               "probe_loss": probe, "measured_peak_bytes": peak, "measured": peak_kind, "device": str(accelerator.device),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "versions": labkit.library_versions(), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if is_main:
        final = output_dir / ("model" if args.method == "full" else "adapter")
        with labkit.atomic_directory(final) as staging:
            accelerator.unwrap_model(model).save_pretrained(staging)  # adapter_model.safetensors + adapter_config.json
            tokenizer.save_pretrained(staging)
            (staging / "run_settings.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1))
        log(f"final loss {loss_value:.4f}; {tokens_per_s:,.0f} tokens/s over {step - start_step} steps this session")
        if "base" in probe:
            log(f"loss on the first 16 examples (eval mode): base model {probe['base']:.4f}, with adapter {probe['adapter']:.4f}")
        if estimate and torch.cuda.is_available():
            tensors = estimate.total_bytes - context_bytes(estimate)
            log(f"memory: loracalc predicted {labkit.human_bytes(tensors)} of tensors, measured peak "
                f"{labkit.human_bytes(peak)} ({peak_kind}, {100 * peak / tensors:.0f}% of the prediction); "
                f"reserved by the allocator {labkit.human_bytes(results['measured_reserved_bytes'])}, "
                f"predicted with CUDA context {labkit.human_bytes(estimate.total_bytes)}")
        else:
            predicted = describe_estimate(estimate).split(" (largest")[0] if estimate else "n/a"
            log(f"memory: loracalc predicted {predicted}; measured {labkit.human_bytes(peak)} ({peak_kind}: "
                "Python, PyTorch and libraries included, so not comparable with a GPU figure)")
        log(f"saved {'model' if args.method == 'full' else 'adapter'} to {final}/ "
            f"({', '.join(sorted(p.name for p in final.iterdir()))})")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def _nullcontext():
    import contextlib
    return contextlib.nullcontext()


def _test_delay() -> None:
    """Tests slow each step down so they can kill a run mid-way; unset, this does nothing."""
    import os
    delay = float(os.environ.get("GPU_LABS_TEST_STEP_DELAY_S", "0"))
    if delay:
        time.sleep(delay)


if __name__ == "__main__":
    labkit.run_cli(main)
