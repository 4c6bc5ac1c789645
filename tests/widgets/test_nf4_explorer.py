"""The NF4 explorer and the bits calculator, against loracalc.nf4 and FACTS.md."""
from __future__ import annotations

import random
import re

import pytest

import loracalc
from loracalc import nf4
from lora_course.widgets import nf4_explorer as nx

from .conftest import assert_clean, call_widget


def _seed(out):
    return int(re.search(r'name="seed" value="(\d+)"', out["seed_state"]).group(1))


def test_block_is_stdlib_random_with_the_seed():
    rng = random.Random(7)
    assert nx.draw_block(7) == [rng.gauss(0.0, 1.0) for _ in range(64)]


def test_reroll_moves_to_the_next_seed_and_redraws():
    first = call_widget("nf4_explorer", {"seed": "0"})
    assert _seed(first) == 0
    second = call_widget("nf4_explorer", {"seed": str(_seed(first)), "action": "reroll"})
    assert _seed(second) == 1
    assert second["values_table"] != first["values_table"]
    third = call_widget("nf4_explorer", {"seed": str(_seed(second)), "action": "reroll"})
    assert _seed(third) == 2


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 - 1])
def test_errors_follow_the_engine(seed):
    weights = nx.draw_block(seed)
    cmp = nf4.compare_formats(weights, block_size=64)
    out = call_widget("nf4_explorer", {"seed": str(seed)})
    for key in ("nf4", "int4", "fp4"):
        assert out[f"err_{key}"] == f"{cmp[key]['mean_abs_error']:.4f}"
    assert out["absmax"] == f"{max(abs(w) for w in weights):.4f}"
    assert_clean(out)


def test_svg_draws_the_sixteen_levels_and_sixty_four_weights():
    """Both drawings (the wide one, and the narrower one a phone shows instead) draw the whole block."""
    out = call_widget("nf4_explorer", {"seed": "3"})
    drawings = re.findall(r"<svg .*?</svg>", out["svg"], re.S)
    assert [re.search(r'class="[^"]*(lc-wide-only|lc-phone-only)"', d).group(1) for d in drawings] == \
        ["lc-wide-only", "lc-phone-only"]
    for drawing in drawings:
        assert len(re.findall(r'<line class="lc-level', drawing)) == 16
        assert len(re.findall(r"<circle ", drawing)) == 64
    # The phone drawing's view box is at most 340 units wide, so its 13 px labels render at 11 px or more
    # in the widget, 332 px wide on a 390 px phone (tests/browser/test_phone.py measures it).
    assert float(re.search(r'viewBox="0 0 ([\d.]+) ', drawings[1]).group(1)) <= 340


@pytest.mark.parametrize("seed", ["", "-1", "abc", "1.5", "2147483648"])
def test_bad_seed(seed):
    if seed == "":
        assert _seed(call_widget("nf4_explorer", {"seed": ""})) == 0  # an empty seed starts at block 0
        return
    with pytest.raises(loracalc.LoraCalcError) as exc:
        nx.nf4_explorer(seed=seed)
    assert exc.value.field == "seed"


# ------------------------------------------------------------------------------------------- bits
def test_bits_per_parameter_match_facts():
    # FACTS.md: NF4 with fp32 absmax per 64 weights: 4.5 bits; with double quantization: 4.127.
    assert call_widget("nf4_bits", {"block_size": "64", "double_quant": "off", "model": "llama-3.1-8b"})["bits"] == "4.5"
    assert call_widget("nf4_bits", {"block_size": "64", "double_quant": "on", "model": "llama-3.1-8b"})["bits"] == "4.127"


@pytest.mark.parametrize("model,gb", [("llama-2-70b", "36.4 GB"), ("llama-3.1-70b", "39.5 GB")])
def test_70b_weight_storage_matches_facts(model, gb):
    # FACTS.md: QLoRA weights with NF4 + double quantization: about 36.4 GB (Llama-2-70B), 39.5 GB (Llama-3.1-70B).
    out = call_widget("nf4_bits", {"block_size": "64", "double_quant": "on", "model": model})
    assert out["storage"] == gb


@pytest.mark.parametrize("bs", ["32", "64", "128", "256", "4096"])
def test_bits_follow_the_engine(bs):
    for dq in ("on", "off"):
        out = call_widget("nf4_bits", {"block_size": bs, "double_quant": dq, "model": "llama-3.1-8b"})
        assert out["bits"] == f"{nf4.bits_per_param(block_size=int(bs), double_quant=dq == 'on'):.4g}"
        assert_clean(out)


@pytest.mark.parametrize("inputs,field", [
    ({"block_size": ""}, "block_size"), ({"block_size": "0"}, "block_size"), ({"block_size": "-64"}, "block_size"),
    ({"block_size": "sixty"}, "block_size"), ({"block_size": "100000"}, "block_size"),
    ({"double_quant": "maybe"}, "double_quant"), ({"model": "gpt-2"}, "model"),
])
def test_bits_bad_inputs(inputs, field):
    with pytest.raises(loracalc.LoraCalcError) as exc:
        nx.nf4_bits(**inputs)
    assert exc.value.field == field
