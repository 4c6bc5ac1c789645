"""Does loracalc's per-GPU prediction match what FSDP2 really keeps on each rank? One training step on
every rank, then each rank's parameter, gradient and optimizer-state bytes next to the prediction.

CPU, two gloo processes, a tiny Llama (about a minute):

    python gpu_labs/fsdp_memory_check.py --method lora --strategy full-shard
    python gpu_labs/fsdp_memory_check.py --method qlora --strategy shard-grad-op

On a machine with N CUDA GPUs it uses NCCL and one GPU per process (`--world-size N`), and `--model` can
point at a real model folder. The wrapping is what accelerate's FSDP2 plugin does: `fully_shard` on every
decoder layer, then on the root, with bf16 `MixedPrecisionPolicy`; `ddp` wraps in DistributedDataParallel.

QLoRA loads with `bnb_4bit_quant_storage=torch.bfloat16`, so the packed 4-bit codes sit in bf16 tensors
FSDP can shard; their quantization statistics are not parameters and stay whole on every rank.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as `python gpu_labs/fsdp_memory_check.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from gpu_labs import distributed  # noqa: E402 - standard library only at import

# Shapes whose every first dimension is a multiple of 2 and 8, so FSDP's dim-0 shards need no padding,
# and whose linear inputs are multiples of 64, which bitsandbytes' CPU 4-bit path requires.
TINY = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256, max_position_embeddings=128, tie_word_embeddings=False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--method", choices=("lora", "qlora"), default=["lora"], nargs="+",
                   help="one or more; 16-bit or 4-bit frozen base")
    p.add_argument("--strategy", choices=("ddp", "shard-grad-op", "full-shard"), default=["full-shard"], nargs="+",
                   help="one or more; ddp: full copy per rank; shard-grad-op: keep gathered layers until backward; "
                        "full-shard: free them after forward")
    p.add_argument("--world-size", type=int, default=2, help="processes (one per GPU when CUDA is present)")
    p.add_argument("--model", default=None, help="model folder; default: a tiny random Llama built here")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank, on all linear layers")
    p.add_argument("--seq-len", type=int, default=16, help="tokens per sequence (batch 1)")
    p.add_argument("--out", default=None, help="write every rank's measured and predicted bytes here (JSON)")
    return p


def _measure(rank: int, world: int, port: int, args, model_dir: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= world
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    for method in args.method:          # one process group, several runs: imports are the slow part
        for strategy in args.strategy:
            _measure_one(rank, world, cuda, device, method, strategy, args, model_dir, out_dir)
    dist.barrier()
    dist.destroy_process_group()


def _measure_one(rank, world, cuda, device, method, strategy, args, model_dir, out_dir) -> None:
    import torch
    import torch.distributed as dist
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    torch.manual_seed(0)
    if method == "qlora":
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_storage=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=q, dtype=torch.bfloat16,
                                                     device_map={"": device})
        # what the QLoRA lab does: fp32 norms and embeddings (loracalc's kbit_upcast term)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(device)
    model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules="all-linear"))
    layers = model.base_model.model.model.layers
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[rank] if cuda else None)
    else:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(device.type, (world,))
        kw = dict(mesh=mesh, reshard_after_forward=strategy == "full-shard",
                  mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16))
        for layer in layers:
            fully_shard(layer, **kw)
        fully_shard(model, **kw)
        wrapped = model
    # bitsandbytes' CPU path rewrites a 4-bit weight's quant_state at its first forward (un-nests the
    # absmax to fp32 for its CPU kernel), so the stored format is read before any forward
    stats_at_load = distributed.rank_bytes(model)["quant_stats"]
    peak = {"gathered": 0}

    def look(*_):
        peak["gathered"] = max(peak["gathered"], distributed.gathered_bytes_now(model))

    if strategy != "ddp":
        for layer in layers:
            layer.mlp.register_forward_pre_hook(look)
            layer.mlp.register_full_backward_pre_hook(look)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(0, model.config.vocab_size, (1, args.seq_len), generator=torch.Generator().manual_seed(rank))
    ids = ids.to(device)
    loss = wrapped(input_ids=ids, labels=ids).loss
    held_after_forward = distributed.gathered_bytes_now(model) if strategy != "ddp" else 0
    loss.backward()
    optimizer.step()
    measured = distributed.rank_bytes(model, optimizer)
    measured.update(quant_stats_after_step=measured["quant_stats"], quant_stats=stats_at_load,
                    gathered_peak=peak["gathered"], gathered_after_forward=held_after_forward,
                    loss=float(loss.detach()))
    if strategy == "ddp":
        # the reducer's flat buckets, as DDP itself reports them
        data = wrapped._get_ddp_logging_data()
        measured["ddp_bucket_bytes"] = sum(int(x) for x in str(data.get("bucket_sizes", "")).split(", ") if x)
    Path(out_dir, f"{method}-{strategy}-rank{rank}.json").write_text(json.dumps(measured))
    dist.barrier()


def predict(config_dict: dict, args, method: str, strategy: str) -> dict:
    import loracalc
    from loracalc.sharding import estimate_sharded

    arch = loracalc.model_from_config(config_dict)
    sharded = estimate_sharded(arch, args.world_size, strategy, method=method, rank=args.rank,
                               targets="all-linear", batch_size=1, seq_len=args.seq_len)
    return distributed.predicted_rank_bytes(sharded)


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    import torch.multiprocessing as mp
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            import torch

            torch.manual_seed(0)
            model_dir = str(Path(tmp, "tiny"))
            LlamaForCausalLM(LlamaConfig(**TINY)).save_pretrained(model_dir)
        config_dict = AutoConfig.from_pretrained(model_dir).to_dict()
        mp.spawn(_measure, args=(args.world_size, distributed.free_port(), args, model_dir, tmp),
                 nprocs=args.world_size)
        measured = {f"{m}/{s}": [json.loads(Path(tmp, f"{m}-{s}-rank{r}.json").read_text())
                                 for r in range(args.world_size)] for m in args.method for s in args.strategy}
    import time
    from importlib import metadata

    import torch

    report = {"world_size": args.world_size, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "device": "cuda" if torch.cuda.is_available() and torch.cuda.device_count() >= args.world_size else "cpu",
              "versions": {p: metadata.version(p) for p in ("torch", "transformers", "peft", "bitsandbytes")},
              "model": args.model or "tiny random Llama (fsdp_memory_check.TINY)", "lora_rank": args.rank,
              "seq_len": args.seq_len, "runs": {}}
    for method in args.method:
        for strategy in args.strategy:
            run = {"predicted": predict(config_dict, args, method, strategy), "ranks": measured[f"{method}/{strategy}"]}
            report["runs"][f"{method}/{strategy}"] = run
            show(args, method, strategy, **run)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return report


def show(args, method, strategy, predicted, ranks) -> None:
    print(f"{method}, {strategy}, {args.world_size} processes: bytes per rank")
    print(f"{'':24}{'predicted':>12}" + "".join(f"{'rank ' + str(r):>12}" for r in range(args.world_size)))
    for key in ("params", "grads", "optimizer", "quant_stats"):
        print(f"{key:24}{predicted[key]:>12,}" + "".join(f"{m[key]:>12,}" for m in ranks))
    if strategy != "ddp":
        print(f"{'gathered (working set)':24}{predicted['gathered']:>12,}"
              + "".join(f"{m['gathered_peak']:>12,}" for m in ranks))
    else:
        print(f"{'DDP gradient buckets':24}{predicted['ddp_buckets']:>12,}"
              + "".join(f"{m['ddp_bucket_bytes']:>12,}" for m in ranks))
    print(f"AdamW step counters (not in the prediction): {ranks[0]['optimizer_step_counters']:,} B per rank")


if __name__ == "__main__":
    main()
