"""Host (CPU) RAM of a fine-tuning job's stages for the "GPU memory" page: Llama-3.1-70B cases from
``loracalc.host_memory``, the published figures beside them, and the CPU measurements the engine is checked
against (``data/host_memory_check.json``, written by ``scripts/host_memory_check.py``)."""
from __future__ import annotations

import json
from pathlib import Path

from .multi_gpu import _gb, _md_table
from .prose import SETTINGS_70B
from .registry import figure, table

MODEL_70B = "llama-3.1-70b"
RECORD = Path(__file__).parent / "data" / "host_memory_check.json"
RANK = SETTINGS_70B["rank"]
# (what the row is, host_memory's arguments)
CASES_70B = (
    ("Load, transformers 5 (safetensors mapped), 8 GPUs, each rank loads",
     dict(stage="load", method="lora", gpus=8)),
    ("Load, full-copy path (transformers 4), 8 GPUs, each rank loads",
     dict(stage="load", method="lora", checkpoint="full-copy", gpus=8)),
    ("Load, full-copy path, 8 GPUs, rank 0 only (cpu_ram_efficient_loading)",
     dict(stage="load", method="lora", checkpoint="full-copy", gpus=8, rank0_loads=True)),
    ("Load to the CPU in fp32 (a cast beside the mapped checkpoint)",
     dict(stage="load", method="full", load_to="cpu", load_dtype="fp32")),
    ("Full fine-tune, 8 GPUs, ZeRO-3 with the optimizer offloaded",
     dict(stage="train", method="full", gpus=8, strategy="full-shard", offload_optimizer=True)),
    ("Full fine-tune checkpoint, 8 GPUs, FULL_STATE_DICT on rank 0",
     dict(stage="save", method="full", gpus=8, strategy="full-shard", state_dict="full")),
    ("LoRA checkpoint (adapter and its optimizer state), one GPU",
     dict(stage="save", method="lora")),
    (f"Merge a rank-{RANK} adapter into the bf16 base on a CPU, export",
     dict(stage="merge", method="lora")),
    ("Merge into a 4-bit base dequantized to bf16 first",
     dict(stage="merge", method="qlora", merge_base="4bit")),
)


def _host(**kw):
    from loracalc.host_memory import host_memory
    return host_memory(MODEL_70B, rank=RANK, targets=SETTINGS_70B["targets"], **kw)


@table("host_ram_70b")
def host_ram_70b() -> str:
    rows = []
    for label, kw in CASES_70B:
        est = _host(**kw)
        rows.append([label, _gb(est.peak_bytes), _gb(est.machine_bytes),
                     _gb(est.reclaimable_bytes) if est.reclaimable_bytes else "-"])
    return _md_table(["Llama-3.1-70B", "busiest process", "whole machine", "of which mapped pages"], rows,
                     ["---", "--:", "--:", "--:"])


@table("host_ram_measured")
def host_ram_measured() -> str:
    from loracalc.host_memory import host_memory
    from loracalc.models import model_from_config
    data = json.loads(RECORD.read_text(encoding="utf-8"))
    arch = model_from_config(data["model_config"])
    rows = []
    for r in data["rows"]:
        if r["case"] == "load_untouched":
            continue
        p, m = host_memory(arch, **r["engine"]).peak_bytes, r["peak_fixed_threshold_bytes"]
        rows.append([f"`{r['case']}`", f"{r['peak_above_start_bytes'] / 1e6:,.0f} MB", f"{m / 1e6:,.0f} MB",
                     f"{p / 1e6:,.0f} MB", f"{(m - p) / 1e6:+,.0f} MB",
                     f"transformers {r['versions']['transformers']}, {r['date']}"])
    return _md_table(["case", "measured peak", "threshold fixed", "engine", "difference", "measured with"], rows,
                     ["---", "--:", "--:", "--:", "--:", "---"])


@figure("host_ram_overhead")
def host_ram_overhead() -> str:
    data = json.loads(RECORD.read_text(encoding="utf-8"))
    row = next(r for r in data["rows"] if r["case"] == "load_untouched")
    return f"{row['peak_fixed_threshold_bytes'] / 1e6:,.0f} MB"


@figure("host_ram_model_gb")
def host_ram_model_gb() -> str:
    from loracalc.models import model_from_config, total_params
    data = json.loads(RECORD.read_text(encoding="utf-8"))
    return _gb(2 * total_params(model_from_config(data["model_config"])), 2)


@figure("host_ram_70b_zero3_moments")
def host_ram_70b_zero3_moments() -> str:
    est = _host(stage="train", method="full", gpus=8, strategy="full-shard", offload_optimizer=True)
    kept = sum(t.bytes for t in est.terms if t.key != "offloaded_optimizer_temp") * est.processes
    return f"{_gb(kept, 0)} ({kept / 2**30:,.0f} GiB)"


@figure("host_ram_shared")
def host_ram_shared() -> str:
    """Pages a second process loading the same checkpoint shared with the first (measured)."""
    data = json.loads(RECORD.read_text(encoding="utf-8"))
    row = next(r for r in data["rows"] if r["case"] == "load_shared")
    return f"{row['shared_clean_bytes'] / 1e6:,.0f} MB"


# what practitioners report (issue 31 of this course's tracker quotes them; the setups behind them are not given)
CLAIMS = {"load_70b": "about 350 GB", "zero3_offload_70b": "750-800 GB"}


@figure("host_ram_claim_load_70b")
def host_ram_claim_load_70b() -> str:
    return CLAIMS["load_70b"]


@figure("host_ram_claim_zero3_70b")
def host_ram_claim_zero3_70b() -> str:
    return CLAIMS["zero3_offload_70b"]


@figure("host_ram_70b_full_copy_bf16")
def host_ram_70b_full_copy_bf16() -> str:
    return _gb(_host(stage="load", method="lora", checkpoint="full-copy", load_to="cpu").peak_bytes, 0)


@figure("host_ram_70b_full_copy_fp32")
def host_ram_70b_full_copy_fp32() -> str:
    return _gb(_host(stage="load", method="full", checkpoint="full-copy", load_to="cpu",
                     load_dtype="fp32").peak_bytes, 0)


@figure("host_ram_default_shard")
def host_ram_default_shard() -> str:
    from loracalc.host_memory import DEFAULT_SHARD_BYTES
    return _gb(DEFAULT_SHARD_BYTES, 0)
