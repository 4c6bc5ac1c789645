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

transformers' `Trainer` runs the loop (batches, accumulation, AdamW and the cosine schedule, clipping,
evaluation, checkpoints, resuming); what the course adds sits in gpu_labs/trainer.py (atomic checkpoints,
the resume-settings check, the training log, the eval-rises warning), gpu_labs/adapters.py (the model and
its adapters) and gpu_labs/prediction.py (loracalc's estimate beside the measured peak).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

if not __package__:  # run as `python gpu_labs/qlora_finetune.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

# All standard library at import, so --help stays instant.
from gpu_labs import adapters, distributed, labdata, labkit, prediction, toy_model, trainer
from gpu_labs.core import LabError, human_bytes, run_cli
from gpu_labs.trainer import OPTIMIZERS


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
    add("--dropout", type=float, default=None, help=f"dropout on the adapter input; regularises small datasets (default {adapters.DEFAULT_DROPOUT}; 0 when fused MoE experts are adapted, which peft requires)")
    add("--targets", default="all-linear", help="modules to adapt: all-linear (every linear layer but the output, in the family's own names) | q,v | comma list of the model's module names")
    add("--use-dora", action="store_true", help="DoRA: learn a magnitude per output too; closer to full fine-tuning, slower steps")
    add("--use-rslora", action="store_true", help="rsLoRA: scale by alpha/sqrt(r) instead of alpha/r, so high ranks keep learning")
    add("--init", choices=tuple(adapters.INITS), default="default", help="adapter init: default (A Kaiming, B zero), gaussian, pissa/olora (from the weights' SVD/QR; change the base), loftq (qlora: A,B offset the NF4 error)")
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
    add("--optimizer", choices=tuple(OPTIMIZERS), default="adamw", help="adamw: 8 B/param state; adamw_8bit: 2 B/param; paged_adamw_8bit: 2 B/param and spills to CPU (CUDA only)")
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


def training_arguments(args, checkpoints: Path, compute_dtype, has_eval: bool):
    """The Trainer's settings for this run, each from the flag of the same meaning."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_steps=args.max_steps or -1, num_train_epochs=args.epochs,
        # --8<-- [start:schedule]
        learning_rate=args.lr,
        optim=OPTIMIZERS[args.optimizer], weight_decay=args.weight_decay,
        # Linear warmup from 0 to --lr over this share of the steps, then half a cosine down to 0 at the last
        # step. The schedule is a pure function of the step count, so a resumed run lands on the same rates.
        lr_scheduler_type="cosine", warmup_steps=args.warmup_ratio,
        # --8<-- [end:schedule]
        max_grad_norm=args.max_grad_norm or None,
        # The model is loaded in its compute dtype and prepared already (adapters.add_adapters): no autocast,
        # no second gradient-checkpointing setup.
        bf16=False, fp16=False, gradient_checkpointing=False,
        seed=args.seed, data_seed=args.seed,          # adapter init, dropout and the data order
        logging_strategy="steps", logging_steps=1,
        eval_strategy="steps" if has_eval else "no", eval_steps=args.eval_every, prediction_loss_only=True,
        save_strategy="steps", save_steps=args.save_every, save_total_limit=None,  # trainer.py rotates
        label_names=["labels"], remove_unused_columns=False, include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False, use_cpu=not torch.cuda.is_available(),
        report_to="none", disable_tqdm=True,          # the lab's own bar (trainer.lab_callbacks)
    )


def load_data(args, conversations, tokenizer):
    """(all examples, the examples to fit, training examples, held-out examples): tokenized, split, packed."""
    # --8<-- [start:data]
    # Chat template when the tokenizer has one, EOS after every answer, labels on answer tokens only.
    examples = labdata.tokenize_conversations(conversations, tokenizer, args.seq_len)
    # The held-out split is drawn before packing, so no evaluation text leaks into a training block.
    fit_examples, eval_examples = labdata.split_train_eval(examples, args.eval_ratio, args.seed)
    train_examples = labkit.pack_examples(fit_examples, args.seq_len) if args.pack else fit_examples
    # --8<-- [end:data]
    return examples, fit_examples, train_examples, eval_examples


def describe_model(log, args, dtype_name, model, trainable, total, targets, kept_16bit, device, processes) -> None:
    log(f"model {args.model} ({args.method}, compute {dtype_name}) on {device} x{processes}")
    log(f"trainable params: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)")
    if args.method != "full":
        variants = [v for v, on in (("DoRA", args.use_dora), ("rsLoRA", args.use_rslora),
                                    (f"init {args.init}", args.init != "default"),
                                    (f"LoRA+ ratio {args.lora_plus:g}" if args.lora_plus else "", args.lora_plus)) if on]
        log(f"adapters on {', '.join(adapters.adapted_names(model))}"
            f" (--targets {args.targets}), rank {args.rank}, alpha {args.alpha:g}, dropout {targets.dropout:g}"
            f"{'; ' + ', '.join(variants) if variants else ''}")
        if targets.note:
            log(f"note: {targets.note}")
    if kept_16bit:
        from gpu_labs import labmodels
        log("note: " + labmodels.describe_kept(kept_16bit))


def describe_prediction(log, args, config_dict, estimate, note):
    """loracalc's numbers for this run, before it starts; the per-GPU split when several processes run."""
    if args.method != "full":
        log(f"loracalc counts: {prediction.loracalc_lora_params(config_dict, args)}")
    log(f"loracalc predicts: {prediction.describe_estimate(estimate) if estimate else 'n/a'} [{note}]")
    speed, why = prediction.predict_speed(config_dict, args, labkit.gpu_name())
    args.predicted_tokens_per_s = speed
    log(f"loracalc predicts: {speed:,.0f} tokens/s [{why}]" if speed else f"loracalc predicts no speed: {why}")
    gpu_bytes = labkit.gpu_total_bytes()
    if estimate and gpu_bytes and estimate.total_bytes > gpu_bytes:
        log(f"warning: that is more than this GPU's {human_bytes(gpu_bytes)}; expect an out-of-memory error. "
            + prediction.oom_message(args, estimate, "start").split("Try: ", 1)[1])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    validate_args(args)
    labkit.quiet_libraries()
    toy_model.resolve_defaults(args)  # --model / --dataset not given: the toy model on a CPU, its task
    if args.optimizer == "paged_adamw_8bit":
        labkit.require_cuda("--optimizer paged_adamw_8bit", "Paging uses CUDA unified memory; on CPU use "
                            "--optimizer adamw or adamw_8bit.")
    if args.init == "loftq":
        # peft's replace_lora_weights_loftq moves each weight to "cuda" (or "xpu") for its SVD, whatever the device.
        labkit.require_cuda("--init loftq", "peft computes LoftQ's SVD on the GPU only; on CPU use --init "
                            "default, gaussian or olora.")
    conversations = labdata.load_dataset_conversations(args.dataset, args.instruction_field, args.response_field)

    import torch
    from transformers import AutoConfig, AutoTokenizer, PrinterCallback

    compute_dtype = labkit.resolve_compute_dtype(args.compute_dtype)
    dtype_name = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[compute_dtype]
    output_dir = Path(args.output_dir)
    # The prediction needs only config.json, so it is ready before the weights load (and for an OOM there).
    try:
        config_dict = AutoConfig.from_pretrained(args.model).to_dict()
    except OSError as err:
        raise LabError(f"could not read the config of --model {args.model}: {err}. Pass a local folder with "
                       "config.json and weights, or a Hub id (HF_HUB_OFFLINE=1 blocks downloads).") from None
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    pad_note = labdata.ensure_pad_token(tokenizer)
    examples, fit_examples, train_examples, eval_examples = load_data(args, conversations, tokenizer)
    targs = training_arguments(args, output_dir / trainer.CHECKPOINTS, compute_dtype, bool(eval_examples))
    is_main, world = targs.process_index == 0, targs.world_size
    log = (lambda msg: print(msg, flush=True)) if is_main else (lambda msg: None)
    # DDP: each process loads its own full copy onto its GPU. FSDP: no device_map; accelerate shards the
    # weights over the GPUs when the Trainer prepares the model.
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    device_index = targs.local_process_index if torch.cuda.is_available() and not fsdp else None

    plan = adapters.AdapterPlan.from_args(args)
    targets = adapters.plan_targets(plan)  # wrong names, ranks and dropouts fail before any weight loads
    args.dropout = plan.dropout = targets.dropout
    estimate, note = prediction.predict_memory(config_dict, args)
    labkit.reset_peak_memory()
    try:
        model, trainable, total, kept_16bit = adapters.build_model(plan, targets, compute_dtype, device_index)
    except torch.OutOfMemoryError:
        raise LabError(prediction.oom_message(args, estimate, "loading the model")) from None
    # A model folder that ships held-out prompts (the toy model): answer them now (B = 0, so the base model).
    heldout = toy_model.heldout_rows(args.model) if is_main else []
    before = toy_model.answer(model, tokenizer, heldout) if heldout else []
    model.config.use_cache = False  # the generation cache is useless in training and clashes with checkpointing

    settings = dict(vars(args), compute_dtype=dtype_name, world_size=world)
    resume_from, start_step = (trainer.find_resume_checkpoint(output_dir, settings, log) if args.resume
                               else (None, 0))
    callbacks, state = trainer.lab_callbacks(output_dir, is_main=is_main, start_step=start_step,
                                             save_best_adapter=args.method != "full")
    run = trainer.course_trainer(
        lab_dir=output_dir, settings=settings, keep_checkpoints=args.keep_checkpoints, lora_plus=args.lora_plus,
        fsdp_without_gpu=distributed.use_fsdp_without_gpu,
        model=model, args=targs, train_dataset=train_examples, eval_dataset=eval_examples or None,
        data_collator=labkit.pad_collate(tokenizer.pad_token_id), processing_class=tokenizer, callbacks=callbacks)
    run.remove_callback(PrinterCallback)  # the lab's log and bar say it once
    describe_model(log, args, dtype_name, model, trainable, total, targets, kept_16bit, run.accelerator.device, world)
    template = "the tokenizer's chat template" if tokenizer.chat_template else "the '### Instruction:' prompt"
    log(f"data: {len(conversations)} conversations rendered with {template}, EOS after every answer, loss on "
        f"answer tokens only; {pad_note}")
    describe_prediction(log, args, config_dict, estimate, note)
    per_gpu = distributed.predict_per_gpu(estimate, config_dict, run.accelerator) if estimate else None
    if per_gpu and world > 1:  # [distributed]
        log(f"loracalc predicts per GPU: {distributed.describe_per_gpu(per_gpu)}")
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        log_path = output_dir / "train_log.jsonl"
        old = log_path.read_text().splitlines() if start_step and log_path.exists() else []
        log_path.write_text("".join(line + "\n" for line in old if json.loads(line)["step"] <= start_step))
        if args.method != "full":
            trainer.save_initial_adapter(model, args.init, output_dir)
    if eval_examples:
        log(f"held out {len(eval_examples)} of {len(examples)} examples for evaluation every {args.eval_every} steps")
    micro = len(run.get_train_dataloader())
    steps = args.max_steps or math.ceil(args.epochs * math.ceil(micro / args.grad_accum))  # as the Trainer counts
    packed = (f" packed into {len(train_examples)} blocks of {args.seq_len} tokens (attention crosses example "
              "boundaries)" if args.pack else "")
    log(f"{len(fit_examples)} training examples{packed}, {micro} micro-batches/epoch/process, {steps} optimizer steps "
        f"(batch {args.batch_size} x accum {args.grad_accum} x {world} processes)")
    try:
        run.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except torch.OutOfMemoryError:
        raise LabError(prediction.oom_message(args, estimate, f"step {run.state.global_step + 1}")) from None
    if state["signal"]:
        log(f"stopped by signal {state['signal']} after step {run.state.global_step}; checkpoint saved. "
            "Re-run the same command to continue.")
        return 128 + state["signal"]
    settings["total_steps"] = run.state.max_steps
    finish(log, args, run, state, settings, estimate, per_gpu, fsdp, is_main, examples, tokenizer, heldout,
           before, trainable, total, kept_16bit, start_step, output_dir)
    return 0


def finish(log, args, run, state, settings, estimate, per_gpu, fsdp, is_main, examples, tokenizer, heldout,
           before, trainable, total, kept_16bit, start_step, output_dir) -> None:
    """After the last step: probe the adapter, measure, save the final adapter (or model) and report."""
    import torch

    peak, peak_kind = labkit.peak_memory()
    model = run.accelerator.unwrap_model(run.model)
    probe = {"adapter": labkit.probe_loss(model, examples, tokenizer.pad_token_id)}
    # With PiSSA/OLoRA the weights under the adapter are the base minus the initial B @ A, not the base:
    # switching the adapter off would score that residual, so there is no base figure to show.
    if args.method != "full" and args.init not in ("pissa", "olora"):
        with model.disable_adapter():
            probe["base"] = labkit.probe_loss(model, examples, tokenizer.pad_token_id)
    steps = run.state.global_step - start_step
    seconds = state["seconds"]
    tracker = state["tracker"]
    results = {"trainable_params": trainable, "total_params": total, "final_loss": state["loss"],
               "steps_per_s_this_session": steps / seconds if seconds else None,
               "eval_loss": state["eval_loss"], "best_eval_loss": tracker.best if state["eval_loss"] is not None else None,
               "kept_16bit": [list(k) for k in kept_16bit], "dropout": args.dropout,
               "adapter_dtypes": adapters.adapter_dtypes(model),
               "tokens_per_s_this_session": state["tokens"] / seconds if seconds else float("nan"),
               "steps": run.state.global_step,
               "predicted_bytes": estimate.total_bytes if estimate else None,
               "predicted_tensor_bytes": estimate.total_bytes - prediction.context_bytes(estimate) if estimate else None,
               "measured_reserved_bytes": torch.cuda.max_memory_reserved() if torch.cuda.is_available() else None,
               "probe_loss": probe, "measured_peak_bytes": peak, "measured": peak_kind,
               "device": str(run.accelerator.device),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "heldout_exact_match": toy_model.scores(heldout, before, model, tokenizer) if heldout else None,
               "versions": labkit.library_versions(), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if run.accelerator.num_processes > 1:  # [distributed] measured per rank, next to the per-GPU prediction
        results["ranks"] = distributed.report_ranks(run.accelerator, run.model, run.optimizer, per_gpu, log)
    whole = distributed.full_adapter_state(run.model) if fsdp else None  # [distributed] gathered on every rank
    if is_main:
        final = output_dir / ("model" if args.method == "full" else "adapter")
        with labkit.atomic_directory(final) as staging:
            if args.method == "full":
                model.save_pretrained(staging, state_dict=whole)
            else:  # adapter_model.safetensors + adapter_config.json (under FSDP from the gathered adapter)
                trainer.save_adapter(model, staging, output_dir, state_dict=whole)
            tokenizer.save_pretrained(staging)
            (staging / "run_settings.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1))
        report(log, args, results, probe, tracker, heldout, estimate, peak, peak_kind, final, output_dir, steps)
    run.accelerator.wait_for_everyone()


def report(log, args, results, probe, tracker, heldout, estimate, peak, peak_kind, final, output_dir, steps):
    predicted = getattr(args, "predicted_tokens_per_s", None)
    log(f"final loss {results['final_loss']:.4f}; {results['tokens_per_s_this_session']:,.0f} tokens/s"
        + (f" (loracalc predicted {predicted:,.0f})" if predicted else "")
        + f", {results['steps_per_s_this_session'] or 0:.2f} steps/s over {steps} steps this session")
    if results["eval_loss"] is not None:
        log(f"eval loss {results['eval_loss']:.4f} at the end, best {tracker.best:.4f}"
            f"{f' (adapter saved in {output_dir / trainer.BEST_DIR}/)' if args.method != 'full' else ''}")
    if heldout:
        for line in toy_model.report(heldout, results["heldout_exact_match"], output_dir / "train_log.jsonl"):
            log(line)
    if "base" in probe:
        log(f"loss on the first 16 examples (eval mode): base model {probe['base']:.4f}, with adapter {probe['adapter']:.4f}")
    log(prediction.memory_report(estimate, peak, peak_kind, results["measured_reserved_bytes"]))
    log(f"saved {'model' if args.method == 'full' else 'adapter'} to {final}/ "
        f"({', '.join(sorted(p.name for p in final.iterdir()))})")


if __name__ == "__main__":
    run_cli(main)
