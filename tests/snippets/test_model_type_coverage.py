"""The recorded list of every model_type transformers ships (scripts/model_type_coverage.py) is current and honest."""
from __future__ import annotations

import json
from pathlib import Path

import loracalc
from loracalc.families import FAMILIES

RECORD = json.loads((Path(__file__).resolve().parents[2] / "snippets" / "lora_course" / "data"
                     / "model_type_coverage.json").read_text())


def test_the_list_is_every_type_of_the_installed_transformers():
    import transformers
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)
    assert RECORD["transformers"] == transformers.__version__
    listed = {r["model_type"] for r in RECORD["types"]}
    # and the families loracalc counts that no auto mapping lists (text towers such as qwen2_5_vl_text)
    assert listed == (set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) | set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)
                      | set(FAMILIES))


def test_every_family_was_counted_exactly_and_nothing_is_wrong():
    by_type = {r["model_type"]: r for r in RECORD["types"]}
    assert RECORD["counts"]["wrong"] == 0
    for mt in FAMILIES:
        assert by_type[mt]["status"] == "exact" and by_type[mt]["exact"] >= 4, mt
    assert RECORD["counts"]["exact"] == sum(1 for r in RECORD["types"] if r["status"] == "exact")


def test_every_vision_language_wrapper_loracalc_describes_was_counted_exactly():
    from loracalc.vision import WRAPPERS
    by_type = {r["model_type"]: r for r in RECORD["types"]}
    for mt in WRAPPERS:
        assert by_type[mt]["status"] == "exact" and by_type[mt]["exact"] >= 4, mt


def test_each_refused_type_is_refused_by_the_engine_as_it_is_now_in_one_line():
    for r in RECORD["types"]:
        if r["status"] != "refused":
            continue
        try:
            loracalc.model_from_config({"model_type": r["model_type"], "hidden_size": 64, "num_hidden_layers": 2})
        except loracalc.LoraCalcError as e:
            assert "\n" not in str(e)
        else:
            raise AssertionError(f"{r['model_type']} is recorded as refused but is counted now: run the script again")
