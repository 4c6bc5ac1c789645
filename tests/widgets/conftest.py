"""Shared helpers for the widget tests."""
from __future__ import annotations

import json
import math
import re

import lora_course.widgets as registry  # importing the package registers every widget

BAD_TOKENS = re.compile(r"\b(nan|inf|infinity|traceback)\b", re.IGNORECASE)


def call_widget(name: str, inputs: dict) -> dict:
    """The widget's outputs, through the same entry point the page uses, asserting success."""
    result = registry.call(name, inputs)
    assert result["ok"], result
    return result["outputs"]


# Outputs that may be empty: a quiz question's feedback before it is answered; an announcement with nothing new;
# the calculator's why-line when nothing is counter-intuitive; the line on a config.json in the link, for a preset.
# what a trainer's config box read, when it is empty.
MAY_BE_BLANK = re.compile(r"^(q\d+_feedback|announce|explain|config_link|trainer_read)$")


def assert_clean(outputs: dict) -> None:
    """No output is blank, NaN, infinite or a traceback."""
    text = json.dumps(outputs, ensure_ascii=False, allow_nan=False)
    assert not BAD_TOKENS.search(text), BAD_TOKENS.search(text)
    for key, value in outputs.items():
        if isinstance(value, str):
            assert value.strip() or MAY_BE_BLANK.match(key), f"output {key!r} is blank"
        if isinstance(value, float):
            assert math.isfinite(value)
