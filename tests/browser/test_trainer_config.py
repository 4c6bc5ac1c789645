"""The memory calculator's "Your trainer's config" box in Chromium with the real Pyodide (issue 31): torchtune's
published QLoRA recipe for Llama 3.1 8B, pasted, fills the fields with the recipe's settings, lists where each came
from, and the page shows what `loracalc preflight --json` prints for the file; the box is reached by keyboard; a file
that is not a trainer's config gets the engine's one line under the box, as an alert."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from snippets.test_preflight import TORCHTUNE
from widgets.browser_support import open_page, read_inputs, stamp, wait_error, wait_updated, widget, wpage  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NAME = "memory_calculator"


def test_a_pasted_torchtune_recipe_fills_the_calculator(wpage, site_url, tmp_path):
    f = tmp_path / "8B_qlora_single_device.yaml"
    f.write_text(TORCHTUNE)
    cli = json.loads(subprocess.run([sys.executable, "-m", "loracalc", "preflight", str(f), "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    recipe = yaml.safe_load(TORCHTUNE)
    open_page(wpage, site_url, "gpu-memory/")
    w = widget(wpage, NAME)

    # by keyboard: the disclosure's summary opens with Enter, and Tab goes on to the box
    summary = w.locator("details.lc-trainer > summary")
    summary.focus()
    wpage.keyboard.press("Enter")
    wpage.keyboard.press("Tab")
    assert wpage.evaluate("document.activeElement.id") == "mc-trainer"
    assert w.locator("label[for=mc-trainer]").count() == 1

    before = stamp(wpage, NAME)
    w.locator("#mc-trainer").fill(TORCHTUNE)
    wait_updated(wpage, NAME, before)
    form = read_inputs(wpage, NAME)
    assert form["model"] == "llama-3.1-8b" and form["method"] == "qlora"
    assert form["rank"] == str(recipe["model"]["lora_rank"]) and form["batch_size"] == str(recipe["batch_size"])
    assert form["gradient_accumulation"] == str(recipe["gradient_accumulation_steps"])
    assert form["targets"] == "q,v,o,gate,up,down" and form["recipe"] == "torchtune" and form["loss"] == "chunked"
    assert w.locator("#mc-targets").evaluate("s => s.selectedOptions[0].textContent") == "q,v,o,gate,up,down"
    # the 'came from' lines, as the terminal words them
    lines = w.locator(".lc-trainer-read li").all_text_contents()
    assert len(lines) == len(cli["read"])
    for setting, origin in cli["read"].items():
        assert any(line.startswith(f"{setting} = ") and line.endswith(f"from {origin}") for line in lines), setting
    assert all(k in w.locator('[data-output="trainer_read"]').text_content() for k in cli["ignored"])
    # the estimate is the terminal's
    assert json.loads(w.locator('[data-output="json"]').text_content()) == cli["estimate"]
    assert "trainer_config" not in wpage.url

    # a file that is no trainer's config: the engine's line under the box, as an alert, never a traceback
    w.locator("#mc-trainer").fill("learning_rate: 0.0002\nepochs: 1\n")
    message = wait_error(wpage, NAME, "trainer_config", containing="not a config")
    assert "Traceback" not in message and "\n" not in message.strip()
    assert w.locator('[data-error-for="trainer_config"]').get_attribute("role") == "alert"
    assert wpage.errors == []


def drop_on(page, target, text: str, filename: str) -> None:
    """Drop a file on TARGET as a reader dragging it from their file manager would."""
    transfer = page.evaluate_handle(
        """([text, filename]) => { const t = new DataTransfer();
             t.items.add(new File([text], filename, {type: 'text/plain'})); return t; }""", [text, filename])
    target.dispatch_event("drop", {"dataTransfer": transfer})


def test_a_file_dropped_on_the_box_or_chosen_goes_into_it_and_elsewhere_into_the_config_box(wpage, site_url, tmp_path):
    open_page(wpage, site_url, "gpu-memory/")
    w = widget(wpage, NAME)
    w.locator("details.lc-trainer > summary").click()
    before = stamp(wpage, NAME)
    drop_on(wpage, w.locator(".lc-trainer-field"), TORCHTUNE, "8B_qlora_single_device.yaml")
    wait_updated(wpage, NAME, before)
    assert w.locator("#mc-trainer").input_value() == TORCHTUNE and read_inputs(wpage, NAME)["recipe"] == "torchtune"
    assert w.locator("#mc-config").input_value() == ""

    # the file picker beside the box
    trl = tmp_path / "sft.yaml"
    trl.write_text("model_name_or_path: Qwen/Qwen2.5-7B\nuse_peft: true\nper_device_train_batch_size: 3\n")
    before = stamp(wpage, NAME)
    w.locator("#mc-trainer-file").set_input_files(str(trl))
    wait_updated(wpage, NAME, before)
    form = read_inputs(wpage, NAME)
    assert form["model"] == "qwen2.5-7b" and form["batch_size"] == "3" and form["method"] == "lora"

    # a file dropped anywhere else on the calculator is still a model's config.json, as before
    drop_on(wpage, w.locator(".lc-total").first, '{"model_type": "llama"}', "config.json")
    wpage.wait_for_function("() => document.querySelector('#mc-config').value === '{\"model_type\": \"llama\"}'",
                            timeout=15_000)
    assert w.locator("#mc-trainer").input_value() == trl.read_text()
    assert wpage.errors == []
