"""A model by its Hub id, in Chromium: the config box's "Load from the Hub" on the memory calculator and on the
rank-trick page's model view. Playwright stands in for huggingface.co (route interception of
https://huggingface.co/**): the file, a 401 (gated) and no answer at all (offline). Nothing is asked of the Hub
until the button is clicked; the loaded file gives what `loracalc memory --config FILE` prints for it.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .browser_support import open_page, set_field, stamp, wait_updated, widget, wpage  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

HUB = "https://huggingface.co/"
# Qwen3-8B's published config.json values, written by transformers' config class.
QWEN3_8B = dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=False)


def qwen3_config() -> dict:
    from transformers import Qwen3Config

    return json.loads(Qwen3Config(**QWEN3_8B).to_json_string())


class StandInHub:
    """Answers https://huggingface.co/** for one browser context, as the Hub does (CORS open to every origin)."""

    def __init__(self, page, files: dict[str, tuple[int, str]], offline: bool = False):
        self.seen: list[dict] = []
        self.files, self.offline = files, offline
        page.context.route(HUB + "**", self.answer)

    def answer(self, route):
        self.seen.append({"url": route.request.url, "headers": route.request.headers})
        if self.offline:
            route.abort("internetdisconnected")
            return
        status, body = self.files.get(route.request.url, (404, "Entry not found"))
        route.fulfill(status=status, body=body, headers={"Access-Control-Allow-Origin": "*",
                                                         "Content-Type": "application/json"})


def load(page, name: str, repo_id: str) -> None:
    box = widget(page, name).locator("[data-hub-into]")
    box.locator("input").fill(repo_id)
    box.locator("[data-hub-load]").click()


def note(page, name: str, containing: str) -> str:
    el = widget(page, name).locator("[data-hub-note]")
    page.wait_for_function("([el, part]) => el.textContent.includes(part)", arg=[el.element_handle(), containing],
                           timeout=15_000)
    return " ".join(el.text_content().split())


def test_memory_calculator_loads_a_model_by_its_id(wpage, site_url, tmp_path):
    cfg = qwen3_config()
    hub = StandInHub(wpage, {HUB + "Qwen/Qwen3-8B/resolve/main/config.json": (200, json.dumps(cfg))})
    name = "memory_calculator"
    open_page(wpage, site_url, "gpu-memory/")
    set_field(wpage, name, "model", "config")
    assert "the one request this site ever makes to another host" in note(wpage, name, "Only when you click")
    assert hub.seen == []                                      # nothing asked of the Hub before the click
    before = stamp(wpage, name)
    load(wpage, name, "Qwen/Qwen3-8B")
    wait_updated(wpage, name, before)
    note(wpage, name, "Loaded Qwen/Qwen3-8B's config.json from huggingface.co")
    # what the terminal prints for the downloaded file (the model named by its id, as from_pretrained names it)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**cfg, "_name_or_path": "Qwen/Qwen3-8B"}))
    flags = ["--method", "qlora", "--rank", "16", "--targets", "all-linear", "--batch-size", "1", "--seq-len", "2048",
             "--gradient-checkpointing", "--json"]
    want = subprocess.run([sys.executable, "-m", "loracalc", "memory", "--config", str(path), *flags],
                          capture_output=True, text=True, check=True).stdout
    shown = json.loads(widget(wpage, name).locator('[data-output="json"]').text_content())
    assert shown == json.loads(want) and shown["model"] == "Qwen/Qwen3-8B"
    assert [s["url"] for s in hub.seen] == [HUB + "Qwen/Qwen3-8B/resolve/main/config.json"]
    assert "cookie" not in hub.seen[0]["headers"] and "authorization" not in hub.seen[0]["headers"]
    assert not wpage.errors


def test_rank_trick_gated_offline_and_bad_id_say_one_line(wpage, site_url):
    hub = StandInHub(wpage, {HUB + "acme/gated/resolve/main/config.json": (401, '{"error": "restricted"}')})
    name = "model_lora"
    open_page(wpage, site_url, "rank-trick/")
    set_field(wpage, name, "model", "config")
    shown_before = widget(wpage, name).locator('[data-output="total_params"]').text_content()
    load(wpage, name, "acme/gated")
    gated = note(wpage, name, "gated model acme/gated")
    assert "paste it here" in gated and "\n" not in gated.strip()
    load(wpage, name, "not an id")
    assert "not a Hub model id" in note(wpage, name, "not a Hub model id")
    assert len(hub.seen) == 1                                  # a bad id is refused before any request
    hub.offline = True
    load(wpage, name, "acme/gated")
    assert "download config.json" in note(wpage, name, "could not reach huggingface.co")
    assert widget(wpage, name).locator('[data-output="total_params"]').text_content() == shown_before
    assert not wpage.errors
