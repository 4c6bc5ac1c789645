"""``python -m loracalc``: the calculator in a terminal.

    python -m loracalc params --model llama-3.1-8b --rank 16 --targets all-linear [--json]
    python -m loracalc memory --model llama-3.1-70b --method qlora --batch-size 1 --seq-len 2048 [--json]
    python -m loracalc models | gpus | nf4 [--json]

Bad input prints one line naming the field and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from .errors import LoraCalcError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, no usage block
        raise LoraCalcError("", f"{self.prog}: {message} (see --help)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="preset name (see `models`); default llama-3.1-8b")
    src.add_argument("--config", default=None, help="path to a Hugging Face config.json, read offline")
    src.add_argument("--params", default=None, help="a bare parameter count, e.g. 7e9 (approximate shape)")
    p.add_argument("--rank", default="16", help="LoRA rank r (default 16)")
    p.add_argument("--targets", default="all-linear", help="'all-linear', 'q,v', or module names (default all-linear)")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="loracalc", description="Parameters, training memory and NF4 for LoRA / QLoRA.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("params", help="total and LoRA parameter counts")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    m = sub.add_parser("memory", help="training memory breakdown and the GPUs it fits")
    _add_model_args(m)
    m.add_argument("--method", default="qlora", help="full, lora or qlora (default qlora)")
    m.add_argument("--batch-size", default="1", help="sequences per step (default 1)")
    m.add_argument("--seq-len", default="2048", help="tokens per sequence (default 2048)")
    gc = m.add_mutually_exclusive_group()
    gc.add_argument("--gradient-checkpointing", dest="gc", action="store_true", default=True,
                    help="recompute activations in backward (default)")
    gc.add_argument("--no-gradient-checkpointing", dest="gc", action="store_false", help="keep all activations")
    m.add_argument("--optimizer", default="adamw", help="adamw, adamw_8bit, paged_adamw, paged_adamw_8bit, sgd")
    m.add_argument("--attention", default="sdpa", help="sdpa (fused/flash) or eager")
    m.add_argument("--precision", default="mixed", help="full fine-tuning: mixed (bf16 + fp32 master) or bf16")
    m.add_argument("--lora-dropout", default="0", help="LoRA dropout probability (above 0 keeps a mask per module)")
    m.add_argument("--gpu", default=None, help="also report the largest batch and sequence that fit on this GPU")
    m.add_argument("--json", action="store_true", help="print JSON")

    g = sub.add_parser("models", help="list the model presets")
    g.add_argument("--json", action="store_true", help="print JSON")
    g = sub.add_parser("gpus", help="list the GPU catalog")
    g.add_argument("--json", action="store_true", help="print JSON")
    n = sub.add_parser("nf4", help="the NF4 code book and bits per parameter")
    n.add_argument("--block-size", default="64", help="weights per absmax block (default 64)")
    n.add_argument("--json", action="store_true", help="print JSON")
    return ap


def _arch(args):
    from .models import get_model, model_from_config, model_from_param_count
    if args.config:
        return model_from_config(args.config)
    if args.params:
        return model_from_param_count(args.params)
    return get_model(args.model or "llama-3.1-8b")


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


def params_text(arch, rank: Any = 16, targets: Any = "all-linear") -> str:
    """What ``loracalc params`` prints for an architecture (the browser shows the same text)."""
    from .params import count_params
    c = count_params(arch, rank=rank, targets=targets)
    asked = ",".join(c.requested)
    lines = [f"{arch.display_name}  ({arch.model_type})" + ("  (approximate)" if arch.approximate else ""),
             f"total parameters     {c.total_params:>18,}"]
    if c.active_params != c.total_params:
        moe = arch.family.moe
        lines.append(f"active per token     {c.active_params:>18,}   {arch.config[moe.top_k]} of "
                     f"{arch.config[moe.experts]} routed experts")
    lines += [f"LoRA parameters      {c.lora_params:>18,}   rank {c.rank}, targets {asked}",
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
        c = count_params(arch, rank=args.rank, targets=args.targets)
        return {**c.to_dict(), "display_name": arch.display_name, "model_type": arch.model_type}
    return params_text(arch, args.rank, args.targets)


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


def cmd_memory(args) -> Any:
    from .fit import max_batch_size, max_seq_len
    from .gpus import fits, get_gpu
    from .memory import estimate_memory
    arch = _arch(args)
    kw = dict(method=args.method, rank=args.rank, targets=args.targets, batch_size=args.batch_size,
              seq_len=args.seq_len, gradient_checkpointing=args.gc, optimizer=args.optimizer,
              attention=args.attention, precision=args.precision, lora_dropout=args.lora_dropout)
    est = estimate_memory(arch, **kw)
    out = est.to_dict()
    if args.gpu:
        g = get_gpu(args.gpu)
        rest = {k: v for k, v in kw.items()}
        out["gpu"] = {"name": g.name, "memory_bytes": g.memory_bytes, "fits": est.total_bytes <= g.memory_bytes,
                      "max_batch_size": max_batch_size(arch, g, **{k: v for k, v in rest.items() if k != "batch_size"}),
                      "max_seq_len": max_seq_len(arch, g, **{k: v for k, v in rest.items() if k != "seq_len"})}
    if args.json:
        return out
    s = est.settings
    lines = [f"{arch.display_name}: {s['method']}, rank {s['rank']} on {','.join(s['targets'])}, batch "
             f"{s['batch_size']}, seq {s['seq_len']}, checkpointing {'on' if s['gradient_checkpointing'] else 'off'}, "
             f"{s['optimizer']}, {s['attention']} attention" + ("  (approximate model)" if arch.approximate else ""), ""]
    rows = [["term", "memory", "formula"]]
    rows += [[t.label, _gb(t.bytes), t.formula] for t in est.terms]
    rows.append(["total", _gb(est.total_bytes), ""])
    lines.append(_table(rows, {1}))
    lines.append("")
    lines.append("fits on: " + (", ".join(fits(est.total_bytes)) or "no single GPU in the catalog"))
    if args.gpu:
        gi = out["gpu"]
        lines.append(f"{gi['name']}: {'fits' if gi['fits'] else 'does not fit'}; largest batch "
                     f"{gi['max_batch_size']}, largest seq_len {gi['max_seq_len']}")
    return "\n".join(lines)


def cmd_gpus(args) -> Any:
    from .gpus import list_gpus
    gs = list_gpus()
    if args.json:
        return {"gpus": [g.to_dict() for g in gs]}
    rows = [["name", "GPU", "memory", "bf16", "source"]]
    rows += [[g.name, g.display_name, f"{g.memory_bytes / 1e9:.0f} GB", "yes" if g.bf16 else "no", g.source]
             for g in gs]
    return _table(rows, {2})


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


COMMANDS = {"params": cmd_params, "memory": cmd_memory, "models": cmd_models, "gpus": cmd_gpus, "nf4": cmd_nf4}


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
