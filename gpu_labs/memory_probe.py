"""Memory probe: real training steps over a grid of settings, measured memory next to loracalc's prediction.

For a model shape (random weights: memory does not depend on their values) and a grid of method x batch
size x sequence length x gradient checkpointing, the probe builds the model as a real run does
(bitsandbytes NF4 + double quantization + prepare_model_for_kbit_training for QLoRA, peft LoRA, plain
bf16 for full fine-tuning), runs real forward/backward/optimizer steps and measures:

* on a GPU: ``torch.cuda.max_memory_allocated`` and ``max_memory_reserved``;
* on a CPU: the bytes autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``, each
  storage counted once, at its peak over the step) plus parameter, gradient and optimizer-state bytes.

It writes predicted vs measured, with the hardware, library versions and date, to
``snippets/lora_course/data/measured_memory.json`` (the GPU memory page renders it).

    # CPU, a tiny Llama-shaped model, about a minute on 2 cores:
    python gpu_labs/memory_probe.py

    # the activation-estimate check (estimate vs saved-for-backward over method, batch, seq_len,
    # checkpointing, attention; Llama, Qwen2, Qwen3 and Gemma-2 shapes), written to
    # snippets/lora_course/data/activation_check.json, 2-5 minutes:
    python gpu_labs/memory_probe.py --activation-check

    # one GPU, a real shape (Llama-3.1-8B, random weights; QLoRA needs ~10 GB at batch 1 x 2048):
    python gpu_labs/memory_probe.py --model llama-3.1-8b --methods qlora,lora --batch-sizes 1,4 \
        --seq-lens 512,2048 --checkpointing on --device cuda
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if not __package__:  # run as `python gpu_labs/memory_probe.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])
sys.path.insert(1, str(ROOT / "snippets"))

DEFAULT_OUT = ROOT / "snippets" / "lora_course" / "data" / "measured_memory.json"
DEFAULT_ACT_OUT = ROOT / "snippets" / "lora_course" / "data" / "activation_check.json"


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
    return parse


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError("use on or off")
    return text == "on"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", "--shape", dest="model", default="tiny",
                   help="'tiny' (a small Llama shape), a loracalc preset name, or a path to a config.json")
    p.add_argument("--methods", type=_csv(str), default=None,
                   help="methods to run (default: full,lora,qlora on CPU; lora,qlora on a GPU)")
    p.add_argument("--batch-sizes", type=_csv(int), default=None, help="batch sizes (default: 1,4 on CPU; 1 on a GPU)")
    p.add_argument("--seq-lens", type=_csv(int), default=None,
                   help="sequence lengths (default: 128,512 on CPU; 512,2048 on a GPU)")
    p.add_argument("--checkpointing", type=_csv(_on_off), default=None,
                   help="gradient checkpointing settings: on, off or on,off (default: both on CPU; on on a GPU)")
    p.add_argument("--attention", type=_csv(str), default=["sdpa"], help="attention implementations: sdpa, eager")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank (larger: more trainable parameters)")
    p.add_argument("--targets", default="all-linear", help="LoRA target modules: all-linear or e.g. q,v")
    p.add_argument("--optimizer", default="adamw", help="adamw, adamw_8bit, paged_adamw_8bit or sgd")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda or cpu")
    p.add_argument("--steps", type=int, default=2, help="training steps per setting on a GPU (peak over them)")
    p.add_argument("--output", default=str(DEFAULT_OUT), help="where to write predicted vs measured JSON")
    p.add_argument("--activation-check", action="store_true",
                   help="run the activation-estimate grid on CPU instead and write --activation-output")
    p.add_argument("--activation-output", default=str(DEFAULT_ACT_OUT), help="where the activation check goes")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (1 keeps a shared machine usable)")
    return p


def hf_config(model: str) -> tuple[dict, str]:
    """(config dict with model_type, display name) for 'tiny', a loracalc preset or a config.json path."""
    import loracalc
    from gpu_labs import memory_measure as mm
    if model == "tiny":
        return mm.ModelSpec().config_dict(), "tiny-llama"
    if model in loracalc.list_models():
        a = loracalc.get_model(model)
        # the preset's published config.json values, as the engine read them (any family, MoE included)
        cfg = {**a.raw_config, "max_position_embeddings": 131072}
        return cfg, a.name
    from gpu_labs.core import LabError
    path = Path(model)
    if path.is_dir():  # a model folder, as the other labs take it
        path = path / "config.json"
    if not path.is_file():
        raise LabError(f"--model {model}: not 'tiny', not a loracalc preset and not a config.json or a folder "
                       "holding one. Presets: python -m loracalc models")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise LabError(f"{path}: could not read it as JSON ({err}).") from None
    if not isinstance(cfg, dict):
        raise LabError(f"{path}: a config.json holds one JSON object ({{...}}).")
    return cfg, str(cfg.get("_name_or_path") or path.parent.name)


# --8<-- [start:predict]
def predict(arch, run, device: str) -> dict:
    """loracalc's prediction for exactly this run, in the parts the measurement can see."""
    import loracalc
    from loracalc.memory import activation_bytes
    # the probe's full fine-tuning is pure bf16 (AdamW state in bf16), as on CPU no autocast is used
    est = loracalc.estimate_memory(arch, method=run.method, rank=run.rank, targets=run.targets,
                                   batch_size=run.batch_size, seq_len=run.seq_len,
                                   gradient_checkpointing=run.gradient_checkpointing, optimizer=run.optimizer,
                                   attention=run.attention, precision="bf16", cuda_overhead=False)
    b = est.breakdown

    def part(*keys) -> int:
        # whether alive at the step's peak or not: the CPU probe counts each part at its own largest
        return sum(t.bytes for t in est.terms + est.off_peak + est.host if t.key in keys)

    weights = part("weights", "weights_4bit", "weights_16bit", "kbit_upcast", "adapter")
    grads = part("gradients", "adapter_grads")
    optimizer = part("optimizer", "optimizer_paged")
    saved = activation_bytes(arch, run.method, run.rank, loracalc.parse_targets(run.targets), run.batch_size,
                             run.seq_len, run.gradient_checkpointing, run.attention)["saved_total"]
    out = {"parameter_bytes": weights, "gradient_bytes": grads, "optimizer_state_bytes": optimizer,
           "saved_for_backward_peak_bytes": saved, "total_bytes": est.total_bytes, "breakdown": b}
    # CPU: the four parts; GPU: the allocator's peak, which the estimate without the CUDA context models
    out["peak_bytes"] = (weights + grads + optimizer + saved) if device == "cpu" else est.allocated_peak_bytes
    return out
