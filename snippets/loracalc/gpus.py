"""A catalog of training GPUs, and what fits on them.

``memory_gb`` is the vendor's nominal size (what the card is sold as); ``memory_bytes`` is what CUDA
reports as usable (``cudaDeviceProp.totalGlobalMem``, which ``torch.cuda.get_device_properties(0).total_memory``
returns), read from a published deviceQuery or PyTorch printout named in ``usable_source``. It is the
capacity the fit verdicts compare against. Drivers move it by a few MiB; where two readings differ, the
smaller is kept. An AMD card's reading is ROCm's (the same PyTorch call on its ROCm build, or rocminfo's
GPU memory pool, which ROCm's PyTorch reports unchanged). A Mac has no memory of the GPU's own: its
reading is Metal's ``recommendedMaxWorkingSetSize`` (``torch.mps.recommended_max_memory()``), the share of
the one shared memory the GPU may keep resident.

Each card names its ``platform`` (``PLATFORMS``): the vendor, what its usable bytes mean, and the settings
it cannot run or runs only with care (``Limit``), each with its source. ``cannot_run`` and ``cautions``
read an estimate's settings against them, so a verdict says what a card cannot run, not only what fits.
"""
from __future__ import annotations

from collections.abc import Mapping
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
    platform: str = "cuda"          # a key of PLATFORMS: the runtime, what usable means, what it cannot run

    @property
    def memory_bytes(self) -> int:
        """Usable bytes as CUDA reports them (nominal x 10^9 for a card without a cited reading)."""
        return self.usable_bytes or self.memory_gb * 10**9

    @property
    def vendor(self) -> str:
        return PLATFORMS[self.platform].vendor

    @property
    def unified(self) -> bool:
        """The GPU shares one memory with the CPU (a Mac): what the options move to "CPU memory" stays in it."""
        return PLATFORMS[self.platform].unified

    def to_dict(self) -> dict[str, Any]:
        p = PLATFORMS[self.platform]
        return {**asdict(self), "memory_bytes": self.memory_bytes, "vendor": p.vendor, "runtime": p.runtime,
                "unified_memory": p.unified, "usable_means": p.usable_means,
                "limits": [lim.to_dict() for lim in p.limits]}


@dataclass(frozen=True)
class Limit:
    """A setting a platform cannot run (``blocks``) or runs only with care, why, and what to do instead."""
    setting: str                 # an estimate_memory setting, as ``MemoryEstimate.settings`` names it
    values: tuple[Any, ...]      # the values of that setting it applies to
    what: str                    # a few words: what is missing
    why: str                     # one sentence, ending with what to choose instead
    source: str
    blocks: bool = True

    def applies(self, settings: Mapping[str, Any]) -> bool:
        return settings.get(self.setting) in self.values

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "values": list(self.values), "what": self.what, "why": self.why,
                "blocks": self.blocks, "source": self.source}


@dataclass(frozen=True)
class Platform:
    name: str
    vendor: str                  # the widget groups its GPU list by it
    runtime: str
    unified: bool                # one memory shared with the CPU
    usable_means: str            # what the usable bytes are on this platform
    limits: tuple[Limit, ...] = ()


_BNB = "bitsandbytes 0.50.2 (the course's locked version): "
_BNB_TABLE = (_BNB + "README support table (mps: LLM.int8 and QLoRA 4-bit supported, 8-bit optimizers in progress; AMD: "
              "RDNA gfx110X and gfx120X on Linux and Windows)")
_FLASH = "https://github.com/Dao-AILab/flash-attention (README: builds for CUDA and for ROCm; "
_PAGED = _BNB + "functional.get_paged allocates paged state with cget_managed_ptr (cudaMallocManaged / hipMallocManaged)"
_NO_8BIT_OPTIM = Limit(
    "optimizer", ("adamw_8bit", "paged_adamw_8bit"), "8-bit optimizers",
    "bitsandbytes lists its 8-bit optimizers as not yet available on Apple's MPS backend (their update kernel "
    "exists for CUDA, ROCm, Intel XPU and CPU only): choose AdamW, which PyTorch runs fused on MPS",
    _BNB_TABLE + "; backends/cuda, xpu and cpu ops.py register optimizer_update_8bit_blockwise, mps and default do "
    "not; torch 2.13 torch/utils/_foreach_utils.py lists mps among the fused-optimizer devices")
_NO_PAGING = Limit(
    "optimizer", ("paged_adamw", "paged_adamw_8bit"), "paged optimizers",
    "bitsandbytes pages optimizer state through CUDA managed memory, which a Mac does not have, and with one "
    "shared memory there is nothing to page to: choose AdamW", _PAGED)
