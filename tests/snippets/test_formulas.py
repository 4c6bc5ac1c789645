"""Each memory term's formula, as the site and the terminal print it, multiplies out to the bytes shown
beside it, whether the term is alive at the step's peak, off it (off_peak) or in CPU memory (host), under every
method, recipe, loss and option: a constant changed on one side only (the bytes or the text) fails here."""
from __future__ import annotations

import itertools
import math
import re

import pytest

import loracalc
from loracalc import estimate_memory
from loracalc.choices import CHOICES

# one product: [k x] factor unit x count [words] (x count [words])*; a factor in parentheses is a sum of bytes,
# words in it name the parts ("soft-cap"); the unit is bytes, bits, or bytes per token
PRODUCT = re.compile(r"^(?:(\d+) x )?(\([\d.+\- a-z]+\)|[\d.,]+) (B/token|B|bits) x (.+)$")
COUNT = re.compile(r"^([\d,]+)(?: [A-Za-z][\w\-' ]*)?$")    # a count, then the words saying what it counts
CONTEXT = re.compile(r"^(\d+) MiB context \+ (\d+)% of the allocated peak$")
# the caching allocator's reserve (loracalc.allocator): fixed + rounding [+ k x the largest transient block]
RESERVE = re.compile(r"^([\d,]+) B fixed \([^)]*\) \+ ([\d,]+) B rounding \([^)]*\)"
                     r"(?:, no fragmentation term \(expandable segments\)| \+ ([\d.]+) x ([\d,]+) B fragmentation .*)$")
COMMENT = re.compile(r" \((?=[^)]*[a-z]{2})[^()]*\)(?! (?:B|bits)\b)")  # "(one of 8 chunks)", not "(4 - 2) B"
# terms whose text is not a product: activations are a sum of parts checked against autograd in
# test_recorded.py ("+ the final norm and head"); what was offloaded is named by layers, not bytes
NOT_PRODUCTS = {"activations", "activations_offloaded"}


