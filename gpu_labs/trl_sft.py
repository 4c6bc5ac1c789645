"""The same QLoRA fine-tune as qlora_finetune.py, run by TRL's SFTTrainer: what to use in production.

The model and the adapter (same init, from --seed) are built by the lab's own builders (gpu_labs/adapters.py),
then handed to SFTTrainer, which does the rest: tokenizing with the chat template, masking the prompt
(completion-only loss), batching, the optimizer, the schedule, logging and checkpoints. Both runs draw their
batches from the Trainer's seeded sampler, so with the same --seed they see the same examples in each step.

    python gpu_labs/trl_sft.py --model meta-llama/Llama-3.1-8B --dataset gpu_labs/data/instructions.jsonl \
        --rank 16 --max-steps 200 --output-dir runs/llama8b-trl

Several GPUs: `accelerate launch --num_processes 4 gpu_labs/trl_sft.py ...` (TRL scales through the
Trainer; add `--fsdp` settings to an accelerate config to shard a large base).
On a CPU, with a tiny model (`python gpu_labs/labkit.py tiny-model runs/tiny --chat-template`):

    python gpu_labs/trl_sft.py --model runs/tiny --max-steps 30 --output-dir runs/tiny-trl

Where the two differ: SFTTrainer converts the adapter of a quantized (QLoRA) model from fp32 to bf16 when it is
built (trl/trainer/sft_trainer.py, following the QLoRA paper), while the lab keeps peft's fp32 adapter; the
run says which dtype each keeps, and --keep-fp32-adapters casts TRL's back for a like-for-like comparison.
A multi-turn conversation trains on its last answer only here (TRL's prompt/completion form), on every
answer in the lab.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

if not __package__:  # run as `python gpu_labs/trl_sft.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

# All standard library at import, so --help stays instant.
from gpu_labs import adapters, labdata, labkit, toy_model
from gpu_labs.core import LabError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--model", default=None, help=f"Hugging Face model id or local folder with config.json and weights (default: on a CPU the toy-world model, gpu_labs/toy_model.py; on a GPU {toy_model.GPU_DEFAULT_MODEL})")
    add("--dataset", default=None, help="local .jsonl (instruction/response, Alpaca, or chat 'messages'); default: the model folder's train.jsonl where it ships one, else gpu_labs/data/instructions.jsonl")
    add("--instruction-field", default="instruction", help="JSON key holding the prompt")
    add("--response-field", default="response", help="JSON key holding the answer to learn")
    add("--method", choices=("qlora", "lora"), default="qlora", help="qlora: 4-bit frozen base + adapters; lora: 16-bit base + adapters")
    add("--rank", type=int, default=16, help="LoRA rank r: more capacity and more trainable params as it grows")
    add("--alpha", type=float, default=32, help="LoRA alpha; the update is scaled by alpha/rank")
    add("--dropout", type=float, default=None, help="dropout on the adapter input (default 0.05; 0 for fused MoE experts)")
    add("--targets", default="all-linear", help="modules to adapt: all-linear | comma list of the model's module names")
    add("--lr", type=float, default=2e-4, help="peak learning rate")
    add("--warmup-ratio", type=float, default=0.03, help="fraction of steps spent warming the learning rate up")
    add("--max-steps", type=int, default=30, help="optimizer steps to run")
    add("--batch-size", type=int, default=4, help="examples per device per micro-batch: memory grows with it")
    add("--grad-accum", type=int, default=4, help="micro-batches per optimizer step")
    add("--seq-len", type=int, default=512, help="longest example in tokens; longer ones are cut")
    add("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True, help="recompute activations in backward: less memory, more compute")
    add("--compute-dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto", help="matmul dtype; auto = bf16 on GPUs that have it, fp32 on CPU")
    add("--seed", type=int, default=42, help="seed for the adapter init, dropout and data order (as in the lab)")
    add("--keep-fp32-adapters", action="store_true", help="cast the adapter back to fp32 after SFTTrainer made it bf16 (the lab's dtype): a like-for-like comparison, twice the adapter and optimizer bytes")
    add("--output-dir", default="runs/trl", help="the Trainer's output, the loss log and the final adapter go here")
    return p


def to_trl_rows(conversations: list[list[dict]], tokenizer) -> list[dict]:
    """TRL's prompt/completion form: with a chat template, message lists (TRL renders them, masks the prompt,
    and relies on the template to close the answer); without one, plain text (TRL appends EOS)."""
    rows = []
    for messages in conversations:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        if tokenizer.chat_template:
            rows.append({"prompt": messages[:last], "completion": [messages[last]]})
        else:
            users = [m["content"] for m in messages[:last] if m["role"] == "user"]
            rows.append({"prompt": labdata.format_prompt(users[-1]), "completion": messages[last]["content"].strip()})
    return rows


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.rank < 1 or args.max_steps < 1 or args.batch_size < 1 or args.grad_accum < 1:
        raise LabError("--rank, --max-steps, --batch-size and --grad-accum must be at least 1.")
    labkit.quiet_libraries()
    toy_model.resolve_defaults(args)  # --model / --dataset not given: the toy model on a CPU, its task
    conversations = labdata.load_dataset_conversations(args.dataset, args.instruction_field, args.response_field)

    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from gpu_labs import labmodels

    compute_dtype = labkit.resolve_compute_dtype(args.compute_dtype)
    try:
        AutoConfig.from_pretrained(args.model)
    except OSError as err:
        raise LabError(f"could not read the config of --model {args.model}: {err}") from None
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    pad_note = labdata.ensure_pad_token(tokenizer)

    # --8<-- [start:same_model]
    # The lab's own builders: same 4-bit settings, same targets and dropout rules, same adapter init.
    plan = adapters.AdapterPlan(model=args.model, method=args.method, rank=args.rank, alpha=args.alpha,
                                dropout=args.dropout, targets=args.targets, seed=args.seed,
                                gradient_checkpointing=args.gradient_checkpointing)
    targets = adapters.plan_targets(plan)
    device_index = 0 if torch.cuda.is_available() else None
    model, trainable, total, kept = adapters.build_model(plan, targets, compute_dtype, device_index)
    # --8<-- [end:same_model]
    built_dtypes = adapters.adapter_dtypes(model)
    heldout = toy_model.heldout_rows(args.model)  # the toy model ships held-out prompts: answered before and after
    before = toy_model.answer(model, tokenizer, heldout) if heldout else []

    rows = to_trl_rows(conversations, tokenizer)
    dataset = Dataset.from_list(rows)

    # --8<-- [start:sft_config]
    config = SFTConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",                  # linear warmup, then half a cosine to 0, as in the lab
        warmup_steps=args.warmup_ratio,              # a share of the steps (below 1), as in the lab
        optim="adamw_torch", weight_decay=0.0, max_grad_norm=1.0,
        max_length=args.seq_len,                     # longer examples are cut, as in the lab
        packing=False,                               # one example per row; --pack in the lab packs
        completion_only_loss=True,                   # loss on the answer only (the lab's -100 labels)
        seed=args.seed, data_seed=args.seed,         # the Trainer's seeded sampler: the lab's batches
        gradient_checkpointing=False,                # the model is prepared already (prepare_model_for_kbit_training)
        bf16=False, fp16=False,                      # no autocast: the model computes in its own dtype, as in the lab
        use_cpu=not torch.cuda.is_available(),
        logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=False, dataset_num_proc=None,
    )
    # --8<-- [end:sft_config]

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir / "train_log.jsonl"
    log_path.write_text("")

    class LossLog(TrainerCallback):
        """Writes the Trainer's per-step loss in the lab's log format, for a side-by-side comparison."""

        def on_log(self, _args, state, _control, logs=None, **_kwargs):
            if logs and "loss" in logs:
                with log_path.open("a") as handle:
                    handle.write(json.dumps({"step": state.global_step, "loss": logs["loss"],
                                             "lr": logs.get("learning_rate")}) + "\n")

    print(f"model {args.model} ({args.method}, trained by TRL's SFTTrainer); trainable params: {trainable:,} of {total:,}")
    if kept:
        print("note: " + labmodels.describe_kept(kept))
    print(f"data: {len(rows)} examples as prompt/completion, drawn by the Trainer's sampler (seed {args.seed}) as in "
          f"qlora_finetune.py; {pad_note}")
    # --8<-- [start:trainer]
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[LossLog()])
    # --8<-- [end:trainer]
    trl_dtypes = adapters.adapter_dtypes(trainer.model)
    if args.keep_fp32_adapters:   # before train(): the optimizer, built there, then holds fp32 moments too
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    trained_dtypes = adapters.adapter_dtypes(trainer.model)
    print(describe_dtypes(built_dtypes, trl_dtypes, trained_dtypes))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    final = output_dir / "adapter"
    results = {"adapter_dtypes_built": built_dtypes, "adapter_dtypes_after_sfttrainer": trl_dtypes,
               "adapter_dtypes_trained": trained_dtypes, "steps": trainer.state.global_step,
               "versions": labkit.library_versions()}
    with labkit.atomic_directory(final) as staging:
        trainer.model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "run_settings.json").write_text(json.dumps({"settings": vars(args), "results": results}, indent=1))
    losses = [json.loads(line)["loss"] for line in log_path.read_text().splitlines()]
    if heldout:
        print("\n".join(toy_model.report(heldout, toy_model.scores(heldout, before, trainer.model, tokenizer))))
    print(f"{len(losses)} steps in {seconds:.1f} s ({len(losses) / seconds:.2f} steps/s); loss {losses[0]:.4f} -> "
          f"{losses[-1]:.4f}; adapter saved to {final}/")
    return 0


def describe_dtypes(built: dict, after_trl: dict, trained: dict) -> str:
    """Which run keeps fp32 adapters: the lab (peft's fp32 adapter) and this run as it trains."""
    def names(d):
        return "+".join(sorted(d)) or "none"

    line = f"adapter dtype: {names(built)} as the lab builds it (and trains it in qlora_finetune.py)"
    if after_trl != built:
        line += (f"; SFTTrainer converted it to {names(after_trl)} when it was built (TRL casts a quantized "
                 "model's adapter to bf16)")
    if trained == built:
        return line + f"; this run trains {names(trained)}, like the lab: both keep {names(trained)} adapters"
    return line + f"; this run trains {names(trained)}: only the lab keeps {names(built)} adapters"


if __name__ == "__main__":
    labkit.run_cli(main)
