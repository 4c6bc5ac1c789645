"""QLoRA (or LoRA) fine-tuning of a vision-language model on image + question + answer conversations.

One GPU, a real model (any model transformers loads with AutoModelForImageTextToText: Qwen2.5-VL, Gemma 3,
SmolVLM, LLaVA, Mistral 3, ...) and a .jsonl of {"images": [paths], "messages": [...]} rows:

    python gpu_labs/vlm_finetune.py --model Qwen/Qwen2.5-VL-3B-Instruct --dataset my_data/train.jsonl \
        --max-steps 200 --output-dir runs/qwen-vl-qlora

No GPU? A tiny random VLM and pictures the lab draws train in about a minute on a CPU:

    python gpu_labs/vlm.py tiny-vlm runs/tiny-llava --family llava        # or --family gemma3
    python gpu_labs/vlm.py data runs/shapes                                # 240 pictures, a question each
    python gpu_labs/vlm_finetune.py --model runs/tiny-llava --dataset runs/shapes/train.jsonl \
        --output-dir runs/tiny-llava-qlora

By default the adapters go on the language model's linear layers only (--adapt language); the vision tower and
the projector stay frozen and, under QLoRA, 16-bit. --adapt all puts them on every linear layer peft's
"all-linear" finds, the vision tower's included. The loss is on the answers only (gpu_labs/vlm.py's collator).
After training the script loads the base model again, puts the saved adapter on it and answers the held-out
pictures, beside the base model's answers. --trainer trl runs the same through TRL's SFTTrainer (its own
vision collator); re-running the same command resumes from the last complete checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if not __package__:  # run as `python gpu_labs/vlm_finetune.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

# All standard library at import, so --help stays instant.
from gpu_labs import adapters, labdata, labkit, labmodels, trainer, vlm
from gpu_labs.core import LabError, human_bytes, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--model", required=True, help="Hugging Face model id or local folder (config.json with a vision_config, "
        "weights, processor files); a tiny one: python gpu_labs/vlm.py tiny-vlm FOLDER")
    add("--dataset", required=True, help="local .jsonl: {\"images\": [paths relative to the file], \"messages\": "
        "[user turn with {\"type\": \"image\"} parts, ..., assistant answer]}; drawn pictures: python gpu_labs/vlm.py data FOLDER")
    add("--method", choices=("qlora", "lora"), default="qlora", help="qlora: 4-bit frozen language model + adapters; lora: 16-bit base + adapters")
    add("--adapt", choices=("language", "all"), default="language", help="language: adapters on the language model's linear layers; all: on every linear layer, vision tower and projector included")
    add("--rank", type=int, default=16, help="LoRA rank r")
    add("--alpha", type=float, default=32, help="LoRA alpha; the update is scaled by alpha/rank")
    add("--dropout", type=float, default=0.05, help="dropout on the adapter input")
    add("--lr", type=float, default=2e-4, help="peak learning rate (linear warmup, cosine decay)")
    add("--max-steps", type=int, default=60, help="optimizer steps to run")
    add("--batch-size", type=int, default=8, help="conversations per micro-batch: memory grows with it and with the image tokens")
    add("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    add("--eval-ratio", type=float, default=0.1, help="share of rows held out: scored by eval loss and answered at the end")
    add("--eval-every", type=int, default=20, help="evaluate every N steps (with --eval-ratio > 0)")
    add("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True, help="recompute activations in backward: less memory, more compute")
    add("--compute-dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto", help="dtype of the 16-bit weights and the 4-bit layers' compute (auto: bf16 on a GPU that has it, fp32 on a CPU)")
    add("--trainer", choices=("course", "trl"), default="course", help="course: transformers' Trainer with the lab's collator, atomic checkpoints and log; trl: TRL's SFTTrainer and its vision collator")
    add("--save-every", type=int, default=20, help="checkpoint every N steps")
    add("--keep-checkpoints", type=int, default=2, help="how many recent checkpoints to keep")
    add("--resume", action=argparse.BooleanOptionalAction, default=True, help="continue from the last complete checkpoint in --output-dir (its settings must match)")
    add("--max-new-tokens", type=int, default=8, help="tokens generated per held-out answer")
    add("--seed", type=int, default=0, help="seed for the adapter's init, dropout, data order and the held-out split")
    add("--output-dir", default="runs/vlm", help="where checkpoints, the log and the final adapter go")
    return p


def validate_args(args) -> None:
    for name in ("rank", "max_steps", "batch_size", "grad_accum", "eval_every", "save_every", "keep_checkpoints",
                 "max_new_tokens"):
        if getattr(args, name) < 1:
            raise LabError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(args, name)})")
    if not 0 <= args.eval_ratio < 1:
        raise LabError(f"--eval-ratio must be in [0, 1) (got {args.eval_ratio})")
    if not 0 <= args.dropout < 1:
        raise LabError(f"--dropout must be in [0, 1) (got {args.dropout})")
    if args.lr <= 0:
        raise LabError(f"--lr must be positive (got {args.lr})")


def check_model(model: str) -> None:
    """Fail in one line, before anything loads, unless `model` is a vision-language model."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise LabError(f"could not read the config of --model {model}: {err}. Pass a local folder or a "
                       "Hub id (HF_HUB_OFFLINE=1 blocks downloads).") from None
    if not hasattr(config, "vision_config"):
        raise LabError(f"--model {model} is a text-only model ({config.model_type}): use "
                       "gpu_labs/qlora_finetune.py for it")


