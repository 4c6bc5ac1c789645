"""A small pretrained language model for the labs to fine-tune on a CPU: the evidence experiment's base.

The evidence experiment (gpu_labs/evidence/) pretrains a two-layer Llama-shaped model on a generated toy
world (sentences about people, their ages and cities, and the facts "oslo is in europe", "at 27, tom is
young"). This module runs that same pretraining, unchanged, and saves the result in the layout of a model
on the Hub, so every lab loads it with ``from_pretrained``:

    config.json, model.safetensors                     the pretrained weights (transformers' save_pretrained)
    tokenizer.json, tokenizer_config.json, ...         the experiment's word-level vocabulary as a fast tokenizer,
                                                       with a chat template that renders the task's prompt
    train.jsonl                                        the new task the labs teach it (never seen in pretraining):
                                                       "tom is 27 and lives in oslo." -> "group=young;region=europe"
    heldout.jsonl                                      other prompts of that task, scored before and after

    python gpu_labs/toy_model.py              # builds .cache/toy-world-lm once (a minute or two on a CPU)
    python gpu_labs/toy_model.py --force      # rebuild

On a machine without CUDA the labs use it when --model is not given; on a GPU the default is a real checkpoint
(GPU_DEFAULT_MODEL). Standard library only at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if not __package__:  # run as `python gpu_labs/toy_model.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from gpu_labs import labdata
from gpu_labs.core import DEFAULT_DATASET, atomic_directory, run_cli

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EVIDENCE = HERE / "evidence"
DEFAULT_DIR = REPO / ".cache" / "toy-world-lm"
GPU_DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B"
TRAIN_FILE, HELDOUT_FILE, INFO_FILE = "train.jsonl", "heldout.jsonl", "toy_model.json"
N_TRAIN, N_HELDOUT = 2000, 128
UNK = "<unk>"

# The chat template puts the task's prompt into the form the evidence experiment trains on:
# "<s> sentence => record </s>" (the tokenizer drops spaces, so only the tokens matter).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ message['content'] | trim }} =>"
    "{% elif message['role'] == 'assistant' %} {{ message['content'] | trim }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)


def _evidence():
    """The evidence experiment's modules (experiment.py puts its own folder on sys.path for `data`)."""
    if str(EVIDENCE) not in sys.path:
        sys.path.insert(0, str(EVIDENCE))
    import data  # noqa: F401 - the toy world
    import experiment

    return experiment, experiment.data


def hf_tokenizer():
    """The experiment's word tokenizer (same ids) as a transformers fast tokenizer, plus <unk> at the end."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    _, data = _evidence()
    words = data.build_tokenizer()
    vocab = {token: i for i, token in enumerate(words.itos + [UNK])}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # A word, a number or one punctuation mark per token, spaces dropped: data.py's \w+|[^\w\s].
    raw.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"[^\w\s]"), behavior="isolated")])
    raw.decoder = decoders.Fuse()  # tokens joined without spaces: a record decodes exactly
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=data.BOS, eos_token=data.EOS,
                                        pad_token=data.PAD, unk_token=UNK)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def task_rows(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, held-out) rows of the new task as instruction/response pairs, disjoint prompts."""
    _, data = _evidence()
    _, train, _val, test = data.make_datasets(seed, 0, N_TRAIN, 0, N_HELDOUT)

    def rows(pairs):
        return [{"instruction": prompt.replace(data.PROMPT_SEPARATOR, "").strip(), "response": target}
                for prompt, target in pairs]

    return rows(train), rows(test)


def recipe() -> dict:
    """Everything the build depends on: the experiment's settings and this module's task sizes. A cached
    build made from another recipe is rebuilt."""
    import dataclasses

    experiment, _ = _evidence()
    pretraining = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "tie_embeddings", "pretrain_steps",
                   "pretrain_batch", "pretrain_lr", "seq_len", "data_seed")
    settings = {k: v for k, v in dataclasses.asdict(experiment.Settings()).items() if k in pretraining}
    return json.loads(json.dumps({"settings": settings, "n_train": N_TRAIN, "n_heldout": N_HELDOUT,
                                  "template": CHAT_TEMPLATE}, default=str))


def is_built(path: str | Path = DEFAULT_DIR) -> bool:
    """A complete build of the current recipe is in PATH."""
    path = Path(path)
    if not ((path / INFO_FILE).is_file() and (path / "SAVE_COMPLETE").is_file()):
        return False
    return json.loads((path / INFO_FILE).read_text()).get("recipe") == recipe()


