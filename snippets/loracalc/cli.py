"""``python -m loracalc``: the calculator in a terminal.

    python -m loracalc params --model llama-3.1-8b --rank 16 --targets all-linear [--json]
    python -m loracalc memory --model llama-3.1-70b --method qlora --batch-size 1 --seq-len 2048 [--json]
    python -m loracalc memory --model llama-3.1-70b --method lora --gpus 8 --strategy full-shard [--offload-params]
    python -m loracalc time --model llama-3.1-8b --method qlora --gpu a10 --tokens 1e7 [--price-per-gpu-hour 1.2]
    python -m loracalc host --model llama-3.1-70b --stage load|train|save|merge [--gpus 8 --rank0-loads] [--json]
    python -m loracalc models | gpus | nf4 [--json]
    python -m loracalc memory --config gemma-3-4b-it/config.json --adapt language --images 1   (vision-language)
    python -m loracalc memory --config Qwen/Qwen3-8B      # a Hub id: its config.json fetched from huggingface.co

--config takes a config.json path; a Hub id (owner/name[@revision]) that is not an existing file, there or in
--model, is fetched once from the Hub (loracalc.hub: HF_TOKEN for gated models, HF_ENDPOINT for a mirror).

Bad input prints one line naming the field and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from .choices import choice_help
from .errors import LoraCalcError


CONFIG_HELP = ("path to a Hugging Face config.json (read offline), or a Hub id such as Qwen/Qwen3-8B[@revision] "
               "whose config.json is fetched from huggingface.co (HF_TOKEN for gated models, HF_ENDPOINT for a mirror)")
MODEL_HELP = "preset name (see `models`) or a Hub id such as Qwen/Qwen3-8B (as --config); default llama-3.1-8b"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, no usage block
        raise LoraCalcError("", f"{self.prog}: {message} (see --help)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help=MODEL_HELP)
    src.add_argument("--config", default=None, help=CONFIG_HELP)
    src.add_argument("--params", default=None, help="a bare parameter count, e.g. 7e9 (approximate shape)")
    p.add_argument("--rank", default="16", help="LoRA rank r (default 16)")
    p.add_argument("--targets", default="all-linear", help="'all-linear', 'q,v', or module names (default all-linear)")
    p.add_argument("--adapt", default=None, metavar="all|language",
                   help="vision-language models (a gemma3, llava, mistral3... config.json), which part the targets "
                        "reach: " + choice_help("adapt", "all"))


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="loracalc", description="Parameters, training memory and NF4 for LoRA / QLoRA.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("params", help="total and LoRA parameter counts")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    m = sub.add_parser("memory", help="training memory breakdown and the GPUs it fits")
    _add_model_args(m)
    m.add_argument("--method", default="qlora", metavar="METHOD", help=choice_help("method", "qlora"))
    m.add_argument("--base-format", default="bf16", metavar="FORMAT",
                   help="with --method lora, the format another library stored the frozen base in (GPTQ, AWQ, HQQ, "
                        "torchao): " + choice_help("base_format", "bf16"))
    m.add_argument("--batch-size", default="1", help="sequences per step (default 1)")
    m.add_argument("--seq-len", default="2048", help="tokens per sequence (default 2048); a vision-language model's "
                   "image tokens come on top (see --images)")
    m.add_argument("--images", default="0", metavar="N",
                   help="images per sequence for a vision-language model (default 0): each adds the tokens its "
                        "processor makes (Gemma 3: 256 + 2; LLaVA-1.5: 576; ...) to the sequence")
    m.add_argument("--image-size", default=None, metavar="PIXELS",
                   help="each image's longer side in pixels (default: the vision tower's image_size); tiling "
                        "processors (Idefics3, SmolVLM, InternVL, LLaVA-NeXT) and Pixtral make more tokens of "
                        "larger images")
    gc = m.add_mutually_exclusive_group()
    gc.add_argument("--gradient-checkpointing", dest="gc", action="store_true", default=True,
                    help="recompute activations in backward (default)")
    gc.add_argument("--no-gradient-checkpointing", dest="gc", action="store_false", help="keep all activations")
    m.add_argument("--optimizer", default="adamw", metavar="OPTIMIZER", help=choice_help("optimizer", "adamw"))
    m.add_argument("--attention", default="sdpa", metavar="ATTENTION",
                   help=choice_help("attention", "sdpa") + " (FlashAttention-2 keeps 16-bit q, k, v even on an fp32 "
                        "stream)")
    m.add_argument("--precision", default="mixed", metavar="PRECISION",
                   help="full fine-tuning: " + choice_help("precision", "mixed"))
    m.add_argument("--lora-dropout", default="0", help="LoRA dropout probability (above 0 keeps a mask per module)")
    m.add_argument("--recipe", default="peft", metavar="RECIPE",
                   help="where tensors live: " + choice_help("recipe", "peft"))
    m.add_argument("--loss", default="full", metavar="LOSS", help=choice_help("loss", "full"))
    m.add_argument("--loss-chunks", default="8", help="chunks of the chunked loss (default 8, torchtune's)")
    m.add_argument("--activation-offload", action="store_true",
                   help="saved activations (with checkpointing: the kept layer inputs) live in CPU memory")
    m.add_argument("--gradient-accumulation", default="1", metavar="N",
                   help="micro-batches per optimizer step (default 1): from the second on, the gradients so far "
                        "stay alive through forward and backward")
    m.add_argument("--optimizer-in-backward", action="store_true",
                   help="apply each gradient as backward produces it (torchtune optimizer_in_bwd)")
    pg = m.add_mutually_exclusive_group()
    pg.add_argument("--paged-state-on-host", dest="paged_state_on_host", action="store_true", default=None,
                    help="count a paged optimizer's state in CPU memory (the default for a paged optimizer: "
                         "bitsandbytes evicts it there when the card runs short)")
    pg.add_argument("--paged-state-on-card", dest="paged_state_on_host", action="store_false",
                    help="count a paged optimizer's state on the card, as if it were never evicted")
    m.add_argument("--dora", action="store_true", help="DoRA (peft use_dora): magnitude vectors, their activations, the weight norm's temporaries")
    hq = m.add_mutually_exclusive_group()
    hq.add_argument("--quantize-lm-head", dest="quantize_lm_head", action="store_true", default=None,
                    help="quantize the output layer too (LitGPT's default for 8/4-bit)")
    hq.add_argument("--no-quantize-lm-head", dest="quantize_lm_head", action="store_false")
    ac = m.add_mutually_exclusive_group()
    ac.add_argument("--autocast", dest="autocast", action="store_true", default=None,
                    help="train under torch.autocast in bf16 or fp16 (HF Trainer / TRL with bf16=True; the "
                         "qlora-paper recipe's default): matmuls and attention save 16-bit tensors")
    ac.add_argument("--no-autocast", dest="autocast", action="store_false")
    m.add_argument("--kbit-upcast", default=None, metavar="all|norms|none",
                   help="override the recipe's fp32 upcast of unquantized parameters for 8/4-bit runs: all "
                        "(peft's prepare_model_for_kbit_training), norms (qlora.py), none (torchtune, LitGPT, "
                        "fms-acceleration's bnb plugin)")
    m.add_argument("--expandable-segments", dest="expandable_segments", action="store_true",
                   help="PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True: the allocator's fragmentation term drops")
    m.add_argument("--old-bitsandbytes", dest="old_bitsandbytes", action="store_true",
                   help="bitsandbytes before 0.43.2 (July 2024), whose 4-bit matmul kept each layer's input for "
                        "backward (LitGPT pinned 0.42.0 through 2024)")
    m.add_argument("--no-double-quant", dest="double_quant", action="store_false", default=True,
                   help="NF4 without double quantization (LitGPT's bnb.nf4)")
    m.add_argument("--gpu", default=None, metavar="GPU", help="also report the largest batch and sequence that fit on "
                   "this GPU (with --gpus: the fewest GPUs of this type that fit, per strategy): "
                   + choice_help("gpu"))
    m.add_argument("--gpus", default=None, help="number of GPUs sharing the run: memory per GPU instead of in total")
    m.add_argument("--strategy", default="ddp", metavar="STRATEGY",
                   help="with --gpus: " + choice_help("strategy", "ddp") + " (DeepSpeed ZeRO-2, which never shards "
                        "the weights, needs about as much as shard-grad-op)")
    m.add_argument("--offload-optimizer", action="store_true",
                   help="with a sharded strategy: optimizer state in host memory (DeepSpeed ZeRO-Offload)")
    m.add_argument("--offload-params", action="store_true",
                   help="with a sharded strategy: sharded weights, gradients and optimizer state in host memory "
                        "(FSDP CPUOffloadPolicy)")
    _add_objective_args(m)
    m.add_argument("--json", action="store_true", help="print JSON")

    t = sub.add_parser("time", help="training time, GPU-hours and cost of a run on a GPU")
    for action in m._actions[1:]:   # the memory command's flags (its own --help excepted), shared, not copied
        t._add_action(action)
    t.add_argument("--stack", default="eager", help="eager (transformers + peft, torchtune without compile), "
                   "fused (fused LoRA / norm / loss kernels) or compiled (torch.compile); sets the calibrated efficiency")
    t.add_argument("--tokens", default=None, help="tokens the run trains on (or --samples with --avg-tokens)")
    t.add_argument("--samples", default=None, help="training examples per epoch")
    t.add_argument("--avg-tokens", default=None, help="average tokens per example")
    t.add_argument("--epochs", default="1", help="passes over the samples (default 1)")
    t.add_argument("--price-per-gpu-hour", default="default",
                   help="USD per GPU-hour (default: the catalog's cited on-demand price for --gpu)")

    h = sub.add_parser("host", help="host (CPU) memory of loading, training, saving a checkpoint or merging")
    for action in m._actions[1:]:   # the memory command's flags, shared, not copied
        h._add_action(action)
    _add_host_args(h)

    s = sub.add_parser("serve", help="memory to serve a model with vLLM: weights, KV cache, LoRA slots")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help=MODEL_HELP)
    src.add_argument("--config", default=None, help=CONFIG_HELP)
    s.add_argument("--context", default="8192", help="tokens per sequence, prompt and answer (default 8192)")
    s.add_argument("--batch", default="1", help="sequences served at once (default 1)")
    s.add_argument("--weights", default="bf16", help="weight format; " + choice_help("weights", "bf16"))
    s.add_argument("--kv-cache-dtype", default="auto", help="vLLM's --kv-cache-dtype; " + choice_help("kv_dtype", "auto"))
    s.add_argument("--max-loras", default="0", help="LoRA slots (vLLM's --max-loras; 0: no LoRA)")
    s.add_argument("--max-lora-rank", default="16", help="rank every slot is allocated at; "
                   + choice_help("max_lora_rank", "16"))
    s.add_argument("--tensor-parallel", default="1", help="GPUs the model is split across (default 1)")
    s.add_argument("--gpu", default=None, help="a GPU (see `gpus`): also the most sequences of --context that fit")
    s.add_argument("--gpu-memory-utilization", default=str(_serving().DEFAULT_UTILIZATION),
                   help="share of the card vLLM may use (default 0.9)")
    s.add_argument("--json", action="store_true", help="print JSON")

    f = sub.add_parser("preflight", help="the memory estimate from a trainer's config file (TRL/Trainer YAML or "
                                         "JSON, axolotl YAML, torchtune YAML), before the run")
    f.add_argument("file", help="the trainer's config file")
    src = f.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="a preset (or Hub id) to use instead of the file's model; "
                     "without it the file's model must be a preset: " + MODEL_HELP)
    src.add_argument("--config", default=None, help="the model's config.json, for a model that is not a preset")
    f.add_argument("--gpu", default=None, help="a GPU (see `gpus`): whether it fits there")
    f.add_argument("--json", action="store_true", help="print JSON")

    g = sub.add_parser("models", help="list the model presets")
    g.add_argument("--json", action="store_true", help="print JSON")
    g = sub.add_parser("gpus", help="list the GPU catalog")
    g.add_argument("--json", action="store_true", help="print JSON")
    n = sub.add_parser("nf4", help="the NF4 code book and bits per parameter")
    n.add_argument("--block-size", default="64", help="weights per absmax block (default 64)")
    n.add_argument("--json", action="store_true", help="print JSON")
    return ap


def _add_host_args(h) -> None:
    """The host command's own flags (loracalc.host_memory), their choices read from that module."""
    from . import host_memory as hm

    def listed(table: dict, default: str) -> str:
        return "; ".join(f"{k}: {v}" for k, v in table.items()) + f" (default {default})"
    h.add_argument("--stage", default="load", help=listed(hm.STAGES, "load"))
    h.add_argument("--checkpoint", default="safetensors", help=listed(hm.CHECKPOINTS, "safetensors"))
    h.add_argument("--load-to", default="gpu", help=listed(hm.LOAD_TO, "gpu"))
    h.add_argument("--load-dtype", default="bf16", help="dtype the weights are loaded in on a CPU: bf16 or fp32 "
                   "(a cast: a private copy beside the mapped checkpoint)")
    h.add_argument("--rank0-loads", action="store_true", help="with --gpus: only rank 0 reads the checkpoint "
                   "(FSDP cpu_ram_efficient_loading, DeepSpeed ZeRO-3)")
    h.add_argument("--state-dict", default="sharded", help="save with a sharded --strategy: "
                   + listed(hm.STATE_DICTS, "sharded"))
    h.add_argument("--training-on", default="gpu", help="save: where the trained tensors live, gpu or cpu "
                   "(default gpu)")
    h.add_argument("--max-shard-size", default="50GB", help="save_pretrained's max_shard_size (default 50GB)")
    h.add_argument("--merge-base", default="16bit", help="merge: " + listed(hm.MERGE_BASES, "16bit"))


