"""loracalc's activation estimate against the bytes autograd saves, for a tiny random model of each family.

    PYTHONPATH=snippets OMP_NUM_THREADS=1 .venv/bin/python scripts/family_activation_check.py [--methods lora,qlora]
    PYTHONPATH=snippets OMP_NUM_THREADS=1 .venv/bin/python scripts/family_activation_check.py --list-saved gpt2:full

One training step on CPU in bf16 per family x method x checkpointing (batch 2, 64 tokens, rank 8 on all-linear,
fused attention unless the family has no SDPA path: GPT-OSS's sinks, Gemma-2's soft-capped scores), measured
with the memory probe's saved-tensor tracker (gpu_labs/memory_measure.py: ``saved_tensors_hooks``, each storage
counted once at its peak). Each config keeps its config class's dropout (GPT-2's 0.1), as a training run would.
Writes ``snippets/lora_course/data/family_activation_check.json``; about a minute on two cores.

The estimate is asked for ``device="cpu"``: CPU kernels keep a few tensors CUDA's do not (dropout's mask in the
tensor's dtype rather than a bool; SDPA's math path, fp32 scores included, when its scores take dropout; an
output in the query's layout, copied before o_proj when rotary embeddings made the query a new tensor).

``--list-saved TYPE[:METHOD[:on]]`` prints what autograd keeps for one family, per module and per op (shape,
dtype, new bytes per token): how the causes behind each term of ``activation_bytes`` were found.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "snippets", "lora_course", "data", "family_activation_check.json")

# one small shape per family, from the one table of tiny shapes beside the specs (loracalc/tiny_shapes.py)
sys.path.insert(0, os.path.join(ROOT, "snippets"))
from loracalc.tiny_shapes import TINY, tiny_config  # noqa: E402

SHAPES = {mt: line.shape for mt, line in TINY.items()}


def attention_for(arch) -> str:
    """SDPA unless transformers has no SDPA path for the structure: GPT-OSS's attention sinks, and Gemma-2's
    soft-capped scores, which only the eager path computes."""
    return "eager" if (arch.family.sinks or arch.attn_softcap) else "sdpa"


def list_saved(mt: str, method: str, gc: bool) -> int:
    """Print the tensors one training step keeps for backward, grouped by module (layers folded) and op."""
    import collections
    import re

    import torch
    from torch.overrides import TorchFunctionMode

    import loracalc
    import memory_measure as mm
    from loracalc.memory import activation_bytes
    cfg = tiny_config(mt)
    arch = loracalc.model_from_config(cfg, name=mt)
    attention = attention_for(arch)
    run = mm.RunSpec(method=method, rank=8, targets="all-linear", batch_size=2, seq_len=64, gradient_checkpointing=gc,
                     attention=attention)
    model = mm.build_model(dict(cfg), run)
    modules, ops = ["(top)"], ["?"]

    def enter(name):
        def hook(mod, inp):
            modules.append(name)       # returns None: the module's input stays as it is
        return hook

    def leave(mod, inp, out):
        modules.pop()                  # returns None: the module's output stays as it is

    for name, m in model.named_modules():
        m.register_forward_pre_hook(enter(name))
        m.register_forward_hook(leave)

    class OpName(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            ops.append(getattr(func, "__name__", str(func)))
            try:
                return func(*args, **(kwargs or {}))
            finally:
                ops.pop()

    params, seen = mm.storage_ptrs(model), set()
    rows: dict = collections.OrderedDict()

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            where = re.sub(r"\.(layers|h)\.\d+\.", r".\1.N.", modules[-1])
            row = rows.setdefault((where, ops[-1], tuple(t.shape), str(t.dtype).replace("torch.", "")), [0, 0])
            row[0] += 1
            if ptr not in seen:
                seen.add(ptr)
                row[1] += t.untyped_storage().nbytes()
        return t

    tokens = run.batch_size * run.seq_len
    ids = torch.randint(0, arch.vocab_size, (run.batch_size, run.seq_len), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), OpName():
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()          # with checkpointing, the recomputed layers' tensors are listed too (op "?")
    print(f"{mt} {method} checkpointing {'on' if gc else 'off'}, {attention}; 'x N' counts saves across layers")
    for (where, op, shape, dtype), (n, nbytes) in rows.items():
        print(f"{where[-58:]:58} {op[:28]:28} {str(shape):18} {dtype:9} x{n:<3} {nbytes / tokens:9,.1f} B/token new")
    est = activation_bytes(arch, method, 8, ("all-linear",), run.batch_size, run.seq_len, gc, attention, device="cpu")
    print(f"total new {sum(b for _, b in rows.values()):,} B (all saves, no peak); estimate {est}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="lora,full,qlora", help="comma-separated: lora, full, qlora")
    ap.add_argument("--families", default="", help="comma-separated model_types (default: all)")
    ap.add_argument("--list-saved", metavar="TYPE[:METHOD[:on]]", default="",
                    help="list the tensors autograd keeps for one family (checkpointing off unless ':on'); no file")
    ap.add_argument("--out", default=OUT, help="where to write the record (default: the course's data file; "
                    "scripts/drift.py writes elsewhere to compare)")
    args = ap.parse_args()
    sys.path[:0] = [os.path.join(ROOT, "snippets"), os.path.join(ROOT, "gpu_labs")]
    import torch

    import loracalc
    import memory_measure as mm
    from loracalc.memory import activation_bytes
    torch.set_num_threads(1)
    if args.list_saved:
        mt, method, gc = (args.list_saved.split(":") + ["lora", "off"])[:3]
        if mt not in SHAPES:
            ap.error(f"--list-saved: model_type must be one of {', '.join(SHAPES)}")
        return list_saved(mt, method, gc == "on")
    import peft
    import transformers
    # each row says which libraries measured it and when: a partial run leaves the other rows as they were
    stamp = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                          "peft": peft.__version__}}
    rows, t0 = [], time.time()
    families = [f for f in (args.families.split(",") if args.families else SHAPES) if f]
    for mt in families:
        cfg = tiny_config(mt)
        arch = loracalc.model_from_config(cfg, name=mt)
        attention = attention_for(arch)
        for method in args.methods.split(","):
            for gc in (False, True):
                run = mm.RunSpec(method=method, rank=8, targets="all-linear", batch_size=2, seq_len=64,
                                 gradient_checkpointing=gc, attention=attention)
                row = {"model_type": mt, "method": method, "gradient_checkpointing": gc, "attention": attention,
                       **stamp}
                try:
                    model = mm.build_model(dict(cfg), run)
                    measured = mm.measure_cpu(model, run, arch.vocab_size)["saved_for_backward_peak_bytes"]
                    del model
                except Exception as exc:          # a family transformers or peft cannot train this way on CPU
                    row.update(error=f"{type(exc).__name__}: {str(exc)[:160]}")
                    rows.append(row)
                    print(mt, method, gc, "ERROR", row["error"], flush=True)
                    continue
                est = activation_bytes(arch, method, 8, ("all-linear",), 2, 64, gc, attention,
                                      device="cpu")["saved_total"]
                row.update(estimated_bytes=est, measured_bytes=measured,
                           error_percent=round(100 * (est - measured) / measured, 1))
                rows.append(row)
                print(f"{mt:12} {method:5} gc={'on ' if gc else 'off'} est {est:>10,} measured {measured:>10,} "
                      f"{row['error_percent']:+6.1f}%  ({time.time() - t0:.0f} s)", flush=True)
    data = {"generated_by": "scripts/family_activation_check.py",
            "settings": {"batch_size": 2, "seq_len": 64, "rank": 8, "targets": "all-linear", "attention": "sdpa",
                         "dtype": "bf16", "device": "cpu", "methods": args.methods.split(",")},
            "shapes": SHAPES, "rows": rows}
    if args.families and os.path.exists(args.out):
        # a partial run replaces only its own families' rows in the record
        with open(args.out, encoding="utf-8") as f:
            old = json.load(f)
        # (in place: a family measured again takes its old rows' place, a new one goes last)
        merged, placed = [], set()
        for r in old["rows"]:
            mt = r["model_type"]
            if mt not in families:
                merged.append(dict(r, date=r.get("date", old.get("date")), versions=r.get("versions", old.get("versions"))))
            elif mt not in placed:
                merged += [n for n in rows if n["model_type"] == mt]
                placed.add(mt)
        data["rows"] = merged + [n for n in rows if n["model_type"] not in placed]
        # and only its own families' shapes: the others stay as they were measured
        data["shapes"] = {mt: SHAPES[mt] if mt in families else old["shapes"][mt] for mt in SHAPES
                          if mt in families or mt in old["shapes"]}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print("wrote", os.path.relpath(args.out, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
