"""The rank-trick widgets against loracalc and against figures from cited sources (FACTS.md)."""
from __future__ import annotations

import pytest

import loracalc
from lora_course.widgets import rank_trick as rt

from .conftest import assert_clean, call_widget


def test_square_figures_match_facts():
    # FACTS.md: a square 4096 x 4096 layer, r = 8: 65,536 vs 16,777,216, 256x fewer.
    out = call_widget("rank_trick", {"d": "4096", "r": "8", "preset": "custom"})
    assert out["full_params"] == "16,777,216"
    assert out["lora_params"] == "65,536"
    assert out["ratio"] == "256×"
    assert out["break_even"] == "2,048"


@pytest.mark.parametrize("d,r", [(64, 1), (64, 64), (512, 300), (4096, 8), (16384, 1), (16384, 512)])
def test_square_counts_follow_the_engine(d, r):
    out = call_widget("rank_trick", {"d": str(d), "r": str(r), "preset": "custom"})
    assert out["full_params"] == f"{d * d:,}"
    assert out["lora_params"] == f"{2 * d * r:,}"
    assert out["d_used"] == f"{d:,}"
    assert "<svg" in out["svg"] and "</svg>" in out["svg"]
    assert_clean(out)


def test_svg_draws_to_scale_with_a_visible_minimum():
    import re

    def widths(d, r):
        svg = call_widget("rank_trick", {"d": str(d), "r": str(r)})["svg"]
        rects = re.findall(r'<rect class="(lc-\w+)" x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="([\d.]+)"', svg)
        return {(cls, i): (float(w), float(h)) for i, (cls, w, h) in enumerate(rects)}

    w = widths(4096, 512)
    (side, _), (b_w, b_h), (a_w, a_h) = list(w.values())
    assert b_h == side and a_w == side
    assert b_w == pytest.approx(side * 512 / 4096) and a_h == pytest.approx(side * 512 / 4096)
    w1 = list(widths(16384, 1).values())
    assert w1[1][0] >= 2.0  # r = 1 at d = 16,384 still visible


def test_preset_takes_the_models_hidden_size():
    # Llama-3.1-70B config.json: hidden_size 8192.
    out = call_widget("rank_trick", {"d": "100", "r": "8", "preset": "llama-3.1-70b"})
    assert out["d_used"] == "8,192"
    assert out["full_params"] == f"{8192 * 8192:,}"


@pytest.mark.parametrize("inputs,field", [
    ({"d": "", "r": "8"}, "d"),
    ({"d": "abc", "r": "8"}, "d"),
    ({"d": "-4096", "r": "8"}, "d"),
    ({"d": "63", "r": "8"}, "d"),
    ({"d": "16385", "r": "8"}, "d"),
    ({"d": "4096.5", "r": "8"}, "d"),
    ({"d": "nan", "r": "8"}, "d"),
    ({"d": "inf", "r": "8"}, "d"),
    ({"d": "4096", "r": ""}, "r"),
    ({"d": "4096", "r": "0"}, "r"),
    ({"d": "4096", "r": "513"}, "r"),
    ({"d": "128", "r": "200"}, "r"),   # rank above d
    ({"d": "4096", "r": "8", "preset": "gpt-9"}, "preset"),
])
def test_bad_inputs_name_their_field(inputs, field):
    with pytest.raises(loracalc.LoraCalcError) as exc:
        rt.rank_trick(**inputs)
    assert exc.value.field == field
    assert exc.value.message


# ------------------------------------------------------------------ whole model
@pytest.mark.parametrize("model,rank,targets,expected", [
    # FACTS.md, counted with transformers + peft on the meta device.
    ("llama-2-7b", 8, "q,v", 4_194_304),
    ("llama-3.1-8b", 8, "q,v", 3_407_872),
    ("llama-3.1-8b", 16, "all-linear", 41_943_040),
    ("llama-3.1-70b", 64, "all-linear", 828_375_040),
    ("llama-3.2-1b", 16, "all-linear", 11_272_192),
])
def test_model_lora_matches_peft_counts(model, rank, targets, expected):
    out = call_widget("model_lora", {"model": model, "rank": str(rank), "targets": targets})
    assert out["lora_params"] == f"{expected:,}"


def test_model_lora_follows_the_engine():
    counts = loracalc.count_params("llama-3.1-8b", rank=16, targets="all-linear")
    out = call_widget("model_lora", {"model": "llama-3.1-8b", "rank": "16", "targets": "all-linear"})
    assert out["total_params"] == f"{counts.total_params:,}"
    # adapter file: one bf16 number is 2 bytes, one fp32 number 4 bytes
    assert out["adapter_bf16"].endswith("MB") and out["adapter_fp32"].endswith("MB")
    bf16 = float(out["adapter_bf16"].split()[0])
    assert bf16 == pytest.approx(counts.lora_params * 2 / 1e6, rel=0.01)
    fp32 = float(out["adapter_fp32"].split()[0])
    assert fp32 == pytest.approx(counts.lora_params * 4 / 1e6, rel=0.01)
    assert out["trainable_percent"].endswith("%")
    assert_clean(out)


@pytest.mark.parametrize("inputs,field", [
    ({"model": "llama-3.1-8b", "rank": "", "targets": "q,v"}, "rank"),
    ({"model": "llama-3.1-8b", "rank": "-1", "targets": "q,v"}, "rank"),
    ({"model": "llama-3.1-8b", "rank": "x", "targets": "q,v"}, "rank"),
    ({"model": "nope", "rank": "8", "targets": "q,v"}, "model"),
    ({"model": "llama-3.1-8b", "rank": "8", "targets": "lm_head"}, "targets"),
])
def test_model_lora_bad_inputs(inputs, field):
    with pytest.raises(loracalc.LoraCalcError) as exc:
        rt.model_lora(**inputs)
    assert exc.value.field == field


@pytest.mark.parametrize("adapt", ["all", "language"])
def test_model_lora_counts_a_vision_language_config_as_the_terminal(tmp_path, adapt):
    """A multimodal Gemma 3 config.json (counted whole, exact against transformers and peft in
    tests/snippets/test_vlm.py): the widget's counts are `loracalc params --config ... --adapt ...`."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    data = json.loads((Path(__file__).parents[2] / "snippets" / "lora_course" / "data"
                       / "vlm_configs.json").read_text())
    cfg = next(m["config"] for m in data["models"] if m["repo"].lower().endswith("gemma-3-4b-it"))
    f = tmp_path / "config.json"
    f.write_text(json.dumps(cfg))
    cli = json.loads(subprocess.run([sys.executable, "-m", "loracalc", "params", "--config", str(f), "--rank", "8",
                                     "--targets", "q,v", "--adapt", adapt, "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    out = call_widget("model_lora", {"model": "config", "config": f.read_text(), "rank": "8", "targets": "q,v",
                                     "adapt": adapt})
    assert out["lora_params"] == f"{cli['lora_params']:,}" and out["total_params"] == f"{cli['total_params']:,}"
    assert_clean(out)
