"""The one exception type: a ValueError with ``field`` and a one-line ``message``."""
from __future__ import annotations

import pytest

from loracalc import LoraCalcError
from loracalc.errors import as_bool, as_choice, as_float, as_int


def test_is_value_error_with_field_and_message():
    e = LoraCalcError("rank", "rank must be\n from 1 to 8")
    assert isinstance(e, ValueError)
    assert e.field == "rank" and e.message == "rank must be from 1 to 8"
    assert str(e) == "rank: rank must be from 1 to 8"
    assert str(LoraCalcError("", "no field")) == "no field"


@pytest.mark.parametrize("value, expected", [(8, 8), (8.0, 8), ("8", 8), (" 1,024 ", 1024), ("1e3", 1000)])
def test_as_int_accepts_whole_numbers(value, expected):
    assert as_int(value, "n", 1, 10**6) == expected


@pytest.mark.parametrize("value", [0, -1, 8.5, "8.5", "", "x", None, True, float("nan"), float("inf"), "inf",
                                   10**7, [8], "1e400"])
def test_as_int_rejects_with_the_range(value):
    with pytest.raises(LoraCalcError) as e:
        as_int(value, "n", 1, 10**6)
    assert e.value.field == "n"
    assert "1 to 1,000,000" in e.value.message or "empty" in e.value.message


def test_other_validators():
    assert as_float("0.05", "p", 0, 1) == 0.05
    with pytest.raises(LoraCalcError):
        as_float(float("nan"), "p", 0, 1)
    assert as_choice(" QLoRA ", "method", ["qlora"]) == "qlora"
    with pytest.raises(LoraCalcError, match="one of: a, b"):
        as_choice("c", "x", ["a", "b"])
    assert as_bool("on", "gc") is True and as_bool(False, "gc") is False
    with pytest.raises(LoraCalcError):
        as_bool("maybe", "gc")