_NO_FLASH_MPS = Limit(
    "attention", ("flash_attention_2",), "FlashAttention-2",
    "the flash-attn package builds only for NVIDIA and AMD GPUs: choose sdpa, PyTorch's fused attention, "
    "which runs on MPS", _FLASH + "no Metal build)")
_NO_LIGER_MPS = Limit(
    "loss", ("fused_linear",), "Liger's fused loss",
    "Liger's kernels are written in Triton, which has no Apple GPU backend: choose the chunked loss",
    "https://github.com/linkedin/Liger-Kernel (Triton kernels; Triton compiles for NVIDIA and AMD GPUs)")
_MPS_NF4 = Limit(
    "method", ("qlora",), "bitsandbytes NF4 on MPS",
    "bitsandbytes runs NF4 on MPS on macOS 14 or later, with Metal kernels from the Hugging Face kernel hub on "
    "macOS 26 and slower PyTorch fallbacks before it; LoRA on a bf16 base avoids the dequantizing when it fits",
    _BNB + "backends/mps/ops.py (hub kernels on macOS 26+, PyTorch fallbacks otherwise)", blocks=False)
_MPS_INT8 = Limit(
    "method", ("lora_8bit",), "LLM.int8 on MPS",
    "bitsandbytes runs LLM.int8 on MPS through its generic PyTorch ops, without the tuned kernels: slow; "
    "QLoRA or LoRA on a bf16 base are the usual choices on a Mac", _BNB_TABLE, blocks=False)
_MPS_OFFLOAD = Limit(
    "activation_offload", (True,), "activation offloading",
    "on a Mac the CPU memory activations are offloaded to is the same memory, so offloading saves nothing",
    "unified memory: Metal's MTLDevice.hasUnifiedMemory (llama.cpp logs 'hasUnifiedMemory = true')", blocks=False)
_RDNA_FLASH = Limit(
    "attention", ("flash_attention_2",), "FlashAttention-2 on Radeon",
    "flash-attn's default ROCm build (Composable Kernel) targets Instinct MI200/MI300 cards; on a Radeon card build "
    "it with its Triton backend (FLASH_ATTENTION_TRITON_AMD_ENABLE=TRUE) or choose sdpa",
    _FLASH + "flash_attn/flash_attn_triton_amd/README.md: the Triton backend supports CDNA and RDNA)", blocks=False)
_RDNA_BNB = Limit(
    "method", ("qlora", "lora_8bit"), "bitsandbytes on Radeon",
    "bitsandbytes runs on RDNA3 and RDNA4 cards (gfx110X, gfx120X) under Linux or Windows with PyTorch's ROCm "
    "build; the CUDA build of PyTorch does not see the card", _BNB_TABLE, blocks=False)
# PyTorch's MPS allocator refuses allocations past this multiple of recommendedMaxWorkingSetSize (MPS_WATERMARK_SOURCE)
MPS_HIGH_WATERMARK_RATIO = 1.7
PLATFORMS: dict[str, Platform] = {p.name: p for p in (
    Platform("cuda", "NVIDIA", "CUDA", False,
             "dedicated memory as CUDA reports it (cudaDeviceProp.totalGlobalMem)"),
    Platform("rocm-cdna", "AMD", "ROCm (Instinct)", False,
             "dedicated memory as ROCm reports it (torch.cuda.get_device_properties on PyTorch's ROCm build)"),
    Platform("rocm-rdna", "AMD", "ROCm (Radeon)", False,
             "dedicated memory as ROCm reports it; a Ryzen CPU's integrated graphics can appear as a second ROCm "
             "device whose memory is borrowed from system RAM: hide it (HIP_VISIBLE_DEVICES)",
             (_RDNA_FLASH, _RDNA_BNB)),
    Platform("mps", "Apple", "Metal (PyTorch MPS)", True,
             "one memory shared with the CPU; usable here is Metal's recommendedMaxWorkingSetSize, the share the GPU "
             "may keep resident (macOS sets it, and has raised it across releases); PyTorch lets allocations reach "
             f"{MPS_HIGH_WATERMARK_RATIO} times that (PYTORCH_MPS_HIGH_WATERMARK_RATIO) and the Mac swaps to disk "
             "past what it holds",
             (_NO_8BIT_OPTIM, _NO_PAGING, _NO_FLASH_MPS, _NO_LIGER_MPS, _MPS_NF4, _MPS_INT8, _MPS_OFFLOAD)),
)}
MPS_WATERMARK_SOURCE = ("PyTorch aten/src/ATen/mps/MPSAllocator.mm (limit = high watermark ratio x "
                        "recommendedMaxWorkingSetSize) and docs 'MPS Environment Variables' "
                        "(PYTORCH_MPS_HIGH_WATERMARK_RATIO, 1.7 by default), "
                        "https://docs.pytorch.org/docs/stable/mps_environment_variables.html")


