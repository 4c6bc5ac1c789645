"""A model by its Hub id: `loracalc --config Qwen/Qwen3-8B` fetches config.json the way huggingface_hub would.

A local http.server stands in for the Hub (HF_ENDPOINT=http://127.0.0.1:PORT), answering as huggingface.co does:
the file, 404, 401/403 with the Hub's X-Error-Code header, a body that is not JSON, or no server at all.
The id rules and the URL are checked against huggingface_hub itself (validate_repo_id, hf_hub_url); the numbers
for a fetched config against transformers' model built from the same config on the meta device.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loracalc import LoraCalcError, hub
from loracalc.cli import main

# Qwen3-8B's published config.json values (huggingface.co/Qwen/Qwen3-8B), written by transformers' config class.
QWEN3_8B = dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=False)


def qwen3_config() -> dict:
    from transformers import Qwen3Config

    return json.loads(Qwen3Config(**QWEN3_8B).to_json_string())


class FakeHub:
    """routes: URL path -> (status, headers, body bytes); every request's path and Authorization are recorded."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.seen: list[tuple[str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = fake.routes.get(self.path, (404, {"X-Error-Code": "RepoNotFound"}, b"{}"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def fake_hub():
    h = FakeHub()
    yield h
    h.server.shutdown()
    h.server.server_close()


@pytest.fixture
def hub_env(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    fake_hub.seen.clear()
    return fake_hub


def cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------ the id and the URL, as huggingface_hub has them
GOOD = ["Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B", "a/b", "Foo-BAR_foo.bar123/x.y_z-1", "o/" + "n" * 96]
BAD = ["Qwen", "Qwen/Qwen3-8B/extra", "datasets/foo/bar", "foo/.repo", "foo/repo-", "foo/a--b", "foo/a..b",
       "foo/bar.git", "foo/" + "n" * 97, "foo/café", "foo/b r", "/foo", "foo/"]


@pytest.mark.parametrize("repo_id", GOOD + BAD)
def test_ids_are_judged_as_huggingface_hub_judges_them(repo_id):
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
        valid = "/" in repo_id          # loracalc asks for the owner too: a bare name is more likely a mistyped file
    except HFValidationError:
        valid = False
    if valid:
        assert hub.parse_id(repo_id) == (repo_id, "main") and hub.looks_like_id(repo_id)
    else:
        with pytest.raises(LoraCalcError) as err:
            hub.parse_id(repo_id)
        assert err.value.field == "config" and "\n" not in str(err.value)


@pytest.mark.parametrize("text, repo_id, revision", [
    ("Qwen/Qwen3-8B", "Qwen/Qwen3-8B", None), ("Qwen/Qwen3-8B@v1.0", "Qwen/Qwen3-8B", "v1.0"),
    ("Qwen/Qwen3-8B@refs/pr/12", "Qwen/Qwen3-8B", "refs/pr/12"),
    ("https://huggingface.co/Qwen/Qwen3-8B", "Qwen/Qwen3-8B", None)])
def test_url_is_hf_hub_urls(text, repo_id, revision, monkeypatch):
    from huggingface_hub import hf_hub_url

    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert hub.config_url(text) == hf_hub_url(repo_id, "config.json", revision=revision)


def test_a_json_path_is_a_file_not_an_id():
    assert not hub.looks_like_id("configs/llama.json") and not hub.looks_like_id("./a/b")


# ------------------------------------------------------------------ the terminal, against a stand-in Hub
def test_fetched_config_counts_as_transformers_does(hub_env, capsys, tmp_path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = qwen3_config()
    hub_env.routes["/Qwen/Qwen3-8B/resolve/main/config.json"] = (200, {}, json.dumps(cfg).encode())
    rc, out, err = cli(capsys, "params", "--config", "Qwen/Qwen3-8B", "--json")
    assert rc == 0, err
    fetched = json.loads(out)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg))
    assert fetched["total_params"] == sum(p.numel() for p in model.parameters())
    # the same numbers as the downloaded file gives, and the model is named by its id (as from_pretrained names it)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    rc, out, _ = cli(capsys, "params", "--config", str(path), "--json")
    assert rc == 0 and json.loads(out)["total_params"] == fetched["total_params"]
    rc, out, _ = cli(capsys, "params", "--model", "Qwen/Qwen3-8B")
    assert rc == 0 and out.startswith("Qwen/Qwen3-8B")
    assert hub_env.seen[0] == ("/Qwen/Qwen3-8B/resolve/main/config.json", None)


def test_revision_and_token(hub_env, capsys, monkeypatch):
    cfg = qwen3_config()
    hub_env.routes["/Qwen/Qwen3-8B/resolve/refs%2Fpr%2F3/config.json"] = (200, {}, json.dumps(cfg).encode())
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_old")
    monkeypatch.setenv("HF_TOKEN", "hf_new")                 # HF_TOKEN first, as huggingface_hub reads them
    rc, _, err = cli(capsys, "memory", "--config", "Qwen/Qwen3-8B@refs/pr/3", "--json")
    assert rc == 0, err
    assert hub_env.seen == [("/Qwen/Qwen3-8B/resolve/refs%2Fpr%2F3/config.json", "Bearer hf_new")]
    hub_env.routes["/acme/gated/resolve/main/config.json"] = (403, {"X-Error-Code": "GatedRepo"}, b"")
    rc, _, err = cli(capsys, "params", "--config", "acme/gated")
    assert rc == 2 and "gated model acme/gated" in err and "HF_TOKEN is set" in err and "hf_new" not in err


