"""QLoRA (or LoRA, or full) fine-tuning of a causal language model on instruction/response pairs.

One GPU, QLoRA on an 8B model (before training the script prints loracalc's memory estimate for this
exact run; `python -m loracalc memory ...` gives the same number before you rent a GPU):

    python gpu_labs/qlora_finetune.py --model meta-llama/Llama-3.1-8B \
        --dataset gpu_labs/data/instructions.jsonl --method qlora --rank 16 --targets all-linear \
        --optimizer paged_adamw_8bit --max-steps 200 --output-dir runs/llama8b-qlora

Several GPUs (DDP through accelerate; each GPU holds a full 4-bit copy and a share of the batches):

    accelerate launch --num_processes 4 gpu_labs/qlora_finetune.py --model ... --output-dir runs/ddp
    torchrun --nproc_per_node 4 gpu_labs/qlora_finetune.py --model ... --output-dir runs/ddp

A model too large for one GPU needs FSDP to shard the 4-bit weights: run under the shipped config and
pass `--quant-storage bf16`, so bitsandbytes packs the NF4 weights into bf16 tensors FSDP can shard
(docs/multi-gpu.md has the commands for LoRA and QLoRA and the per-GPU memory):

    accelerate launch --config_file gpu_labs/accelerate_fsdp_qlora.yaml --num_processes 8 \
        gpu_labs/qlora_finetune.py --model ... --method qlora --quant-storage bf16 --output-dir runs/fsdp

No GPU? The whole script runs on a CPU with a tiny model (bitsandbytes >= 0.46 does NF4 on CPU):

    python gpu_labs/labkit.py tiny-model runs/tiny-llama
    python gpu_labs/qlora_finetune.py --model runs/tiny-llama --max-steps 30 --output-dir runs/tiny-qlora

Any family transformers can load works; `python gpu_labs/labkit.py tiny-model runs/tiny-gpt2 --family gpt2
--chat-template` builds a tiny one of llama, qwen3, gemma3_text, phi3, qwen3_moe, gpt2 or olmo2. The dataset may
be instruction/response pairs, Alpaca rows (instruction/input/output) or chat `messages` lists; a tokenizer with a
chat template renders them with it. Hold out examples and watch the eval loss:

    python gpu_labs/qlora_finetune.py --model runs/tiny-llama --eval-ratio 0.2 --eval-every 5 --max-steps 30

peft's variants are flags: --use-dora, --use-rslora, --init gaussian|pissa|olora|loftq, --lora-plus 16.

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
import distributed  # noqa: E402 - several GPUs: accelerate/FSDP glue, standard library at import
import labkit  # noqa: E402 - standard library only, so --help stays instant
import toy_model  # noqa: E402 - standard library at import: the default CPU model and its held-out prompts
from labkit import LabError  # noqa: E402

OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")
# Settings that change the data order, step count or learning-rate schedule: a resumed run must match them.
RESUME_KEYS = ("model", "dataset", "method", "rank", "alpha", "dropout", "targets", "lr", "warmup_ratio",
               "epochs", "max_steps", "batch_size", "grad_accum", "seq_len", "pack", "optimizer", "seed",
               "weight_decay", "compute_dtype", "world_size", "eval_ratio", "use_dora", "use_rslora", "init",
               "lora_plus")
# peft's names for --init; "default" is peft's own choice (Kaiming-uniform A, zero B).
INITS = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora", "loftq": "loftq"}
DEFAULT_DROPOUT = 0.05


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    # What to train
    add("--model", default=None, help=f"Hugging Face model id or local folder with config.json and weights (default: on a CPU the toy-world model, gpu_labs/toy_model.py, built on first use; on a GPU {toy_model.GPU_DEFAULT_MODEL})")
    add("--dataset", default=None, help="local .jsonl (instruction/response, Alpaca instruction/input/output, or chat 'messages'), or a Hub dataset name (default: the model folder's train.jsonl where it ships one, as the toy model does, else gpu_labs/data/instructions.jsonl)")
    add("--instruction-field", default="instruction", help="JSON key (or column) holding the prompt")
    add("--response-field", default="response", help="JSON key (or column) holding the answer to learn")
    add("--method", choices=("qlora", "lora", "full"), default="qlora", help="qlora: 4-bit frozen base + adapters; lora: 16-bit base + adapters; full: train every weight")
    # The adapter
    add("--rank", type=int, default=16, help="LoRA rank r: more capacity and more trainable params as it grows")
    add("--alpha", type=float, default=32, help="LoRA alpha; the update is scaled by alpha/rank")
    add("--dropout", type=float, default=None, help=f"dropout on the adapter input; regularises small datasets (default {DEFAULT_DROPOUT}; 0 when fused MoE experts are adapted, which peft requires)")
    add("--targets", default="all-linear", help="modules to adapt: all-linear (every linear layer but the output, in the family's own names) | q,v | comma list of the model's module names")
    add("--use-dora", action="store_true", help="DoRA: learn a magnitude per output too; closer to full fine-tuning, slower steps")
    add("--use-rslora", action="store_true", help="rsLoRA: scale by alpha/sqrt(r) instead of alpha/r, so high ranks keep learning")
    add("--init", choices=tuple(INITS), default="default", help="adapter init: default (A Kaiming, B zero), gaussian, pissa/olora (from the weights' SVD/QR; change the base), loftq (qlora: A,B offset the NF4 error)")
    add("--lora-plus", type=float, default=None, metavar="RATIO", help="LoRA+: B learns RATIO x faster than A (peft's create_loraplus_optimizer; the paper suggests 16)")
    # The optimisation
    add("--lr", type=float, default=2e-4, help="peak learning rate (QLoRA used 2e-4 up to 13B, 1e-4 above)")
    add("--warmup-ratio", type=float, default=0.03, help="fraction of steps spent warming the learning rate up")
    add("--epochs", type=float, default=1.0, help="passes over the dataset (ignored if --max-steps is set)")
    add("--max-steps", type=int, default=None, help="optimizer steps to run; overrides --epochs")
    add("--batch-size", type=int, default=4, help="examples per device per micro-batch: memory grows with it")
    add("--grad-accum", type=int, default=4, help="micro-batches summed per optimizer step: larger batch, no extra memory")
    add("--seq-len", type=int, default=512, help="longest example in tokens; longer ones are cut")
    add("--pack", action="store_true", help="concatenate examples into full --seq-len blocks: no padding, fixed shapes; "
        "attention crosses example boundaries inside a block (no position_ids reset), so each example also sees "
        "the ones before it")
    add("--eval-ratio", type=float, default=0.0, help="share of examples held out for evaluation (0: none); costs training data, tells you about overfitting")
    add("--eval-every", type=int, default=10, help="evaluate on the held-out examples every N optimizer steps: more often costs time")
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
    if args.dropout is not None and not 0 <= args.dropout < 1:
        raise LabError(f"--dropout {args.dropout}: must be in [0, 1).")
    if not 0 <= args.eval_ratio < 1:
        raise LabError(f"--eval-ratio {args.eval_ratio}: must be in [0, 1) (0.1 holds out a tenth).")
    if args.eval_every < 1:
        raise LabError("--eval-every must be at least 1.")
    if args.method == "full" and (args.use_dora or args.use_rslora or args.init != "default" or args.lora_plus):
        raise LabError("--use-dora, --use-rslora, --init and --lora-plus shape the LoRA adapter; --method full "
                       "trains every weight and has none. Drop them or use --method lora/qlora.")
    if args.init == "loftq" and args.method != "qlora":
        raise LabError("--init loftq fits the adapter to the NF4 rounding error of a 4-bit base, so it needs "
                       "--method qlora. For a 16-bit base use --init pissa or olora.")
    if args.init == "pissa" and args.method == "qlora":
        raise LabError("--init pissa rewrites the base weights from their SVD, which peft only does on a 16-bit "
                       "base (it refuses a 4-bit one). Use --method lora --init pissa, or --init olora / loftq with qlora.")
    if args.lora_plus is not None and args.lora_plus <= 0:
        raise LabError(f"--lora-plus {args.lora_plus}: the ratio of B's to A's learning rate must be positive (16 is usual).")
    if args.rank < 1:
        raise LabError(f"--rank {args.rank}: the rank must be a positive integer (try 8 or 16).")
    for name in ("batch_size", "grad_accum", "seq_len", "save_every"):
        if getattr(args, name) < 1:
            raise LabError(f"--{name.replace('_', '-')} must be at least 1.")
    if args.max_steps is not None and args.max_steps < 1:
        raise LabError("--max-steps must be at least 1.")
    if args.method == "full" and args.quant_storage != "uint8":
        raise LabError("--quant-storage only applies to --method qlora.")


# --- the model ---------------------------------------------------------------------------------------

def resolve_targets(spec: str, model):
    """(target_modules, target_parameters) for peft, in the model's own names.

    'all-linear' stays a string: peft expands it to every linear layer but the output (and, on a MoE model,
    to the fused expert weights too). Other specs are comma lists: the model's leaf module names (GPT-2's
    c_attn, Phi-3's qkv_proj, ...), names of fused expert weights (qwen3_moe's gate_up_proj), or the short
    forms q,k,v,o,gate,up,down where the model has Llama-style names. Unknown names fail with the real list."""
    import labmodels

    layers = labmodels.target_names(model)
    experts = labmodels.expert_parameters(model)
    if spec.strip() == "all-linear":
        return "all-linear", sorted(layers), sorted(experts)
    modules, parameters, unknown = [], [], []
    for raw in (s.strip() for s in spec.split(",") if s.strip()):
        name = labkit.TARGET_ALIASES.get(raw, raw) if raw not in layers and raw not in experts else raw
        if name in layers:
            modules.append(name)
        elif name in experts:
            parameters.append(name)
        else:
            unknown.append(raw)
    if unknown or not (modules or parameters):
        valid = ", ".join(sorted(layers) + [f"{n} (fused experts)" for n in sorted(experts)])
        missing = ", ".join(unknown) if unknown else repr(spec)
        raise LabError(f"--targets: this {model.config.model_type} model has no module named {missing}. "
                       f"Its adaptable layers are: {valid}. Use all-linear or names from that list.")
    return modules, modules, parameters


def check_rank(model, names: list[str], rank: int) -> None:
    """Fail if the rank exceeds the smallest targeted matrix (B @ A cannot have a rank above min(in, out))."""
    import labmodels

    shapes = labmodels.target_names(model)
    shapes.update({n: s[-2:][::-1] for n, s in labmodels.expert_parameters(model).items()})
    wanted = [n for n in names if n in shapes]
    if not wanted:
        return
    smallest = min(wanted, key=lambda t: min(shapes[t]))
    d_in, d_out = shapes[smallest]
    width = min(d_in, d_out)
    if rank > width:
        raise LabError(f"--rank {rank} is larger than {smallest} allows: that layer maps {d_in} -> {d_out} features, "
                       f"so an update B @ A has rank at most {width}. Use --rank {min(width, 64)} or lower.")


def resolve_dropout(args, expert_targets: list[str]) -> tuple[float, str]:
    """(dropout, note). peft adapts fused MoE expert weights with lora.ParamWrapper, which raises
    'does not work with lora_dropout != 0': dropout on the input of a 3-D parameter is not defined there.
    The default becomes 0 on such runs (said in the log); an explicit non-zero value stops with the fix."""
    if not expert_targets:
        return (DEFAULT_DROPOUT if args.dropout is None else args.dropout), ""
    if args.dropout not in (None, 0):
        raise LabError(f"--dropout {args.dropout}: peft adapts this model's fused MoE experts ({', '.join(expert_targets)}) "
                       "with lora.ParamWrapper, which supports no dropout. Use --dropout 0, or leave the experts out "
                       "with --targets naming attention layers only (e.g. q_proj,k_proj,v_proj,o_proj).")
    return 0.0, f"dropout 0: peft's wrapper for the fused expert weights ({', '.join(expert_targets)}) supports no dropout"


def check_expert_variants(args, expert_targets: list[str]) -> None:
    """peft's lora.ParamWrapper (fused MoE expert weights) rejects DoRA, and PiSSA/OLoRA need a 2-D
    `.weight` to decompose, which an experts module does not have: say so before loading."""
    if not expert_targets:
        return
    problem = ("--use-dora" if args.use_dora else
               f"--init {args.init}" if args.init in ("pissa", "olora", "loftq") else None)
    if problem:
        raise LabError(f"{problem}: peft cannot apply it to this model's fused MoE expert weights "
                       f"({', '.join(expert_targets)}), which --targets {args.targets} includes. Drop {problem}, or "
                       "adapt the attention layers only (e.g. --targets q_proj,k_proj,v_proj,o_proj).")


def load_model(args, compute_dtype, device_index):
    """(model, layers kept 16-bit on this CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    import labmodels

    kwargs = {"dtype": compute_dtype}
    kept = []
    if args.method == "qlora":
        storage = {"uint8": torch.uint8, "bf16": torch.bfloat16}[args.quant_storage]
        # NF4 + double quantization, compute in compute_dtype (labmodels.bnb_4bit_config sets every field and
        # says why); on a CPU run it also keeps the layers bitsandbytes' CPU kernel cannot repack in 16-bit.
        bnb_config, kept = labmodels.bnb_4bit_config(args.model, compute_dtype, storage)
        kwargs["quantization_config"] = bnb_config
    if device_index is not None:
        kwargs["device_map"] = {"": device_index}  # the whole model on this process's GPU
    try:
        return AutoModelForCausalLM.from_pretrained(args.model, **kwargs), kept
    except OSError as err:
        raise LabError(f"could not load --model {args.model}: {err}. Pass a local folder with config.json and "
                       "weights, or a Hub id (with network access; HF_HUB_OFFLINE=1 blocks downloads).") from None


def add_adapters(model, args, target_modules, target_parameters, dropout: float):
    """Freeze and prepare the base, then wrap it with LoRA adapters (qlora / lora)."""
    import torch
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
    # LoftQ on a 4-bit base starts from peft's default init and is replaced below (replace_lora_weights_loftq).
    init = INITS[args.init] if args.init != "loftq" else True
    # --8<-- [start:lora_config]
    lora_config = LoraConfig(
        r=args.rank,                   # inner width of B (d x r) and A (r x k)
        lora_alpha=args.alpha,         # update is scaled by alpha / r (alpha / sqrt(r) with use_rslora)
        lora_dropout=dropout,          # dropout on the adapter's input only
        target_modules=target_modules, # "all-linear" (every linear but the output) or the model's own names
        target_parameters=target_parameters or None,  # fused MoE expert weights named in --targets
        use_dora=args.use_dora,        # DoRA: a learned magnitude per output on top of the LoRA direction
        use_rslora=args.use_rslora,    # rsLoRA: alpha / sqrt(r), so large ranks are not damped
        init_lora_weights=init,        # True (Kaiming A, zero B), "gaussian", "pissa", "olora"
        bias="none",                   # biases stay frozen
        task_type="CAUSAL_LM",
    )
    # --8<-- [end:lora_config]
    # --8<-- [start:get_peft_model]
    torch.manual_seed(args.seed)  # the adapter's random init depends on --seed alone, not on what ran before
    model = get_peft_model(model, lora_config)  # A random, B zero: training starts at the base model
    if args.init == "loftq":
        from peft import replace_lora_weights_loftq
        # Reads the 16-bit weights from the model's safetensors and sets A, B so that NF4(W) + B @ A is
        # closer to W: training starts from the 16-bit model instead of its rounded copy.
        replace_lora_weights_loftq(model, model_path=_safetensors_file(args.model))
    trainable, total = model.get_nb_trainable_parameters()  # counts a packed 4-bit weight as its real size
    # --8<-- [end:get_peft_model]
    return model, trainable, total


def adapted_names(peft_model) -> list[str]:
    """What peft actually adapted, as leaf names (modules, then fused parameters such as MoE experts and
    the router's weight, which all-linear also reaches)."""
    modules = sorted({n.rsplit(".", 1)[-1] for n in getattr(peft_model, "targeted_module_names", [])})
    params = sorted({".".join(n.split(".")[-2:]) if n.endswith(".weight") else n.rsplit(".", 1)[-1]
                     for n in getattr(peft_model, "targeted_parameter_names", [])})
    return modules + [f"{p} (parameter)" for p in params if p not in modules]


def _safetensors_file(model: str) -> str:
    files = sorted(Path(model).glob("*.safetensors")) if Path(model).is_dir() else []
    if len(files) != 1:
        raise LabError(f"--init loftq reads the 16-bit weights from one local model.safetensors; {model} has "
                       f"{len(files)} such files. Pass a local folder with a single-file checkpoint, or another --init.")
    return str(files[0])


def build_optimizer(params, args, model=None):
    import torch

    # --8<-- [start:optimizer]
    if args.optimizer == "adamw":
        cls = torch.optim.AdamW
    else:
        import bitsandbytes as bnb
        # 8-bit AdamW keeps both moments in 8 bits (2 B/param instead of 8); the paged variant lives in
        # CUDA unified memory, so state pages out to CPU RAM during a spike instead of crashing.
        cls = bnb.optim.PagedAdamW8bit if args.optimizer == "paged_adamw_8bit" else bnb.optim.AdamW8bit
    if args.lora_plus:
        from peft.optimizers import create_loraplus_optimizer
        # LoRA+: B's parameter group gets lr * ratio; A keeps lr. The paper's reason is scaling with width: in wide
        # layers one shared rate cannot make both A and B learn efficiently, and B's best rate is much larger.
        optimizer = create_loraplus_optimizer(model, cls, lr=args.lr, loraplus_lr_ratio=args.lora_plus,
                                              weight_decay=args.weight_decay)
    else:
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
            optimizer=args.optimizer, precision=precision, lora_dropout=args.dropout or 0.0,
            dora=bool(getattr(args, "use_dora", False)))   # DoRA's weight-norm temporaries (see --use-dora)
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

