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

# one small shape per family (hidden 128: bitsandbytes' CPU path needs inputs in multiples of 64)
_BASE = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=512)
SHAPES = {
    "llama": _BASE, "mistral": _BASE, "qwen2": _BASE, "granite": _BASE, "olmo": _BASE, "olmo2": _BASE,
    "cohere": _BASE, "starcoder2": _BASE, "phi3": dict(_BASE, pad_token_id=0),
    "qwen3": dict(_BASE, head_dim=32), "gemma": dict(_BASE, head_dim=32), "gemma3_text": dict(_BASE, head_dim=32),
    "gemma2": dict(_BASE, head_dim=32),
    "stablelm": dict(_BASE, num_key_value_heads=4), "phi": dict(_BASE, num_key_value_heads=4),
    "gpt2": dict(n_embd=128, n_head=4, n_layer=2, vocab_size=512, n_positions=128),
    "gpt_neox": dict(_BASE, num_key_value_heads=None),
    "falcon": dict(hidden_size=128, num_attention_heads=4, num_hidden_layers=2, vocab_size=512),
    "mixtral": dict(_BASE, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(_BASE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                      shared_expert_intermediate_size=128),
    "qwen3_moe": dict(_BASE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64),
    "gpt_oss": dict(_BASE, head_dim=32, num_local_experts=4, num_experts_per_tok=2),
    "deepseek_v2": dict(_BASE, num_key_value_heads=4, n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2,
                        moe_intermediate_size=64, first_k_dense_replace=1, q_lora_rank=64, kv_lora_rank=64,
                        qk_rope_head_dim=16, qk_nope_head_dim=16, v_head_dim=32, n_group=1, topk_group=1),
    "deepseek_v3": dict(_BASE, num_key_value_heads=4, n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2,
                        moe_intermediate_size=64, first_k_dense_replace=1, q_lora_rank=64, kv_lora_rank=64,
                        qk_rope_head_dim=16, qk_nope_head_dim=16, v_head_dim=32, n_group=1, topk_group=1),
}

# ---- families added for issue 26 (kept apart for the merge that derives these shapes from the specs)
SHAPES.update({
    "smollm3": dict(_BASE, pad_token_id=0), "olmo3": dict(_BASE, pad_token_id=0), "glm4": dict(_BASE, head_dim=32, pad_token_id=0),
    "exaone4": dict(_BASE, pad_token_id=0), "ernie4_5": dict(_BASE, head_dim=32, pad_token_id=0),
    "seed_oss": dict(_BASE, head_dim=32, pad_token_id=0), "apertus": dict(_BASE, pad_token_id=0),
    "hunyuan_v1_dense": dict(_BASE, head_dim=32, pad_token_id=0),
    "gptj": dict(n_embd=128, n_head=4, n_layer=2, vocab_size=512, rotary_dim=32, pad_token_id=0),
    "gpt_bigcode": dict(n_embd=128, n_head=4, n_layer=2, vocab_size=512, n_positions=128, pad_token_id=0),
    "olmoe": dict(_BASE, num_experts=4, num_experts_per_tok=2, pad_token_id=0),
    "glm4_moe": dict(_BASE, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, n_shared_experts=1,
                     first_k_dense_replace=1, n_group=1, topk_group=1, pad_token_id=0),
    "granitemoe": dict(_BASE, num_local_experts=4, num_experts_per_tok=2, pad_token_id=0),
    "phimoe": dict(_BASE, num_local_experts=4, num_experts_per_tok=2, pad_token_id=0),
    "arcee": dict(_BASE, pad_token_id=0), "helium": dict(_BASE, head_dim=32, pad_token_id=0),
    "glm": dict(_BASE, head_dim=32, pad_token_id=0), "cohere2": dict(_BASE, pad_token_id=0),
    "vaultgemma": dict(_BASE, head_dim=32, pad_token_id=0),
    "flex_olmo": dict(_BASE, num_experts=4, num_experts_per_tok=2, pad_token_id=0),
    "qwen3_next": dict(_BASE, head_dim=32, num_hidden_layers=4, num_experts=4, num_experts_per_tok=2,
                       moe_intermediate_size=64, shared_expert_intermediate_size=64, linear_num_key_heads=2,
                       linear_num_value_heads=4, linear_key_head_dim=32, linear_value_head_dim=32, pad_token_id=0),
    "lfm2": dict(_BASE, num_hidden_layers=4, full_attn_idxs=[1, 3], block_multiple_of=64, pad_token_id=0),
    "bamba": dict(_BASE, num_hidden_layers=4, attn_layer_indices=[1], mamba_n_heads=4, mamba_d_head=64,
                  mamba_n_groups=1, mamba_d_state=16, mamba_chunk_size=64, pad_token_id=0),
    "granitemoehybrid": dict(_BASE, num_hidden_layers=4, layer_types=["mamba", "attention", "mamba", "mamba"],
                             num_local_experts=4, num_experts_per_tok=2, shared_intermediate_size=64,
                             mamba_n_heads=4, mamba_d_head=64, mamba_n_groups=1, mamba_d_state=16,
                             mamba_chunk_size=64, pad_token_id=0),
    "nemotron_h": dict(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
                       head_dim=32, vocab_size=512, hybrid_override_pattern="M*-E", num_hidden_layers=4,
                       mamba_num_heads=4, mamba_head_dim=64, n_groups=1, ssm_state_size=16, chunk_size=64,
                       n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                       moe_shared_expert_intermediate_size=64, pad_token_id=0),
    "minimax": dict(_BASE, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2, pad_token_id=0),
    "ernie4_5_moe": dict(_BASE, moe_num_experts=4, moe_k=2, moe_intermediate_size=64, moe_num_shared_experts=1,
                         pad_token_id=0),
})


def tiny_config(mt: str) -> dict:
    cfg = {"model_type": mt, "max_position_embeddings": 256,
           **{k: v for k, v in SHAPES[mt].items() if v is not None}}
    if mt in ("gpt2", "falcon", "gptj", "gpt_bigcode"):
        cfg.pop("max_position_embeddings")      # their config classes name the position limit otherwise
    return cfg


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
        kept = [dict(r, date=r.get("date", old.get("date")), versions=r.get("versions", old.get("versions")))
                for r in old["rows"] if r["model_type"] not in families]
        data["rows"] = sorted(kept + rows, key=lambda r: list(SHAPES).index(r["model_type"]))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print("wrote", os.path.relpath(args.out, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
