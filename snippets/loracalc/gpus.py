"""A catalog of training GPUs, and what fits on them.

``memory_gb`` is the vendor's nominal size (what the card is sold as); ``memory_bytes`` is what CUDA
reports as usable (``cudaDeviceProp.totalGlobalMem``, which ``torch.cuda.get_device_properties(0).total_memory``
returns), read from a published deviceQuery or PyTorch printout named in ``usable_source``. It is the
capacity the fit verdicts compare against. Drivers move it by a few MiB; where two readings differ, the
smaller is kept.
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
    usable_bytes: int = 0
    usable_source: str = ""

    @property
    def memory_bytes(self) -> int:
        """Usable bytes as CUDA reports them (nominal x 10^9 for a card without a cited reading)."""
        return self.usable_bytes or self.memory_gb * 10**9

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "memory_bytes": self.memory_bytes}


_NV = "https://www.nvidia.com/en-us/"
# --8<-- [start:catalog]
_TORCH = "a public PyTorch printout of torch.cuda.get_device_properties(0): "
_MIB = 2**20
GPUS: dict[str, GPU] = {g.name: g for g in (
    GPU("rtx-3090", "GeForce RTX 3090", 24, True, _NV + "geforce/graphics-cards/30-series/rtx-3090-3090ti/",
        24259 * _MIB, _TORCH + "name='NVIDIA GeForce RTX 3090', total_memory=24259MB (MiB)"),
    GPU("rtx-4090", "GeForce RTX 4090", 24, True, _NV + "geforce/graphics-cards/40-series/rtx-4090/",
        24563 * _MIB, _TORCH + "name='NVIDIA GeForce RTX 4090', total_memory=24563MB (MiB)"),
    GPU("rtx-5090", "GeForce RTX 5090", 32, True, _NV + "geforce/graphics-cards/50-series/rtx-5090/",
        33677180928, "deviceQuery 'Total amount of global memory: 32117 MBytes (33677180928 bytes)', "
                     "https://github.com/aikitoria/open-gpu-kernel-modules/issues/1"),
    GPU("l4", "NVIDIA L4", 24, True, _NV + "data-center/l4/",
        23583784960, "deviceQuery '22491 MBytes (23583784960 bytes)', "
                     "https://github.com/bottlerocket-os/bottlerocket-kernel-kit/pull/139"),
    GPU("a10", "NVIDIA A10", 24, True, _NV + "data-center/products/a10-gpu/",
        22587 * _MIB, _TORCH + "name='NVIDIA A10G', total_memory=22587MB (MiB; AWS's A10G, same 24 GB GDDR6)"),
    GPU("rtx-a6000", "NVIDIA RTX A6000", 48, True, _NV + "design-visualization/rtx-a6000/",
        48676 * _MIB, _TORCH + "name='NVIDIA RTX A6000', total_memory=48676MB (MiB)"),
    GPU("l40s", "NVIDIA L40S", 48, True, _NV + "data-center/l40s/",
        45589 * _MIB, _TORCH + "name='NVIDIA L40S', total_memory=45589MB (MiB)"),
    GPU("a100-40gb", "NVIDIA A100 40GB", 40, True, _NV + "data-center/a100/",
        42298834944, "deviceQuery 'NVIDIA A100-SXM4-40GB ... 40339 MBytes (42298834944 bytes)', "
                     "https://github.com/bottlerocket-os/bottlerocket/pull/3873"),
    GPU("a100-80gb", "NVIDIA A100 80GB", 80, True, _NV + "data-center/a100/",
        85100068864, "deviceQuery 'NVIDIA A100-SXM4-80GB ... 81158 MBytes (85100068864 bytes)', "
                     "https://github.com/thamada/nvidia-smi (nvsim/A100SXMx4_deviceQuery.py)"),
    GPU("h100-80gb", "NVIDIA H100 80GB", 80, True, _NV + "data-center/h100/",
        81082 * _MIB, _TORCH + "H100 80GB HBM3 total_memory=81082MB to 81090MB by driver (MiB; smallest kept)"),
    GPU("h200", "NVIDIA H200 141GB", 141, True, _NV + "data-center/h200/",
        143156 * _MIB, _TORCH + "name='NVIDIA H200', total_memory=143156MB (MiB)"),
    GPU("b200", "NVIDIA B200 180GB", 180, True, _NV + "data-center/dgx-b200/",
        182631 * _MIB, _TORCH + "B200 total_memory=182631MB to 182642MB by driver (MiB; smallest kept)"),
    GPU("mi300x", "AMD Instinct MI300X", 192, True,
        "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html",
        196592 * _MIB, _TORCH + "(ROCm) name='AMD Instinct MI300X', total_memory=196592MB (MiB)"),
)}
# --8<-- [end:catalog]


def list_gpus() -> list[GPU]:
    """The catalog, smallest usable memory first."""
    return sorted(GPUS.values(), key=lambda g: (g.memory_bytes, g.name))


def get_gpu(name: Any) -> GPU:
    if isinstance(name, GPU):
        return name
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in GPUS:
        raise LoraCalcError("gpu", f"unknown GPU {name!r}; choose one of: {', '.join(GPUS)}")
    return GPUS[key]


def fits(total_bytes: int) -> list[str]:
    """Names of the catalog's GPUs whose usable memory holds ``total_bytes`` (an estimate's needed-on-the-card
    total, never its allocated peak), smallest first."""
    return [g.name for g in list_gpus() if g.memory_bytes >= total_bytes]


def headroom_bytes(total_bytes: int, gpu: Any) -> int:
    """Memory left on ``gpu`` (negative when the estimate does not fit)."""
    return get_gpu(gpu).memory_bytes - int(total_bytes)
