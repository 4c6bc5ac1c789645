"""Measuring training memory with the real libraries: peak CUDA memory, or on CPU the bytes autograd
saves for backward (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once, tracked
while it is alive so the peak over forward and backward is known) plus parameter, gradient and
optimizer-state bytes. Used by ``memory_probe.py`` and by the tests.

Import torch / transformers / peft lazily: this module is imported by a script whose ``--help`` must
be instant.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# --8<-- [start:saved_tracker]
class SavedTensorTracker:
    """Counts the bytes autograd holds for backward: each storage once, while any saved tensor uses it.

    ``pack`` wraps every saved tensor in a handle; the handle dies when autograd frees that saved
    tensor (after its backward ran), so ``live`` follows the real lifetime and ``peak`` is its maximum.
    Storages in ``exclude`` (the parameters: counted separately) are not counted.
    """

    def __init__(self, exclude_ptrs=()):
        self.exclude = set(exclude_ptrs)
        self.refs: dict[int, list[int]] = {}   # storage pointer -> [nbytes, handles alive]
        self.live = 0
        self.peak = 0

    def pack(self, t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self.exclude or t.device.type == "meta":
            return t
        ref = self.refs.get(ptr)
        if ref is None:
            self.refs[ptr] = ref = [storage.nbytes(), 0]
            self.live += ref[0]
            self.peak = max(self.peak, self.live)
        ref[1] += 1
        return _Handle(self, ptr, t)

    @staticmethod
    def unpack(h):
        return h.tensor if isinstance(h, _Handle) else h

    def release(self, ptr):
        ref = self.refs[ptr]
        ref[1] -= 1
        if ref[1] == 0:
            self.live -= ref[0]
            del self.refs[ptr]

    def hooks(self):
        import torch
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


class _Handle:
    __slots__ = ("tracker", "ptr", "tensor")

    def __init__(self, tracker, ptr, tensor):
        self.tracker, self.ptr, self.tensor = tracker, ptr, tensor

    def __del__(self):
        self.tracker.release(self.ptr)
# --8<-- [end:saved_tracker]


def storage_ptrs(model) -> set[int]:
    ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ptrs |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    return ptrs


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen, total = set(), 0
    for t in tensors:
        s = t.untyped_storage()
        if s.data_ptr() not in seen:
            seen.add(s.data_ptr())
            total += s.nbytes()
    return total


def quant_state_tensors(model):
    """The statistics bitsandbytes keeps beside each 4-bit weight (absmax, nested absmax, offset, code
    tables), which live in ``weight.quant_state``, outside parameters and buffers."""
    out = []
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        while qs is not None:
            for name in ("absmax", "offset", "code"):
                t = getattr(qs, name, None)
                if t is not None and hasattr(t, "untyped_storage"):
                    out.append(t)
            qs = getattr(qs, "state2", None)
    return out


@dataclass
class ModelSpec:
    """A small Llama-shaped model (random weights: memory does not depend on their values)."""
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    vocab_size: int = 2048

    def config_dict(self) -> dict:
        return {"model_type": "llama", "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
                "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
                "num_key_value_heads": self.num_key_value_heads, "vocab_size": self.vocab_size,
                "max_position_embeddings": 8192, "tie_word_embeddings": False}


@dataclass
class RunSpec:
    method: str = "lora"            # full (pure bf16), lora (bf16 base), qlora (NF4 base)
    rank: int = 16
    targets: str = "all-linear"
    lora_dropout: float = 0.0
    batch_size: int = 1
    seq_len: int = 256
    gradient_checkpointing: bool = False
    attention: str = "sdpa"
    optimizer: str = "adamw"
    extra: dict = field(default_factory=dict)


# --8<-- [start:build]
def build_model(config: dict, run: RunSpec, device: str = "cpu", model_dir: str | None = None):
    """The model exactly as a QLoRA / LoRA / full run builds it, from a config with random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

    cfg = AutoConfig.for_model(**config)
    cfg._attn_implementation = run.attention
    torch.manual_seed(0)
    if run.method == "qlora":
        # bitsandbytes quantizes while loading, so save random weights once and load them as a user would
        model_dir = model_dir or tempfile.mkdtemp(prefix="probe-model-")
        if not os.path.exists(os.path.join(model_dir, "config.json")):
            with torch.device(device):   # a real shape initialises far faster on the GPU
                AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(model_dir)
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=bnb, dtype=torch.bfloat16,
                                                     attn_implementation=run.attention, device_map={"": device})
    else:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation=run.attention)
    model.config.use_cache = False
    gc_kwargs = {"use_reentrant": True}   # the reentrant form saves each layer's input visibly to autograd hooks
    if run.method == "qlora":
        from peft import prepare_model_for_kbit_training
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=run.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=gc_kwargs)
    elif run.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
        model.enable_input_require_grads()
    if run.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model
        targets = "all-linear" if run.targets == "all-linear" else \
            [t if t.endswith("_proj") else f"{t}_proj" for t in run.targets.split(",")]
        model = get_peft_model(model, LoraConfig(r=run.rank, lora_alpha=run.rank, lora_dropout=run.lora_dropout,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
    model.train()
    return model
# --8<-- [end:build]


def make_optimizer(model, name: str):
    import torch
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-4)
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    import bitsandbytes as bnb
    return {"adamw_8bit": bnb.optim.AdamW8bit, "paged_adamw": bnb.optim.PagedAdamW,
            "paged_adamw_8bit": bnb.optim.PagedAdamW8bit}[name](params, lr=1e-4)


# --8<-- [start:measure_step]
def measure_cpu(model, run: RunSpec, vocab_size: int) -> dict:
    """One real training step on CPU; bytes saved for backward (peak) and the model's own bytes."""
    import torch
    ids = torch.randint(0, vocab_size, (run.batch_size, run.seq_len), generator=torch.Generator().manual_seed(0))
    tracker = SavedTensorTracker(storage_ptrs(model))
    opt = make_optimizer(model, run.optimizer)
    with tracker.hooks():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    opt.step()
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    state = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0]
    return {
        "saved_for_backward_peak_bytes": tracker.peak,
        "parameter_bytes": tensor_bytes(params) + tensor_bytes(quant_state_tensors(model)),
        "trainable_parameter_bytes": tensor_bytes(trainable),
        "gradient_bytes": tensor_bytes([p.grad for p in trainable if p.grad is not None]),
        "optimizer_state_bytes": tensor_bytes(state),
        "loss": float(loss.detach()),
    }
# --8<-- [end:measure_step]


def measure_cuda(model, run: RunSpec, vocab_size: int, steps: int = 2) -> dict:
    """Real training steps on a GPU: peak allocated and reserved bytes (what nvidia-smi sees, less the context)."""
    import torch
    dev = next(model.parameters()).device
    opt = make_optimizer(model, run.optimizer)
    ids = torch.randint(0, vocab_size, (run.batch_size, run.seq_len), device=dev)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return {"max_memory_allocated_bytes": torch.cuda.max_memory_allocated(),
            "max_memory_reserved_bytes": torch.cuda.max_memory_reserved(),
            "device_used_bytes": total - free, "loss": float(loss.detach())}
