"""Measure LoRA on a base another library quantized (HQQ, torchao int8 and fp8 weight-only) on a tiny Llama on
the CPU, and record the bytes into tests/snippets/data/quant_base_measured.json, which the fast test
test_quant_base_recorded.py asks the engine (``estimate_memory(..., method="lora", base_format=...)``) to
predict again. GPTQ and AWQ are left out: GPTQModel's kernels are built for CUDA (the engine reads them from
source, ``loracalc.quantized.LORA_BACKWARD``).

* ``saved``: the bytes autograd keeps for backward (saved_tensors_hooks, each storage once, the model's own
  tensors and the quantized weights' inner tensors left out), with the quantized base minus the same run on the
  bf16 base: at the end of the forward (``live``) and the peak over forward and backward (``peak``; under
  checkpointing, the recomputed layer's);
* ``transient``: the profiler's peak of one quantized linear's forward (torchao: the dequantized weight and its
  temporaries) or backward (HQQ: the weight dequantized again), for a 1536 x 640 weight and 8 tokens.

torchao and hqq are not in the lock (see scripts/quant_storage_check.py); install them apart and regenerate:

    pip install --target /tmp/qlib torchao==0.18.0 hqq==0.2.8.post1 termcolor
    OMP_NUM_THREADS=1 PYTHONPATH=snippets:/tmp/qlib .venv/bin/python -m tests.snippets.quant_base_record

Rows keep their own versions and date; a format whose library is missing keeps its old rows.
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "quant_base_measured.json"
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "gpu_labs"))
TINY = dict(model_type="llama", hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512, head_dim=64, tie_word_embeddings=False)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]   # HQQLinear is no nn.Linear
BATCH, SEQ = 2, 64
LIBRARY = {"hqq-4bit": "hqq", "torchao-int8": "torchao", "fp8": "torchao"}
SAVED = [
    # format, adapter dtype, dropout, gradient checkpointing
    ("torchao-int8", "bf16", 0.0, False), ("torchao-int8", "bf16", 0.0, True), ("torchao-int8", "fp32", 0.1, False),
    ("fp8", "bf16", 0.0, False), ("fp8", "bf16", 0.0, True),
    ("hqq-4bit", "bf16", 0.0, False), ("hqq-4bit", "fp32", 0.0, False), ("hqq-4bit", "fp32", 0.1, False),
    ("hqq-4bit", "bf16", 0.0, True), ("hqq-4bit", "fp32", 0.0, True),
]
SHAPE = (1536, 640, 8)   # d_out, d_in, tokens


def _quantize_layers(model, fmt: str) -> None:
    """Quantize the decoder layers' linear weights as loracalc.quantized.FORMATS describes them."""
    import torch
    if fmt in ("torchao-int8", "fp8"):
        from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
        quantize_(model.model.layers, Int8WeightOnlyConfig() if fmt == "torchao-int8" else Float8WeightOnlyConfig())
    elif fmt == "hqq-4bit":
        from hqq.core.quantize import BaseQuantizeConfig, HQQLinear
        for layer in model.model.layers:
            for parent in (layer.self_attn, layer.mlp):
                for name, child in list(parent.named_children()):
                    if isinstance(child, torch.nn.Linear):
                        setattr(parent, name, HQQLinear(child, BaseQuantizeConfig(nbits=4, group_size=64),
                                                        compute_dtype=torch.bfloat16, device="cpu"))


def _own_storages(model) -> set[int]:
    """Storages of the model's parameters, buffers and the tensors inside quantized weights (tensor subclasses
    and HQQ's W_q and meta dict): none of these is an activation."""
    import torch
    out: set[int] = set()

    def add(t):
        if type(t) not in (torch.Tensor, torch.nn.Parameter) and hasattr(t, "__tensor_flatten__"):
            for name in t.__tensor_flatten__()[0]:
                add(getattr(t, name))
        else:
            out.add(t.untyped_storage().data_ptr())
    for m in model.modules():
        for v in [*m.parameters(recurse=False), *m.buffers(recurse=False), *vars(m).values()]:
            for t in (v.values() if isinstance(v, dict) else [v]):
                if isinstance(t, torch.Tensor):
                    add(t)
    return out