def cmd_host(args) -> Any:
    """loracalc host --stage load|train|save|merge: host memory terms, the busiest process's peak, the machine."""
    from .host_memory import host_memory
    if args.objective.strip().lower() != "sft":
        raise LoraCalcError("objective", "host counts supervised fine-tuning: leave out --objective")
    arch = _arch(args)
    kw = _memory_kwargs(args, arch)
    est = host_memory(arch, stage=args.stage, method=kw.pop("method"), rank=kw.pop("rank"),
                      targets=kw.pop("targets"), checkpoint=args.checkpoint, load_to=args.load_to,
                      load_dtype=args.load_dtype, gpus=args.gpus or 1, rank0_loads=args.rank0_loads,
                      strategy=args.strategy, offload_optimizer=args.offload_optimizer,
                      offload_params=args.offload_params, state_dict=args.state_dict, training_on=args.training_on,
                      max_shard_size=args.max_shard_size, merge_base=args.merge_base, **kw)
    if args.json:
        return est.to_dict()
    rows = [["term", "host memory", "kind", "formula"]]
    rows += [[t.label + (" (rank 0)" if t.ranks == "rank0" else ""), _gb(t.bytes), t.kind, t.formula]
             for t in est.terms]
    rows.append(["peak, busiest process", _gb(est.peak_bytes), "", "compare with VmHWM in /proc/PID/status"])
    lines = [f"{arch.display_name}: host memory to {est.stage.replace('merge', 'merge and export')} "
             f"({est.settings['method']}, {est.processes} process{'es' if est.processes > 1 else ''})", "",
             _table(rows, {1})]
    if est.processes > 1:
        lines.append(f"all {est.processes} processes: {_gb(est.machine_bytes)} (mapped checkpoint pages once)")
    if est.reclaimable_bytes:
        lines.append(f"of the peak, {_gb(est.reclaimable_bytes)} are checkpoint pages the kernel can drop and re-read")
    lines += [f"note: {n}" for n in est.notes]
    return "\n".join(lines)


