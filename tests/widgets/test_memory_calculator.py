"""The memory calculator against loracalc (computed here) and the terminal's JSON."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import loracalc
from lora_course.widgets import memory_calculator as mc

from .conftest import assert_clean, call_widget

DEFAULT = {"model": "llama-3.1-8b", "config": "", "method": "qlora", "rank": "16", "targets": "all-linear",
           "batch_size": "1", "seq_len": "2048", "gradient_checkpointing": "on", "optimizer": "adamw",
           "attention": "sdpa", "gpu": "h100-80gb"}

# Llama-3.2-1B's published config.json (meta-llama/Llama-3.2-1B), the fields a parameter count needs.
LLAMA_32_1B_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
    "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True, "attention_bias": False,
    "mlp_bias": False, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "torch_dtype": "bfloat16",
}


def _engine(**over):
    s = {**DEFAULT, **over}
    kwargs = dict(method=s["method"], rank=int(s["rank"]), targets=s["targets"], batch_size=int(s["batch_size"]),
                  seq_len=int(s["seq_len"]), gradient_checkpointing=s["gradient_checkpointing"] == "on",
                  optimizer=s["optimizer"], attention=s["attention"])
    for k in ("recipe", "loss"):
        if k in over:
            kwargs[k] = over[k]
    for k in ("activation_offload", "optimizer_in_backward", "paged_state_on_host", "dora"):
        if k in over:
            kwargs[k] = over[k] == "on"
    return loracalc.estimate_memory(s["model"], **kwargs), kwargs


@pytest.mark.parametrize("over", [
    {}, {"method": "full"}, {"method": "lora", "rank": "64"}, {"batch_size": "8", "seq_len": "512"},
    {"gradient_checkpointing": "off"}, {"optimizer": "adamw_8bit"}, {"attention": "eager"},
    {"model": "llama-3.1-70b", "gpu": "a100-40gb"}, {"targets": "q,v", "rank": "8"},
    {"recipe": "torchtune", "loss": "chunked", "activation_offload": "on"}, {"recipe": "qlora-paper"},
    {"recipe": "litgpt", "method": "lora_8bit"}, {"loss": "fused_linear", "dora": "on"}, {"loss": "cce"},
    {"method": "full", "optimizer_in_backward": "on", "loss": "chunked_compiled"},
    {"optimizer": "paged_adamw", "paged_state_on_host": "on"}, {"optimizer": "paged_adamw"},
    {"optimizer": "paged_adamw_8bit", "paged_state_on_host": "off"},
])
def test_total_and_json_follow_the_engine(over):
    est, _ = _engine(**over)
    out = call_widget("memory_calculator", {**DEFAULT, **over})
    assert out["total"] == f"{est.total_bytes / 1e9:,.1f} GB"
    assert out["allocated_peak"] == f"{est.allocated_peak_bytes / 1e9:,.1f} GB"
    assert est.allocated_peak_bytes < est.total_bytes
    assert json.loads(out["json"]) == est.to_dict()
    assert_clean(out)


def test_json_is_what_the_terminal_prints():
    cmd = [sys.executable, "-m", "loracalc", "memory", "--model", "llama-3.1-70b", "--method", "qlora", "--rank", "16",
           "--targets", "all-linear", "--batch-size", "1", "--seq-len", "2048", "--gradient-checkpointing", "--json"]
    cli = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    out = call_widget("memory_calculator", {**DEFAULT, "model": "llama-3.1-70b"})
    assert json.loads(out["json"]) == json.loads(cli)


def test_every_term_is_in_the_bar_and_the_table_with_its_formula():
    est, _ = _engine()
    out = call_widget("memory_calculator", DEFAULT)
    for t in est.terms:
        if t.bytes > 0:
            assert f"lc-term-{t.key}" in out["stack"]
        from html import escape
        assert escape(t.formula, quote=True) in out["terms_table"]
    # every segment is reachable by keyboard and carries its formula as its accessible name
    assert out["stack"].count('tabindex="0"') == sum(1 for t in est.terms if t.bytes > 0)


def test_methods_side_by_side_are_ordered_qlora_lora_full():
    out = call_widget("memory_calculator", {**DEFAULT, "model": "llama-3.1-70b"})
    totals = [float(x.replace(",", "")) for x in re.findall(r'lc-method-total">([\d,.]+) GB', out["methods"])]
    assert len(totals) == 4
    full, lora, lora_8bit, qlora = totals
    assert qlora <= lora_8bit <= lora <= full


def test_gpu_list_marks_fits_exactly():
    est, _ = _engine(model="llama-3.1-70b")
    out = call_widget("memory_calculator", {**DEFAULT, "model": "llama-3.1-70b"})
    for g in loracalc.list_gpus():
        fits = est.total_bytes <= g.memory_bytes
        # the name with the size the card is sold as, unless the name says it
        item = re.search(r'<li class="([^"]*)"><span class="lc-gpu-name">' + re.escape(g.display_name)
                         + r"(?: \(\d+ GB\))?</span>", out["gpus"])
        assert item, g.display_name
        assert ("lc-gpu-yes" in item.group(1)) == fits


def test_largest_batch_and_sequence_follow_the_engine():
    est, kw = _engine()
    gpu = loracalc.get_gpu("h100-80gb")
    out = call_widget("memory_calculator", DEFAULT)
    mb = loracalc.max_batch_size("llama-3.1-8b", gpu, **{k: v for k, v in kw.items() if k != "batch_size"})
    assert out["max_batch"] == f"{mb:,}"


def test_pasted_config_counts_like_the_preset():
    # FACTS.md: Llama-3.2-1B (tied embeddings) has 1,235,814,400 parameters.
    out = call_widget("memory_calculator", {**DEFAULT, "model": "config", "config": json.dumps(LLAMA_32_1B_CONFIG)})
    assert out["model_params"].startswith("1,235,814,400 parameters")


@pytest.mark.parametrize("over,field", [
    ({"rank": ""}, "rank"), ({"rank": "-3"}, "rank"), ({"rank": "abc"}, "rank"),
    ({"batch_size": "0"}, "batch_size"), ({"batch_size": "1.5"}, "batch_size"), ({"batch_size": "nan"}, "batch_size"),
    ({"seq_len": ""}, "seq_len"), ({"seq_len": "-2048"}, "seq_len"), ({"seq_len": "1e400"}, "seq_len"),
    ({"method": "prompting"}, "method"), ({"targets": "x_proj"}, "targets"),
    ({"optimizer": "lion"}, "optimizer"), ({"attention": "ring"}, "attention"), ({"gpu": "tpu-v5"}, "gpu"),
    ({"model": "gpt-5"}, "model"), ({"recipe": "axolotl"}, "recipe"), ({"loss": "focal"}, "loss"),
    ({"activation_offload": "maybe"}, "activation_offload"), ({"dora": "2"}, "dora"),
    ({"optimizer_in_backward": "yes please"}, "optimizer_in_backward"),
    ({"paged_state_on_host": "x"}, "paged_state_on_host"), ({"method": "full", "dora": "on"}, "dora"),
    ({"model": "config", "config": ""}, "config"), ({"model": "config", "config": "{not json"}, "config"),
    ({"model": "config", "config": "[1, 2]"}, "config"), ({"model": "config", "config": '{"hidden_size": 64}'}, "config"),
])
def test_bad_inputs_name_their_field(over, field):
    with pytest.raises(loracalc.LoraCalcError) as exc:
        mc.memory_calculator(**{**DEFAULT, **over})
    assert exc.value.field == field, exc.value.message
    assert exc.value.message


def test_measured_runs_show_predicted_vs_measured():
    from lora_course import measured

    recs = measured.records()
    if not recs:
        pytest.skip("the memory probe has recorded no runs yet")
    rec = recs[0]
    s = rec.settings
    inputs = {**DEFAULT, "model": rec.model, "method": s["method"], "rank": str(s["rank"]),
              "targets": ",".join(s["targets"]), "batch_size": str(s["batch_size"]), "seq_len": str(s["seq_len"]),
              "gradient_checkpointing": "on" if s["gradient_checkpointing"] else "off",
              "optimizer": s["optimizer"], "attention": s["attention"]}
    if inputs["targets"] == "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj":
        inputs["targets"] = "all-linear"
    out = call_widget("memory_calculator", inputs)
    assert f"peak <strong>{rec.peak_bytes / 1e6:,.2f} MB</strong>" in out["measured"]
    assert f"predicted <strong>{rec.predicted_bytes / 1e6:,.2f} MB</strong>" in out["measured"]
    # settings the probe did not run: no record, and a pointer to the ones it did
    assert "No measurement recorded" in call_widget("memory_calculator", DEFAULT)["measured"]


@pytest.mark.parametrize("gpus, strategy, offload", [
    ("1", "ddp", "none"), ("2", "full-shard", "none"), ("8", "shard-grad-op", "optimizer"),
    ("8", "full-shard", "params"),
])
def test_per_gpu_outputs_follow_the_sharding_engine(gpus, strategy, offload):
    from loracalc import sharding

    over = {"model": "llama-3.1-70b", "method": "lora", "gpu": "a100-80gb"}
    est, kwargs = _engine(**over)
    flags = {"none": (False, False), "optimizer": (True, False), "params": (False, True)}[offload]
    sh = sharding.shard_estimate(est, "llama-3.1-70b", int(gpus), strategy, *flags)
    out = call_widget("memory_calculator", {**DEFAULT, **over, "gpus": gpus, "strategy": strategy, "offload": offload})
    assert out["per_gpu_total"] == f"{sh.per_gpu_bytes / 1e9:,.1f} GB"
    fewest = sharding.smallest_gpu_count("llama-3.1-70b", "a100-80gb", "full-shard", *flags, **kwargs) \
        if strategy != "ddp" else sharding.smallest_gpu_count("llama-3.1-70b", "a100-80gb", "full-shard", **kwargs)
    assert f"{fewest} x NVIDIA A100 80GB" in out["gpus_needed"]
    assert_clean(out)


@pytest.mark.parametrize("field, value", [("gpus", "0"), ("gpus", "two"), ("strategy", "zero9"), ("offload", "disk")])
def test_bad_multi_gpu_input_names_its_field(field, value):
    from lora_course.widgets import call

    result = call("memory_calculator", {**DEFAULT, field: value})
    assert not result["ok"] and result["field"] == field


def test_the_verdict_names_the_card_as_sold_and_its_usable_bytes():
    """A card sold as 24 GB is judged by what CUDA reports, shown in GB and GiB so the two never seem to disagree:
    the RTX 4090's cited reading is total_memory=24563 MiB (a PyTorch printout, in loracalc's catalog)."""
    out = call_widget("memory_calculator", {**DEFAULT, "gpu": "rtx-4090"})
    usable = 24563 * 2**20
    assert f"GeForce RTX 4090 (sold as 24 GB; {usable / 1e9:.1f} GB = {usable / 2**30:.1f} GiB usable)" in out["gpu_verdict"]
    assert f"of {usable / 1e9:.1f} GB usable" in out["gpus"]


def test_simple_mode_shows_five_inputs_and_the_rest_behind_disclosures():
    """Issue 28: model, method, GPU, sequence length and batch size in view (and the config box, shown only for
    "Your config.json"); every other control inside a <details data-more> that a keyboard opens (its <summary>)."""
    from html.parser import HTMLParser
    from pathlib import Path

    html = (Path(__file__).resolve().parents[2] / "snippets" / "widgets" / "memory-calculator.html").read_text()

    class Fields(HTMLParser):
        def __init__(self):
            super().__init__()
            self.depth, self.outside, self.inside, self.summaries = 0, [], [], 0

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "details" and "data-more" in a:
                self.depth += 1
            elif tag == "summary" and self.depth:
                self.summaries += 1
            elif tag in ("input", "select", "textarea") and a.get("name"):
                (self.inside if self.depth else self.outside).append(a["name"])

        def handle_endtag(self, tag):
            if tag == "details" and self.depth:
                self.depth -= 1

    f = Fields()
    f.feed(html)
    assert f.outside == ["model", "method", "gpu", "seq_len", "batch_size", "config"]
    assert set(f.inside) == set(mc.memory_calculator.__code__.co_varnames[:mc.memory_calculator.__code__.co_argcount]) \
        - set(f.outside) - {"config_z", "_changed"}
    assert f.summaries == 6   # trainer's config; more settings; vision-language; preference and RL; several GPUs; your data


# --------------------------------------------------------------------- time and cost beside the memory (issue 27)
def test_time_and_cost_are_the_engines_and_the_cards_are_cheapest_first():
    import re

    import loracalc
    from loracalc.speed import estimate_time
    from lora_course.widgets import call

    out = call("memory_calculator", {"model": "llama-3.1-8b", "method": "qlora", "gpu": "a10", "samples": "5000",
                                     "avg_tokens": "300", "epochs": "2"})["outputs"]
    t = estimate_time("llama-3.1-8b", "a10", method="qlora", samples=5000, avg_tokens=300, epochs=2)
    assert f"about {t.tokens_per_second:,.0f} tokens/s" in out["time_cost"] and f"${t.cost:,.2f}" in out["time_cost"]
    assert f"{t.total_tokens:,} tokens" in out["time_cost"]
    rows = re.findall(r'<li[^>]*><span class="lc-gpu-name">([^<]+)</span>: (.*?)</li>', out["gpu_costs"])
    assert len(rows) == len(loracalc.list_gpus())
    costs = [float(m.group(1).replace(",", "")) for _, cells in rows for m in [re.search(r"\$([\d,.]+)", cells)] if m]
    assert costs == sorted(costs) and len(costs) >= 5
    big = call("memory_calculator", {"model": "llama-3.1-70b", "method": "lora", "gpu": "rtx-4090"})["outputs"]
    assert "does not fit" in big["gpu_costs"] and "It does not fit this card" in big["time_cost"]


def test_preference_time_is_the_engines():
    """A DPO run's time in the calculator is loracalc.speed's with the objective: its reference forwards counted."""
    from loracalc.speed import estimate_time
    from lora_course.widgets import call

    form = {"model": "llama-3.1-8b", "method": "qlora", "gpu": "a10", "samples": "2000", "avg_tokens": "512",
            "seq_len": "512", "objective": "dpo", "batch_size": "2"}
    out = call("memory_calculator", form)["outputs"]
    dpo = estimate_time("llama-3.1-8b", "a10", method="qlora", batch_size=2, seq_len=512, samples=2000,
                        objective="dpo")
    sft = estimate_time("llama-3.1-8b", "a10", method="qlora", batch_size=2, seq_len=512, samples=2000, avg_tokens=512)
    assert dpo.total_seconds > sft.total_seconds
    assert f"about {dpo.tokens_per_second:,.0f} tokens/s" in out["time_cost"]


def test_time_inputs_give_the_engines_one_line_messages():
    from lora_course.widgets import call

    for field, value in (("samples", "abc"), ("samples", "0"), ("epochs", "-1"), ("avg_tokens", "1.5")):
        r = call("memory_calculator", {field: value})
        assert not r["ok"] and r["field"] == field and "internal" not in r["message"], (field, value, r)


# ------------------------------------------------------------------ the hardware people own
def test_verdict_says_what_a_mac_cannot_run():
    out = call_widget("memory_calculator", {**DEFAULT, "gpu": "mac-32gb", "optimizer": "paged_adamw_8bit"})
    assert out["verdict_word"] == "Cannot run" and out["verdict_state"] == "no"
    assert out["gpu_verdict"].startswith("Cannot run on Mac 32 GB (M1 Max)")
    assert "8-bit optimizers, paged optimizers; in memory it would fit" in out["gpu_verdict"]
    assert "choose AdamW" in out["gpu_verdict"] and "Cannot run" in out["announce"]
    # every Mac in the list says why it is out; the cards that run it still show their share
    assert out["gpus"].count("cannot run 8-bit optimizers, paged optimizers") == 6
    assert re.search(r'AMD Radeon RX 7900 XTX \(24 GB\)</span>.*?lc-gpu-verdict">fits: ', out["gpus"])


def test_qlora_on_a_mac_runs_with_a_caution_and_still_gets_the_memory_verdict():
    ok = call_widget("memory_calculator", {**DEFAULT, "gpu": "mac-32gb", "method": "qlora"})
    assert ok["verdict_word"] in ("Fits", "Tight") and "bitsandbytes NF4 on MPS" in ok["gpu_verdict"]
    assert "recommendedMaxWorkingSetSize" in ok["gpu_verdict"]
    big = call_widget("memory_calculator", {**DEFAULT, "model": "llama-3.1-70b", "method": "lora", "gpu": "mac-128gb"})
    assert big["verdict_word"] == "Does not fit" and big["gpu_verdict"].startswith("Does not fit on Mac 128 GB")


def test_flash_attention_on_radeon_is_a_caution_not_a_refusal():
    out = call_widget("memory_calculator", {**DEFAULT, "gpu": "rx-7900-xtx", "attention": "flash_attention_2"})
    assert out["verdict_word"] != "Cannot run" and "FLASH_ATTENTION_TRITON_AMD_ENABLE" in out["gpu_verdict"]
    mac = call_widget("memory_calculator", {**DEFAULT, "gpu": "mac-96gb", "attention": "flash_attention_2"})
    assert mac["verdict_word"] == "Cannot run" and "choose sdpa" in mac["gpu_verdict"]


def test_gpu_select_lists_the_catalog_grouped_by_vendor():
    from html.parser import HTMLParser
    from pathlib import Path

    from loracalc.gpus import vendors
    import hooks.widgets   # the <select data-choices="gpu"> is filled from the engine at build time

    page = (Path(__file__).resolve().parents[2] / "snippets" / "widgets" / "memory-calculator.html").read_text()
    html = hooks.widgets.prerender(page, "memory-calculator.html")
    select = html.split('id="mc-gpu" name="gpu">', 1)[1].split("</select>", 1)[0]

    class Options(HTMLParser):
        def __init__(self):
            super().__init__()
            self.groups: dict[str, list[str]] = {}
            self.group = None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "optgroup":
                self.group = self.groups.setdefault(a["label"], [])
            elif tag == "option":
                self.group.append(a["value"])

    o = Options()
    o.feed(select)
    assert o.groups == {v: [g.name for g in cards] for v, cards in vendors().items()}


@pytest.mark.parametrize("flags,fields", [
    (["--objective", "dpo", "--batch-size", "2"], {"objective": "dpo", "batch_size": "2"}),
    (["--objective", "grpo", "--batch-size", "8", "--gradient-accumulation", "2", "--gpu", "h100-80gb",
      "--generation", "vllm-colocate"],
     {"objective": "grpo", "batch_size": "8", "gradient_accumulation": "2", "generation": "vllm-colocate"}),
    (["--objective", "dpo", "--method", "full"], {"objective": "dpo", "method": "full"}),
])
def test_preference_tuning_is_what_the_terminal_prints(flags, fields):
    """The calculator's DPO/GRPO estimate is the CLI's `memory --objective ...` (loracalc.preference)."""
    cmd = [sys.executable, "-m", "loracalc", "memory", "--model", "llama-3.1-8b", "--json", *flags]
    cli = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    cli.pop("gpu", None)
    out = call_widget("memory_calculator", {**DEFAULT, **fields})
    assert json.loads(out["json"]) == cli
    assert out["max_batch"] == "not searched for preference tuning"
    assert_clean(out)


def test_preference_settings_get_one_line_errors():
    import lora_course.widgets as registry
    result = registry.call("memory_calculator", {**DEFAULT, "objective": "grpo", "num_generations": "3"})
    assert not result["ok"] and result["field"] == "num_generations"
    assert "multiple of num_generations" in result["message"] and "\n" not in result["message"]


def _gemma3_4b() -> dict:
    from pathlib import Path
    data = json.loads((Path(__file__).parents[2] / "snippets" / "lora_course" / "data"
                       / "vlm_configs.json").read_text())
    return next(m["config"] for m in data["models"] if m["repo"].lower().endswith("gemma-3-4b-it"))


@pytest.mark.parametrize("fields,flags", [
    ({"images_per_sample": "1"}, ["--images", "1"]),
    ({"images_per_sample": "2", "adapt": "language", "image_size": "448"},
     ["--images", "2", "--adapt", "language", "--image-size", "448"]),
])
def test_a_vision_language_config_is_what_the_terminal_prints(tmp_path, fields, flags):
    """A pasted Gemma 3 (multimodal) config.json with images: the calculator's JSON is the CLI's."""
    f = tmp_path / "config.json"
    f.write_text(json.dumps(_gemma3_4b()))
    cmd = [sys.executable, "-m", "loracalc", "memory", "--config", str(f), "--json", *flags]
    cli = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    out = call_widget("memory_calculator", {**DEFAULT, "model": "config", "config": f.read_text(), **fields})
    mine = json.loads(out["json"])
    assert {k: v for k, v in mine.items() if k != "model"} == {k: v for k, v in cli.items() if k != "model"}
    assert "counted whole" in out["vision_note"] and f"{cli['settings']['lm_seq_len']:,}" in out["vision_note"]
    assert_clean(out)


def test_gemma4_language_adapters_with_named_targets():
    """Gemma 4's vision tower wraps its linears (peft refuses q_proj there): with the adapters on the language
    model the calculator counts them as peft does, never refusing a choice the reader already made."""
    from pathlib import Path
    data = json.loads((Path(__file__).parents[2] / "snippets" / "lora_course" / "data"
                       / "vlm_configs.json").read_text())
    config = next(m["config"] for m in data["models"] if m["repo"].lower().endswith("gemma-4-e2b-it"))
    import lora_course.widgets as registry
    import loracalc
    result = registry.call("memory_calculator", {**DEFAULT, "model": "config", "config": json.dumps(config),
                                                 "adapt": "language", "targets": "q,v", "method": "lora"})
    assert result["ok"], result
    arch = loracalc.model_from_config(config)
    lora = loracalc.count_params(arch, rank=16, targets="q,v", adapt="language").lora_params
    assert f"{lora:,} trained" in result["outputs"]["model_params"]


def test_images_on_a_text_model_get_one_line():
    import lora_course.widgets as registry
    result = registry.call("memory_calculator", {**DEFAULT, "images_per_sample": "1"})
    assert not result["ok"] and result["field"] == "images_per_sample" and "no vision tower" in result["message"]
