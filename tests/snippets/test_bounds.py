"""Every bounded input at its edges: the range the error message states is the range the engine accepts.

Each test first provokes the message with a far-out value, reads "from LO to HI" from it (so a bound moved
on purpose moves the test with it), then checks that LO and HI are accepted and the next value beyond each
is refused with the same field. A bound off by one, or a message that states a different range than the
check applies, fails here.
"""
from __future__ import annotations

import re

import pytest

import loracalc
from loracalc import LoraCalcError, estimate_memory, nf4
from loracalc.errors import as_float, as_int

RANGE = re.compile(r"from (-?[\d,]*\.?\d+(?:e[-+]?\d+)?) to (-?[\d,]*\.?\d+(?:e[-+]?\d+)?)")


def stated_range(call, field, far):
    with pytest.raises(LoraCalcError) as e:
        call(far)
    assert e.value.field == field
    lo, hi = RANGE.search(e.value.message).groups()
    parse = float if "." in lo + hi or "e" in lo + hi else int
    return parse(lo.replace(",", "")), parse(hi.replace(",", ""))


def check_edges(call, field, far, step=1):
    lo, hi = stated_range(call, field, far)
    call(lo)
    call(hi)
    for beyond in (lo - step, hi + step):
        with pytest.raises(LoraCalcError) as e:
            call(beyond)
        assert e.value.field == field, beyond
    return lo, hi


@pytest.mark.parametrize("field", ["batch_size", "seq_len", "block_size"])
def test_estimate_memory_whole_number_edges(field):
    lo, hi = check_edges(lambda v: estimate_memory("llama-3.2-1b", **{field: v}), field, 10**30)
    assert lo >= 1


def test_lora_dropout_edges():
    lo, hi = check_edges(lambda v: estimate_memory("llama-3.2-1b", method="lora", lora_dropout=v), "lora_dropout",
                         7.0, step=1e-9)
    assert lo == 0 and hi < 1                   # a dropout of 1 would drop every input


def test_rank_edges_per_module_and_overall():
    # one bound for every module: peft builds A (r x d_in) and B (d_out x r) whatever r is, so a rank above a
    # layer's narrower side is counted, not refused (Llama-3.2-1B's k_proj is 2048 -> 512, 16 layers)
    lo, hi = check_edges(lambda r: loracalc.count_params("llama-3.2-1b", r, "k"), "rank", 10**30)
    assert lo == 1
    assert loracalc.count_params("llama-3.2-1b", hi, "k").lora_params == 16 * hi * (2048 + 512)
    assert loracalc.count_params("llama-3.2-1b", 513, "k").lora_params == 16 * 513 * (2048 + 512)


def test_rank_above_the_layer_width_is_what_peft_builds():
    """peft on the meta device, rank 48 on a model whose k/v projections are 64 -> 32 wide."""
    from .hf import meta_model, peft_counts
    arch = loracalc.model_from_config({**BASE, "num_key_value_heads": 2})
    assert arch.linear_shapes()["k_proj"] == (64, 32)
    trainable, _ = peft_counts(meta_model(arch), 48, ["k_proj", "v_proj"])
    assert loracalc.count_params(arch, 48, "k,v").lora_params == trainable == 2 * 2 * 48 * (64 + 32)


def test_square_layer_edges():
    lo, hi = check_edges(loracalc.square_full_params, "d", 10**30)
    assert loracalc.square_full_params(hi) == hi * hi
    # the rank of a square layer goes up to its width
    with pytest.raises(LoraCalcError) as e:
        loracalc.square_lora_params(64, 65)
    assert e.value.field == "rank"
    assert loracalc.square_lora_params(64, 64) == 2 * 64 * 64
    assert loracalc.square_lora_params(64, 1) == 128
    with pytest.raises(LoraCalcError):
        loracalc.square_lora_params(64, 0)


def test_adapter_file_edges():
    lo, hi = check_edges(lambda n: loracalc.adapter_file_bytes(n, "fp32"), "lora_params", 10**30)
    assert loracalc.adapter_file_bytes(lo, "bf16") == 0
    assert loracalc.adapter_file_bytes(1000, "fp32") == 4000 and loracalc.adapter_file_bytes(1000, "int8") == 1000


def test_param_count_edges():
    check_edges(loracalc.model_from_param_count, "params", 10**30)


def test_nf4_block_size_edges():
    check_edges(lambda b: nf4.bits_per_param(b), "block_size", 10**30)
    check_edges(lambda b: nf4.storage_bytes("llama-3.2-1b", b), "block_size", 10**30)
    check_edges(lambda b: nf4.quantize_blockwise([0.5, -1.0, 2.0], b), "block_size", 10**30)