@pytest.mark.parametrize("status, headers, body, says", [
    (404, {}, b"Entry not found", "no such model or no config.json"),
    (404, {"X-Error-Code": "EntryNotFound"}, b"", "no such model or no config.json"),
    (401, {}, b"", "gated model acme/secret"),
    (401, {"X-Error-Code": "RepoNotFound"}, b"", "no model acme/secret on the Hub"),
    (403, {"X-Error-Code": "GatedRepo"}, b"", "gated model acme/secret: accept its licence on the Hub, set HF_TOKEN"),
    (200, {}, b"<html>not json</html>", "acme/secret's config.json from the Hub is not valid JSON"),
    (200, {}, b"[1, 2]", "not a JSON object"),
    (500, {}, b"", "answered HTTP 500"),
])
def test_a_failed_answer_is_one_line(hub_env, capsys, status, headers, body, says):
    hub_env.routes["/acme/secret/resolve/main/config.json"] = (status, headers, body)
    rc, out, err = cli(capsys, "params", "--config", "acme/secret")
    assert rc == 2 and not out
    assert err.count("\n") == 1 and says in err and "Traceback" not in err
    if status in (401, 403):
        assert "HF_TOKEN" in err and "config.json" in err


def test_unreachable_hub_is_one_line(monkeypatch, capsys):
    with socket.socket() as s:                               # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    rc, _, err = cli(capsys, "serve", "--model", "Qwen/Qwen3-8B")
    assert rc == 2 and err.count("\n") == 1
    assert f"could not reach 127.0.0.1:{port}" in err and "download config.json and pass its path" in err
    assert err.startswith("loracalc: error: model: ")        # named after the option it came from


def test_bad_id_is_refused_before_any_request(hub_env, capsys):
    rc, _, err = cli(capsys, "params", "--config", "acme/bad--name")
    assert rc == 2 and "not a Hub model id" in err and err.count("\n") == 1
    rc, _, err = cli(capsys, "params", "--config", "acme/name@../x")
    assert rc == 2 and "is not a revision" in err
    rc, _, err = cli(capsys, "params", "--config", "no/such.json")   # a missing file stays a missing file
    assert rc == 2 and "cannot read no/such.json" in err
    assert hub_env.seen == []


def test_an_existing_file_wins_over_the_hub(hub_env, capsys, tmp_path, monkeypatch):
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "local").write_text(json.dumps(qwen3_config()))
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(capsys, "params", "--config", "acme/local", "--json")
    assert rc == 0, err
    assert hub_env.seen == []


def test_subprocess_prints_one_line(fake_hub):
    """As a terminal sees it: HF_ENDPOINT from the environment, status 2, one line on stderr."""
    fake_hub.routes["/acme/gated/resolve/main/config.json"] = (401, {"X-Error-Code": "GatedRepo"}, b"")
    env = {**__import__("os").environ, "HF_ENDPOINT": fake_hub.url}
    env.pop("HF_TOKEN", None)
    env.pop("HUGGING_FACE_HUB_TOKEN", None)
    p = subprocess.run([sys.executable, "-m", "loracalc", "params", "--config", "acme/gated"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == ("loracalc: error: config: gated model acme/gated: accept its licence on the Hub, set HF_TOKEN, "
                        "or pass the downloaded config.json\n")


def test_the_page_asks_the_same_engine(monkeypatch):
    """The calculators' "Load from the Hub" box: the same id rules, URL and one-line answers, worded for a page."""
    from huggingface_hub import hf_hub_url
    from lora_course.widgets import call

    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    asked = call("hub_config", {"repo_id": "Qwen/Qwen3-8B@v2"})
    assert asked["ok"] and asked["outputs"]["url"] == hf_hub_url("Qwen/Qwen3-8B", "config.json", revision="v2")
    assert call("hub_config", {"repo_id": "a/b--c"})["field"] == "repo_id"
    gated = call("hub_config", {"repo_id": "acme/gated", "status": "401"})
    assert not gated["ok"] and gated["message"].startswith("gated model acme/gated") and "paste it here" in gated["message"]
    offline = call("hub_config", {"repo_id": "acme/x", "status": "0", "reason": "Failed to fetch"})
    assert offline["message"].startswith("could not reach huggingface.co: Failed to fetch")
    assert "not valid JSON" in call("hub_config", {"repo_id": "acme/x", "status": "200", "body": "<html>"})["message"]
    loaded = call("hub_config", {"repo_id": "acme/x", "status": "200", "body": json.dumps(qwen3_config())})
    assert json.loads(loaded["outputs"]["config"]) == {**qwen3_config(), "_name_or_path": "acme/x"}