def load_model(args, compute_dtype, adapter_dir: Path | None = None):
    """The VLM as the lab trains it: 4-bit language model (vision tower and projector 16-bit) under QLoRA,
    16-bit otherwise; with `adapter_dir`, the saved adapter on top (for the reload check)."""
    import torch
    from transformers import AutoModelForImageTextToText

    kwargs = dict(dtype=compute_dtype)
    kept = []
    if args.method == "qlora":
        meta = labmodels.meta_model(args.model)
        kwargs["quantization_config"], kept = labmodels.bnb_4bit_config(
            args.model, compute_dtype, keep_16bit=tuple(vlm.vision_modules_present(meta)))
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": 0}
    model = labmodels.keep_training_kernel(AutoModelForImageTextToText.from_pretrained(args.model, **kwargs))
    if adapter_dir is not None:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, adapter_dir), kept
    return model, kept


def add_adapters(model, args):
    """peft's LoRA on the chosen layers; the base frozen, gradient checkpointing as asked."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    # --8<-- [start:targets]
    # The language model's linear layers, by a regular expression over full names such as
    # model.language_model.layers.0.self_attn.q_proj; "all-linear" also reaches the vision tower and projector.
    target_modules = vlm.language_model_targets(model) if args.adapt == "language" else "all-linear"
    # --8<-- [end:targets]
    if args.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout, target_modules=target_modules,
                        task_type="CAUSAL_LM")
    for config_part in (model.config, getattr(model.config, "text_config", None)):
        if config_part is not None:  # the generation cache is useless in training and clashes with checkpointing
            config_part.use_cache = False
    model = get_peft_model(model, config)
    return model, target_modules


def answer(model, processor, rows: list[dict], max_new_tokens: int) -> list[str]:
    """Greedy answers to each row's prompt (with its pictures), in batches of 8."""
    import torch

    out = []
    was_training = model.training
    model.eval()
    for i in range(0, len(rows), 8):
        chunk = rows[i:i + 8]
        prompts = [processor.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in chunk]
        batch = processor(images=[r["images"] for r in chunk], text=prompts, padding=True, padding_side="left",
                          return_tensors="pt", add_special_tokens=False).to(model.device)
        with torch.no_grad():
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=processor.tokenizer.pad_token_id)
        out += [t.strip() for t in processor.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)]
    model.train(was_training)
    return out