def test_nf4_value_count_edge(monkeypatch):
    # the comparison at the limit, on a small limit (a million values would take seconds)
    monkeypatch.setattr(nf4, "MAX_VALUES", 5)
    assert len(nf4._values([0.0] * 5)) == 5
    with pytest.raises(LoraCalcError) as e:
        nf4._values([0.0] * 6)
    assert e.value.field == "values"


BASE = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 300}


@pytest.mark.parametrize("key", ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                 "num_key_value_heads", "head_dim", "vocab_size"])
def test_config_value_edges(key):
    # heads at their edges: one kv head, which divides any head count; kv heads at their edges: as many query
    # heads as the kv bound, 2^16, which every power of two up to it divides (2^16 heads of 16 on a 64-wide
    # model: about 0.54B parameters at 2^16 kv heads, counted from records, nothing built)
    base = {**BASE, "num_key_value_heads": 1} if key == "num_attention_heads" else BASE
    if key == "num_key_value_heads":
        base = {**BASE, "num_attention_heads": 1 << 16}
    lo, hi = check_edges(lambda v: loracalc.model_from_config({**base, key: v}), f"config.{key}", 10**30)
    assert lo == 1                           # a width or a count of zero describes no model


def test_kv_heads_at_most_heads_and_dividing_them():
    """Key/value heads are accepted exactly when they divide the query heads (each kv head serves a whole
    group); anything else is refused naming the field and the head count."""
    heads = 12
    for kv in range(1, 2 * heads + 2):
        cfg = {**BASE, "num_attention_heads": heads, "num_key_value_heads": kv}
        if heads % kv == 0:
            assert loracalc.model_from_config(cfg).num_key_value_heads == kv
            continue
        with pytest.raises(LoraCalcError) as e:
            loracalc.model_from_config(cfg)
        assert e.value.field == "config.num_key_value_heads" and f"({heads})" in e.value.message, kv
    with pytest.raises(LoraCalcError) as e:
        loracalc.model_from_config({**BASE, "num_attention_heads": 6, "num_key_value_heads": 4})
    assert e.value.field == "config.num_key_value_heads"


def test_model_size_limit_edge():
    """The total-parameter limit: a config just under it is read, one just over it is refused."""
    with pytest.raises(LoraCalcError) as e:
        loracalc.model_from_config({**BASE, "hidden_size": 10**6, "intermediate_size": 4 * 10**6,
                                    "num_hidden_layers": 9000})
    limit = int(re.search(r"up to ([\d,]+)", e.value.message).group(1).replace(",", ""))
    # layers of known size: find the layer count that puts the total right at the limit
    wide = {**BASE, "hidden_size": 1 << 20, "intermediate_size": 1 << 14}
    one = loracalc.total_params(loracalc.model_from_config({**wide, "num_hidden_layers": 1}))
    two = loracalc.total_params(loracalc.model_from_config({**wide, "num_hidden_layers": 2}))
    per_layer, fixed = two - one, 2 * one - two
    layers = (limit - fixed) // per_layer
    if layers > 10_000:
        pytest.skip("the layer bound is reached before the size limit for this width")
    at = loracalc.model_from_config({**wide, "num_hidden_layers": layers})
    assert loracalc.total_params(at) <= limit
    with pytest.raises(LoraCalcError):
        loracalc.model_from_config({**wide, "num_hidden_layers": layers + 1})


@pytest.mark.parametrize("lo, hi", [(1, 10), (0, 10**6), (-5, 5)])
def test_as_int_edges(lo, hi):
    assert as_int(lo, "n", lo, hi) == lo and as_int(hi, "n", lo, hi) == hi
    assert as_int(str(hi), "n", lo, hi) == hi and as_int(float(lo), "n", lo, hi) == lo
    for beyond in (lo - 1, hi + 1, str(hi + 1), float(lo - 1)):
        with pytest.raises(LoraCalcError):
            as_int(beyond, "n", lo, hi)


def test_as_float_edges():
    assert as_float(0, "p", 0, 1) == 0.0 and as_float("1", "p", 0, 1) == 1.0
    for beyond in (-1e-12, 1 + 1e-12, "1.0000001", float("inf"), float("-inf"), True, None, "x", [0.5]):
        with pytest.raises(LoraCalcError) as e:
            as_float(beyond, "p", 0, 1)
        assert e.value.field == "p" and "0 to 1" in e.value.message


def test_as_bool_takes_zero_and_one_only_among_numbers():
    from loracalc.errors import as_bool
    assert as_bool(0, "gc") is False and as_bool(1, "gc") is True
    for bad in (2, -1, 0.5, None, [True]):
        with pytest.raises(LoraCalcError) as e:
            as_bool(bad, "gc")
        assert e.value.field == "gc"
    for word, value in (("ON", True), (" yes ", True), ("1", True), ("off", False), ("No", False), ("", False)):
        assert as_bool(word, "gc") is value