_NV = "https://www.nvidia.com/en-us/"
# --8<-- [start:catalog]
_TORCH = "a public PyTorch printout of torch.cuda.get_device_properties(0): "
_MIB = 2**20
_RADEON = "https://www.amd.com/en/products/graphics/desktops/radeon/"
_MAC_SPECS = "https://www.apple.com/mac/compare/"   # the memory each Mac is sold with
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
        speed_source='AMD Instinct MI300X datasheet (peak BF16 1,307.4 TFLOPS dense; 5.3 TB/s; Infinity Fabric 896 GB/s aggregate peer bandwidth; PCIe Gen5 x16)',
        platform="rocm-cdna"),
    # Radeon cards: PyTorch's ROCm build prints total_memory in MiB as CUDA's does; rocminfo prints its GPU pool in KiB
    GPU("rx-9070-xt", "AMD Radeon RX 9070 XT", 16, True, _RADEON + "9000-series/amd-radeon-rx-9070xt.html",
        16304 * _MIB, _TORCH + "(ROCm 6.4) name='AMD Radeon RX 9070 XT', gcnArchName='gfx1201', total_memory=16304MB "
                               "(MiB), https://github.com/ROCm/ROCm/issues/5040", platform="rocm-rdna"),
    GPU("rx-7900-xt", "AMD Radeon RX 7900 XT", 20, True, _RADEON + "7000-series/amd-radeon-rx-7900xt.html",
        20464 * _MIB, _TORCH + "(ROCm 6.3) name='Radeon RX 7900 XT', gcnArchName='gfx1100', total_memory=20464MB "
                               "(MiB), https://github.com/ROCm/ROCm/issues/4437", platform="rocm-rdna"),
    GPU("rx-7900-xtx", "AMD Radeon RX 7900 XTX", 24, True, _RADEON + "7000-series/amd-radeon-rx-7900xtx.html",
        24560 * _MIB, _TORCH + "(ROCm 6.4) name='Radeon RX 7900 XTX', gcnArchName='gfx1100', total_memory=24560MB "
                               "(MiB), https://github.com/ROCm/ROCm/issues/5040", platform="rocm-rdna"),
    GPU("radeon-pro-w7900", "AMD Radeon PRO W7900", 48, True,
        "https://www.amd.com/en/products/graphics/workstations/radeon-pro/w7900.html",
        50315264 * 1024, "rocminfo, AMD Radeon PRO W7900 Dual Slot (gfx1100), GPU pool 'Size: 50315264(0x2ffc000) KB' "
                         "(KiB), https://github.com/ROCm/ROCm/issues/5181", platform="rocm-rdna"),
    # Macs: Metal's recommendedMaxWorkingSetSize as llama.cpp logs it. llama.cpp printed it in MiB labelled "MB"
    # until late 2023 and in 10^6 bytes since; each reading below says which, and from what it follows.
    GPU("mac-8gb", "Mac 8 GB (M1)", 8, True, _MAC_SPECS,
        5_726_630_000, "llama.cpp log 'GPU name: Apple M1 ... recommendedMaxWorkingSetSize = 5726.63 MB' (10^6 bytes: "
                       "the same log's buffer lines count the limit as 5461.34 MiB), "
                       "https://github.com/h2oai/h2ogpt/issues/1359", platform="mps"),
    GPU("mac-16gb", "Mac 16 GB (M1)", 16, True, _MAC_SPECS,
        round(10922.67 * _MIB), "llama.cpp log 'recommendedMaxWorkingSetSize = 10922.67 MB' on an M1 MacBook Pro "
                                "with 16 GB (MiB: two thirds of 16,384), "
                                "https://github.com/abetlen/llama-cpp-python/issues/687", platform="mps"),
    GPU("mac-32gb", "Mac 32 GB (M1 Max)", 32, True, _MAC_SPECS,
        round(21845.34 * _MIB), "llama.cpp log 'recommendedMaxWorkingSetSize = 21845.34 MB' on an M1 Max with 32 GB "
                                "(MiB: two thirds of 32,768), https://github.com/ggml-org/llama.cpp/pull/2011; the same "
                                "reading on an M2 Max with 32 GB, https://github.com/ollama/ollama/issues/434",
        platform="mps"),
    GPU("mac-48gb", "Mac 48 GB", 48, True, _MAC_SPECS,
        40_200_896_512, "'recommended/effective device capacity 40,200,896,512 bytes' on a 48 GiB Mac at the default "
                        "iogpu.wired_limit_mb, https://github.com/utensils/mold/issues/1542", platform="mps"),
    GPU("mac-96gb", "Mac 96 GB (M2 Max)", 96, True, _MAC_SPECS,
        round(73728.00 * _MIB), "llama.cpp log 'recommendedMaxWorkingSetSize = 73728,00 MB' on an M2 Max with 96 GB "
                                "(MiB: three quarters of 98,304), https://github.com/ggml-org/llama.cpp/issues/3213",
        platform="mps"),
    GPU("mac-128gb", "Mac 128 GB (M5 Max)", 128, True, _MAC_SPECS,
        round(107.52 * 2**30), "'recommendedMaxWorkingSetSize: 107.52 GiB # stock' on an M5 Max with 128 GB, macOS 26, "
                               "https://github.com/antirez/ds4/pull/893", platform="mps"),
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


