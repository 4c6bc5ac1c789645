"""The memory calculator's "Your trainer's config" box against `loracalc preflight --json`: the three tools'
published example configs (the same texts tests/snippets/test_preflight.py checks against PyYAML) give the page
the estimate the terminal prints, the form the settings the file names, and a bad file the engine's one line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from lora_course.widgets import call

from snippets.test_preflight import AXOLOTL, TORCHTUNE, TRL
from .conftest import assert_clean

# axolotl's example names NousResearch/Meta-Llama-3-8B, which is not in the catalog: the reader picks the model
EXAMPLES = {"axolotl": (AXOLOTL, "llama-3.1-8b"), "torchtune": (TORCHTUNE, None), "trl": (TRL, None)}


def given(text: str, **form) -> dict:
    result = call("memory_calculator", {**form, "trainer_config": text, "_changed": "trainer_config"})
    assert result["ok"], result
    return result["outputs"]


@pytest.mark.parametrize("tool", sorted(EXAMPLES))
def test_the_page_shows_what_loracalc_preflight_prints(tool, tmp_path):
    text, model = EXAMPLES[tool]
    f = tmp_path / "config.yml"
    f.write_text(text)
    cmd = [sys.executable, "-m", "loracalc", "preflight", str(f), "--json"] + (["--model", model] if model else [])
    cli = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    out = given(text, **({"model": model} if model else {}))
    assert_clean(out)
    assert json.loads(out["json"]) == cli["estimate"]
    # the form now holds the settings the terminal used: the same form sent again gives the same estimate
    again = call("memory_calculator", {**out["_set"], "model": out["_set"].get("model", model),
                                       "trainer_config": text, "_changed": "rank"})["outputs"]
    assert json.loads(again["json"]) == cli["estimate"]
    # each setting is listed with where it came from, as the terminal says it
    for setting, origin in cli["read"].items():
        assert f"<code>{setting}</code>" in out["trainer_read"]
        assert origin.replace("'", "&#x27;") in out["trainer_read"]
    assert "Not read" in out["trainer_read"] and all(k in out["trainer_read"] for k in cli["ignored"])


GRPO = json.dumps({"model_name_or_path": "meta-llama/Llama-3.1-8B", "use_peft": True, "load_in_4bit": True,
                   "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4, "num_generations": 8,
                   "max_length": 1024})
DPO = AXOLOTL.replace("adapter: qlora", "adapter: qlora\nrl: dpo").replace("NousResearch/Meta-Llama-3-8B",
                                                                           "meta-llama/Llama-3.1-8B")


@pytest.mark.parametrize("text", [GRPO, DPO], ids=["trl-grpo", "axolotl-dpo"])
def test_preference_and_rl_configs_are_what_the_terminal_prints(text, tmp_path):
    f = tmp_path / "config.yml"
    f.write_text(text)
    cli = json.loads(subprocess.run([sys.executable, "-m", "loracalc", "preflight", str(f), "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    out = given(text)
    assert out["_set"]["objective"] == cli["objective"] != "sft"
    assert json.loads(out["json"]) == cli["estimate"]


def test_the_form_takes_the_files_values_in_its_own_spelling():
    data = yaml.safe_load(TORCHTUNE)
    s = given(TORCHTUNE)["_set"]
    assert s["model"] == "llama-3.1-8b"          # torchtune.models.llama3_1.qlora_llama3_1_8b
    assert s["method"] == "qlora" and s["rank"] == str(data["model"]["lora_rank"])
    assert s["batch_size"] == str(data["batch_size"])
    assert s["gradient_accumulation"] == str(data["gradient_accumulation_steps"])
    # output_proj is o_proj, apply_lora_to_mlp adds the MLP's three: the calculator's short names
    assert s["targets"] == "q,v,o,gate,up,down" and s["recipe"] == "torchtune"
    assert s["gradient_checkpointing"] == "on" and s["activation_offload"] == "off"


def test_a_model_outside_the_catalog_asks_for_it_in_one_line():
    out = given(AXOLOTL, model="qwen2.5-7b")
    assert "model" not in out["_set"]
    line = out["trainer_read"].split("</p>")[0]
    assert "NousResearch/Meta-Llama-3-8B" in line and "choose it under Model" in line and "config.json" in line
    assert "Qwen2.5 7B" in line or "Qwen2.5-7B" in line


def test_a_setting_changed_in_the_form_since_is_said_to_be():
    s = given(TRL)["_set"]
    out = call("memory_calculator", {**s, "batch_size": "8", "trainer_config": TRL, "_changed": "batch_size"})
    assert out["ok"] and "changed here since: 8" in out["outputs"]["trainer_read"]
    assert out["outputs"]["trainer_read"].count("changed here since") == 1


@pytest.mark.parametrize("text", ["foo: 1\n", "anchor: &a 1\n", "{bad json", "- a\n- b\n",
                                  "base_model: meta-llama/Llama-3.1-8B\noptimizer: lion\n"])
def test_a_bad_file_gets_the_engines_line_under_the_box(text):
    result = call("memory_calculator", {"trainer_config": text, "_changed": "trainer_config"})
    assert not result["ok"] and result["field"] == "trainer_config"
    assert "\n" not in result["message"] and "Traceback" not in result["message"]
    # while the reader edits another field, the calculator still answers and says the file is not read
    other = call("memory_calculator", {"trainer_config": text, "_changed": "rank"})
    assert other["ok"] and "not read" in other["outputs"]["trainer_read"]


def test_the_files_text_never_goes_into_the_address():
    out = given(TRL)
    assert out["_url"]["trainer_config"] == ""