def _serving():
    from . import serving
    return serving


def cmd_serve(args) -> Any:
    arch = _arch(args)
    est = _serving().estimate_serving(arch, context=args.context, batch=args.batch, weights=args.weights,
                                      kv_dtype=args.kv_cache_dtype, max_loras=args.max_loras,
                                      max_lora_rank=args.max_lora_rank, gpu=args.gpu,
                                      gpu_memory_utilization=args.gpu_memory_utilization,
                                      tensor_parallel=args.tensor_parallel)
    if args.json:
        return est.to_dict()
    per_gpu = " per GPU" if est.tensor_parallel > 1 else ""
    rows = [["term", "bytes" + per_gpu]] + [[label, _gb(b)] for _, label, b in est.terms]
    rows.append(["total", _gb(est.total_bytes)])
    kv = est.kv_bytes_per_token
    lines = [f"{est.model}: serving {est.batch} x {est.context:,} tokens" + (f" on {est.tensor_parallel} GPUs" if
             est.tensor_parallel > 1 else ""), "", _table(rows, {1}), "",
             f"KV cache per token: {kv['global']:,} bytes in global attention layers"
             + (f", {kv['local']:,} in local ones (up to their window)" if kv["local"] else "")
             + f"; one sequence of {est.context:,} tokens: {_gb(est.kv_bytes_per_sequence)}"]
    if est.gpu:
        lines.append(f"on {est.gpu} at {est.utilization:.0%}: " + (
            f"at most {est.max_sequences:,} sequences of {est.context:,} tokens at once (vLLM's start-up "
            f"activations and CUDA graphs take some of that)" if est.max_sequences else
            f"not even one sequence of {est.context:,} tokens fits: it needs {_gb(est.kv_bytes_per_sequence)} and "
            f"{_gb(max(0, est.kv_budget_bytes))} is left after the weights; shorten --context, use --kv-cache-dtype fp8 "
            f"or smaller --weights, or split the model with --tensor-parallel"))
    lines += [f"note: {n}" for n in est.notes]
    return "\n".join(lines)