BEST_DIR = "best"


def save_best(output_dir: Path, step: int, eval_loss: float, model, tokenizer) -> Path:
    """The adapter with the lowest eval loss so far, saved like the final one (loadable by the other labs)."""
    final = output_dir / BEST_DIR
    with labkit.atomic_directory(final) as staging:
        save_adapter(model, staging, output_dir)
        tokenizer.save_pretrained(staging)
        (staging / "best.json").write_text(json.dumps({"step": step, "eval_loss": eval_loss}) + "\n")
    return final


INITIAL_ADAPTER_DIR = "initial-adapter"


def save_initial_adapter(model, args, output_dir: Path) -> None:
    """PiSSA and OLoRA move the adapter's starting point out of the base weights (W becomes W - B0 @ A0), so
    their adapter only fits that modified base. Keeping the untrained adapter lets every save convert the
    result into an ordinary LoRA adapter for the original base (rank 2r: [B, -B0] @ [A; A0]), which the
    serving and merge labs load like any other."""
    if args.init not in ("pissa", "olora"):
        return
    initial = output_dir / INITIAL_ADAPTER_DIR
    config = model.peft_config["default"]
    saved_init, config.init_lora_weights = config.init_lora_weights, True  # peft requires this for the conversion
    with labkit.atomic_directory(initial) as staging:
        model.save_pretrained(staging)
    config.init_lora_weights = saved_init


