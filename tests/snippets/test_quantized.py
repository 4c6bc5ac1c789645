"""loracalc.quantized: the bytes each quantized weight format keeps, against the real libraries on a CPU.

The record (snippets/lora_course/data/quant_storage_check.json) is written by scripts/quant_storage_check.py, which
quantizes real nn.Linear layers with bitsandbytes, torchao and HQQ and sums the tensors each keeps."""
from __future__ import annotations

import json
import os

import pytest

import loracalc
from loracalc import LoraCalcError, nf4
from loracalc.quantized import FORMATS, stored_bytes

RECORD = os.path.join(os.path.dirname(loracalc.__file__), "..", "lora_course", "data", "quant_storage_check.json")
ROWS = json.load(open(RECORD, encoding="utf-8"))["rows"]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['format']}-{r['d_out']}x{r['d_in']}")
def test_each_format_keeps_what_its_library_kept(row):
    assert FORMATS[row["format"]].per_linear(row["d_out"], row["d_in"]) == row["bytes"], row


def test_every_format_that_runs_on_a_cpu_was_measured():
    measured = {r["format"] for r in ROWS}
    assert measured == {k for k, f in FORMATS.items() if f.measured_on_cpu}
    for r in ROWS:
        assert r["versions"] and r["date"], r


def test_whole_models_keep_the_rest_in_bf16_and_nf4_is_qloras_base():
    arch = loracalc.get_model("llama-3.1-8b")
    assert stored_bytes(arch, "bf16") == 2 * loracalc.total_params(arch)
    assert stored_bytes(arch, "nf4") == nf4.weight_storage_bytes(arch)
    # four-bit formats with groups sit between NF4's bytes and int8's; all below bf16
    four = [stored_bytes(arch, f) for f in ("nf4", "hqq-4bit", "torchao-int4", "gptq-4bit", "awq-4bit")]
    assert max(four) < stored_bytes(arch, "int8") < stored_bytes(arch, "bf16")


def test_an_unknown_format_is_a_one_line_error():
    with pytest.raises(LoraCalcError) as info:
        stored_bytes("llama-3.1-8b", "gguf-q4")
    assert "gptq-4bit" in str(info.value) and "\n" not in str(info.value)
