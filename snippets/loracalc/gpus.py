"""A catalog of training GPUs, and what fits on them.

Capacities are the vendors' nominal memory sizes, counted in GB of 10^9 bytes. The cards hold that many
GiB (2^30 bytes), a few percent more, which leaves room for ECC and driver reservations.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import LoraCalcError


@dataclass(frozen=True)
class GPU:
    name: str
    display_name: str
    memory_gb: int
    bf16: bool
    source: str

    @property
    def memory_bytes(self) -> int:
        return self.memory_gb * 10**9

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "memory_bytes": self.memory_bytes}


_NV = "https://www.nvidia.com/en-us/"
# --8<-- [start:catalog]
GPUS: dict[str, GPU] = {g.name: g for g in (
    GPU("rtx-3090", "GeForce RTX 3090", 24, True, _NV + "geforce/graphics-cards/30-series/rtx-3090-3090ti/"),
    GPU("rtx-4090", "GeForce RTX 4090", 24, True, _NV + "geforce/graphics-cards/40-series/rtx-4090/"),
    GPU("rtx-5090", "GeForce RTX 5090", 32, True, _NV + "geforce/graphics-cards/50-series/rtx-5090/"),
    GPU("l4", "NVIDIA L4", 24, True, _NV + "data-center/l4/"),
    GPU("a10", "NVIDIA A10", 24, True, _NV + "data-center/products/a10-gpu/"),
    GPU("rtx-a6000", "NVIDIA RTX A6000", 48, True, _NV + "design-visualization/rtx-a6000/"),
    GPU("l40s", "NVIDIA L40S", 48, True, _NV + "data-center/l40s/"),
    GPU("a100-40gb", "NVIDIA A100 40GB", 40, True, _NV + "data-center/a100/"),
    GPU("a100-80gb", "NVIDIA A100 80GB", 80, True, _NV + "data-center/a100/"),
    GPU("h100-80gb", "NVIDIA H100 80GB", 80, True, _NV + "data-center/h100/"),
    GPU("h200", "NVIDIA H200 141GB", 141, True, _NV + "data-center/h200/"),
    GPU("b200", "NVIDIA B200 180GB", 180, True, _NV + "data-center/dgx-b200/"),
    GPU("mi300x", "AMD Instinct MI300X", 192, True,
        "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html"),
)}
# --8<-- [end:catalog]


def list_gpus() -> list[GPU]:
    """The catalog, smallest memory first."""
    return sorted(GPUS.values(), key=lambda g: (g.memory_gb, g.name))


def get_gpu(name: Any) -> GPU:
    if isinstance(name, GPU):
        return name
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in GPUS:
        raise LoraCalcError("gpu", f"unknown GPU {name!r}; choose one of: {', '.join(GPUS)}")
    return GPUS[key]


def fits(total_bytes: int) -> list[str]:
    """Names of the catalog's GPUs with at least ``total_bytes``, smallest first."""
    return [g.name for g in list_gpus() if g.memory_bytes >= total_bytes]


def headroom_bytes(total_bytes: int, gpu: Any) -> int:
    """Memory left on ``gpu`` (negative when the estimate does not fit)."""
    return get_gpu(gpu).memory_bytes - int(total_bytes)
