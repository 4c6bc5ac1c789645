"""Pasting a config.json of another family into the memory calculator, in Chromium: the page shows what the
terminal prints for the same file (`loracalc memory --config FILE --json`), and a wrapper config gets the
engine's one-line refusal under the config field."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .browser_support import open_page, set_field, stamp, wait_error, wait_updated, widget, wpage  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CONFIGS = {
    # Qwen3-30B-A3B's published config.json values (mixture of experts, peft maps the expert names)
    "qwen3_moe": {"model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144,
                  "moe_intermediate_size": 768, "num_hidden_layers": 48, "num_attention_heads": 32,
                  "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8,
                  "vocab_size": 151936, "tie_word_embeddings": False},
    # GPT-2 small's keys (Conv1D layers, learned positions, n_embd spelling)
    "gpt2": {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024,
             "vocab_size": 50257},
}


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_pasted_config_shows_the_terminal_json(wpage, site_url, tmp_path, family):
    name = "memory_calculator"
    open_page(wpage, site_url, "gpu-memory/")
    set_field(wpage, name, "model", "config")       # opens the config box (empty: the engine asks for a file)
    wait_error(wpage, name, "config")
    before = stamp(wpage, name)
    set_field(wpage, name, "config", json.dumps(CONFIGS[family]))   # now the pasted file counts
    wait_updated(wpage, name, before)
    shown = widget(wpage, name).locator('[data-output="json"]').text_content()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIGS[family]))
    cli = subprocess.run([sys.executable, "-m", "loracalc", "memory", "--config", str(path), "--method", "qlora",
                          "--rank", "16", "--targets", "all-linear", "--batch-size", "1", "--seq-len", "2048",
                          "--gradient-checkpointing", "--json"], capture_output=True, text=True, check=True).stdout
    mine, theirs = json.loads(shown), json.loads(cli)
    mine.pop("model"), theirs.pop("model")     # the page names a pasted file "pasted config", the CLI its path
    assert mine == theirs


def test_pasted_wrapper_config_is_refused_in_one_line(wpage, site_url):
    name = "memory_calculator"
    open_page(wpage, site_url, "gpu-memory/")
    set_field(wpage, name, "model", "config")       # the config box opens only when chosen
    wait_error(wpage, name, "config")
    set_field(wpage, name, "config", json.dumps({"model_type": "llava", "text_config": {"model_type": "llama"},
                                                 "vision_config": {}}))
    message = wait_error(wpage, name, "config", containing="multimodal")
    assert "multimodal" in message and "\n" not in message.strip()
