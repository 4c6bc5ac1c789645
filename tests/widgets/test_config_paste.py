"""Bring your own config.json, in Chromium: pasted, dropped or chosen with the file picker, on the memory calculator
and on the rank-trick page's model view. The page shows what the terminal prints for the same file
(`loracalc memory|params --config FILE`), keeps the file in the address as a compressed token (a reload from that
address gives the same result), and a bad file or a damaged token gets the engine's one line under the config box.
"""
from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from .browser_support import open_page, set_field, stamp, wait_error, wait_updated, widget, wpage  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def family_configs() -> dict[str, dict]:
    """config.json files as transformers itself writes them (its config classes' to_json_string)."""
    from transformers import GPT2Config, Qwen3MoeConfig

    return {
        # Qwen3-30B-A3B's published sizes (mixture of experts, peft maps the expert names)
        "qwen3_moe": json.loads(Qwen3MoeConfig(
            hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_hidden_layers=48,
            num_attention_heads=32, num_key_value_heads=4, head_dim=128, num_experts=128, num_experts_per_tok=8,
            vocab_size=151936, tie_word_embeddings=False).to_json_string()),
        # GPT-2 small (Conv1D layers, learned positions, n_embd spelling): the class's defaults
        "gpt2": json.loads(GPT2Config().to_json_string()),
    }


CONFIGS = family_configs()
WRAPPER = {"model_type": "idefics2", "text_config": {"model_type": "mistral"}, "vision_config": {}}


def cli(tmp_path, command: str, config: dict, *flags: str, as_json: bool = True):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config, indent=2))
    args = [sys.executable, "-m", "loracalc", command, "--config", str(path), *flags] + (["--json"] if as_json else [])
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


MEMORY_FLAGS = ("--method", "qlora", "--rank", "16", "--targets", "all-linear", "--batch-size", "1",
                "--seq-len", "2048", "--gradient-checkpointing")
PARAMS_FLAGS = ("--rank", "16", "--targets", "all-linear")


def shown(page, name: str, key: str) -> str:
    return widget(page, name).locator(f'[data-output="{key}"]').text_content()


def paste(page, name: str, config: dict) -> None:
    before = stamp(page, name)
    set_field(page, name, "config", json.dumps(config))
    wait_updated(page, name, before)


def fresh_page(page):
    """A second tab in the same browser context, recording its script errors as wpage does."""
    other = page.context.new_page()
    other.errors = []
    other.on("pageerror", lambda exc: other.errors.append(str(exc)))
    return other


def drop(page, name: str, text: str, filename: str = "config.json") -> None:
    """Drop a file on the widget as a reader dragging it from their file manager would."""
    transfer = page.evaluate_handle(
        """([text, filename]) => { const t = new DataTransfer();
             t.items.add(new File([text], filename, {type: 'application/json'})); return t; }""", [text, filename])
    widget(page, name).locator(".lc-stats, .lc-total").first.dispatch_event("drop", {"dataTransfer": transfer})


# ------------------------------------------------------------------ the memory calculator
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_memory_calculator_shows_the_terminal_json(wpage, site_url, tmp_path, family):
    name = "memory_calculator"
    open_page(wpage, site_url, "gpu-memory/")
    set_field(wpage, name, "model", "config")       # opens the config box (empty: the engine asks for a file)
    wait_error(wpage, name, "config")
    paste(wpage, name, CONFIGS[family])
    # the whole estimate, the model's name included: a pasted file is named as the terminal names it
    assert json.loads(shown(wpage, name, "json")) == json.loads(cli(tmp_path, "memory", CONFIGS[family], *MEMORY_FLAGS))


def test_memory_calculator_wrapper_is_refused_in_one_line(wpage, site_url):
    name = "memory_calculator"
    open_page(wpage, site_url, "gpu-memory/")
    set_field(wpage, name, "model", "config")
    wait_error(wpage, name, "config")
    set_field(wpage, name, "config", json.dumps(WRAPPER))
    message = wait_error(wpage, name, "config", containing="multimodal")
    assert "multimodal" in message and "\n" not in message.strip()