# --8<-- [end:predict]


def measure(cfg: dict, run, device: str, steps: int, model_dir: str) -> dict:
    from gpu_labs import memory_measure as mm
    model = mm.build_model(cfg, run, device=device, model_dir=model_dir)
    if device == "cpu":
        m = mm.measure_cpu(model, run, cfg["vocab_size"])
        m["peak_bytes"] = (m["parameter_bytes"] + m["gradient_bytes"] + m["optimizer_state_bytes"]
                           + m["saved_for_backward_peak_bytes"])
    else:
        m = mm.measure_cuda(model, run, cfg["vocab_size"], steps=steps)
        m["peak_bytes"] = m["max_memory_allocated_bytes"]
    del model
    return m


def hardware(device: str) -> str:
    import torch
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} thread(s))"


def versions() -> dict:
    from gpu_labs import labkit
    return labkit.library_versions()


def progress(i: int, n: int, label: str, t0: float) -> None:
    bar = "#" * int(20 * i / n)
    print(f"\r[{bar:<20}] {i}/{n} {label:<60} {time.time() - t0:6.1f}s", end="" if i < n else "\n",
          file=sys.stderr, flush=True)


def run_grid(args) -> dict:
    import loracalc
    from gpu_labs import memory_measure as mm
    import torch
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    cfg, name = hf_config(args.model)
    arch = loracalc.model_from_config(cfg, name=name)
    # a GPU run uses real shapes, so its default grid is the few settings a recipe would use
    cpu = device == "cpu"
    args.methods = args.methods or (["full", "lora", "qlora"] if cpu else ["lora", "qlora"])
    args.batch_sizes = args.batch_sizes or ([1, 4] if cpu else [1])
    args.seq_lens = args.seq_lens or ([128, 512] if cpu else [512, 2048])
    args.checkpointing = args.checkpointing or ([False, True] if cpu else [True])
    grid = list(itertools.product(args.methods, args.batch_sizes, args.seq_lens, args.checkpointing, args.attention))
    records, t0 = [], time.time()
    model_dir = tempfile.mkdtemp(prefix="probe-")   # QLoRA loads (and quantizes) the random weights from here
    for i, (method, b, s, gc, att) in enumerate(grid):
        run = mm.RunSpec(method=method, rank=args.rank, targets=args.targets, batch_size=b, seq_len=s,
                         gradient_checkpointing=gc, attention=att, optimizer=args.optimizer)
        label = f"{method} b={b} s={s} gc={'on' if gc else 'off'} {att}"
        progress(i, len(grid), label, t0)
        pred = predict(arch, run, device)
        meas = measure(cfg, run, device, args.steps, model_dir)
        records.append({
            "model": name, "device": device, "hardware": hardware(device),
            "settings": {"method": method, "rank": args.rank, "targets": list(loracalc.parse_targets(args.targets)),
                         "batch_size": b, "seq_len": s, "gradient_checkpointing": gc, "optimizer": args.optimizer,
                         "attention": att},
            "predicted": pred, "measured": meas,
            "error_percent": round(100 * (pred["peak_bytes"] - meas["peak_bytes"]) / meas["peak_bytes"], 2),
        })
    progress(len(grid), len(grid), "done", t0)
    what = ("CPU: parameters + gradients + optimizer state + peak bytes saved for backward; full fine-tuning "
            "in pure bf16." if device == "cpu" else "GPU: torch.cuda.max_memory_allocated vs the estimate "
            "without the CUDA context allowance.")
    return {"generated_by": "gpu_labs/memory_probe.py", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "hardware": hardware(device), "versions": versions(), "what": what, "config": cfg, "records": records}