def cmd_preflight(args) -> Any:
    """loracalc preflight FILE: what the file says, the estimate, and whether it fits."""
    from .gpus import fits, get_gpu
    from .preflight import preflight
    try:
        with open(args.file, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise LoraCalcError("file", f"cannot read {args.file}: {err.strerror}") from None
    model = _arch(args) if (args.model or args.config) else None
    est, read = preflight(text, model)
    out = {"tool": read["tool"], "model_in_file": read["model_id"], "objective": read["objective"],
           "read": read["origin"], "ignored": read["ignored"], "estimate": est.to_dict()}
    if args.gpu:
        g = get_gpu(args.gpu)
        out["gpu"] = {"name": g.name, "memory_bytes": g.memory_bytes, "fits": est.total_bytes <= g.memory_bytes}
    if args.json:
        return out
    rows = [["setting", "value", "from"]] + [[k, str(read["settings"].get(k, read["objective"] if k == "objective"
                                                                          else "")), v]
                                             for k, v in read["origin"].items()]
    lines = [f"{args.file}: a {read['tool']} config for {read['model_id']} ({read['objective']}); estimated on "
             f"{est.model}", "", _table(rows, set()), "",
             f"needed on the card: {_gb(est.total_bytes)} (allocated peak {_gb(est.allocated_peak_bytes)})"]
    lines += [f"note: {n}" for n in est.notes]
    if read["ignored"]:
        lines.append("not read (no memory term depends on them): " + ", ".join(read["ignored"]))
    lines.append("fits on: " + (", ".join(fits(est.total_bytes, est.settings)) or "no single GPU in the catalog"))
    if args.gpu:
        lines.append(f"{out['gpu']['name']}: {'fits' if out['gpu']['fits'] else 'does not fit: expect out of memory'}")
    return "\n".join(lines)


def _arch(args):
    from .models import PRESETS, get_model, model_from_config, model_from_param_count
    if getattr(args, "params", None):
        return model_from_param_count(args.params)
    given = args.config or args.model
    if given and not os.path.exists(given) and given.strip().lower() not in PRESETS and _hub().looks_like_id(given):
        # a Hub id (no such file, no such preset): its config.json, fetched now, read like a file
        cfg, url = _hub().fetch_config(given, field="config" if args.config else "model")
        return model_from_config(cfg, source=url)
    if args.config:
        return model_from_config(args.config)
    return get_model(args.model or "llama-3.1-8b")


def _hub():
    from . import hub
    return hub


def _table(rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, r in enumerate(rows):
        out.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                   .rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _gb(n: float) -> str:
    return f"{n / 1e9:,.2f} GB"


def params_text(arch, rank: Any = 16, targets: Any = "all-linear", adapt: Any = None) -> str:
    """What ``loracalc params`` prints for an architecture (the browser shows the same text)."""
    from .params import count_params
    c = count_params(arch, rank=rank, targets=targets, adapt=adapt)
    asked = ",".join(c.requested)
    vis = arch.vision
    tower_type = (vis["vision_config"] or {"model_type": "no vision tower"})["model_type"] if vis else ""
    kind = f"{vis['wrapper']}: {tower_type} + {arch.model_type}" if vis else arch.model_type
    lines = [f"{arch.display_name}  ({kind})" + ("  (approximate)" if arch.approximate else ""),
             f"total parameters     {c.total_params:>18,}"]
    if vis:
        tower = sum(r.params for r in arch.records if r.role == "vision")
        proj = sum(r.params for r in arch.records if r.role == "projector")
        audio = sum(r.params for r in arch.records if r.role == "audio")
        lines.append(f"  vision tower       {tower:>18,}   projector {proj:,}; "
                     + (f"audio tower {audio:,}; " if audio else "")
                     + f"language model {c.total_params - tower - proj - audio:,}")
    if c.active_params != c.total_params:
        moe = arch.family.moe
        lines.append(f"active per token     {c.active_params:>18,}   {arch.config[moe.top_k]} of "
                     f"{arch.config[moe.experts]} routed experts")
    lines += [f"LoRA parameters      {c.lora_params:>18,}   rank {c.rank}, targets {asked}"
              + (f", adapting {'the language model only' if c.adapt == 'language' else 'the whole model'}"
                 if vis else ""),
              f"trainable            {c.trainable_percent:>17.4f}%"]
    lines += [f"note: {n}" for n in c.notes]
    lines.append("")
    rows = [["module", "d_in -> d_out", "copies", "rank", "LoRA params / copy", "LoRA params"]]
    rows += [[m.name, f"{m.d_in:,} -> {m.d_out:,}" + (" (x experts)" if m.kind == "experts" else ""),
              str(m.copies), str(m.rank), f"{m.lora_params:,}", f"{m.lora_params * m.copies:,}"]
             for m in c.per_module]
    return "\n".join(lines) + _table(rows, {2, 3, 4, 5})


def cmd_params(args) -> Any:
    from .params import count_params
    arch = _arch(args)
    if args.json:
        c = count_params(arch, rank=args.rank, targets=args.targets, adapt=args.adapt)
        return {**c.to_dict(), "display_name": arch.display_name, "model_type": arch.model_type,
                **({"wrapper": arch.vision["wrapper"]} if arch.vision else {})}
    return params_text(arch, args.rank, args.targets, args.adapt)


def cmd_models(args) -> Any:
    from .models import PRESETS, active_params
    from .params import total_params
    items = [{**a.to_dict(), "total_params": total_params(a), "active_params": active_params(a)}
             for a in PRESETS.values()]
    if args.json:
        return {"models": items}
    rows = [["name", "type", "params", "active", "published", "hidden", "layers", "heads/kv", "vocab", "tied",
             "source"]]
    for a in items:
        rows.append([a["name"], a["model_type"], f"{a['total_params'] / 1e9:.2f}B",
                     f"{a['active_params'] / 1e9:.2f}B" if a["moe"] else "",
                     a["published_params"] or "",
                     str(a["hidden_size"]), str(a["num_hidden_layers"]),
                     f"{a['num_attention_heads']}/{a['num_key_value_heads']}",
                     f"{a['vocab_size']:,}", "yes" if a["tie_word_embeddings"] else "no", a["source"]])
    return _table(rows, {2, 3, 4, 5, 6, 8})


def _memory_kwargs(args, arch) -> dict:
    """estimate_memory's settings from the memory command's flags (shared by --objective)."""
    kw = dict(method=args.method, rank=args.rank, targets=args.targets, batch_size=args.batch_size,
              seq_len=args.seq_len, gradient_checkpointing=args.gc, optimizer=args.optimizer,
              attention=args.attention, precision=args.precision, lora_dropout=args.lora_dropout,
              recipe=args.recipe, loss=args.loss, loss_chunks=args.loss_chunks,
              activation_offload=args.activation_offload, optimizer_in_backward=args.optimizer_in_backward,
              paged_state_on_host=args.paged_state_on_host, dora=args.dora,
              quantize_lm_head=args.quantize_lm_head, double_quant=args.double_quant,
              old_bitsandbytes=args.old_bitsandbytes, autocast=args.autocast,
              gradient_accumulation=args.gradient_accumulation, kbit_upcast=args.kbit_upcast,
              expandable_segments=args.expandable_segments,
              base_format=args.base_format)
    if arch.vision or args.adapt is not None or args.images != "0" or args.image_size is not None:
        kw.update(adapt=args.adapt, images_per_sample=args.images, image_size=args.image_size)
    return kw


def _add_objective_args(m) -> None:
    """Preference and RL tuning as TRL runs them (loracalc.preference)."""
    from .preference import DEFAULT_VLLM_SHARE
    m.add_argument("--objective", default="sft", metavar="OBJECTIVE",
                   help=choice_help("objective", "sft") + "; --batch-size then counts pairs (dpo, orpo, simpo), "
                        "answers (kto) or completions (grpo) per device, as TRL's per_device_train_batch_size")
    m.add_argument("--reference", default="default", metavar="REFERENCE",
                   help="dpo, kto, grpo: " + choice_help("reference", "default"))
    m.add_argument("--generation", default="generate", metavar="WHERE",
                   help="grpo: " + choice_help("generation", "generate"))
    m.add_argument("--num-generations", default="8", help="grpo: completions per prompt (default 8, TRL's)")
    m.add_argument("--completion-len", default="512",
                   help="grpo: max_completion_length (default 512, TRL's); --seq-len is prompt + completion")
    m.add_argument("--vllm-share", default=str(DEFAULT_VLLM_SHARE),
                   help=f"grpo with vllm-colocate: the card's share vLLM takes (default {DEFAULT_VLLM_SHARE}, TRL's)")


def _objective_estimate(args, arch, kw):
    """The estimate for --objective other than sft (loracalc.preference)."""
    from .gpus import get_gpu
    from .preference import preference_memory
    gpu_bytes = get_gpu(args.gpu).memory_bytes if args.gpu else None
    return preference_memory(arch, args.objective, reference=args.reference, generation=args.generation,
                             num_generations=args.num_generations, completion_len=args.completion_len,
                             vllm_share=args.vllm_share, gpu_bytes=gpu_bytes, **kw)


def cmd_memory(args) -> Any:
    from .fit import max_batch_size, max_seq_len
    from .gpus import fits, get_gpu, limit_lines, runs
    from .memory import estimate_memory
    if args.objective.strip().lower() != "sft":
        return _cmd_objective(args)
    arch = _arch(args)
    kw = _memory_kwargs(args, arch)
    est = estimate_memory(arch, **kw)
    if args.gpus is not None:
        return _memory_per_gpu(args, arch, kw, est)
    if args.strategy != "ddp" or args.offload_optimizer or args.offload_params:
        raise LoraCalcError("gpus", "--strategy and --offload-* describe several GPUs: give --gpus N too")
    out = est.to_dict()
    if args.gpu:
        g = get_gpu(args.gpu)
        rest = {k: v for k, v in kw.items()}
        out["gpu"] = {"name": g.name, "memory_bytes": g.memory_bytes, "fits": est.total_bytes <= g.memory_bytes,
                      "runs": runs(g, est.settings), "limits": limit_lines(g, est.settings),
                      "max_batch_size": max_batch_size(arch, g, **{k: v for k, v in rest.items() if k != "batch_size"}),
                      "max_seq_len": max_seq_len(arch, g, **{k: v for k, v in rest.items() if k != "seq_len"})}
    if args.json:
        return out
    s = est.settings
    lines = [f"{arch.display_name}: {s['method']}, rank {s['rank']} on {','.join(s['targets'])}, batch "
             f"{s['batch_size']}, seq {s['seq_len']}, checkpointing {'on' if s['gradient_checkpointing'] else 'off'}, "
             f"{s['optimizer']}, {s['attention']} attention, {s['recipe']} recipe, {s['loss']} loss"
             + (", activations offloaded" if s["activation_offload"] else "") + (", DoRA" if s["dora"] else "")
             + (", optimizer in backward" if s["optimizer_in_backward"] else "")
             + (f", {s['gradient_accumulation']} micro-batches per step" if s["gradient_accumulation"] > 1 else "")
             + ("  (approximate model)" if arch.approximate else ""), ""]
    rows = [["term", "memory", "formula"]]
    rows += [[t.label, _gb(t.bytes), t.formula] for t in est.terms]
    rows.append(["allocated peak", _gb(est.allocated_peak_bytes), "compare with torch.cuda.max_memory_allocated"])
    rows.append(["total needed on the card", _gb(est.total_bytes), "reserved + CUDA context; compare with nvidia-smi"])
    rows += [[f"  in CPU memory: {t.label}", _gb(t.bytes), t.formula] for t in est.host]
    lines.append(_table(rows, {1}))
    lines += [f"note: {n}" for n in est.notes]
    lines.append("")
    lines.append("fits on: " + (", ".join(fits(est.total_bytes, est.settings)) or "no single GPU in the catalog"))
    if args.gpu:
        gi = out["gpu"]
        lines += gi["limits"]
        lines.append(f"{gi['name']}: " + ("" if gi["runs"] else "cannot run these settings (above); in memory it ")
                     + f"{'fits' if gi['fits'] else 'does not fit'}; largest batch "
                     f"{gi['max_batch_size']}, largest seq_len {gi['max_seq_len']}")
    return "\n".join(lines)


def _cmd_objective(args) -> Any:
    """loracalc memory --objective dpo|orpo|simpo|kto|grpo: the terms, the total and the GPUs it fits on."""
    from .gpus import fits, get_gpu
    if args.gpus is not None:
        raise LoraCalcError("gpus", "--objective is estimated for one GPU; leave out --gpus")
    arch = _arch(args)
    kw = _memory_kwargs(args, arch)
    if args.loss == "full":   # the trainer's own loss unless another is asked for (TRL's fused head, or full logits)
        del kw["loss"]
    est = _objective_estimate(args, arch, kw)
    out = est.to_dict()
    if args.gpu:
        g = get_gpu(args.gpu)
        out["gpu"] = {"name": g.name, "memory_bytes": g.memory_bytes, "fits": est.total_bytes <= g.memory_bytes}
    if args.json:
        return out
    s = est.settings
    lines = [f"{arch.display_name}: {s['objective']} ({s['method']}, rank {s['rank']}), batch {s['batch_size']} per "
             f"device = {s['rows_per_forward']} sequences per forward, seq {s['seq_len']}, reference {s['reference']}",
             ""]
    rows = [["term", "memory", "formula"]] + [[t.label, _gb(t.bytes), t.formula] for t in est.terms]
    rows.append(["allocated peak", _gb(est.allocated_peak_bytes), "compare with torch.cuda.max_memory_allocated"])
    rows.append(["total needed on the card", _gb(est.total_bytes), "reserved + CUDA context; compare with nvidia-smi"])
    lines += [_table(rows, {1})] + [f"note: {n}" for n in est.notes] + [""]
    lines.append("fits on: " + (", ".join(fits(est.total_bytes, est.settings)) or "no single GPU in the catalog"))
    if args.gpu:
        lines.append(f"{out['gpu']['name']}: {'fits' if out['gpu']['fits'] else 'does not fit'}")
    return "\n".join(lines)


def _memory_per_gpu(args, arch, kw, est) -> Any:
    from .gpus import get_gpu, limit_lines, runs
    from .sharding import STRATEGIES, shard_estimate, smallest_gpu_count
    sh = shard_estimate(est, arch, args.gpus, args.strategy, args.offload_optimizer, args.offload_params)
    out = sh.to_dict()
    out["settings"] = dict(est.settings)
    if args.gpu:
        g = get_gpu(args.gpu)
        need = {s: smallest_gpu_count(arch, g, s, *((False, False) if s == "ddp" else
                                                    (sh.offload_optimizer, sh.offload_params)), **kw)
                for s in STRATEGIES}
        out["gpu"] = {"name": g.name, "memory_bytes": g.memory_bytes, "fits": sh.per_gpu_bytes <= g.memory_bytes,
                      "gpus_needed": need, "runs": runs(g, est.settings), "limits": limit_lines(g, est.settings)}
    if args.json:
        return out
    s = est.settings
    offload = [w for w, on in (("optimizer", sh.offload_optimizer), ("params", sh.offload_params)) if on]
    lines = [f"{arch.display_name}: {s['method']}, rank {s['rank']}, batch {s['batch_size']} per GPU, seq "
             f"{s['seq_len']}, {sh.gpus} GPUs, {STRATEGIES[sh.strategy]}"
             + (f", offload {' + '.join(offload)} to CPU" if offload else ""), ""]
    rows = [["term", "per GPU", "host, per GPU", "formula"]]
    rows += [[t.label, _gb(t.gpu_bytes), _gb(t.host_bytes) if t.host_bytes else "", t.formula] for t in sh.terms]
    rows.append(["total", _gb(sh.per_gpu_bytes), _gb(sh.host_bytes_per_gpu) if sh.host_bytes_per_gpu else "", ""])
    lines.append(_table(rows, {1, 2}))
    lines.append("")
    lines.append(f"one GPU alone would need {_gb(sh.single_gpu_bytes)}"
                 + (f"; host memory for all {sh.gpus} GPUs: {_gb(sh.host_bytes_total)}" if sh.host_bytes_total else ""))
    lines += [f"note: {n}" for n in sh.notes]
    if args.gpu:
        gi = out["gpu"]
        lines += gi["limits"]
        lines.append(f"{gi['name']}: {'fits' if gi['fits'] else 'does not fit'} with {sh.gpus}; fewest "
                     f"{gi['name']} GPUs: " + ", ".join(f"{k} {v if v else 'none'}" for k, v in gi["gpus_needed"].items()))
    return "\n".join(lines)


def cmd_gpus(args) -> Any:
    from .gpus import PLATFORMS, list_gpus
    gs = list_gpus()
    if args.json:
        return {"gpus": [g.to_dict() for g in gs]}
    rows = [["name", "GPU", "sold as", "usable bytes", "runtime", "cannot run", "usable bytes from"]]
    rows += [[g.name, g.display_name, f"{g.memory_gb} GB", f"{g.memory_bytes:,}", PLATFORMS[g.platform].runtime,
              ", ".join(lim.what for lim in PLATFORMS[g.platform].limits if lim.blocks) or "-",
              g.usable_source or g.source] for g in gs]
    notes = [f"usable bytes, {p.vendor} {p.runtime}: {p.usable_means}"
             for p in PLATFORMS.values() if any(g.platform == p.name for g in gs)]
    return _table(rows, {2, 3}) + "\n\n" + "\n".join(notes)


def cmd_nf4(args) -> Any:
    from . import nf4
    from .errors import as_int
    bs = as_int(args.block_size, "block_size", 2, 1 << 20, "block size")
    out = {"code_book": nf4.code_book(), "block_size": bs,
           "bits_per_param": nf4.bits_per_param(block_size=bs, double_quant=False),
           "bits_per_param_double_quant": nf4.bits_per_param(block_size=bs, double_quant=True)}
    if args.json:
        return out
    lines = ["NF4 code book (quantiles of N(0,1), scaled to [-1, 1], with an exact zero):"]
    lines += [f"  {i:>2}  {v:+.7f}" for i, v in enumerate(out["code_book"])]
    lines.append(f"bits per parameter, block {bs}: {out['bits_per_param']:.5g} "
                 f"({out['bits_per_param_double_quant']:.5g} with double quantization)")
    return "\n".join(lines)


def cmd_time(args) -> Any:
    from .speed import estimate_time
    if not args.gpu:
        raise LoraCalcError("gpu", "time needs a GPU: give --gpu (see `gpus`)")
    if args.images != "0" or args.image_size is not None or args.adapt is not None:
        raise LoraCalcError("images", "time does not model a vision tower yet: leave out --images, --image-size and "
                                      "--adapt, and add the image tokens to --seq-len (memory --images shows them)")
    strategy = None if args.gpus is None else args.strategy
    est = estimate_time(_arch(args), args.gpu, method=args.method, rank=args.rank, targets=args.targets,
                        batch_size=args.batch_size, seq_len=args.seq_len, gradient_checkpointing=args.gc,
                        attention=args.attention, gradient_accumulation=args.gradient_accumulation,
                        optimizer=args.optimizer, precision=args.precision, dora=args.dora,
                        gpus=args.gpus or 1, strategy=strategy, offload_optimizer=args.offload_optimizer,
                        offload_params=args.offload_params, stack=args.stack, tokens=args.tokens,
                        samples=args.samples, avg_tokens=args.avg_tokens, epochs=args.epochs,
                        recipe=args.recipe, price_per_gpu_hour=args.price_per_gpu_hour, objective=args.objective,
                        reference=None if args.reference == "default" else args.reference,
                        num_generations=args.num_generations, completion_len=args.completion_len,
                        generation=args.generation, base_format=args.base_format)
    out = est.to_dict()
    if args.json:
        return out
    rows = [["term", "seconds per step"]] + [[k, f"{v:,.3f}"] for k, v in est.seconds.items()]
    lines = [f"{est.model} on {est.gpus} x {est.gpu} ({est.strategy}), {est.stack} stack, efficiency "
             f"{out['efficiency']:.1%}: {est.flops.total / 1e12:,.1f} TFLOP per step per GPU", "", _table(rows, {1}), "",
             f"tokens per second (all GPUs)  {est.tokens_per_second:,.0f}",
             f"seconds per step              {est.seconds_per_step:,.3f}",
             f"run: {est.total_tokens:,} tokens, {est.steps:,.1f} steps, {est.total_seconds / 3600:,.2f} hours, "
             f"{est.gpu_hours:,.2f} GPU-hours",
             "cost: " + (f"${est.cost:,.2f} at ${est.price_per_gpu_hour:,.3f} per GPU-hour" if est.cost is not None
                         else "no price for this GPU in the catalog: give --price-per-gpu-hour")]
    lines += [f"note: {n}" for n in est.notes]
    return "\n".join(lines)


COMMANDS = {"host": cmd_host, "preflight": cmd_preflight, "serve": cmd_serve, "time": cmd_time, "params": cmd_params, "memory": cmd_memory, "models": cmd_models, "gpus": cmd_gpus, "nf4": cmd_nf4}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        out = COMMANDS[args.command](args)
    except LoraCalcError as exc:
        print(f"loracalc: error: {exc}", file=sys.stderr)
        return 2
    try:
        print(out if isinstance(out, str) else json.dumps(out, indent=2, allow_nan=False))
        sys.stdout.flush()
    except BrokenPipeError:   # e.g. piped into `head`: stop quietly, as other terminal tools do
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
    return 0