def test_memory_calculator_file_picker_and_the_link(wpage, site_url, tmp_path):
    """Choose the file with the picker; the address then holds it compressed, and opening that address in a
    fresh page gives the same estimate."""
    name = "memory_calculator"
    open_page(wpage, site_url, "gpu-memory/")
    set_field(wpage, name, "model", "config")
    wait_error(wpage, name, "config")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIGS["qwen3_moe"], indent=2))
    before = stamp(wpage, name)
    widget(wpage, name).locator('input[type="file"][data-file-into="config"]').set_input_files(str(path))
    wait_updated(wpage, name, before)
    first = json.loads(shown(wpage, name, "json"))
    assert first == json.loads(cli(tmp_path, "memory", CONFIGS["qwen3_moe"], *MEMORY_FLAGS))
    query = parse_qs(urlsplit(wpage.url).query)
    assert query["model"] == ["config"] and "config" not in query and query["config_z"][0].startswith("1.")

    fresh = fresh_page(wpage)
    open_page(fresh, wpage.url, "")
    fresh.wait_for_function("() => document.querySelector('#mc-config').value.includes('qwen3_moe')")
    wait_updated(fresh, name, "")
    assert json.loads(shown(fresh, name, "json")) == first
    assert json.loads(fresh.locator("#mc-config").input_value()) == CONFIGS["qwen3_moe"]
    assert not fresh.errors and not wpage.errors


# ------------------------------------------------------------------ the rank-trick page's model view
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_model_view_shows_what_loracalc_params_prints(wpage, site_url, tmp_path, family):
    name = "model_lora"
    open_page(wpage, site_url, "rank-trick/")
    set_field(wpage, name, "model", "config")
    wait_error(wpage, name, "config")
    paste(wpage, name, CONFIGS[family])
    assert json.loads(shown(wpage, name, "json")) == json.loads(cli(tmp_path, "params", CONFIGS[family], *PARAMS_FLAGS))
    text = cli(tmp_path, "params", CONFIGS[family], *PARAMS_FLAGS, as_json=False)
    assert shown(wpage, name, "params_text") == text.rstrip("\n")      # print() adds the final newline


def test_model_view_dropped_file_and_the_link(wpage, site_url, tmp_path):
    """A file dropped while a preset is chosen switches the model to it; the address keeps it (compressed,
    never the raw text); opening that address in a fresh page brings back the same count and the same box."""
    name = "model_lora"
    open_page(wpage, site_url, "rank-trick/")
    assert widget(wpage, name).locator('select[name="model"]').input_value() == "llama-3.1-8b"
    before = stamp(wpage, name)
    drop(wpage, name, json.dumps(CONFIGS["gpt2"], indent=2))
    wait_updated(wpage, name, before)
    assert widget(wpage, name).locator('select[name="model"]').input_value() == "config"
    result = json.loads(shown(wpage, name, "json"))
    assert result == json.loads(cli(tmp_path, "params", CONFIGS["gpt2"], *PARAMS_FLAGS))
    query = parse_qs(urlsplit(wpage.url).query)
    assert "config" not in query and query["config_z"][0].startswith("1.")
    assert f"{len(query['config_z'][0]):,} characters" in shown(wpage, name, "config_link")

    fresh = fresh_page(wpage)
    open_page(fresh, wpage.url, "")
    fresh.wait_for_function("() => document.querySelector('#ml-config').value.includes('gpt2')")
    wait_updated(fresh, name, "")
    assert json.loads(shown(fresh, name, "json")) == result
    assert fresh.locator("#ml-model").input_value() == "config"
    assert json.loads(fresh.locator("#ml-config").input_value()) == CONFIGS["gpt2"]
    assert not fresh.errors and not wpage.errors