def split_sum(text: str) -> list[str]:
    """The summands of a formula, split at " + " outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and text.startswith(" + ", i):
            parts.append(text[start:i])
            start = i + 3
    return parts + [text[start:]]


def product_bytes(text: str) -> tuple[float, float]:
    """(bytes, relative tolerance) of one summand. A summand written another way fails the test: a new kind of
    formula needs its own reading here, not a silent pass."""
    m = PRODUCT.match(text)
    if m is None:
        plain = re.fullmatch(r"([\d,]+) B(?: \([a-z ]+\))?", text)      # "2,415,919,104 B (merged experts)"
        assert plain, f"formula part not read: {text!r}"
        return int(plain.group(1).replace(",", "")), 0
    k = int(m.group(1) or 1)
    factor = eval(re.sub(r"[a-z][a-z-]*|,", "", m.group(2)), {"__builtins__": {}})
    counts = []
    for part in m.group(4).split(" x "):
        c = COUNT.match(part)
        assert c, f"count not read: {part!r} in {text!r}"
        counts.append(int(c.group(1).replace(",", "")))
    n = k * factor * math.prod(counts)
    # bits per weight are printed to 5 digits, and bitsandbytes adds per-tensor code tables (0.1% at 0.5B,
    # exact bytes in test_storage.py): allowed 0.2%
    return (n / 8, 2e-3) if m.group(3) == "bits" else (n, 0)


def formula_bytes(term, allocated_others: int) -> tuple[float, float]:
    """(bytes the formula gives, absolute tolerance)."""
    m = RESERVE.match(term.formula)
    if m:
        fixed, rounding = (int(g.replace(",", "")) for g in m.group(1, 2))
        frag = int(float(m.group(3)) * int(m.group(4).replace(",", ""))) if m.group(3) else 0
        return fixed + rounding + frag, 1
    m = CONTEXT.match(term.formula)
    if m:
        return int(m.group(1)) * 2**20 + int(m.group(2)) / 100 * allocated_others, 1
    total, tol = 0.0, 1.0
    for part in split_sum(COMMENT.sub("", term.formula)):
        n, rel = product_bytes(part)
        total += n
        tol += rel * n
    return total, tol


def check_every_term(est):
    checked = set()
    for t in est.terms + est.off_peak + est.host:
        if t.key in NOT_PRODUCTS:
            continue
        # the context term adds a share of the allocated peak only: paged (managed) state is outside it
        allocated_others = sum(u.bytes for u in est.terms if u.pool == "allocated" and u.key != t.key)
        want, tol = formula_bytes(t, allocated_others)
        assert abs(t.bytes - want) <= tol, (t.key, t.formula, t.bytes, want)
        checked.add(t.key)
    every = {t.key for t in est.terms + est.off_peak + est.host}
    assert every - NOT_PRODUCTS <= checked
    return checked


SETTINGS = [dict(method=m, precision=p, optimizer=o, batch_size=b)
            for m, p, o, b in itertools.product(["full", "lora", "qlora"], CHOICES["precision"], CHOICES["optimizer"],
                                                [1, 3])]


@pytest.mark.parametrize("model", ["llama-3.1-8b", "gemma-2-2b", "qwen2.5-0.5b"])
@pytest.mark.parametrize("kw", SETTINGS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_every_term_multiplies_out(model, kw):
    est = estimate_memory(model, seq_len=512, **kw)
    checked = check_every_term(est)
    # the stored terms of these settings, wherever the peak puts them (gradients are often off the peak)
    stored = {"weights", "master_weights", "gradients", "weights_4bit", "weights_16bit", "kbit_upcast", "adapter",
              "adapter_grads", "optimizer", "logits", "cuda_context", "recomputed"}
    assert stored & {t.key for t in est.terms + est.off_peak} <= checked
    assert {"optimizer", "logits", "cuda_context"} <= checked


# the stacks' options, each changing which terms there are or how they are written
OPTIONS = [dict(method="lora_8bit"), dict(method="lora_8bit", recipe="litgpt"), dict(recipe="qlora-paper"),
           dict(recipe="torchtune"), dict(recipe="litgpt"), dict(method="lora", adapter_dtype="bf16"),
           dict(loss="chunked"), dict(loss="chunked", loss_chunks=3), dict(loss="chunked_compiled"),
           dict(loss="fused_linear"), dict(loss="fused_linear", method="full"), dict(loss="cce"),
           dict(optimizer="paged_adamw"), dict(optimizer="paged_adamw_8bit"),
           dict(optimizer="paged_adamw_8bit", paged_state_on_host=True),
           dict(optimizer="paged_adamw_8bit", paged_state_on_host=False), dict(method="full", optimizer="paged_adamw"),
           dict(dora=True), dict(dora=True, gradient_checkpointing=False), dict(dora=True, optimizer="sgd"),
           dict(activation_offload=True), dict(activation_offload=True, gradient_checkpointing=False),
           dict(optimizer_in_backward=True), dict(method="full", optimizer_in_backward=True),
           dict(gradient_checkpointing=False), dict(attention="eager"), dict(lora_dropout=0.1),
           dict(double_quant=False, block_size=128), dict(quantize_lm_head=True), dict(cuda_overhead=False)]


@pytest.mark.parametrize("model", ["llama-3.1-8b", "gemma-2-2b", "qwen3-30b-a3b"])
@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_every_option_multiplies_out(model, kw):
    if model == "qwen3-30b-a3b" and (kw.get("lora_dropout") or kw.get("dora")):
        # peft's ParamWrapper raises for dropout or DoRA on fused experts: the engine refuses in one line,
        # naming the field; with the attention modules only, the option works
        field = "dora" if kw.get("dora") else "lora_dropout"
        with pytest.raises(loracalc.LoraCalcError) as err:
            estimate_memory(model, seq_len=512, batch_size=2, **kw)
        assert err.value.field == field
        check_every_term(estimate_memory(model, seq_len=512, batch_size=2, targets="q,k,v,o", **kw))
        return
    check_every_term(estimate_memory(model, seq_len=512, batch_size=2, **kw))


def test_context_term_is_a_share_of_the_allocated_peak_only():
    """Paged optimizer state lives in CUDA managed memory, outside the allocator: the 5% reserve is not taken of it."""
    est = estimate_memory("llama-3.1-8b", method="full", optimizer="paged_adamw", paged_state_on_host=False)
    assert est.term("optimizer_paged").pool == "managed" and est.term("cuda_context").pool == "reserve"
    assert est.allocated_peak_bytes == sum(t.bytes for t in est.terms if t.pool == "allocated")
    assert est.total_bytes == sum(t.bytes for t in est.terms)
    assert est.total_bytes - est.allocated_peak_bytes == est.term("optimizer_paged").bytes + est.term("cuda_context").bytes


def test_activation_formula_names_the_layers_and_tokens():
    arch = loracalc.get_model("llama-3.1-8b")
    for gc in (True, False):
        est = estimate_memory(arch, batch_size=2, seq_len=1024, gradient_checkpointing=gc)
        text = next(t.formula for t in est.terms if t.key == "activations")
        assert text.startswith(f"{arch.num_hidden_layers} layers x ") and "2,048 tokens" in text
