"""What the course adds to transformers' `Trainer`, as a small subclass and callbacks.

The Trainer runs the loop: batches, gradient accumulation, the optimizer and the schedule, clipping,
evaluation, checkpoints and resuming (model, optimizer, schedule, RNG and data position). The course adds:

- `CourseTrainer`: checkpoints that appear whole (staged, marked complete, then renamed to
  `checkpoints/step-NNNNNN`), the lab's own rotation, and LoRA+ through peft's optimizer builder;
- `find_resume_checkpoint`: the newest complete checkpoint, skipping a half-written one, refusing one
  written with other settings;
- callbacks: the JSONL training log (loss, learning rate, tokens/s, memory), the progress bar, the
  eval-rises warning with the best adapter kept, and a clean stop on SIGTERM.

Standard library only at import time; transformers is imported when a trainer is built.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from pathlib import Path

from gpu_labs import labkit
from gpu_labs.core import COMPLETE_MARKER, LabError, atomic_directory, human_bytes, is_complete

# --8<-- [start:optimizer]
# The lab's --optimizer names and the Trainer's `optim` for each. AdamW keeps two fp32 moments (8 B/param);
# bitsandbytes' 8-bit AdamW keeps both in 8 bits (2 B/param); the paged variant lives in CUDA unified
# memory, so its state pages out to CPU RAM during a spike instead of crashing.
OPTIMIZERS = {"adamw": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit"}
# --8<-- [end:optimizer]
CHECKPOINTS = "checkpoints"
SETTINGS_FILE = "lab_settings.json"
BEST_DIR = "best"
INITIAL_ADAPTER_DIR = "initial-adapter"
# Settings that change the data order, step count or learning-rate schedule: a resumed run must match them.
RESUME_KEYS = ("model", "dataset", "method", "rank", "alpha", "dropout", "targets", "lr", "warmup_ratio",
               "epochs", "max_steps", "batch_size", "grad_accum", "seq_len", "pack", "optimizer", "seed",
               "weight_decay", "compute_dtype", "world_size", "eval_ratio", "use_dora", "use_rslora", "init",
               "lora_plus")


def loraplus_optimizer(model, optimizer: str, lr: float, weight_decay: float, ratio: float):
    """LoRA+: B's parameter group gets lr * ratio; A keeps lr. The paper's reason is scaling with width: in wide
    layers one shared rate cannot make both A and B learn efficiently, and B's best rate is much larger."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    if optimizer == "adamw":
        cls = torch.optim.AdamW
    else:
        import bitsandbytes as bnb
        cls = bnb.optim.PagedAdamW8bit if optimizer == "paged_adamw_8bit" else bnb.optim.AdamW8bit
    return create_loraplus_optimizer(model, cls, lr=lr, loraplus_lr_ratio=ratio, weight_decay=weight_decay)


# --- checkpoints -----------------------------------------------------------------------------------

def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """The run's checkpoint folders, newest first."""
    root = Path(output_dir) / CHECKPOINTS
    found = [p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[5:]), reverse=True)


def find_resume_checkpoint(output_dir: Path, settings: dict, log) -> tuple[Path | None, int]:
    """(newest complete checkpoint, its step), or (None, 0). A folder without the completion marker was
    killed while saving and is skipped; one saved with other settings stops the run with the fix."""
    for ckpt in checkpoint_dirs(output_dir):
        if not is_complete(ckpt):
            log(f"skipping {ckpt}: half-written (no {COMPLETE_MARKER} marker), probably killed while saving")
            continue
        try:
            saved = json.loads((ckpt / SETTINGS_FILE).read_text())
            step = int(saved["step"])
        except (OSError, ValueError, KeyError) as err:
            log(f"skipping {ckpt}: cannot be read ({type(err).__name__}: {err})")
            continue
        changed = [k for k in RESUME_KEYS if saved["settings"].get(k) != settings.get(k)]
        if changed:
            diffs = "; ".join(f"--{k.replace('_', '-')} was {saved['settings'].get(k)!r}, now {settings.get(k)!r}"
                              for k in changed)
            raise LabError(f"{output_dir} holds checkpoints of a different run ({diffs}). Re-run the original "
                           "command to resume it, or use a new --output-dir (or --no-resume to start over).")
        log(f"resuming from {ckpt} (step {step})")
        return ckpt, step
    return None, 0


