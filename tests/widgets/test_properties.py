"""Property tests: over arbitrary form strings only LoraCalcError escapes, and no output is NaN/inf/blank."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loracalc
from loracalc.choices import CHOICES
from lora_course.widgets import WIDGETS

from .conftest import assert_clean

NUMERIC = st.one_of(
    st.integers(min_value=-10**12, max_value=10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
    st.sampled_from(["", " ", "1e309", "-0", "0x10", "½", "٣", "1,024", "64.0", "None"]),
)

# A link's config.json token: none, junk, a real one (GPT-2 small's keys) or a damaged copy of it.
GPT2_TOKEN = "1.eNo1jEsKgCAUAO_y1i5MMsPLiOajBH-kBBbdPV20m5nFPBCSRa9qywgS9lwZEIgKg7EgxbIO8brhCXJiQw7U9ueciqsuxdIDZTOBK23aqOLuPuOUcfF-8NgeeQ"
TOKEN = st.one_of(st.just(""), st.text(max_size=30), st.just(GPT2_TOKEN),
                  st.integers(min_value=2, max_value=len(GPT2_TOKEN) - 1).map(lambda n: GPT2_TOKEN[:n]))

FIELDS = {
    "rank_trick": {"d": NUMERIC, "r": NUMERIC, "preset": st.sampled_from(["custom", "llama-3.1-8b", "x", ""]),
                   "_changed": st.sampled_from(["", "d", "r", "preset"])},
    "model_lora": {"model": st.sampled_from(["llama-3.1-8b", "llama-3.2-1b", "config", "nope", ""]), "rank": NUMERIC,
                   "targets": st.sampled_from(["q,v", "all-linear", "q,k,v,o", "xyz", ""]),
                   "config": st.one_of(st.just(""), st.text(max_size=40), st.just('{"hidden_size": 64}')),
                   "config_z": TOKEN, "_changed": st.sampled_from(["", "config", "model", "rank"])},
    "memory_calculator": {"model": st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "config", "zz"]),
                          "config": st.one_of(st.just(""), st.text(max_size=40),
                                              st.just('{"hidden_size": 64}')),
                          "method": st.sampled_from(["full", "lora", "qlora", "QLoRA", ""]),
                          "rank": NUMERIC, "batch_size": NUMERIC, "seq_len": NUMERIC,
                          "gradient_accumulation": NUMERIC,
                          "gradient_checkpointing": st.sampled_from(["on", "off", "maybe"]),
                          "optimizer": st.sampled_from([*CHOICES["optimizer"], "lion"]),
                          "attention": st.sampled_from([*CHOICES["attention"], "flash", "?"]),
                          "gpu": st.sampled_from([*CHOICES["gpu"], "tpu"]),
                          "config_z": TOKEN, "_changed": st.sampled_from(["", "config", "model"])},
    "hub_config": {"repo_id": st.one_of(st.text(max_size=30), st.sampled_from(["Qwen/Qwen3-8B", "a/b@refs/pr/1", ""])),
                   "status": st.one_of(NUMERIC, st.sampled_from(["", "0", "200", "401", "403", "404"])),
                   "body": st.one_of(st.text(max_size=40), st.just('{"model_type": "llama"}')),
                   "error_code": st.sampled_from(["", "GatedRepo", "RepoNotFound", "EntryNotFound", "x"]),
                   "reason": st.text(max_size=20)},
    "nf4_explorer": {"seed": NUMERIC, "action": st.sampled_from(["", "reroll", "x"])},
    "nf4_bits": {"block_size": NUMERIC, "double_quant": st.sampled_from(["on", "off", "?"]),
                 "model": st.sampled_from(["llama-3.1-70b", "llama-3.2-1b", "?"])},
    "quiz": {"q1": st.text(max_size=3), "q2": st.sampled_from(["a", "b", "c", "d", ""]),
             "locked": st.text(max_size=40), "action": st.sampled_from(["", "retry", "x"])},
}


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_only_loracalc_error_escapes(name):
    fn = WIDGETS[name]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.fixed_dictionaries(FIELDS[name]))
    def check(inputs):
        try:
            out = fn(**inputs)
        except loracalc.LoraCalcError as exc:
            assert exc.message and "Traceback" not in exc.message
            assert exc.field in set(FIELDS[name]) | {"", None}, (exc.field, exc.message)
            return
        assert_clean(out)

    check()


def test_every_widget_is_registered():
    assert set(FIELDS) <= set(WIDGETS)
