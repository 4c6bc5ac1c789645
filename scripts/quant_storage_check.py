"""Measure the bytes each quantized weight format keeps for one linear layer, with the real libraries on a CPU.

    PYTHONPATH=snippets .venv/bin/python scripts/quant_storage_check.py           # needs bitsandbytes (locked)
    pip install --target /tmp/qlib torchao hqq termcolor                         # not in the lock: see below
    PYTHONPATH=snippets:/tmp/qlib .venv/bin/python scripts/quant_storage_check.py

Quantizes an ``nn.Linear`` of a few shapes with each format whose library is importable and sums the bytes of
the tensors it keeps (scalars describing the layout, such as HQQ's nbits, are left out: under 100 bytes a
layer). Writes ``snippets/lora_course/data/quant_storage_check.json`` with each row's library versions and date;
``tests/snippets/test_quantized.py`` compares ``loracalc.quantized`` with it. torchao and HQQ are kept out of the
test environment on purpose: importing torchao prints kernel-loading warnings into every peft run, and neither is
needed by the labs. Formats whose kernels need CUDA (torchao int4, GPTQ, AWQ) are read from their source.
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "snippets", "lora_course", "data", "quant_storage_check.json")
SHAPES = [(512, 256), (384, 1024), (1536, 640)]     # (d_out, d_in); d_in a multiple of 128 (torchao, HQQ groups)


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t.dim() > 0)


def _bnb_nf4(o, i):
    import bitsandbytes as bnb
    import torch
    p = bnb.nn.Params4bit(torch.randn(o, i, dtype=torch.bfloat16), requires_grad=False, quant_type="nf4",
                          compress_statistics=True, blocksize=64).to("cpu")
    qs = p.quant_state
    return _bytes([p.data, qs.absmax, qs.code, qs.state2.absmax, qs.state2.code]) + 4   # + the fp32 offset


def _bnb_int8(o, i):
    import bitsandbytes as bnb
    import torch
    p = bnb.nn.Int8Params(torch.randn(o, i, dtype=torch.bfloat16), requires_grad=False, has_fp16_weights=False)
    p = p.to("cpu")
    return _bytes([p.data, p.SCB])


def _torchao(config):
    def measure(o, i):
        import torch
        from torchao.quantization import quantize_
        m = torch.nn.Sequential(torch.nn.Linear(i, o, bias=False)).to(torch.bfloat16)
        quantize_(m, config())
        return _bytes([t for t in vars(m[0].weight).values() if isinstance(t, torch.Tensor)])
    return measure


def _hqq4(o, i):
    import torch
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear
    h = HQQLinear(torch.nn.Linear(i, o, bias=False).to(torch.bfloat16), BaseQuantizeConfig(nbits=4, group_size=64),
                  compute_dtype=torch.bfloat16, device="cpu")
    return _bytes([h.W_q, h.meta["scale"], h.meta["zero"]])


def formats():
    def fp8():
        from torchao.quantization import Float8WeightOnlyConfig
        return Float8WeightOnlyConfig()

    def int8():
        from torchao.quantization import Int8WeightOnlyConfig
        return Int8WeightOnlyConfig()
    return {"nf4": ("bitsandbytes", _bnb_nf4), "int8": ("bitsandbytes", _bnb_int8),
            "fp8": ("torchao", _torchao(fp8)), "torchao-int8": ("torchao", _torchao(int8)),
            "hqq-4bit": ("hqq", _hqq4)}


def main() -> int:
    import torch
    torch.manual_seed(0)
    rows = []
    try:
        with open(OUT, encoding="utf-8") as f:
            rows = json.load(f)["rows"]
    except FileNotFoundError:
        pass
    for fmt, (lib, measure) in formats().items():
        try:
            versions = {lib: md.version(lib), "torch": torch.__version__.split("+")[0]}
        except md.PackageNotFoundError:
            print(f"{fmt}: {lib} is not installed, its rows are kept as they were", file=sys.stderr)
            continue
        rows = [r for r in rows if r["format"] != fmt]
        for o, i in SHAPES:
            rows.append({"format": fmt, "d_out": o, "d_in": i, "bytes": measure(o, i), "versions": versions,
                         "date": dt.date.today().isoformat()})
            print(fmt, o, i, rows[-1]["bytes"])
    rows.sort(key=lambda r: (r["format"], r["d_out"], r["d_in"]))
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"what": "bytes each format keeps for one d_out x d_in linear weight, measured on CPU with the "
                   "real library (scripts/quant_storage_check.py)", "rows": rows}, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