def save_adapter(model, folder: Path, output_dir: Path, state_dict=None) -> None:
    """The adapter as peft saves it; after PiSSA/OLoRA converted to a plain LoRA adapter of the original base
    (see save_initial_adapter). `state_dict` is the gathered adapter when FSDP holds it in shards."""
    initial = Path(output_dir) / INITIAL_ADAPTER_DIR
    if is_complete(initial):
        model.save_pretrained(folder, path_initial_model_for_weight_conversion=str(initial), state_dict=state_dict)
    else:
        model.save_pretrained(folder, state_dict=state_dict)


def save_initial_adapter(model, init: str, output_dir: Path) -> None:
    """PiSSA and OLoRA move the adapter's starting point out of the base weights (W becomes W - B0 @ A0), so
    their adapter only fits that modified base. Keeping the untrained adapter lets every save convert the
    result into an ordinary LoRA adapter for the original base (rank 2r: [B, -B0] @ [A; A0]), which the
    serving and merge labs load like any other."""
    if init not in ("pissa", "olora"):
        return
    config = model.peft_config["default"]
    saved_init, config.init_lora_weights = config.init_lora_weights, True  # peft requires this for the conversion
    with atomic_directory(Path(output_dir) / INITIAL_ADAPTER_DIR) as staging:
        model.save_pretrained(staging)
    config.init_lora_weights = saved_init


def save_best(output_dir: Path, step: int, eval_loss: float, model, tokenizer) -> Path:
    """The adapter with the lowest eval loss so far, saved like the final one (loadable by the other labs)."""
    final = Path(output_dir) / BEST_DIR
    with atomic_directory(final) as staging:
        save_adapter(model, staging, output_dir)
        tokenizer.save_pretrained(staging)
        (staging / "best.json").write_text(json.dumps({"step": step, "eval_loss": eval_loss}) + "\n")
    return final