def exact(rows: list[dict], answers: list[str]) -> int:
    return sum(a == r["completion"][0]["content"][0]["text"].strip() if isinstance(r["completion"][0]["content"], list)
               else a == r["completion"][0]["content"].strip() for r, a in zip(rows, answers))


def training_arguments(args, checkpoints: Path, has_eval: bool, trl: bool):
    import torch
    from transformers import TrainingArguments

    common = dict(
        output_dir=str(checkpoints), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
        max_steps=args.max_steps, learning_rate=args.lr, lr_scheduler_type="cosine", warmup_steps=0.1,
        seed=args.seed, data_seed=args.seed, logging_strategy="steps", logging_steps=1,
        eval_strategy="steps" if has_eval else "no", eval_steps=args.eval_every,
        save_strategy="steps", save_steps=args.save_every, save_total_limit=None if not trl else args.keep_checkpoints,
        bf16=False, fp16=False, gradient_checkpointing=False, remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding", use_cpu=not torch.cuda.is_available(),
        report_to="none", disable_tqdm=True)
    if trl:
        from trl import SFTConfig

        # max_length None: cutting a sequence could cut an image's tokens apart from its pixels
        return SFTConfig(**common, max_length=None, completion_only_loss=True)
    return TrainingArguments(**common, label_names=["labels"], prediction_loss_only=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    validate_args(args)
    labkit.quiet_libraries()
    rows = vlm.load_dataset(args.dataset)
    fit_rows, heldout = labdata.split_train_eval(rows, args.eval_ratio, args.seed)
    import torch
    from transformers import AutoProcessor, PrinterCallback

    compute_dtype = labkit.resolve_compute_dtype(args.compute_dtype)
    output_dir = Path(args.output_dir)
    check_model(args.model)
    processor = AutoProcessor.from_pretrained(args.model)
    labdata.ensure_pad_token(processor.tokenizer)
    torch.manual_seed(args.seed)
    model, kept = load_model(args, compute_dtype)
    vision = vlm.vision_modules_present(model)
    model, target_modules = add_adapters(model, args)
    trainable, total = model.get_nb_trainable_parameters()
    print(f"model {args.model} ({args.method}, {model.config.model_type}; vision parts: {', '.join(vision)}) "
          f"on {model.device}", flush=True)
    print(f"adapters ({args.adapt}): rank {args.rank} on {target_modules}; trainable {trainable:,} of {total:,} "
          f"({100 * trainable / total:.3f}%)", flush=True)
    if kept:
        print("note: " + labmodels.describe_kept(kept), flush=True)
    sample = vlm.AnswerOnlyCollator(processor)(fit_rows[:1])
    image_token = getattr(model.config, "image_token_id", None) or getattr(model.config, "image_token_index", None)
    image_tokens = int((sample["input_ids"] == image_token).sum()) if image_token is not None else None
    print(f"data: {len(rows)} conversations from {args.dataset}; {len(fit_rows)} to train on, {len(heldout)} held "
          f"out; first one {sample['input_ids'].shape[1]} tokens"
          + (f", {image_tokens} of them for its picture" if image_tokens is not None else "")
          + f", {int((sample['labels'] != -100).sum())} answer tokens learned", flush=True)
    before = answer(model, processor, heldout, args.max_new_tokens) if heldout else []

    settings = dict(vars(args))
    resume_from, start_step = (trainer.find_resume_checkpoint(output_dir, settings, print) if args.resume
                               else (None, 0))
    callbacks, state = trainer.lab_callbacks(output_dir, is_main=True, start_step=start_step, save_best_adapter=False)
    targs = training_arguments(args, output_dir / trainer.CHECKPOINTS, bool(heldout), args.trainer == "trl")
    run = build_trainer(args, model, targs, fit_rows, heldout, processor, callbacks, output_dir, settings)
    run.remove_callback(PrinterCallback)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if state["signal"]:
        print(f"stopped by signal {state['signal']} after step {run.state.global_step}; checkpoint saved. "
              "Re-run the same command to continue.", flush=True)
        return 128 + state["signal"]
    seconds = time.perf_counter() - started
    trained = answer(model, processor, heldout, args.max_new_tokens) if heldout else []
    dtypes = adapters.adapter_dtypes(model)
    final = output_dir / "adapter"
    with labkit.atomic_directory(final) as staging:
        trainer.save_adapter(model, staging, output_dir)
        processor.save_pretrained(staging)
        (staging / "run_settings.json").write_text(json.dumps({"settings": settings, "results": {
            "final_loss": state["loss"], "eval_loss": state["eval_loss"], "steps": run.state.global_step,
            "trainable_params": trainable, "total_params": total, "seconds": seconds, "adapter_dtypes": dtypes,
            "versions": labkit.library_versions()}}, indent=1))
    print(f"final loss {state['loss']:.4f} after {run.state.global_step} steps ({seconds:.0f} s this session)"
          + (f"; eval loss {state['eval_loss']:.4f}" if state["eval_loss"] is not None else ""), flush=True)
    print("adapter weights: " + ", ".join(f"{n:,} in {d}" for d, n in sorted(dtypes.items()))
          + (" (TRL casts a 4-bit model's adapters to bf16 when the trainer is built)" if args.trainer == "trl"
             and args.method == "qlora" else ""), flush=True)
    print(f"saved adapter to {final}/ ({', '.join(sorted(p.name for p in final.iterdir()))}; "
          f"{human_bytes(sum(p.stat().st_size for p in final.iterdir()))})", flush=True)
    if heldout:
        report_heldout(args, compute_dtype, final, processor, heldout, before, trained)
    return 0


def build_trainer(args, model, targs, fit_rows, heldout, processor, callbacks, output_dir, settings):
    """transformers' Trainer with the lab's collator and checkpoints, or TRL's SFTTrainer with its own."""
    if args.trainer == "trl":
        from datasets import Dataset
        from trl import SFTTrainer

        # TRL's vision collator takes {"images", "prompt", "completion"} rows, the same the lab's collator reads
        return SFTTrainer(model=model, args=targs, train_dataset=Dataset.from_list(fit_rows),
                          eval_dataset=Dataset.from_list(heldout) if heldout else None,
                          processing_class=processor, callbacks=callbacks)
    return trainer.course_trainer(
        lab_dir=output_dir, settings=settings, keep_checkpoints=args.keep_checkpoints, lora_plus=None,
        fsdp_without_gpu=lambda accelerator: False, model=model, args=targs, train_dataset=fit_rows,
        eval_dataset=heldout or None, data_collator=vlm.AnswerOnlyCollator(processor), processing_class=processor,
        callbacks=callbacks)


def report_heldout(args, compute_dtype, final: Path, processor, heldout: list[dict], before: list[str],
                   trained: list[str]) -> None:
    """Load the base model again, put the saved adapter on it, and answer the held-out pictures: the same
    answers as the model in memory, or the saved adapter is not the trained one."""
    reloaded, _ = load_model(args, compute_dtype, adapter_dir=final)
    after = answer(reloaded, processor, heldout, args.max_new_tokens)
    same = sum(a == b for a, b in zip(after, trained))
    print(f"held-out answers, exact match: base model {exact(heldout, before)}/{len(heldout)}, "
          f"reloaded base + saved adapter {exact(heldout, after)}/{len(heldout)} "
          f"(the same answer as the trained model in memory on {same}/{len(heldout)})", flush=True)
    shown: dict[str, int] = {}
    for row, b, a in zip(heldout, before, after):  # two examples of each question
        question = " ".join(p["text"] for p in row["prompt"][-1]["content"] if p.get("type") == "text")
        if shown.setdefault(question, 0) < 2:
            shown[question] += 1
            truth = row["completion"][0]["content"][0]["text"]
            print(f"  {question!r} (answer {truth!r}): base {b!r} -> tuned {a!r}", flush=True)


if __name__ == "__main__":
    run_cli(main)
