"""Figures and tables for "When one GPU is not enough" (docs/multi-gpu.md): how many GPUs a 70B model needs
per strategy, memory per GPU under FSDP on 2 and 8 GPUs, and the per-rank bytes that real FSDP2 runs held
on a CPU (recorded by gpu_labs/fsdp_memory_check.py in data/fsdp_cpu_check.json).

Every computed number comes from ``loracalc.sharding`` with the same 70B settings as the GPU-memory page.
Standard library only.
"""
from __future__ import annotations

import json
from pathlib import Path

from .prose import SETTINGS_70B
from .registry import figure, table

MODEL_70B = "llama-3.1-70b"
# One GPU of each common size: 24 GB (consumer), 48 GB (workstation), 80 GB (data centre).
GPU_SIZES = (("rtx-4090", "24 GB"), ("l40s", "48 GB"), ("a100-80gb", "80 GB"))
RECORD = Path(__file__).resolve().parent / "data" / "fsdp_cpu_check.json"


def _lc():
    import loracalc
    from loracalc import sharding
    return loracalc, sharding


def _gb(nbytes: float, digits: int = 1) -> str:
    return f"{nbytes / 1e9:,.{digits}f} GB"


def _md_table(header, rows, align=None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _sharded(method: str, gpus: int, strategy: str = "full-shard", offload_params: bool = False):
    _, sharding = _lc()
    return sharding.estimate_sharded(MODEL_70B, gpus, strategy, offload_params=offload_params, method=method,
                                     **SETTINGS_70B)


def _fewest(method: str, gpu: str, strategy: str, offload: bool = False):
    _, sharding = _lc()
    return sharding.smallest_gpu_count(MODEL_70B, gpu, strategy, offload_params=offload, method=method,
                                       **SETTINGS_70B)


def _count(n) -> str:
    return str(n) if n else "none"


@table("multi_gpu_70b_count")
def multi_gpu_70b_count() -> str:
    rows = []
    for method, label in (("lora", "LoRA"), ("qlora", "QLoRA")):
        for gpu, size in GPU_SIZES:
            rows.append([label, size, _count(_fewest(method, gpu, "ddp")),
                         _count(_fewest(method, gpu, "shard-grad-op")), _count(_fewest(method, gpu, "full-shard")),
                         _count(_fewest(method, gpu, "full-shard", offload=True))])
    return _md_table(["method", "GPU", "data parallel", "SHARD_GRAD_OP", "FULL_SHARD / ZeRO-3",
                      "FULL_SHARD + CPU offload"], rows, ["---", "---", "--:", "--:", "--:", "--:"])


@table("multi_gpu_70b_per_gpu")
def multi_gpu_70b_per_gpu() -> str:
    runs = [(m, n, _sharded(m, n)) for m in ("lora", "qlora") for n in (2, 8)]
    labels: dict[str, str] = {}
    for _, _, sh in runs:
        for t in sh.terms:
            labels.setdefault(t.key, t.label.replace(" (codes sharded)", ": packed codes"))
    rows = []
    for key, label in labels.items():
        cells = [next((t.gpu_bytes for t in sh.terms if t.key == key), 0) for _, _, sh in runs]
        rows.append([label] + [_gb(b, 2) if b else "-" for b in cells])
    rows.append(["**per GPU**"] + [f"**{_gb(sh.per_gpu_bytes)}**" for _, _, sh in runs])
    rows.append(["one GPU alone"] + [_gb(sh.single_gpu_bytes) for _, _, sh in runs])
    head = [f"{'LoRA' if m == 'lora' else 'QLoRA'}, {n} GPUs" for m, n, _ in runs]
    return _md_table(["term (Llama-3.1-70B, FULL_SHARD)"] + head, rows, ["---"] + ["--:"] * len(runs))


def _per_gpu_fig(method: str, gpus: int):
    return lambda: _gb(_sharded(method, gpus).per_gpu_bytes)


for _m in ("lora", "qlora"):
    for _n in (2, 8):
        figure(f"fsdp_70b_{_m}_{_n}_per_gpu")(_per_gpu_fig(_m, _n))


def _fewest_fig(method: str, gpu: str, strategy: str, offload: bool = False):
    return lambda: _count(_fewest(method, gpu, strategy, offload))


for _m in ("lora", "qlora"):
    for _gpu, _size in GPU_SIZES:
        _tag = _size.split()[0]
        figure(f"fewest_{_tag}gb_{_m}_full_shard")(_fewest_fig(_m, _gpu, "full-shard"))
        figure(f"fewest_{_tag}gb_{_m}_offload")(_fewest_fig(_m, _gpu, "full-shard", True))


@figure("fsdp_70b_lora_gathered")
def fsdp_70b_lora_gathered() -> str:
    return _gb(_sharded("lora", 8).breakdown["gathered"])


@figure("fsdp_70b_qlora_stats")
def fsdp_70b_qlora_stats() -> str:
    return _gb(_sharded("qlora", 8).breakdown["weights_4bit_stats"], 2)


@figure("fsdp_70b_lora_offload_host")
def fsdp_70b_lora_offload_host() -> str:
    return _gb(_sharded("lora", 8, offload_params=True).host_bytes_total, 0)


@figure("fsdp_70b_lora_offload_per_gpu")
def fsdp_70b_lora_offload_per_gpu() -> str:
    return _gb(_sharded("lora", 8, offload_params=True).per_gpu_bytes)


@figure("zero2_70b_lora_8_per_gpu")
def zero2_70b_lora_8_per_gpu() -> str:
    return _gb(_sharded("lora", 8, "shard-grad-op").per_gpu_bytes)


def _record() -> dict:
    return json.loads(RECORD.read_text())


@table("fsdp_cpu_check")
def fsdp_cpu_check() -> str:
    rec = _record()
    rows = []
    names = {"full-shard": "FULL_SHARD", "shard-grad-op": "SHARD_GRAD_OP", "ddp": "data parallel"}
    for run, r in rec["runs"].items():
        method, strategy = run.split("/")
        p = r["predicted"]
        for key, label in (("params", "parameters"), ("grads", "gradients"), ("optimizer", "AdamW m and v"),
                           ("quant_stats", "4-bit statistics")):
            if method == "lora" and key == "quant_stats":
                continue
            measured = [m[key] for m in r["ranks"]]
            rows.append([f"{'LoRA' if method == 'lora' else 'QLoRA'}, {names[strategy]}", label, f"{p[key]:,}",
                         " / ".join(f"{v:,}" for v in measured), "yes" if all(v == p[key] for v in measured) else "no"])
    return _md_table(["run", "bytes of", "predicted per rank", "measured, rank 0 / rank 1", "equal"], rows,
                     ["---", "---", "--:", "--:", ":-:"])


@figure("fsdp_cpu_check_versions")
def fsdp_cpu_check_versions() -> str:
    v = _record()["versions"]
    return f"torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}, bitsandbytes {v['bitsandbytes']}"


@figure("fsdp_cpu_check_date")
def fsdp_cpu_check_date() -> str:
    return _record()["date_utc"][:10]


@figure("fsdp_70b_lora_fewest_80gb")
def fsdp_70b_lora_fewest_80gb() -> str:
    """The fewest 80 GB GPUs for the GPU-memory page's 70B LoRA run under FULL_SHARD (more than the total / 80)."""
    return _count(_fewest("lora", GPU_SIZES[2][0], "full-shard"))