def course_trainer(*, lab_dir: Path, settings: dict, keep_checkpoints: int, lora_plus: float | None,
                   fsdp_without_gpu, **trainer_kwargs):
    """A `Trainer` whose checkpoints appear whole under lab_dir/checkpoints/step-NNNNNN."""
    from transformers import Trainer

    class CourseTrainer(Trainer):
        _staging = None

        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            if fsdp_without_gpu(self.accelerator):  # [distributed] gloo processes get the FSDP they asked for
                self.is_fsdp_enabled = True

        def create_optimizer(self, model=None):
            if lora_plus and self.optimizer is None:
                args = settings
                self.optimizer = loraplus_optimizer(model or self.model, args["optimizer"], args["lr"],
                                                    args["weight_decay"], lora_plus)
            return super().create_optimizer(model)

        def _get_output_dir(self, trial):
            return str(self._staging) if self._staging else super()._get_output_dir(trial)

        def _save_checkpoint(self, model, trial):
            # The Trainer writes checkpoint-N inside a staging folder; the folder gets its settings and the
            # completion marker, then one rename makes it step-NNNNNN. A kill at any moment leaves either the
            # old set of checkpoints or the new one, never a half-written folder under a checkpoint's name.
            step = self.state.global_step
            root = Path(lab_dir) / CHECKPOINTS
            self._staging = root / f".tmp-step-{step:06d}"
            if self.accelerator.is_main_process:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging.mkdir(parents=True)
            self.accelerator.wait_for_everyone()
            try:
                super()._save_checkpoint(model, trial)
            finally:
                staging, self._staging = self._staging, None
            self.accelerator.wait_for_everyone()
            if self.accelerator.is_main_process:
                written = staging / f"checkpoint-{step}"
                (written / SETTINGS_FILE).write_text(json.dumps({"step": step, "settings": settings}, indent=1))
                (written / COMPLETE_MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
                final = root / f"step-{step:06d}"
                shutil.rmtree(final, ignore_errors=True)
                os.replace(written, final)
                shutil.rmtree(staging, ignore_errors=True)
                for old in checkpoint_dirs(lab_dir)[keep_checkpoints:]:
                    shutil.rmtree(old, ignore_errors=True)
            self.accelerator.wait_for_everyone()

    return CourseTrainer(**trainer_kwargs)


# --- callbacks ---------------------------------------------------------------------------------------

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


def lab_callbacks(lab_dir: Path, *, is_main: bool, save_best_adapter: bool, start_step: int):
    """The course's callbacks, sharing one state: (callbacks, state). state["signal"] is the signal that
    stopped the run (or None); state["tracker"] the EvalTracker; state["tokens"], state["seconds"] and
    state["loss"] the session's totals and the last train loss."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    log_path = Path(lab_dir) / "train_log.jsonl"
    shared = {"signal": None, "tracker": EvalTracker(), "tokens": 0, "seconds": 0.0, "loss": float("nan"),
              "eval_loss": None}
    pending: dict = {}

    def flush():
        if is_main and "loss" in pending:
            with log_path.open("a") as handle:
                handle.write(json.dumps(pending) + "\n")
            postfix = dict(loss=f"{pending['loss']:.4f}", lr=f"{pending['lr']:.2e}",
                           tok_s=f"{pending['tokens_per_s']:,.0f}", mem=human_bytes(pending["memory_bytes"]))
            if shared["eval_loss"] is not None:
                postfix["eval"] = f"{shared['eval_loss']:.4f}"
            shared["bar"].set_postfix(**postfix)
        pending.clear()

    class LabLog(TrainerCallback):
        """One JSONL line per optimizer step (the eval loss joins its step's line) and the progress bar."""

        def on_train_begin(self, args, state, control, **kwargs):
            shared["bar"] = tqdm(total=state.max_steps, initial=start_step, disable=not is_main, desc="training",
                                 dynamic_ncols=True)

        def on_step_begin(self, args, state, control, lr_scheduler=None, **kwargs):
            shared["started"], shared["tokens_before"] = time.perf_counter(), state.num_input_tokens_seen
            shared["lr"] = lr_scheduler.get_last_lr()[0]  # the rate this step's update uses

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            elapsed = time.perf_counter() - shared["started"]
            tokens = state.num_input_tokens_seen - shared["tokens_before"]
            shared["tokens"] += tokens
            shared["seconds"] += elapsed
            shared["loss"] = logs["loss"]
            shared["tracker"].add_train(logs["loss"])
            pending.update(step=state.global_step, lr=shared["lr"], loss=logs["loss"], tokens_per_s=tokens / elapsed,
                           memory_bytes=labkit.memory_now_bytes())
            if not control.should_evaluate:
                flush()

        def on_evaluate(self, args, state, control, metrics=None, model=None, processing_class=None, **kwargs):
            eval_loss = metrics["eval_loss"]
            shared["eval_loss"] = pending["eval_loss"] = eval_loss
            improved, warning = shared["tracker"].add_eval(eval_loss)
            if is_main and improved and save_best_adapter:
                save_best(lab_dir, state.global_step, eval_loss, model, processing_class)
            if is_main and warning:
                shared["bar"].write(f"warning at step {state.global_step}: {warning}")
            flush()

        def on_step_end(self, args, state, control, **kwargs):
            shared["bar"].update(1)
            if shared["signal"]:  # finish this step, save, stop: the re-run resumes from here
                control.should_save = control.should_training_stop = True
            delay = float(os.environ.get("GPU_LABS_TEST_STEP_DELAY_S", "0"))
            if delay:  # tests slow each step down so they can kill a run mid-way
                time.sleep(delay)

        def on_train_end(self, args, state, control, **kwargs):
            flush()
            shared["bar"].close()

    def request_stop(signum, _frame):
        shared["signal"] = signum

    signal.signal(signal.SIGTERM, request_stop)
    return [LabLog()], shared
