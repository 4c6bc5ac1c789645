"""Host (CPU) memory of a fine-tuning job, stage by stage: loading the model, training (what is offloaded),
saving a checkpoint, merging the adapter and exporting the merged model.

``host_memory(model, stage=...)`` returns labelled terms (bytes and formula) and the stage's host peak, per
process and for the whole machine. Every size comes from the engine's own counting: parameters from
``models.total_params``, adapters from ``params.count_params``, stored 4- and 8-bit bases from
``quantized.quantized_linears``, the optimizer state from ``estimate_memory``'s terms, offloaded shares from
``sharding.shard_estimate``. What each library does with host memory is read from its source (versions in
``requirements/lock.txt``) and measured on a CPU by ``scripts/host_memory_check.py``:

* transformers 5 ``from_pretrained`` builds the model on the meta device and memory-maps each safetensors shard
  (``safe_open(..., backend="mmap")``); a ``.bin`` saved in the zip format is opened with
  ``torch.load(mmap=True)``. On a CPU in the checkpoint's dtype the parameters *are* the mapped file pages: they
  become resident as they are read, are shared with the page cache (and with every process mapping the same
  files) and can be dropped and re-read by the kernel. Casting to another dtype, or copying to a GPU, reads
  every page too, and the files stay mapped until loading ends.
* ``full-copy`` is the older path (transformers 4 with ``low_cpu_mem_usage=False``, or ``torch.load`` of an
  old ``.bin``): the model is built in memory and the whole state dict is read beside it: two copies.
* Several processes (one per GPU) each load, unless only rank 0 reads the checkpoint: accelerate's FSDP
  ``cpu_ram_efficient_loading`` (transformers then keeps the other ranks' weights on the meta device) or
  DeepSpeed ZeRO-3 (transformers reads the state dict on rank 0 only).
* peft's ``merge_and_unload`` on a CPU adds ``B @ A * scaling`` (two fp32 products of the largest adapted
  weight) into each base weight in place; safetensors writes a CPU tensor from its own memory, a GPU tensor
  after copying the whole shard (``max_shard_size``, 50 GB by default) to the host; ``torch.save`` copies one
  storage at a time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .choices import METHODS, QUANTIZED, STRATEGIES
from .errors import LoraCalcError, as_bool, as_choice, as_int
from .memory import estimate_memory
from .models import get_model, total_params
from .params import count_params
from .quantized import quantized_linears

STAGES = {"load": "load the model (from_pretrained)", "train": "train (what is offloaded to host memory)",
          "save": "save a training checkpoint", "merge": "merge the adapter into the base and export it"}
CHECKPOINTS = {"safetensors": "safetensors shards, memory-mapped (transformers 5)",
               "bin": "pytorch_model.bin in the zip format, torch.load(mmap=True) (transformers 5)",
               "full-copy": "model built in memory, whole state dict read beside it (transformers 4 with "
                            "low_cpu_mem_usage=False, or an old .bin)"}
LOAD_TO = {"gpu": "device_map to the GPU (or a bitsandbytes quantization_config)", "cpu": "kept in CPU memory"}
LOAD_DTYPES = {"bf16": 2, "fp32": 4}
STATE_DICTS = {"sharded": "each rank writes its own shard (FSDP SHARDED_STATE_DICT)",
               "full": "rank 0 gathers the whole state dict in host memory (FSDP FULL_STATE_DICT, rank0_only)"}
MERGE_BASES = {"16bit": "a 16-bit base read from its checkpoint",
               "4bit": "a 4-bit base dequantized to 16 bit first"}
KINDS = {"private": "the process's own memory", "mapped": "checkpoint pages mapped from disk (page cache, shared "
                                                          "between processes, reclaimable)",
         "pinned": "page-locked (cannot be swapped)"}
DEFAULT_SHARD_BYTES = 50 * 10**9         # transformers' save_pretrained max_shard_size="50GB"
ADAPTER_BYTES = 4                        # peft's autocast_adapter_dtype keeps adapters in fp32
MERGE_TEMP_BYTES = 8                     # B @ A in fp32, then its scaled copy, for one weight at a time
# bitsandbytes' CPU quantize_4bit (backends/default/ops.py): the weight as fp32, its scaled and clamped copy (fp32)
# and the int32 bucket indices are alive together, for one weight at a time
QUANTIZE_TEMP_BYTES = 12
# transformers' dequantize_and_replace dequantizes each weight twice in fp32, then casts it to bf16
DEQUANTIZE_TEMP_BYTES = 10
CHECKPOINT_BYTES = 2                     # the Hub's checkpoints are bf16 or fp16
MAX_GPUS = 4096
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass(frozen=True)
class HostTerm:
    key: str
    label: str
    bytes: int
    formula: str
    kind: str = "private"        # KINDS
    ranks: str = "each"          # "each": every loading process holds it; "rank0": only the first

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "bytes": self.bytes, "formula": self.formula,
                "kind": self.kind, "ranks": self.ranks}


@dataclass(frozen=True)
class HostEstimate:
    model: str
    stage: str
    processes: int
    settings: dict
    terms: tuple[HostTerm, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def peak_bytes(self) -> int:
        """The busiest process's peak resident memory (what its VmHWM would show)."""
        return sum(t.bytes for t in self.terms)

    @property
    def reclaimable_bytes(self) -> int:
        return sum(t.bytes for t in self.terms if t.kind == "mapped")

    @property
    def machine_bytes(self) -> int:
        """All processes together: private terms once per process that holds them, mapped pages once."""
        n = self.processes
        return sum(t.bytes * (n if t.ranks == "each" and t.kind != "mapped" else 1) for t in self.terms)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "stage": self.stage, "processes": self.processes,
                "settings": dict(self.settings), "peak_bytes": self.peak_bytes,
                "peak_gb": round(self.peak_bytes / 1e9, 3), "reclaimable_bytes": self.reclaimable_bytes,
                "machine_bytes": self.machine_bytes, "machine_gb": round(self.machine_bytes / 1e9, 3),
                "peak_means": "the busiest process's peak resident memory (VmHWM)",
                "machine_means": "all processes on the machine; mapped checkpoint pages counted once",
                "terms": [t.to_dict() for t in self.terms], "notes": list(self.notes)}


