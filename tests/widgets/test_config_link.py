"""A reader's config.json in a shareable link: the token format, its round trip, and one line for a bad token.

The token is documented as "1." + base64url (no padding) of zlib-compressed compact JSON; these tests unpack it
with the standard library directly (not with the widget's own decoder) to hold the format to that description,
and check that a token opened from a link gives the same numbers as pasting the file.
"""
from __future__ import annotations

import base64
import json
import random
import re
import zlib
from pathlib import Path

import pytest

import loracalc
from lora_course.widgets import _common as c
from lora_course.widgets import call

ROOT = Path(__file__).resolve().parents[2]

# meta-llama/Llama-3.1-8B's config.json as published on the Hugging Face hub (its text, formatting included).
LLAMA_31_8B = """{
  "architectures": [
    "LlamaForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
}
"""
GPT2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024, "vocab_size": 50257}

URL_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def unpack(token: str) -> dict:
    """The documented format, read with the standard library alone."""
    assert token.startswith("1.")
    body = token[2:]
    return json.loads(zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))).decode("utf-8"))


def token_for(config_text: str, widget: str = "model_lora") -> str:
    out = call(widget, {"model": "config", "config": config_text})
    assert out["ok"], out
    return out["outputs"]["_url"]["config_z"]


@pytest.mark.parametrize("text", [LLAMA_31_8B, json.dumps(GPT2)])
def test_token_unpacks_to_the_pasted_config(text):
    token = token_for(text)
    assert URL_SAFE.match(token), token            # nothing a URL would have to escape
    assert unpack(token) == json.loads(text)
    assert c.config_from_token(token) == json.loads(text)


def test_llama_token_is_shorter_than_the_file():
    # The published file is about 900 characters; its link token must be shorter than the file itself.
    token = token_for(LLAMA_31_8B)
    assert len(token) < len(LLAMA_31_8B), (len(token), len(LLAMA_31_8B))


def test_same_config_formatted_differently_gives_the_same_token():
    data = json.loads(LLAMA_31_8B)
    assert token_for(json.dumps(data)) == token_for(json.dumps(data, indent=4)) == token_for(LLAMA_31_8B)


def test_both_widgets_write_and_read_the_same_token():
    assert token_for(LLAMA_31_8B, "memory_calculator") == token_for(LLAMA_31_8B, "model_lora")


@pytest.mark.parametrize("widget", ["model_lora", "memory_calculator"])
def test_opening_a_link_gives_what_pasting_gave(widget):
    pasted = call(widget, {"model": "config", "config": LLAMA_31_8B, "rank": "8"})
    token = pasted["outputs"]["_url"]["config_z"]
    opened = call(widget, {"model": "config", "config": "", "rank": "8", "config_z": token})
    assert opened["ok"], opened
    shown = opened["outputs"].pop("_set")
    # the link fills the config box (re-indented) and chooses "your config.json" as the model
    assert shown["model"] == "config" and json.loads(shown["config"]) == json.loads(LLAMA_31_8B)
    assert opened["outputs"] == pasted["outputs"]
    # and it is counted as the engine counts the published file: FACTS.md's 8,030,261,248 for Llama-3.1-8B
    if widget == "model_lora":
        assert opened["outputs"]["total_params"] == "8,030,261,248"


def test_a_preset_keeps_no_config_in_the_link():
    out = call("model_lora", {"model": "llama-3.1-8b", "config": LLAMA_31_8B})["outputs"]
    assert out["_url"] == {"config": "", "config_z": ""} and out["config_link"] == ""


def test_the_raw_config_text_never_goes_into_the_link():
    out = call("memory_calculator", {"model": "config", "config": LLAMA_31_8B})["outputs"]
    assert out["_url"]["config"] == ""          # "" = leave the config parameter out of the address
    assert out["_url"]["config_z"] and "compressed to" in out["config_link"]


def test_text_put_into_the_box_chooses_your_config():
    # A dropped or chosen file lands in the box while a preset may still be chosen: the box's text is what counts.
    out = call("model_lora", {"model": "llama-3.1-8b", "config": json.dumps(GPT2), "_changed": "config"})["outputs"]
    assert out["_set"] == {"model": "config"}
    assert out["model_name"] == "gpt2 from config.json"


def test_a_config_too_large_for_a_link_is_still_counted_and_said_so():
    rng = random.Random(0)
    noise = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12_000))  # incompressible
    out = call("model_lora", {"model": "config", "config": json.dumps({**GPT2, "notes": noise})})
    assert out["ok"], out
    assert out["outputs"]["_url"]["config_z"] == ""
    assert "too large for a link" in out["outputs"]["config_link"]
    assert out["outputs"]["total_params"] == "124,439,808"   # GPT-2 small: the count transformers reports