def save_adapter(model, folder: Path, output_dir: Path, state_dict=None) -> None:
    """The adapter as peft saves it; `state_dict` is the gathered adapter when FSDP holds it in shards."""
    initial = output_dir / INITIAL_ADAPTER_DIR
    if labkit.is_complete(initial):
        model.save_pretrained(folder, path_initial_model_for_weight_conversion=str(initial), state_dict=state_dict)
    else:
        model.save_pretrained(folder, state_dict=state_dict)


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


def load_latest_checkpoint(output_dir: Path, model, optimizer, scheduler, settings: dict, args, log,
                           sharded_restore=None):
    """Restore the newest complete checkpoint; skip (and say so) any that is half-written or unreadable.
    Returns the step to continue from (0 if none). `sharded_restore(ckpt)` reads an FSDP checkpoint."""
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
            if sharded_restore is not None:  # [distributed] FSDP: every rank reads its own shard
                sharded_restore(ckpt)
                log(f"resuming from {ckpt} (step {state['step']})")
                return state["step"]
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


# --- evaluation ------------------------------------------------------------------------------------

def evaluate(model, examples: list[dict], pad_token_id: int, batch_size: int, device) -> float:
    """Mean loss per answer token over the held-out examples (eval mode: no dropout), weighted by tokens
    so a short example counts as little as it says."""
    import torch

    collate = labkit.pad_collate(pad_token_id)
    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[i:i + batch_size]).items()}
            # The model shifts labels by one inside; count the same positions it averages over.
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += model(**batch).loss.item() * n
            tokens += n
    model.train(was_training)
    return total / max(tokens, 1)