def shard_bytes(value: Any) -> int:
    """``max_shard_size`` as transformers reads it: bytes, or a string such as "50GB" or "5GiB"."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?I?B?)\s*", value.upper())
        if not m or m.group(2) not in _UNITS:
            raise LoraCalcError("max_shard_size", f"max_shard_size must be bytes or a size such as 50GB or 5GiB "
                                                  f"(got {value!r})")
        n = int(float(m.group(1)) * _UNITS[m.group(2)])
    else:
        raise LoraCalcError("max_shard_size", f"max_shard_size must be bytes or a size such as 50GB (got {value!r})")
    if n < 1 or n > 10**15:
        raise LoraCalcError("max_shard_size", f"max_shard_size must be from 1 byte to 1 PB (got {n:,})")
    return n


def _sizes(arch, method: str, rank: Any, targets: Any, adapt: Any = None) -> dict[str, int]:
    """The byte counts every stage reads, from the engine's counting (a vision-language model's adapters where
    ``adapt`` puts them)."""
    P = total_params(arch)
    lora = count_params(arch, rank=rank, targets=targets, adapt=adapt)
    linears = arch.layer_linears()
    quant = {"qlora": "nf4", "lora_8bit": "int8"}.get(method)
    q_bytes, q_weights = quantized_linears(arch, quant) if quant else (0, 0)
    nf4_bytes, nf4_weights = quantized_linears(arch, "nf4")
    adapter_tensors = [m.lora_params * max(m.d_in, m.d_out) // (m.d_in + m.d_out) for m in lora.per_module]
    return {"params": P, "lora": lora.lora_params, "rank": lora.rank,
            "largest_adapter_tensor": max(adapter_tensors, default=0),
            "largest_linear": max((r.d_out * r.d_in for r in linears), default=0),
            "largest_tensor": max((r.weight for r in arch.records), default=0),
            "quantized_bytes": q_bytes, "quantized_weights": q_weights, "quant": quant or "",
            "nf4_bytes": nf4_bytes, "nf4_weights": nf4_weights}


def _load_terms(sz: dict, method: str, checkpoint: str, load_to: str, dtype_b: int) -> tuple[list, list[str]]:
    P, ck = sz["params"], sz.get("checkpoint_bytes", CHECKPOINT_BYTES * sz["params"])
    terms, notes = [], []
    if checkpoint == "full-copy":
        terms.append(HostTerm("state_dict", "Checkpoint read whole by torch.load", ck,
                              f"{CHECKPOINT_BYTES} B x {P:,} params"))
        if load_to == "cpu":
            terms.append(HostTerm("model", f"Model built in memory ({'fp32' if dtype_b == 4 else 'bf16'})",
                                  dtype_b * P, f"{dtype_b} B x {P:,} params"))
        else:
            notes.append("full-copy to a GPU: the state dict is copied to the card tensor by tensor")
        return terms, notes
    how = "safetensors shards" if checkpoint == "safetensors" else "zip .bin (torch.load mmap=True)"
    terms.append(HostTerm("mapped_checkpoint", f"Checkpoint pages mapped from the {how}", ck,
                          (f"{CHECKPOINT_BYTES} B x {P:,} params" if "checkpoint_bytes" not in sz else
                           f"{ck:,} B (quantized.stored_bytes)") + ", resident as they are read", "mapped"))
    if load_to == "cpu" and sz["quant"]:
        terms.append(HostTerm("quantized_weights", f"Linear weights quantized in CPU memory ({sz['quant']}; the "
                              "rest stay mapped)", sz["quantized_bytes"],
                              f"quantized.quantized_linears: {sz['quantized_weights']:,} weights"))
        big = sz["largest_linear"]
        terms.append(HostTerm("quantize_temp", "Quantizing the largest weight on the CPU (fp32 copies, int32 codes)",
                              QUANTIZE_TEMP_BYTES * big, f"{QUANTIZE_TEMP_BYTES} B x {big:,}"))
    elif load_to == "cpu" and dtype_b != CHECKPOINT_BYTES:
        terms.append(HostTerm("cast_weights", "Weights cast to fp32 (a private copy)", dtype_b * P,
                              f"{dtype_b} B x {P:,} params"))
    elif load_to == "cpu":
        notes.append("the parameters are the mapped pages themselves: no copy is made")
    else:
        notes.append("each tensor is read from the mapped file and copied (or quantized) on the card; the files "
                     "stay mapped until loading ends")
    return terms, notes


def _save_terms(arch, sz, method, est, gpus, strategy, state_dict, training_on, shard_b) -> tuple[list, list[str]]:
    P, Pl = sz["params"], sz["lora"]
    full = method == "full"
    weights_b = est.term("master_weights").bytes if full and "master_weights" in est.breakdown else (
        2 * P if full else ADAPTER_BYTES * Pl)
    trainable = P if full else Pl
    opt_b = sum(t.bytes for t in est.terms + est.host if t.key == "optimizer")
    largest = sz["largest_tensor"] if full else sz["largest_adapter_tensor"]
    what = "model" if full else "adapter"
    terms, notes = [], []
    if gpus > 1 and strategy != "ddp" and state_dict == "full":
        terms.append(HostTerm("gathered_weights", f"Whole {what} state dict gathered on rank 0", weights_b,
                              f"{weights_b:,} B ({'fp32 masters' if weights_b == 4 * P else 'as trained'})",
                              ranks="rank0"))
        terms.append(HostTerm("gathered_optimizer", "Whole optimizer state gathered on rank 0", opt_b,
                              f"{opt_b:,} B (estimate_memory's optimizer term)", ranks="rank0"))
        notes.append("FULL_STATE_DICT with offload_to_cpu and rank0_only: the other ranks hold none of it")
        return terms, notes
    n = gpus if gpus > 1 and strategy != "ddp" else 1
    if training_on == "cpu":
        notes.append("the tensors already live in CPU memory: safetensors and torch.save write from them, no copy")
        return [HostTerm("save_copy", "Copies made for saving", 0, "none: written from the tensors themselves")], notes
    w_share, opt_share = -(-weights_b // n), -(-opt_b // n)
    shard = min(w_share, shard_b)
    terms.append(HostTerm("weights_shard", f"One safetensors shard of the {what} copied to the host", shard,
                          f"min({w_share:,} B, max_shard_size {shard_b:,} B)" + (f"; 1/{n} per rank" if n > 1 else "")))
    one = int(opt_share * min(largest, trainable) / trainable) if trainable else 0
    terms.append(HostTerm("optimizer_storage", "torch.save of the optimizer state: one storage at a time", one,
                          f"{opt_share:,} B x {min(largest, trainable):,} / {trainable:,} (largest tensor's share)"))
    if n > 1:
        notes.append(f"SHARDED_STATE_DICT: each of the {n} ranks writes its own 1/{n}")
    return terms, notes


def _merge_terms(sz: dict, checkpoint: str, merge_base: str) -> list[HostTerm]:
    P, Pl = sz["params"], sz["lora"]
    terms = []
    if checkpoint == "full-copy":
        terms.append(HostTerm("base", "Base model in bf16", 2 * P, f"2 B x {P:,} params"))
    else:
        terms.append(HostTerm("base", "Base checkpoint's pages, mapped (merged weights become private copies)",
                              2 * P, f"2 B x {P:,} params", "mapped"))
    if merge_base == "4bit":
        Pq = sz["nf4_weights"]
        terms.append(HostTerm("dequantized_linears", "Linear weights dequantized to bf16", 2 * Pq,
                              f"2 B x {Pq:,} weights"))
        terms.append(HostTerm("quantized_linears", "4-bit linear weights, held until the model is dequantized",
                              sz["nf4_bytes"], "quantized.quantized_linears (nf4)"))
    terms.append(HostTerm("adapter", "LoRA adapter (fp32)", ADAPTER_BYTES * Pl, f"{ADAPTER_BYTES} B x {Pl:,} params"))
    big = sz["largest_linear"]
    if merge_base == "4bit":   # dequantizing comes first and its temporary is the larger one
        terms.append(HostTerm("dequantize_temp", "Dequantizing the largest weight (two fp32 copies, then bf16)",
                              DEQUANTIZE_TEMP_BYTES * big, f"{DEQUANTIZE_TEMP_BYTES} B x {big:,}"))
    else:
        terms.append(HostTerm("merge_delta", "B @ A x scaling for the largest adapted weight (fp32, two copies)",
                              MERGE_TEMP_BYTES * big, f"{MERGE_TEMP_BYTES} B x {big:,}"))
    return terms


def _offload_terms(arch, est, gpus, strategy, offload_optimizer, offload_params) -> tuple[list, list[str]]:
    """What the training step keeps in host memory: estimate_memory's host terms (activations, paged state)
    and, over several GPUs, sharding's offloaded shares."""
    from .sharding import shard_estimate
    terms = [HostTerm(t.key, t.label, t.bytes, t.formula, "pinned") for t in est.host]
    notes = []
    if gpus > 1 or offload_optimizer or offload_params:
        sh = shard_estimate(est, arch, gpus, strategy, offload_optimizer, offload_params)
        terms += [HostTerm("offloaded_" + t.key, t.label + " (offloaded)", t.host_bytes, t.formula, "pinned")
                  for t in sh.terms if t.host_bytes]
        notes += list(sh.notes)
    if not terms:
        terms.append(HostTerm("offloaded", "Offloaded to host memory", 0, "nothing offloaded"))
    notes.append("pinned (page-locked) memory cannot be swapped out; staging buffers DeepSpeed adds are not counted")
    return terms, notes


