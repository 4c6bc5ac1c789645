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
    # speed (speed.py): dense bf16 tensor throughput with fp32 accumulation (no 2:4 sparsity), memory bandwidth,
    # the link between GPUs (NVLink / Infinity Fabric per GPU, else PCIe), the host link, each from speed_source
    peak_bf16_tflops: float = 0.0
    memory_bandwidth_gbs: float = 0.0
    link_gbs: float = 0.0
    pcie_gbs: float = 0.0
    speed_source: str = ""
    price_per_hour: float = 0.0     # a default on-demand price per GPU-hour (USD), from price_source; 0: none cited
    price_source: str = ""

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
        24259 * _MIB, _TORCH + "name='NVIDIA GeForce RTX 3090', total_memory=24259MB (MiB)",
        peak_bf16_tflops=71.0, memory_bandwidth_gbs=936, link_gbs=32, pcie_gbs=32,
        speed_source='NVIDIA Ampere GA102 GPU architecture whitepaper v2, Table 9 (RTX 3090: peak BF16 tensor TFLOPS with FP32 accumulate 71 / 142 sparse; 936 GB/s); PCIe 4.0 x16 (32 GB/s each way), no NVLink assumed',
        price_per_hour=0.684, price_source="RunPod serverless pricing (docs.runpod.io/serverless/pricing, 'L4, A5000, 3090' flex $0.00019/s x 3600)"),
    GPU("rtx-4090", "GeForce RTX 4090", 24, True, _NV + "geforce/graphics-cards/40-series/rtx-4090/",
        24563 * _MIB, _TORCH + "name='NVIDIA GeForce RTX 4090', total_memory=24563MB (MiB)",
        peak_bf16_tflops=165.2, memory_bandwidth_gbs=1008, link_gbs=32, pcie_gbs=32,
        speed_source='NVIDIA Ada GPU architecture whitepaper v2.1, Appendix A (RTX 4090: peak BF16 tensor TFLOPS with FP32 accumulate 165.2 / 330.4 sparse; 1008 GB/s); PCIe 4.0 x16, no NVLink',
        price_per_hour=1.116, price_source="RunPod serverless pricing (docs.runpod.io/serverless/pricing, '4090 PRO' flex $0.00031/s x 3600)"),
    GPU("rtx-5090", "GeForce RTX 5090", 32, True, _NV + "geforce/graphics-cards/50-series/rtx-5090/",
        33677180928, "deviceQuery 'Total amount of global memory: 32117 MBytes (33677180928 bytes)', "
                     "https://github.com/aikitoria/open-gpu-kernel-modules/issues/1",
        peak_bf16_tflops=209.5, memory_bandwidth_gbs=1792, link_gbs=64, pcie_gbs=64,
        speed_source='NVIDIA RTX Blackwell GPU architecture whitepaper, Appendix A (RTX 5090: peak BF16 tensor TFLOPS with FP32 accumulate 209.5 / 419 sparse; 1792 GB/s); PCIe 5.0 x16 (64 GB/s each way)'),
    GPU("l4", "NVIDIA L4", 24, True, _NV + "data-center/l4/",
        23583784960, "deviceQuery '22491 MBytes (23583784960 bytes)', "
                     "https://github.com/bottlerocket-os/bottlerocket-kernel-kit/pull/139",
        peak_bf16_tflops=121.0, memory_bandwidth_gbs=300, link_gbs=32, pcie_gbs=32,
        speed_source='NVIDIA L4 datasheet (BF16 tensor core 242 TFLOPS with sparsity, so 121 dense; 300 GB/s; PCIe Gen4 x16 64 GB/s both ways)',
        price_per_hour=0.684, price_source="RunPod serverless pricing (docs.runpod.io/serverless/pricing, 'L4, A5000, 3090' flex $0.00019/s x 3600)"),
    GPU("a10", "NVIDIA A10", 24, True, _NV + "data-center/products/a10-gpu/",
        22587 * _MIB, _TORCH + "name='NVIDIA A10G', total_memory=22587MB (MiB; AWS's A10G, same 24 GB GDDR6)",
        peak_bf16_tflops=125.0, memory_bandwidth_gbs=600, link_gbs=32, pcie_gbs=32,
        speed_source='NVIDIA A10 datasheet (BF16 tensor core 125 TFLOPS, 250 with sparsity; 600 GB/s; PCIe Gen4 64 GB/s both ways)',
        price_per_hour=1.006, price_source='AWS EC2 on-demand price of g5.xlarge (one A10G), us-east-1, Linux, $1.006 per hour'),
    GPU("rtx-a6000", "NVIDIA RTX A6000", 48, True, _NV + "design-visualization/rtx-a6000/",
        48676 * _MIB, _TORCH + "name='NVIDIA RTX A6000', total_memory=48676MB (MiB)",
        peak_bf16_tflops=154.8, memory_bandwidth_gbs=768, link_gbs=56, pcie_gbs=32,
        speed_source='NVIDIA Ampere GA102 GPU architecture whitepaper v2, Table 9 (RTX A6000: peak BF16 tensor TFLOPS with FP32 accumulate 154.8 / 309.7 sparse; 768 GB/s); NVLink bridge 112.5 GB/s both ways; PCIe 4.0 x16',
        price_per_hour=1.224, price_source="RunPod serverless pricing (docs.runpod.io/serverless/pricing, 'A6000, A40' flex $0.00034/s x 3600)"),
    GPU("l40s", "NVIDIA L40S", 48, True, _NV + "data-center/l40s/",
        45589 * _MIB, _TORCH + "name='NVIDIA L40S', total_memory=45589MB (MiB)",
        peak_bf16_tflops=362.05, memory_bandwidth_gbs=864, link_gbs=32, pcie_gbs=32,
        speed_source='NVIDIA L40S datasheet (BF16 tensor core 362.05 TFLOPS, 733 with sparsity; 864 GB/s; PCIe Gen4 x16 64 GB/s both ways)',
        price_per_hour=1.908, price_source="RunPod serverless pricing (docs.runpod.io/serverless/pricing, 'L40, L40S, 6000 Ada PRO' flex $0.00053/s x 3600)"),
    GPU("a100-40gb", "NVIDIA A100 40GB", 40, True, _NV + "data-center/a100/",
        42298834944, "deviceQuery 'NVIDIA A100-SXM4-40GB ... 40339 MBytes (42298834944 bytes)', "
                     "https://github.com/bottlerocket-os/bottlerocket/pull/3873",
        peak_bf16_tflops=312.0, memory_bandwidth_gbs=1555, link_gbs=300, pcie_gbs=32,
        speed_source='NVIDIA A100 datasheet (BF16 tensor core 312 TFLOPS, 624 with sparsity; 40GB: 1,555 GB/s; NVLink 600 GB/s both ways, 300 each way)'),
    GPU("a100-80gb", "NVIDIA A100 80GB", 80, True, _NV + "data-center/a100/",
        85100068864, "deviceQuery 'NVIDIA A100-SXM4-80GB ... 81158 MBytes (85100068864 bytes)', "
                     "https://github.com/thamada/nvidia-smi (nvsim/A100SXMx4_deviceQuery.py)",
        peak_bf16_tflops=312.0, memory_bandwidth_gbs=2039, link_gbs=300, pcie_gbs=32,
        speed_source='NVIDIA A100 datasheet (BF16 tensor core 312 TFLOPS, 624 with sparsity; 80GB SXM: 2,039 GB/s; NVLink 600 GB/s both ways, 300 each way)',
        price_per_hour=2.736, price_source="RunPod serverless pricing (docs.runpod.io/serverless/pricing, 'A100' 80 GB flex $0.00076/s x 3600)"),
    GPU("h100-80gb", "NVIDIA H100 80GB", 80, True, _NV + "data-center/h100/",
        81082 * _MIB, _TORCH + "H100 80GB HBM3 total_memory=81082MB to 81090MB by driver (MiB; smallest kept)",
        peak_bf16_tflops=989.0, memory_bandwidth_gbs=3350, link_gbs=450, pcie_gbs=64,
        speed_source='NVIDIA H100 datasheet, SXM (BF16 tensor core 1,979 TFLOPS with sparsity, so 989 dense; 3.35 TB/s; NVLink 900 GB/s both ways; PCIe Gen5 128 GB/s both ways)',
        price_per_hour=4.176, price_source="RunPod serverless pricing (docs.runpod.io/serverless/pricing, 'H100 PRO' flex $0.00116/s x 3600)"),
    GPU("h200", "NVIDIA H200 141GB", 141, True, _NV + "data-center/h200/",
        143156 * _MIB, _TORCH + "name='NVIDIA H200', total_memory=143156MB (MiB)",
        peak_bf16_tflops=989.0, memory_bandwidth_gbs=4800, link_gbs=450, pcie_gbs=64,
        speed_source='NVIDIA H200 datasheet, SXM (BF16 tensor core 1,979 TFLOPS with sparsity, so 989 dense; 4.8 TB/s; NVLink 900 GB/s both ways; PCIe Gen5 128 GB/s both ways)',
        price_per_hour=5.58, price_source="RunPod serverless pricing (docs.runpod.io/serverless/pricing, 'H200 PRO' flex $0.00155/s x 3600)"),
    GPU("b200", "NVIDIA B200 180GB", 180, True, _NV + "data-center/dgx-b200/",
        182631 * _MIB, _TORCH + "B200 total_memory=182631MB to 182642MB by driver (MiB; smallest kept)",
        peak_bf16_tflops=2250.0, memory_bandwidth_gbs=7700, link_gbs=900, pcie_gbs=64,
        speed_source='NVIDIA HGX B200 datasheet (FP16/BF16 tensor core 4.5 PFLOPS with sparsity per GPU, so 2.25 dense; HBM3e 7.7 TB/s per GPU in HGX; NVLink 5 1.8 TB/s both ways; PCIe Gen5)',
        price_per_hour=8.64, price_source="RunPod serverless pricing (docs.runpod.io/serverless/pricing, 'B200' flex $0.00240/s x 3600)"),
    GPU("mi300x", "AMD Instinct MI300X", 192, True,
        "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html",
        196592 * _MIB, _TORCH + "(ROCm) name='AMD Instinct MI300X', total_memory=196592MB (MiB)",
        peak_bf16_tflops=1307.4, memory_bandwidth_gbs=5300, link_gbs=448, pcie_gbs=64,
        speed_source='AMD Instinct MI300X datasheet (peak BF16 1,307.4 TFLOPS dense; 5.3 TB/s; Infinity Fabric 896 GB/s aggregate peer bandwidth; PCIe Gen5 x16)'),
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
