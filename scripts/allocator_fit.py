"""Fit the caching allocator's two constants (loracalc/allocator.py) on published pairs of measurements.

    python scripts/allocator_fit.py                                  # fit on the recorded pairs, print the table
    python scripts/allocator_fit.py --extract PATH/TO/fms-acceleration  # rebuild the pairs from a clone's CSVs

fms-acceleration's benchmark CSVs give, for each run, torch's ``max_memory_allocated`` (HF Trainer's memory
metrics) and the peak of nvidia-smi's ``memory.used`` sampled through the run (less the reading before it
started): what the card held, context included. Their difference is what the allocator and the context added.
Single-GPU runs whose loss loracalc expresses are kept (transformers' full-logits loss, or Liger's fused linear
loss); runs within 8 GB of the card's 80 GB are left out (the allocator frees its cache and retries there, so
the figure is capped). The fit: ``excess - rounding = WORKSPACE_BYTES + FRAGMENTATION x largest transient``,
least squares over the pairs; the largest transient and the rounding come from the engine.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "snippets"))

from lora_course.allocator_evidence import DATA, features, fit, holdout, load, usable  # noqa: E402
CSVS = {"a100_80gb.csv": "last changed 24bdadb, 2025-02-07", "a100_80gb_liger.csv": "added 733992a, 2024-12-03"}
MODELS = {"Mistral-7B-v0.1": "mistral-7b", "Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b", "Llama-2-70b-hf": "llama-2-70b",
          "Meta-Llama-3-8B": "llama-3.1-8b", "Mistral-7B-v0.1-GPTQ": "mistral-7b",
          "Mixtral-8x7B-Instruct-v0.1-GPTQ": "mixtral-8x7b", "Llama-2-70B-GPTQ": "llama-2-70b",
          "Meta-Llama-3-8B-GPTQ": "llama-3.1-8b"}


def _settings(fw: str, peft: str, bs: int, gpus: int = 1) -> dict | None:
    """loracalc settings for a scenario of fms-acceleration (scenarios.yaml), or None when its loss or kernels are
    not expressed (FOAK's own cross-entropy keeps bf16 logits and writes the gradient in place)."""
    liger = "liger" in fw
    if "foak" in fw and not liger:
        return None
    base = {"batch_size": bs, "seq_len": 4096, "gradient_checkpointing": True, "attention": "sdpa",
            "loss": "fused_linear" if liger else "full", "recipe": "peft"}
    if not peft:
        return {**base, "method": "full", "precision": "bf16"}
    base.update(rank=16, targets="q,k,v,o", lora_dropout=0.1)
    if fw in ("none", "foak-fast-kernels-liger") or fw == "":
        return {**base, "method": "lora"}
    s = {**base, "method": "qlora", "autocast": True}
    # on several GPUs accelerate.yaml loads the model on one process (fsdp_cpu_ram_efficient_loading), so the
    # 4-bit weights of the others sit on the meta device and TRL's SFTTrainer treats the run as sharded QLoRA,
    # skipping prepare_model_for_kbit_training (its is_sharded_qlora test): no fp32 upcast there either
    if fw.startswith("accelerated") or gpus > 1:
        s["kbit_upcast"] = "none"
    return s


def _expressible(model: str) -> dict:
    """Whether today's engine can predict the run end to end (the fit uses the measured allocated peak, so it
    keeps every pair)."""
    if model.startswith("Mixtral"):
        return {"expressible": False, "why_not": "transformers 5 fuses Mixtral's experts into 3-D parameters, which "
                "bitsandbytes leaves in 16 bit; these runs used transformers 4.48, whose expert Linears it quantized"}
    return {"expressible": True}


def extract(clone: str) -> None:
    pairs = []
    for name, when in CSVS.items():
        text = subprocess.run(["git", "-C", clone, "show", f"HEAD:scripts/benchmarks/refs/{name}"],
                              capture_output=True, text=True, check=True).stdout
        for row in csv.DictReader(io.StringIO(text)):
            nv, pk = row.get("mem_nvidia_mem_reserved"), row.get("mem_peak_torch_mem_alloc_in_bytes")
            model = row["model_name_or_path"].split("/")[-1]
            if not nv or not pk or row["num_gpus"] not in ("1", "2") or model not in MODELS:
                continue
            fw, bs = row["framework_config"], int(row["per_device_train_batch_size"])
            gpus = int(row["num_gpus"])
            settings = _settings(fw, row["peft_method"], bs, gpus)
            if settings is None:
                continue
            # accelerate 1.0.1 (refs/requirements*.txt) wraps with FSDP1 (FullyShardedDataParallel); transformers
            # 4.45 and 4.48 checkpoint with use_reentrant=True unless told otherwise; the scenario's bf16/fp16
            # argument turns on accelerate's mixed precision
            fsdp = ({"fsdp_version": 1, "reentrant": True,
                     "mixed_precision": row.get("bf16") == "True" or row.get("fp16") == "True"} if gpus > 1 else {})
            pairs.append({"id": f"fms:{name[:-4]}:{fw}:{model}:bs{bs}" + (f":{gpus}gpu" if gpus > 1 else ""),
                          "source": "fms-acceleration", "gpus": gpus,
                          # accelerate.yaml: FSDP FULL_SHARD whenever the scenario runs on more than one GPU
                          "strategy": "full-shard" if gpus > 1 else None,
                          "citation": f"foundation-model-stack/fms-acceleration scripts/benchmarks/refs/{name} ({when}); "
                                      "benchmark.py: nvidia-smi memory.used peak less the first reading (MiB), "
                                      "HF Trainer memory metrics for the allocated peak",
                          "gpu": "NVIDIA A100-SXM4-80GB", "framework": fw, "model": MODELS[model],
                          "nvidia_smi_bytes": int(float(nv) * 2**20), "allocated_peak_bytes": int(float(pk)),
                          "settings": settings, **fsdp, **_expressible(model)})
    with open(DATA, "w", encoding="utf-8") as f:
        json.dump({"what": __doc__.split("\n\n")[2].strip(), "pairs": pairs}, f, indent=1)
        f.write("\n")
    print(f"{len(pairs)} pairs -> {DATA}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--extract", metavar="CLONE", help="rebuild the pairs from a clone of fms-acceleration")
    args = ap.parse_args()
    if args.extract:
        extract(args.extract)
    pairs = [p for p in load() if usable(p)]
    k, c0 = fit(pairs)
    print(f"FRAGMENTATION = {k}\nWORKSPACE_BYTES = {c0:_}  ({c0 / 2**30:.2f} GiB)  on {len(pairs)} pairs")
    from loracalc import allocator
    errs = []
    for p in pairs:
        big, rnd = features(p)
        pred = p["allocated_peak_bytes"] + rnd + c0 + k * big
        e = 100 * (pred - p["nvidia_smi_bytes"]) / p["nvidia_smi_bytes"]
        old = p["allocated_peak_bytes"] * 1.05 + allocator.CUDA_CONTEXT_BYTES
        eo = 100 * (old - p["nvidia_smi_bytes"]) / p["nvidia_smi_bytes"]
        errs.append((abs(e), abs(eo)))
        print(f"{p['id'][:62]:62} nv {p['nvidia_smi_bytes'] / 1e9:6.2f} GB  model {e:+6.1f}%  flat 5% {eo:+6.1f}%")
    print(f"median |error|: model {statistics.median(e for e, _ in errs):.1f}%, flat 5% "
          f"{statistics.median(o for _, o in errs):.1f}%; worst model {max(e for e, _ in errs):.1f}%")
    for held in ("a100_80gb", "a100_80gb_liger"):
        k2, c2, e2 = holdout(held)
        print(f"fitted without {held}.csv (k {k2}, fixed {c2 / 2**30:.2f} GiB): median |error| on its {len(e2)} "
              f"pairs {statistics.median(e2):.1f}%, worst {max(e2):.1f}%")


if __name__ == "__main__":
    main()