@pytest.mark.parametrize("text,words", [
    ("this is not json", "not valid JSON"), ("[1, 2, 3]", "JSON object"),
    (json.dumps({"model_type": "bert", "hidden_size": 768}), "bert"), (json.dumps(WRAPPER), "multimodal"),
])
def test_model_view_bad_dropped_file_gets_one_visible_line(wpage, site_url, text, words):
    name = "model_lora"
    open_page(wpage, site_url, "rank-trick/")
    total = shown(wpage, name, "total_params")
    drop(wpage, name, text)
    message = wait_error(wpage, name, "config", containing=words)
    assert "\n" not in message.strip()
    # seen even though a preset is still the chosen model, and the numbers stay those of that preset
    assert widget(wpage, name).locator('[data-error-for="config"]').is_visible()
    assert shown(wpage, name, "total_params") == total


@pytest.mark.parametrize("token,words", [
    ("1.eNoBAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "damaged"), ("1." + "A" * 7000, "at most"), ("zzz", "format"),
])
def test_damaged_link_token_gets_one_line(wpage, site_url, token, words):
    name = "model_lora"
    open_page(wpage, site_url, "rank-trick/", "?" + urlencode({"model": "config", "config_z": token}))
    message = wait_error(wpage, name, "config", containing=words)
    assert "\n" not in message.strip() and "Traceback" not in message and "internal" not in message
    assert not wpage.errors


def test_model_view_config_box_by_keyboard(wpage, site_url, tmp_path):
    """Tab reaches the config box and the file picker, each with a label; Space on the picker opens the file
    chooser, and the chosen file is counted."""
    name = "model_lora"
    # Playwright takes over the file chooser only once a listener exists; registered here, well before the key
    # press (inside expect_file_chooser alone, the press could race it and open the real, invisible dialog)
    wpage.on("filechooser", lambda chooser: None)
    open_page(wpage, site_url, "rank-trick/")
    w = widget(wpage, name)
    w.locator("#ml-model").focus()
    w.locator("#ml-model").select_option("config")       # what arrow keys on the focused select do
    wait_error(wpage, name, "config")
    order = []
    for _ in range(4):
        wpage.keyboard.press("Tab")
        order.append(wpage.evaluate("document.activeElement.id"))
    assert order == ["ml-rank", "ml-targets", "ml-adapt", "ml-config"]
    assert w.get_by_label("Your model's config.json", exact=False).evaluate("e => e.id") == "ml-config"
    wpage.keyboard.press("Tab")
    assert wpage.evaluate("document.activeElement.id") == "ml-config-file"
    assert w.get_by_label("Or choose the file").evaluate("e => e.id") == "ml-config-file"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIGS["gpt2"]))
    before = stamp(wpage, name)
    with wpage.expect_file_chooser() as chooser:
        wpage.keyboard.press("Space")
    chooser.value.set_files(str(path))
    wait_updated(wpage, name, before)
    assert json.loads(shown(wpage, name, "json")) == json.loads(cli(tmp_path, "params", CONFIGS["gpt2"], *PARAMS_FLAGS))


def settle(page) -> None:
    """Let transitions finish before axe reads colours: scrolling to the box makes Material fade in its "Back to
    top" button, and axe caught it half-faded (a contrast it never has at rest)."""
    page.evaluate("() => Promise.allSettled(document.getAnimations()"
                  ".filter(a => a instanceof CSSTransition).map(a => a.finished))")
    page.wait_for_timeout(300)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_with_the_config_box_open(browser, site_url, scheme):
    """The every-page axe test sees the config box closed (a preset is the default): here it is open and filled."""
    from axe_playwright_python.sync_playwright import Axe

    context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    report = {}
    for path, name in (("rank-trick/", "model_lora"), ("gpu-memory/", "memory_calculator")):
        open_page(page, site_url, path)
        set_field(page, name, "model", "config")
        wait_error(page, name, "config")            # the empty box's message is checked too
        settle(page)
        results = Axe().run(page)
        if results.violations_count:
            report[f"{path} empty"] = results.generate_report()
        paste(page, name, CONFIGS["qwen3_moe"])
        settle(page)
        results = Axe().run(page)
        if results.violations_count:
            report[f"{path} filled"] = results.generate_report()
    context.close()
    assert not report, "\n\n".join(f"{k}\n{v}" for k, v in report.items())
