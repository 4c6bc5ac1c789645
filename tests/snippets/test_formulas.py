"""Each memory term's formula, as the site and the terminal print it, multiplies out to the bytes shown
beside it: a constant changed on one side only (the bytes or the text) fails here."""
from __future__ import annotations

import itertools
import math
import re

import pytest

import loracalc
from loracalc import estimate_memory

FACTOR = re.compile(r"^(\([\d.+\- a-z]+\)|[\d.]+) (B|bits) x ([\d,]+(?: x [\d,]+)*)")
CONTEXT = re.compile(r"^(\d+) MiB context \+ (\d+)% fragmentation$")


def formula_bytes(term, others: int) -> tuple[float, float] | None:
    """(bytes the formula gives, relative tolerance): exact, but for bits per weight (printed to 5 digits, and the
    per-tensor code tables bitsandbytes adds: 0.1% at 0.5B, exact bytes in test_storage.py; allowed 0.2%)."""
    m = CONTEXT.match(term.formula)
    if m:
        return int(m.group(1)) * 2**20 + int(m.group(2)) / 100 * others, 1e-9
    m = FACTOR.match(term.formula)
    if m is None:
        return None                           # a term written another way (one added later): checked elsewhere
    factor = eval(re.sub(r"[a-z-]+(?=\s*[)+])", "", m.group(1).replace("soft-cap", "")), {"__builtins__": {}})
    counts = math.prod(int(c.replace(",", "")) for c in m.group(3).split(" x "))
    if m.group(2) == "bits":
        return factor * counts / 8, 2e-3
    return factor * counts, 0


SETTINGS = [dict(method=m, precision=p, optimizer=o, batch_size=b)
            for m, p, o, b in itertools.product(["full", "lora", "qlora"], ["mixed", "bf16"],
                                                ["adamw", "adamw_8bit", "sgd"], [1, 3])]


@pytest.mark.parametrize("model", ["llama-3.1-8b", "gemma-2-2b", "qwen2.5-0.5b"])
@pytest.mark.parametrize("kw", SETTINGS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_every_term_multiplies_out(model, kw):
    est = estimate_memory(model, seq_len=512, **kw)
    checked = set()
    for t in est.terms:
        if t.key == "activations":
            continue                          # a sum of parts; checked against autograd in test_recorded.py
        others = sum(u.bytes for u in est.terms if u.key != t.key)
        got = formula_bytes(t, others)
        if got is None:
            continue
        want, rel = got
        assert t.bytes == pytest.approx(want, rel=rel, abs=1), (t.key, t.formula, t.bytes)
        checked.add(t.key)
    stored = {"weights", "master_weights", "gradients", "weights_4bit", "weights_16bit", "kbit_upcast", "adapter",
              "adapter_grads", "optimizer", "logits", "cuda_context"}
    assert stored & set(est.breakdown) <= checked


def test_activation_formula_names_the_layers_and_tokens():
    arch = loracalc.get_model("llama-3.1-8b")
    for gc in (True, False):
        est = estimate_memory(arch, batch_size=2, seq_len=1024, gradient_checkpointing=gc)
        text = next(t.formula for t in est.terms if t.key == "activations")
        assert text.startswith(f"{arch.num_hidden_layers} layers x ") and "2,048 tokens" in text
