"""Re-record the lab output the lab pages show, by running the labs exactly as a reader would.

    python gpu_labs/lab_outputs.py            # all of it, about 5 minutes on 2 CPU cores
    python gpu_labs/lab_outputs.py --only trl
    python gpu_labs/lab_outputs.py --only merge   # after the tiny run (it merges that run's adapter)
    python gpu_labs/lab_outputs.py --only toy     # the toy-world model taught a new task: about 2 minutes
    python gpu_labs/lab_outputs.py --only vlm     # the VLM lab on two tiny VLM families: about 4 minutes

Writes into gpu_labs/output/ (the pages include those files; nothing on the pages is typed by hand):
qlora-tiny-llama.txt (the QLoRA lab on the tiny Llama), qlora-toy-model.txt (the lab's default CPU model,
pretrained on the toy world, fine-tuned on a new task and scored on held-out prompts before and after),
merge-toy-model.txt (that adapter merged, the merged model scored again), families.md (one 20-step run per model family:
steps/s, trainable parameters, predicted and measured memory) and trl-vs-lab.md (the loss curves of the
lab and of TRL's SFTTrainer on the same run) and merge-tiny-llama.txt (the merge lab on the tiny run's adapter,
both merge routes measured against the model as trained), vlm-tiny-llava.txt and vlm-tiny-gemma3.txt (the VLM lab
on the two tiny VLM families, through the lab's Trainer and through TRL).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "output"
if not __package__:  # run as `python gpu_labs/lab_outputs.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from gpu_labs import labkit  # noqa: E402

FAMILY_NAMES = {"llama": "Llama", "qwen3": "Qwen3", "gemma3_text": "Gemma-3 (text)", "phi3": "Phi-3",
                "qwen3_moe": "Qwen3-MoE", "gpt2": "GPT-2", "olmo2": "OLMo-2"}


def run(script: str, *args) -> str:
    """Run a lab from the repository root with one thread and no hub access; return its stdout."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT / "snippets"))
    proc = subprocess.run([sys.executable, str(HERE / script), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{script} {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def record_tiny_llama() -> None:
    # The commands the page shows, with the page's folder names (runs/ is git-ignored).
    run("labkit.py", "tiny-model", "runs/tiny-llama", "--chat-template")
    out = run("qlora_finetune.py", "--model", "runs/tiny-llama", "--max-steps", 20, "--batch-size", 4,
              "--grad-accum", 1, "--lr", "1e-2", "--eval-ratio", "0.2", "--eval-every", 5,
              "--output-dir", "runs/tiny-qlora", "--no-resume")
    (OUT / "qlora-tiny-llama.txt").write_text(out)


def record_merge() -> None:
    # The page's command, on the adapter record_tiny_llama() trained; the notes about the 4-bit merge are
    # on the page itself, so the recording keeps the measured lines only.
    if not (ROOT / "runs/tiny-qlora/adapter/run_settings.json").is_file():
        raise SystemExit("--only merge needs the tiny run's adapter in runs/tiny-qlora: run --only tiny first.")
    out = run("merge_export.py", "--adapter", "runs/tiny-qlora/adapter", "--output", "runs/tiny-merged")
    kept = [line for line in out.splitlines()
            if line.startswith(("base ", "logit check", "saved the merged", "The model as trained", "Measured on"))]
    (OUT / "merge-tiny-llama.txt").write_text("\n".join(kept) + "\n")


# The toy-model run the QLoRA lab page shows, without --model: on a CPU the lab's default is the toy model.
TOY_ARGS = ("--max-steps", 200, "--batch-size", 16, "--grad-accum", 1, "--lr", "5e-3", "--eval-ratio", "0.1",
            "--eval-every", 25, "--seq-len", 32, "--output-dir", "runs/toy-qlora")


def toy_command() -> str:
    """The command line the page shows and the recording starts with."""
    return "python gpu_labs/qlora_finetune.py " + " ".join(map(str, TOY_ARGS))


def toy_commands() -> str:
    """The two commands of the page's code block: build (or find) the model, then fine-tune it."""
    return "python gpu_labs/toy_model.py\n" + toy_command() + "\n"


def record_toy() -> None:
    run("toy_model.py")  # builds .cache/toy-world-lm, or finds it built
    out = run("qlora_finetune.py", *TOY_ARGS, "--no-resume")
    (OUT / "toy-command.txt").write_text(toy_commands())
    (OUT / "qlora-toy-model.txt").write_text(f"$ {toy_command()}\n{out}")
    merged = run("merge_export.py", "--adapter", "runs/toy-qlora/adapter", "--output", "runs/toy-merged")
    (OUT / "merge-toy-model.txt").write_text(
        "$ python gpu_labs/merge_export.py --adapter runs/toy-qlora/adapter --output runs/toy-merged\n" + merged)


def record_families(tmp: Path) -> None:
    rows = ["| Family | Adapted layers | Trainable / total params | Steps/s | Eval loss (step 5 -> 20) "
            "| loracalc predicts (GPU tensors) | Measured (CPU peak RSS) |", "|---|---|---|---|---|---|---|"]
    for family, label in FAMILY_NAMES.items():
        model = tmp / f"tiny-{family}"
        run("labkit.py", "tiny-model", model, "--family", family, "--chat-template")
        stdout = run("qlora_finetune.py", "--model", model, "--max-steps", 20, "--batch-size", 4, "--grad-accum", 1,
                     "--lr", "1e-2", "--eval-ratio", "0.2", "--eval-every", 5, "--output-dir", tmp / f"run-{family}")
        results = json.loads((tmp / f"run-{family}" / "adapter" / "run_settings.json").read_text())["results"]
        log = [json.loads(line) for line in (tmp / f"run-{family}" / "train_log.jsonl").read_text().splitlines()]
        evals = [row["eval_loss"] for row in log if "eval_loss" in row]
        adapted = re.search(r"^adapters on (.*?) \(--targets", stdout, re.M).group(1)
        predicted = (labkit.human_bytes(results["predicted_tensor_bytes"]) if results["predicted_tensor_bytes"]
                     else "n/a (family not in the engine yet)")
        rows.append(f"| {label} | {adapted} | {results['trainable_params']:,} / {results['total_params']:,} "
                    f"| {results['steps_per_s_this_session']:.1f} | {evals[0]:.3f} -> {evals[-1]:.3f} "
                    f"| {predicted} | {labkit.human_bytes(results['measured_peak_bytes'])} |")
    (OUT / "families.md").write_text("\n".join(rows) + "\n")


def record_trl(tmp: Path) -> None:
    model = tmp / "tiny-chat"
    run("labkit.py", "tiny-model", model, "--chat-template")
    same = ["--model", model, "--max-steps", 10, "--batch-size", 4, "--grad-accum", 1, "--lr", "1e-2",
            "--dropout", 0, "--seed", 7, "--rank", 8]
    run("qlora_finetune.py", *same, "--output-dir", tmp / "lab")
    run("trl_sft.py", *same, "--output-dir", tmp / "trl")
    run("trl_sft.py", *same, "--keep-fp32-adapters", "--output-dir", tmp / "trl32")

    def losses(name):
        return [json.loads(line)["loss"] for line in (tmp / name / "train_log.jsonl").read_text().splitlines()]

    ours, theirs, theirs32 = losses("lab"), losses("trl"), losses("trl32")
    rows = ["| Step | Lab (fp32 adapter) | TRL SFTTrainer (bf16 adapter) | Difference | TRL, adapter cast back to fp32 "
            "| Difference |", "|---|---|---|---|---|---|"]
    rows += [f"| {i} | {a:.5f} | {b:.5f} | {abs(a - b):.1e} | {c:.5f} | {abs(a - c):.1e} |"
             for i, (a, b, c) in enumerate(zip(ours, theirs, theirs32), 1)]
    rows.append(f"\nLargest difference over {len(ours)} steps: {max(abs(a - b) for a, b in zip(ours, theirs)):.1e} "
                f"with TRL's bf16 adapter, {max(abs(a - c) for a, c in zip(ours, theirs32)):.1e} with an fp32 adapter.")
    (OUT / "trl-vs-lab.md").write_text("\n".join(rows) + "\n")


# The VLM lab page's CPU commands: the two tiny VLM families, each through one trainer.
VLM_RUNS = {"llava": ("course", "runs/tiny-llava-qlora"), "gemma3": ("trl", "runs/tiny-gemma3-trl")}


def vlm_commands(family: str) -> list[str]:
    trainer, out = VLM_RUNS[family]
    return [f"python gpu_labs/vlm.py tiny-vlm runs/tiny-{family} --family {family}",
            "python gpu_labs/vlm.py data runs/shapes",
            f"python gpu_labs/vlm_finetune.py --model runs/tiny-{family} --dataset runs/shapes/train.jsonl "
            f"--lr 3e-3 --max-steps 150 --eval-every 50 --save-every 50"
            + (f" --trainer {trainer}" if trainer != "course" else "") + f" --output-dir {out}"]


def record_vlm() -> None:
    for family in VLM_RUNS:
        *setup, train = vlm_commands(family)
        for command in setup:
            _, script, *args = command.split()
            run(Path(script).name, *args)
        _, script, *args = train.split()
        out = run(Path(script).name, *args, "--no-resume")
        (OUT / f"vlm-tiny-{family}.txt").write_text("".join(f"$ {c}\n" for c in (*setup, train)) + out)
        if family == "llava":  # the page's copyable commands
            (OUT / "vlm-commands.txt").write_text("".join(f"{c}\n" for c in (*setup, train)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("tiny", "merge", "toy", "families", "trl", "vlm"), default=None,
                        help="record one part only")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "tiny"):
            record_tiny_llama()
        if args.only in (None, "tiny", "merge"):
            record_merge()
        if args.only in (None, "toy"):
            record_toy()
        if args.only in (None, "families"):
            record_families(Path(tmp))
        if args.only in (None, "trl"):
            record_trl(Path(tmp))
        if args.only in (None, "vlm"):
            record_vlm()
    print(f"written to {OUT}/")
    return 0


if __name__ == "__main__":
    labkit.run_cli(main)