class EvalTracker:
    """Keeps the best eval loss and spots the overfitting pattern: eval loss up while train loss goes down."""

    def __init__(self):
        self.best = math.inf
        self.last_eval = None
        self.train_since_eval = []
        self.last_train_mean = None

    def add_train(self, loss: float) -> None:
        self.train_since_eval.append(loss)

    def add_eval(self, eval_loss: float) -> tuple[bool, str]:
        """(is this the best so far, a warning or '')."""
        train_mean = sum(self.train_since_eval) / len(self.train_since_eval) if self.train_since_eval else None
        warning = ""
        if (self.last_eval is not None and eval_loss > self.last_eval and train_mean is not None
                and self.last_train_mean is not None and train_mean < self.last_train_mean):
            warning = (f"eval loss rose {self.last_eval:.4f} -> {eval_loss:.4f} while train loss fell "
                       f"{self.last_train_mean:.4f} -> {train_mean:.4f}: the adapter is starting to memorise the "
                       "training set. The best checkpoint is kept; consider fewer steps, a lower --lr or more data.")
        improved = eval_loss < self.best
        self.best = min(self.best, eval_loss)
        self.last_eval, self.last_train_mean, self.train_since_eval = eval_loss, train_mean, []
        return improved, warning


# --- training --------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    validate_args(args)
    labkit.quiet_libraries()
    toy_model.resolve_defaults(args)  # --model / --dataset not given: the toy model on a CPU, its task
    import labdata

    conversations = labdata.load_dataset_conversations(args.dataset, args.instruction_field, args.response_field)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm
    from transformers import AutoConfig, AutoTokenizer

    # cpu=True on a machine without CUDA lets torchrun / accelerate launch start gloo processes there.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    distributed.use_fsdp_without_gpu(accelerator)  # [distributed] an FSDP config on gloo processes gets FSDP too
    is_main = accelerator.is_main_process
    log = (lambda msg: print(msg, flush=True)) if is_main else (lambda msg: None)

    if args.optimizer == "paged_adamw_8bit":
        labkit.require_cuda("--optimizer paged_adamw_8bit", "Paging uses CUDA unified memory; on CPU use "
                            "--optimizer adamw or adamw_8bit.")
    if args.init == "loftq":
        # peft's replace_lora_weights_loftq moves each weight to "cuda" (or "xpu") for its SVD, whatever the device.
        labkit.require_cuda("--init loftq", "peft computes LoftQ's SVD on the GPU only; on CPU use --init "
                            "default, gaussian or olora.")
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
    pad_note = labdata.ensure_pad_token(tokenizer)
    # --8<-- [start:data]
    # Chat template when the tokenizer has one, EOS after every answer, labels on answer tokens only.
    examples = labdata.tokenize_conversations(conversations, tokenizer, args.seq_len)
    # The held-out split is drawn before packing, so no evaluation text leaks into a training block.
    fit_examples, eval_examples = labdata.split_train_eval(examples, args.eval_ratio, args.seed)
    train_examples = labkit.pack_examples(fit_examples, args.seq_len) if args.pack else fit_examples
    # --8<-- [end:data]

    # DDP: each process loads its own full copy onto its GPU. FSDP: no device_map; accelerate loads the
    # weights on one rank (fsdp_cpu_ram_efficient_loading) and shards them over the GPUs in prepare().
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    device_index = accelerator.local_process_index if torch.cuda.is_available() and not fsdp else None
    # Targets, rank and dropout are checked on the meta-device model: a wrong name fails before any weight loads.
    import labmodels

    skeleton = labmodels.meta_model(args.model)
    target_modules, target_names, expert_targets = resolve_targets(args.targets, skeleton)
    dropout, dropout_note = (None, "")
    if args.method != "full":
        check_rank(skeleton, target_names + expert_targets, args.rank)
        dropout, dropout_note = resolve_dropout(args, expert_targets)
        check_expert_variants(args, expert_targets)
        args.dropout = dropout
    del skeleton
    estimate, note = predict_memory(config_dict, args)
    labkit.reset_peak_memory()
    try:
        model, kept_16bit = load_model(args, compute_dtype, device_index)
    except torch.OutOfMemoryError:
        raise LabError(oom_message(args, estimate, "loading the model")) from None
    if args.method == "full":
        if args.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainable = total = sum(p.numel() for p in model.parameters())
    else:
        model, trainable, total = add_adapters(model, args, target_modules, expert_targets, dropout)
    # A model folder that ships held-out prompts (the toy model): answer them now (B = 0, so the base model).
    heldout = toy_model.heldout_rows(args.model) if is_main else []
    before = toy_model.answer(model, tokenizer, heldout) if heldout else []
    model.config.use_cache = False  # the generation cache is useless in training and clashes with checkpointing

    log(f"model {args.model} ({args.method}, compute {dtype_name}) on {accelerator.device} x{accelerator.num_processes}")
    log(f"trainable params: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)")
    if args.method != "full":
        variants = [v for v, on in (("DoRA", args.use_dora), ("rsLoRA", args.use_rslora),
                                    (f"init {args.init}", args.init != "default"),
                                    (f"LoRA+ ratio {args.lora_plus:g}" if args.lora_plus else "", args.lora_plus)) if on]
        log(f"adapters on {', '.join(adapted_names(model))}"
            f" (--targets {args.targets}), rank {args.rank}, alpha {args.alpha:g}, dropout {dropout:g}"
            f"{'; ' + ', '.join(variants) if variants else ''}")
        if dropout_note:
            log(f"note: {dropout_note}")
    if kept_16bit:
        log("note: " + labmodels.describe_kept(kept_16bit))
    template = "the tokenizer's chat template" if tokenizer.chat_template else "the '### Instruction:' prompt"
    log(f"data: {len(conversations)} conversations rendered with {template}, EOS after every answer, loss on "
        f"answer tokens only; {pad_note}")
    if args.method != "full":
        log(f"loracalc counts: {loracalc_lora_params(config_dict, args)}")
    log(f"loracalc predicts: {describe_estimate(estimate) if estimate else 'n/a'} [{note}]")
    per_gpu = distributed.predict_per_gpu(estimate, config_dict, accelerator) if estimate else None  # [distributed]
    if per_gpu and accelerator.num_processes > 1:
        log(f"loracalc predicts per GPU: {distributed.describe_per_gpu(per_gpu)}")
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

    if is_main and args.method != "full":
        save_initial_adapter(model, args, output_dir)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, args, model)
    scheduler = build_schedule(optimizer, total_steps, args.warmup_ratio)
    model, optimizer = accelerator.prepare(model, optimizer)
    params = [p for p in model.parameters() if p.requires_grad]  # [distributed] FSDP replaced them with shards

    settings = {k: v for k, v in vars(args).items()}
    settings.update(compute_dtype=dtype_name, world_size=accelerator.num_processes, total_steps=total_steps)
    start_step = 0
    log_path = output_dir / "train_log.jsonl"
    if args.resume:
        restore = (lambda ckpt: distributed.load_sharded_checkpoint(ckpt, model, optimizer, scheduler, accelerator)
                   ) if fsdp else None  # [distributed]
        start_step = load_latest_checkpoint(output_dir, accelerator.unwrap_model(model), optimizer, scheduler,
                                            settings, args, log, sharded_restore=restore)
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        old = log_path.read_text().splitlines() if start_step and log_path.exists() else []
        log_path.write_text("".join(line + "\n" for line in old if json.loads(line)["step"] <= start_step))
    if eval_examples:
        log(f"held out {len(eval_examples)} of {len(examples)} examples for evaluation every {args.eval_every} steps")
    log(f"{len(fit_examples)} training examples{f' packed into {len(train_examples)} blocks of {args.seq_len} tokens (attention crosses example boundaries)' if args.pack else ''}, {micro_per_epoch} micro-batches/epoch/process, {total_steps} optimizer steps "
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
    tracker, eval_loss = EvalTracker(), None
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
            record = {"step": step, "lr": lr, "loss": loss_value, "tokens_per_s": tokens / elapsed,
                      "memory_bytes": memory}
            tracker.add_train(loss_value)
            if eval_examples and (step % args.eval_every == 0 or step == total_steps):
                # Every process evaluates the same held-out examples; only the main one logs and saves.
                eval_loss = evaluate(model, eval_examples, tokenizer.pad_token_id, args.batch_size, accelerator.device)
                improved, warning = tracker.add_eval(eval_loss)
                record["eval_loss"] = eval_loss
                if is_main and improved and args.method != "full":
                    save_best(output_dir, step, eval_loss, accelerator.unwrap_model(model), tokenizer)
                if warning and is_main:
                    bar.write(f"warning at step {step}: {warning}")
            if is_main:
                with log_path.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                postfix = dict(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens / elapsed:,.0f}",
                               mem=labkit.human_bytes(memory))
                if eval_loss is not None:
                    postfix["eval"] = f"{eval_loss:.4f}"
                bar.set_postfix(**postfix)
                bar.update(1)
            if step % args.save_every == 0 or step == total_steps or stop["signal"]:
                if fsdp:  # [distributed] every rank writes its own shard; the folder appears when all have
                    distributed.save_sharded_checkpoint(output_dir / "checkpoints" / f"step-{step:06d}", step, model,
                                                        optimizer, scheduler, settings, accelerator)
                    if is_main:
                        import shutil
                        for old in checkpoint_dirs(output_dir)[args.keep_checkpoints:]:
                            shutil.rmtree(old, ignore_errors=True)
                elif is_main:
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
    # With PiSSA/OLoRA the weights under the adapter are the base minus the initial B @ A, not the base:
    # switching the adapter off would score that residual, so there is no base figure to show.
    if args.method != "full" and args.init not in ("pissa", "olora"):
        with unwrapped.disable_adapter():
            probe["base"] = labkit.probe_loss(unwrapped, examples, tokenizer.pad_token_id)
    tokens_per_s = tokens_seen / train_seconds if train_seconds else float("nan")
    steps_this_session = step - start_step
    results = {"trainable_params": trainable, "total_params": total, "final_loss": loss_value,
               "steps_per_s_this_session": steps_this_session / train_seconds if train_seconds else None,
               "eval_loss": eval_loss, "best_eval_loss": tracker.best if eval_examples else None,
               "kept_16bit": [list(k) for k in kept_16bit], "dropout": dropout,
               "tokens_per_s_this_session": tokens_per_s, "steps": step,
               "predicted_bytes": estimate.total_bytes if estimate else None,
               "predicted_tensor_bytes": estimate.total_bytes - context_bytes(estimate) if estimate else None,
               "measured_reserved_bytes": torch.cuda.max_memory_reserved() if torch.cuda.is_available() else None,
               "probe_loss": probe, "measured_peak_bytes": peak, "measured": peak_kind, "device": str(accelerator.device),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "heldout_exact_match": toy_model.scores(heldout, before, unwrapped, tokenizer) if heldout else None,
               "versions": labkit.library_versions(), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if accelerator.num_processes > 1:  # [distributed] measured per rank, next to the per-GPU prediction
        results["ranks"] = distributed.report_ranks(accelerator, model, optimizer, per_gpu, log)
    whole = distributed.full_adapter_state(model) if fsdp else None  # [distributed] gathered on every rank
    if is_main:
        final = output_dir / ("model" if args.method == "full" else "adapter")
        with labkit.atomic_directory(final) as staging:
            if args.method == "full":
                accelerator.unwrap_model(model).save_pretrained(staging, state_dict=whole)
            else:  # adapter_model.safetensors + adapter_config.json (under FSDP from the gathered adapter)
                save_adapter(accelerator.unwrap_model(model), staging, output_dir, state_dict=whole)
            tokenizer.save_pretrained(staging)
            (staging / "run_settings.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1))
        log(f"final loss {loss_value:.4f}; {tokens_per_s:,.0f} tokens/s, "
            f"{results['steps_per_s_this_session'] or 0:.2f} steps/s over {steps_this_session} steps this session")
        if eval_examples:
            log(f"eval loss {eval_loss:.4f} at the end, best {tracker.best:.4f}"
                f"{f' (adapter saved in {output_dir / BEST_DIR}/)' if args.method != 'full' else ''}")
        if heldout:
            for line in toy_model.report(heldout, results["heldout_exact_match"], log_path):
                log(line)
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