def _token(raw: bytes) -> str:
    return "1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


GOOD = None  # filled lazily: a real token to damage


def _good() -> str:
    global GOOD
    if GOOD is None:
        GOOD = token_for(LLAMA_31_8B)
    return GOOD


BAD_TOKENS = {
    "cut short": lambda: _good()[:-7],
    "one character changed": lambda: _good()[:40] + ("A" if _good()[40] != "A" else "B") + _good()[41:],
    "not base64": lambda: "1.eNo!!not*base64",
    "wrong length for base64": lambda: "1.eNoA" + "A" * 5,
    "no version": lambda: _good()[2:],
    "a later version": lambda: "2." + _good()[2:],
    "empty body": lambda: "1.",
    "too long for a link": lambda: "1." + "A" * c.MAX_TOKEN_CHARS,
    "unpacks past the limit": lambda: _token(zlib.compress(b" " * (c.MAX_CONFIG_CHARS + 10), 9)),
    "not JSON": lambda: _token(zlib.compress(b"hello")),
    "a JSON list": lambda: _token(zlib.compress(b"[1, 2, 3]")),
    "not UTF-8": lambda: _token(zlib.compress(b"\xff\xfe{}")),
    "data after the stream": lambda: _token(zlib.compress(b"{}") + b"junk"),
    "deeply nested": lambda: _token(zlib.compress(b"[" * 100_000)),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
@pytest.mark.parametrize("widget", ["model_lora", "memory_calculator"])
def test_a_bad_token_gives_one_line_under_the_config_field(widget, case):
    result = call(widget, {"model": "config", "config_z": BAD_TOKENS[case]()})
    assert result["ok"] is False
    assert result["field"] == "config", result
    message = result["message"]
    assert message and "\n" not in message and "Traceback" not in message and "internal error" not in message
    assert "config.json" in message and "again" in message      # says what it was and what to do


def test_a_bomb_is_not_unpacked_whole():
    # 20 MB of spaces packs into about 20 kB: too long for a link, so it is refused before unpacking.
    with pytest.raises(loracalc.LoraCalcError) as exc:
        c.config_from_token(_token(zlib.compress(b" " * 20_000_000, 9)))
    assert exc.value.field == "config" and "at most" in exc.value.message


@pytest.mark.parametrize("text,words", [
    ("", "Paste a model's config.json"), ("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('"a string"', "JSON object"),
    ('{"model_type": "made_up"}', "made_up"),
    ('{"model_type": "idefics2", "text_config": {"model_type": "mistral"}, "vision_config": {}}', "multimodal"),
    ("[" * 100_000, "not valid JSON"), ('{"notes": "' + "x" * c.MAX_CONFIG_CHARS + '"}', "characters"),
])
def test_a_bad_file_gets_the_engines_one_line(text, words):
    for widget in ("model_lora", "memory_calculator"):
        result = call(widget, {"model": "config", "config": text})
        assert result["ok"] is False and result["field"] == "config", result
        assert words in result["message"] and "\n" not in result["message"]
        # an empty box is an input not given yet: the page shows a prompt, not an error (issue 30)
        assert result.get("waiting", False) is (text == ""), result


def test_the_engine_refuses_a_wrapper_with_the_same_line_the_widget_shows():
    wrapper = {"model_type": "idefics2", "text_config": {"model_type": "mistral"}, "vision_config": {}}
    with pytest.raises(loracalc.LoraCalcError) as exc:
        loracalc.model_from_config(wrapper)
    assert call("model_lora", {"model": "config", "config": json.dumps(wrapper)})["message"] == exc.value.message


@pytest.mark.parametrize("page", ["rank-trick.html", "memory-calculator.html"])
def test_the_file_picker_reads_what_python_accepts(page):
    """The page reads at most data-max-bytes of a file (+1): the same limit Python applies to the text."""
    html = (ROOT / "snippets" / "widgets" / page).read_text()
    picker = re.search(r'<input id="(\w+-config-file)" type="file"[^>]*data-max-bytes="(\d+)"', html)
    assert picker and int(picker.group(2)) == c.MAX_CONFIG_CHARS
    assert f'<label for="{picker.group(1)}">' in html          # a visible label names the picker
    assert 'data-url-state="config_z"' in html                    # the token's parameter is restored from a link