def build(out_dir: str | Path = DEFAULT_DIR, force: bool = False, log=print) -> Path:
    """Pretrain the toy-world model (the evidence experiment's Settings and pretrain_base) and save it with
    its tokenizer and task files. A complete earlier build is reused unless force is set."""
    out_dir = Path(out_dir)
    if is_built(out_dir) and not force:
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM

    experiment, _ = _evidence()
    torch.set_num_threads(1)
    settings = experiment.Settings()
    started = time.perf_counter()
    with atomic_directory(out_dir) as staging:
        log(f"pretraining the toy-world model ({settings.pretrain_steps} steps; the evidence experiment's base)")
        stats = experiment.pretrain_base(settings, staging, log)
        tokenizer = hf_tokenizer()
        model = AutoModelForCausalLM.from_pretrained(staging, dtype=torch.float32)
        # One new row for <unk> (mean of the others), so text outside the toy vocabulary still tokenizes.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        model.config.unk_token_id = tokenizer.unk_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        train, heldout = task_rows(settings.data_seed)
        for name, rows in ((TRAIN_FILE, train), (HELDOUT_FILE, heldout)):
            (staging / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        info = {"source": "gpu_labs/evidence/experiment.py pretrain_base", "params": stats["params"],
                "pretrain_steps": stats["steps"], "pretrain_final_loss": round(stats["final_loss"], 4),
                "pretrain_seconds": round(stats["seconds"], 1), "build_seconds": round(time.perf_counter() - started, 1),
                "vocab_size": len(tokenizer), "train_rows": len(train), "heldout_rows": len(heldout),
                "recipe": recipe()}
        (staging / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
    log(f"saved to {out_dir}/ in {info['build_seconds']:.0f} s ({info['params']:,} parameters, "
        f"pretraining loss {info['pretrain_final_loss']:.3f})")
    return out_dir


def default_model(log=print) -> str:
    """What --model means when not given: the toy model on a CPU (built on first use), a real one on a GPU."""
    import torch

    if torch.cuda.is_available():
        return GPU_DEFAULT_MODEL
    if not is_built(DEFAULT_DIR):
        log(f"no --model given and no GPU: building the toy-world model in {DEFAULT_DIR} (once)")
        build(DEFAULT_DIR, log=log)
    try:  # relative to the working folder where it can be: logs and saved adapter configs carry no machine path
        return str(DEFAULT_DIR.relative_to(Path.cwd()))
    except ValueError:
        return str(DEFAULT_DIR)


def resolve_defaults(args) -> None:
    """Fill in a lab's --model and --dataset when they were not given: the default model (above), and the
    model folder's own train.jsonl where it ships one, else the labs' instruction file."""
    if getattr(args, "model", None) is None:
        args.model = default_model()
    if getattr(args, "dataset", "") is None:
        args.dataset = default_dataset(args.model)


def default_dataset(model: str | Path) -> str:
    """The model folder's own train.jsonl where it ships one (the toy model), else the labs' instruction file."""
    shipped = Path(model) / TRAIN_FILE
    return str(shipped if shipped.is_file() else DEFAULT_DATASET)


def heldout_rows(model: str | Path) -> list[dict]:
    """The held-out prompts a local model folder ships (heldout.jsonl), or [] (a Hub id, any other model)."""
    path = Path(model) / HELDOUT_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --8<-- [start:answer]
def answer(model, tokenizer, rows: list[dict], batch_size: int = 64, max_new_tokens: int = 12) -> list[str]:
    """Greedy answers to each row's instruction, rendered with the tokenizer's chat template."""
    import torch


    device = next(model.parameters()).device
    prompts = [labdata.prompt_ids(tokenizer, [{"role": "user", "content": r["instruction"]}]) for r in rows]
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i:i + batch_size]
            width = max(map(len, chunk))  # left padding, so every prompt ends where generation starts
            ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in chunk], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
            new = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)[:, width:]
            out += [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new.tolist()]
    model.train(was_training)
    return out


def exact_match(rows: list[dict], answers: list[str]) -> float:
    """Share of answers identical to the expected response."""
    return sum(a == r["response"].strip() for r, a in zip(rows, answers)) / len(rows)
# --8<-- [end:answer]


def scores(rows: list[dict], before: list[str], model, tokenizer) -> dict:
    """Exact match before (answers given) and after (answered now by MODEL), with every answer."""
    after = answer(model, tokenizer, rows)
    return {"prompts": len(rows), "before": exact_match(rows, before), "after": exact_match(rows, after),
            "answers_before": before, "answers_after": after}


def report(rows: list[dict], result: dict, log_path: Path | None = None, show: int = 4) -> list[str]:
    """Lines for the log: the eval loss curve, a few held-out prompts answered before and after, both scores."""
    lines = []
    if log_path is not None and Path(log_path).is_file():
        evals = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
        curve = [(row["step"], row["eval_loss"]) for row in evals if "eval_loss" in row]
        if curve:
            lines.append("eval loss by step: " + ", ".join(f"{step}: {loss:.3f}" for step, loss in curve))
    lines.append(f"held-out prompts ({result['prompts']}, none trained on): exact match {result['before']:.1%} "
                 f"before fine-tuning, {result['after']:.1%} after")
    for row, b, a in list(zip(rows, result["answers_before"], result["answers_after"]))[:show]:
        lines += [f"  prompt:   {row['instruction']}", f"  expected: {row['response']}",
                  f"  before:   {b or '(nothing)'}", f"  after:    {a or '(nothing)'}"]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(DEFAULT_DIR), help="folder to write the model into")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete build is there")
    args = parser.parse_args(argv)
    build(args.output, force=args.force)
    return 0


if __name__ == "__main__":
    run_cli(main)