# --8<-- [start:activation_grid]
ACTIVATION_SHAPES = {
    # small Llama shapes: grouped-query attention, SwiGLU, untied embeddings
    "llama-h256-l4": dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                          num_attention_heads=8, num_key_value_heads=4, vocab_size=2048),
    "llama-h512-l2": dict(model_type="llama", hidden_size=512, intermediate_size=1376, num_hidden_layers=2,
                          num_attention_heads=8, num_key_value_heads=2, vocab_size=4096),
    # the other families' shapes at the same size: q/k/v bias (Qwen2), q/k norms (Qwen3), four norms per
    # layer with tanh soft-capping of scores and logits (Gemma-2, eager attention only in transformers)
    "qwen2-h256-l2": dict(model_type="qwen2", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                          num_attention_heads=8, num_key_value_heads=4, vocab_size=2048),
    "qwen3-h256-l2": dict(model_type="qwen3", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                          num_attention_heads=8, num_key_value_heads=4, head_dim=32, vocab_size=2048),
    "gemma2-h256-l2": dict(model_type="gemma2", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                           num_attention_heads=8, num_key_value_heads=4, head_dim=32, vocab_size=2048),
}
_FAMILY = dict(method=["full", "lora", "qlora"], batch_size=[2], seq_len=[128], gradient_checkpointing=[False, True],
               attention=["sdpa", "eager"])