def host_memory(model: Any, stage: Any = "load", method: Any = "qlora", rank: Any = 16, targets: Any = "all-linear",
                checkpoint: Any = "safetensors", load_to: Any = "gpu", load_dtype: Any = "bf16", gpus: Any = 1,
                rank0_loads: Any = False, strategy: Any = "ddp", offload_optimizer: Any = False,
                offload_params: Any = False, state_dict: Any = "sharded", training_on: Any = "gpu",
                max_shard_size: Any = DEFAULT_SHARD_BYTES, merge_base: Any = "16bit", **settings) -> HostEstimate:
    """Host memory of one stage of a fine-tuning job, as labelled terms with their formulas.

    ``settings`` are ``estimate_memory``'s (optimizer, precision, activation_offload...), used by the train and
    save stages. ``gpus`` processes run, one per GPU; ``peak_bytes`` is the busiest one's, ``machine_bytes``
    all of them together."""
    arch = get_model(model)
    stage = as_choice(stage, "stage", STAGES, "stage")
    method = as_choice(method, "method", METHODS, "method")
    checkpoint = as_choice(checkpoint, "checkpoint", CHECKPOINTS, "checkpoint")
    load_to = as_choice(load_to, "load_to", LOAD_TO, "load_to")
    dtype_b = LOAD_DTYPES[as_choice(load_dtype, "load_dtype", LOAD_DTYPES, "load_dtype")]
    n = as_int(gpus, "gpus", 1, MAX_GPUS, "number of GPUs")
    rank0 = as_bool(rank0_loads, "rank0_loads")
    state_dict = as_choice(state_dict, "state_dict", STATE_DICTS, "state_dict")
    training_on = as_choice(training_on, "training_on", LOAD_TO, "training_on")
    merge_base = as_choice(merge_base, "merge_base", MERGE_BASES, "merge_base")
    shard_b = shard_bytes(max_shard_size)
    if method in QUANTIZED and dtype_b != CHECKPOINT_BYTES:
        raise LoraCalcError("load_dtype", "a quantized base is loaded in bf16: leave load_dtype at bf16")
    sz = _sizes(arch, method, rank, targets, settings.get("adapt"))
    base_format = settings.get("base_format") or "bf16"
    if base_format != "bf16":
        from .quantized import stored_bytes
        from .run_settings import _base_format
        _base_format(base_format, method, bool(settings.get("dora")))      # the memory estimate's checks
        if stage == "merge":
            raise LoraCalcError("base_format", f"merging into a {base_format} base is not estimated: peft merges "
                                               "into 16-bit weights, so load the base unquantized to merge")
        # the checkpoint holds the quantized base as its library stored it (qweight, scales, zeros...)
        sz["checkpoint_bytes"] = stored_bytes(arch, base_format)
    notes: list[str] = []
    processes = n
    s = {"method": method, "rank": sz["rank"], "checkpoint": checkpoint, "load_to": load_to, "gpus": n}
    if stage == "load":
        terms, notes = _load_terms(sz, method, checkpoint, load_to, dtype_b)
        if rank0 and n > 1:
            terms = [HostTerm(t.key, t.label, t.bytes, t.formula, t.kind, "rank0") for t in terms]
            notes.append("only rank 0 reads the checkpoint (FSDP cpu_ram_efficient_loading or ZeRO-3); the other "
                         "ranks keep their weights on the meta device until rank 0 broadcasts them")
        elif n > 1:
            notes.append(f"each of the {n} processes loads the whole model")
        s.update(load_dtype="fp32" if dtype_b == 4 else "bf16", rank0_loads=rank0)
    elif stage == "merge":
        terms = _merge_terms(sz, checkpoint, merge_base)
        processes = 1
        notes.append("merged on a CPU: safetensors writes each shard from the merged tensors, no copy")
        s.update(merge_base=merge_base, max_shard_size=shard_b)
        del s["gpus"]
    else:
        strat = as_choice(strategy, "strategy", STRATEGIES, "strategy")
        est = estimate_memory(arch, method=method, rank=rank, targets=targets, **settings)
        if stage == "train":
            terms, notes = _offload_terms(arch, est, n, strat, offload_optimizer, offload_params)
        else:
            terms, notes = _save_terms(arch, sz, method, est, n, strat, state_dict, training_on, shard_b)
            s.update(state_dict=state_dict, training_on=training_on, max_shard_size=shard_b)
        s.update(strategy=strat, optimizer=est.settings["optimizer"], precision=est.settings["precision"])
    return HostEstimate(model=arch.name, stage=stage, processes=processes, settings=s, terms=tuple(terms),
                        notes=tuple(notes))