def fits(total_bytes: int, settings: Mapping[str, Any] | None = None) -> list[str]:
    """Names of the catalog's GPUs whose usable memory holds ``total_bytes`` (an estimate's needed-on-the-card
    total, never its allocated peak), smallest first; given the estimate's ``settings``, only the cards that
    can also run them."""
    return [g.name for g in list_gpus() if g.memory_bytes >= total_bytes and (settings is None or runs(g, settings))]


def headroom_bytes(total_bytes: int, gpu: Any) -> int:
    """Memory left on ``gpu`` (negative when the estimate does not fit)."""
    return get_gpu(gpu).memory_bytes - int(total_bytes)


def cannot_run(gpu: Any, settings: Mapping[str, Any]) -> list[Limit]:
    """What ``settings`` (an estimate's validated settings) ask for that ``gpu``'s platform cannot run."""
    return [lim for lim in PLATFORMS[get_gpu(gpu).platform].limits if lim.blocks and lim.applies(settings)]


def cautions(gpu: Any, settings: Mapping[str, Any]) -> list[Limit]:
    """What ``settings`` ask for that ``gpu``'s platform runs only with care."""
    return [lim for lim in PLATFORMS[get_gpu(gpu).platform].limits if not lim.blocks and lim.applies(settings)]


def runs(gpu: Any, settings: Mapping[str, Any]) -> bool:
    return not cannot_run(gpu, settings)


def vendors() -> dict[str, list[GPU]]:
    """The catalog by vendor (in PLATFORMS order), each smallest usable memory first: the widget's GPU groups."""
    order = list(dict.fromkeys(p.vendor for p in PLATFORMS.values()))
    return {v: [g for g in list_gpus() if g.vendor == v] for v in order}


def limit_lines(gpu: Any, settings: Mapping[str, Any]) -> list[str]:
    """The verdict's words on what ``gpu`` cannot run, or runs only with care, of ``settings``: one line each,
    shared by the CLI and the calculator."""
    g = get_gpu(gpu)
    shared = [f"{g.display_name} has {PLATFORMS[g.platform].usable_means}"] if g.unified else []
    return (shared + [f"{g.display_name} cannot run {lim.what}: {lim.why}" for lim in cannot_run(g, settings)]
            + [f"with care on {g.display_name}, {lim.what}: {lim.why}" for lim in cautions(g, settings)])


_VENDOR_WORDS = {"nvidia", "geforce", "amd", "tesla"}


def _tokens(text: str) -> set[str]:
    import re
    words = set(re.findall(r"[a-z0-9]+", re.sub(r"\(.*?\)", " ", text.lower()))) - _VENDOR_WORDS
    # AWS's A10G is the A10 (same 24 GB GDDR6 card, the catalog's A10 reading is an A10G's)
    return words | ({"a10"} if "a10g" in words else set())


def find_gpu(device_name: Any) -> GPU | None:
    """The catalog card a device name denotes, as ``torch.cuda.get_device_name()`` prints it ("NVIDIA H100 80GB
    HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA GeForce RTX 4090", "AMD Instinct MI300X"), or None. A card matches when
    its model words are all in the name; a size word (80gb) decides between two cards of one model."""
    import re
    if not isinstance(device_name, str) or not device_name.strip():
        return None
    have = _tokens(device_name)
    found = []
    for g in list_gpus():
        want = _tokens(g.display_name)
        sizes = {w for w in want if re.fullmatch(r"\d+gb", w)}
        if want - sizes and (want - sizes) <= have:
            found.append((len(sizes & have), len(want - sizes), g))
    if not found:
        return None
    found.sort(key=lambda f: (f[0], f[1]), reverse=True)
    if len(found) > 1 and found[0][:2] == found[1][:2]:
        return None   # two cards fit the name equally (an A100 without its size): not a guess
    return found[0][2]