ACTIVATION_GRID = {
    "llama-h256-l4": dict(method=["full", "lora", "qlora"], batch_size=[1, 4], seq_len=[128, 512],
                          gradient_checkpointing=[False, True], attention=["sdpa", "eager"]),
    "llama-h512-l2": dict(_FAMILY, seq_len=[256]),
    "qwen2-h256-l2": _FAMILY,
    "qwen3-h256-l2": _FAMILY,
    "gemma2-h256-l2": dict(_FAMILY, attention=["eager"]),
}
# --8<-- [end:activation_grid]


def activation_check(args) -> dict:
    import loracalc
    from gpu_labs import memory_measure as mm
    import torch
    from loracalc.memory import activation_bytes
    torch.set_num_threads(args.threads)
    jobs = [(shape, dict(zip(grid, combo))) for shape, grid in ACTIVATION_GRID.items()
            for combo in itertools.product(*grid.values())]
    model_dirs = {}
    rows, t0 = [], time.time()
    for i, (shape, s) in enumerate(jobs):
        cfg = {"max_position_embeddings": 4096, **ACTIVATION_SHAPES[shape]}
        arch = loracalc.model_from_config(cfg, name=shape)
        run = mm.RunSpec(rank=args.rank, targets=args.targets, optimizer="adamw", **s)
        progress(i, len(jobs), f"{shape} {s['method']} b={s['batch_size']} s={s['seq_len']} "
                               f"gc={'on' if s['gradient_checkpointing'] else 'off'} {s['attention']}", t0)
        model = mm.build_model(cfg, run, model_dir=model_dirs.setdefault(shape, tempfile.mkdtemp(prefix="probe-")))
        measured = mm.measure_cpu(model, run, cfg["vocab_size"])["saved_for_backward_peak_bytes"]
        del model
        est = activation_bytes(arch, s["method"], args.rank, loracalc.parse_targets(args.targets), s["batch_size"],
                               s["seq_len"], s["gradient_checkpointing"], s["attention"])["saved_total"]
        rows.append({"model": shape, **s, "estimated_bytes": est, "measured_bytes": measured,
                     "error_percent": round(100 * (est - measured) / measured, 2)})
    progress(len(jobs), len(jobs), "done", t0)
    return {"generated_by": "gpu_labs/memory_probe.py --activation-check",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "hardware": hardware("cpu"), "versions": versions(),
            "shapes": ACTIVATION_SHAPES, "model": ACTIVATION_SHAPES["llama-h256-l4"],
            "rank": args.rank, "targets": args.targets,
            "what": "estimate = loracalc.memory.activation_bytes; measured = peak bytes autograd saved for backward "
                    "(saved_tensors_hooks, storages counted once, parameters excluded), one training step in bf16 "
                    "(QLoRA: NF4 base, fp32 norms and embeddings after prepare_model_for_kbit_training)",
            "rows": rows}


def write_json(path: str, data: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    tmp.replace(out)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import os
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    import warnings
    warnings.filterwarnings("ignore")
    import logging
    logging.disable(logging.WARNING)
    if args.activation_check:
        data = activation_check(args)
        write_json(args.activation_output, data)
        worst = max(abs(r["error_percent"]) for r in data["rows"])
        print(f"{len(data['rows'])} runs, largest error {worst:.1f}%; written to {args.activation_output}")
        return 0
    data = run_grid(args)
    write_json(args.output, data)
    for r in data["records"]:
        s = r["settings"]
        print(f"{s['method']:6} b={s['batch_size']:<3} s={s['seq_len']:<6} gc={'on ' if s['gradient_checkpointing'] else 'off'} "
              f"predicted {r['predicted']['peak_bytes'] / 1e6:10.2f} MB  measured {r['measured']['peak_bytes'] / 1e6:10.2f} MB"
              f"  {r['error_percent']:+.1f}%")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    from gpu_labs.labkit import run_cli
    run_cli(main)