def _model(fmt: str, adapter: str, dropout: float, gc: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**TINY), dtype=torch.bfloat16,
                                             attn_implementation="sdpa")
    if fmt != "bf16":
        _quantize_layers(model, fmt)
    model.config.use_cache = False
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=dropout))
    if adapter == "bf16":
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    model.train()
    return model


def measure_saved(fmt: str, adapter: str, dropout: float, gc: bool) -> dict:
    import torch
    import memory_measure as mm
    ids = torch.randint(0, TINY["vocab_size"], (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    got = {}
    for base in (fmt, "bf16"):
        model = _model(base, adapter, dropout, gc)
        layer = type(model.base_model.model.model.layers[0].self_attn.q_proj).__name__
        torch.manual_seed(0)
        tracker = mm.SavedTensorTracker(_own_storages(model))
        with tracker.hooks():
            loss = model(input_ids=ids, labels=ids).loss
            live = tracker.live
            loss.backward()
        got[base] = (live, tracker.peak, layer)
    return {"live": got[fmt][0] - got["bf16"][0], "peak": got[fmt][1] - got["bf16"][1], "peft_layer": got[fmt][2]}


def measure_transient(fmt: str) -> dict:
    """The profiler's peak of one quantized linear: HQQ's backward (its forward keeps only the input); torchao's
    forward (its backward reuses the saved weight)."""
    import torch
    from tests.snippets.stack_losses import peak_bytes
    o, i, T = SHAPE
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Linear(i, o, bias=False)).to(torch.bfloat16)
    x = torch.randn(T, i, dtype=torch.bfloat16, requires_grad=True)
    if fmt == "hqq-4bit":
        from hqq.core.quantize import BaseQuantizeConfig, HQQLinear
        layer = HQQLinear(linear[0], BaseQuantizeConfig(nbits=4, group_size=64), compute_dtype=torch.bfloat16,
                          device="cpu")
        y = layer(x)
        g = torch.randn_like(y)
        return {"where": "backward", "peak": peak_bytes(lambda: y.backward(g))}
    _quantize_layers(type("M", (), {"model": type("N", (), {"layers": linear})()})(), fmt)
    return {"where": "forward", "peak": peak_bytes(lambda: linear(x))}


def _stamp(fmt: str) -> dict:
    lib = LIBRARY[fmt]
    return {"versions": {lib: md.version(lib), **{p: md.version(p) for p in ("torch", "transformers", "peft")}},
            "date": dt.date.today().isoformat(), "device": "cpu"}


def measure_all(old: dict | None = None) -> dict:
    import importlib.util
    import torch
    torch.set_num_threads(1)
    ready = {f for f, lib in LIBRARY.items() if importlib.util.find_spec(lib)}
    rows = [r for r in (old or {}).get("rows", []) if r["format"] not in ready]
    for fmt, adapter, dropout, gc in SAVED:
        if fmt in ready:
            rows.append({"kind": "saved", "format": fmt, "adapter": adapter, "lora_dropout": dropout,
                         "gradient_checkpointing": gc, "rank": 8, "batch_size": BATCH, "seq_len": SEQ,
                         "measured_bytes": measure_saved(fmt, adapter, dropout, gc), **_stamp(fmt)})
    for fmt in LIBRARY:
        if fmt in ready:
            o, i, T = SHAPE
            rows.append({"kind": "transient", "format": fmt, "d_out": o, "d_in": i, "tokens": T,
                         "measured_bytes": measure_transient(fmt), **_stamp(fmt)})
    return {"about": "LoRA on HQQ and torchao bases measured on CPU by tests/snippets/quant_base_record.py; "
                     "test_quant_base_recorded.py asks the engine again",
            "config": TINY, "rows": rows}


if __name__ == "__main__":
    previous = json.loads(OUT.read_text()) if OUT.exists() else None
    OUT.write_text(json.dumps(measure_all(previous), indent=1) + "\n")
    print(f"wrote {OUT}")
