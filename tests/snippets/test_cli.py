"""The terminal contract: `python -m loracalc ...` as a subprocess, as other tools call it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args: str):
    return subprocess.run([sys.executable, "-m", "loracalc", *args], capture_output=True, text=True, timeout=60)


def test_params_json_contract():
    p = run("params", "--model", "llama-3.1-8b", "--rank", "16", "--targets", "all-linear", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["total_params"] == 8_030_261_248      # FACTS.md
    assert out["lora_params"] == 41_943_040           # FACTS.md
    assert isinstance(out["total_params"], int) and isinstance(out["lora_params"], int)


def test_params_table():
    p = run("params", "--model", "llama-2-7b", "--rank", "8", "--targets", "q,v")
    assert p.returncode == 0
    assert "4,194,304" in p.stdout                     # FACTS.md, r=8 on q,v


def test_params_from_config(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
           "tie_word_embeddings": True}                 # Llama-3.2-1B's published values
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    p = run("params", "--config", str(path), "--rank", "8", "--targets", "q,v", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["total_params"] == 1_235_814_400
    assert json.loads(p.stdout)["lora_params"] == 851_968


def test_models_json():
    p = run("models", "--json")
    names = [m["name"] for m in json.loads(p.stdout)["models"]]
    assert {"llama-2-7b", "llama-3.1-405b", "qwen2.5-72b", "gemma-2-9b", "mistral-7b"} <= set(names)


@pytest.mark.parametrize("args", [
    ["params", "--rank", "0"], ["params", "--rank", "nan"], ["params", "--rank", "2.5"],
    ["params", "--model", "nope"], ["params", "--targets", "x_proj"], ["params", "--params", "1e15"],
    ["params", "--config", "/nonexistent/config.json"], ["nope"], ["params", "--unknown-flag"],
])
def test_bad_input_is_one_line_and_status_2(args):
    p = run(*args)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loracalc: error:"), p.stderr
    assert "Traceback" not in p.stderr


def test_memory_json_contract():
    p = run("memory", "--model", "llama-3.1-70b", "--method", "qlora", "--rank", "16", "--targets", "all-linear",
            "--batch-size", "1", "--seq-len", "2048", "--gradient-checkpointing", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert isinstance(out["total_bytes"], int) and out["total_bytes"] == sum(out["breakdown"].values())
    assert all(isinstance(v, int) and v >= 0 for v in out["breakdown"].values())
    assert isinstance(out["fits"], list) and "h200" in out["fits"] and "rtx-4090" not in out["fits"]


def test_memory_table_and_gpu():
    p = run("memory", "--model", "llama-3.1-8b", "--gpu", "rtx-4090")
    assert p.returncode == 0, p.stderr
    assert "total" in p.stdout and "largest batch" in p.stdout


def test_gpus_json():
    out = json.loads(run("gpus", "--json").stdout)
    assert any(g["name"] == "h100-80gb" and g["memory_bytes"] == 81082 * 2**20 and g["memory_gb"] == 80
               for g in out["gpus"])   # usable bytes: PyTorch printouts of an H100 80GB say 81082-81090 MiB


@pytest.mark.parametrize("args", [
    ["memory", "--batch-size", "0"], ["memory", "--seq-len", "inf"], ["memory", "--method", "dora"],
    ["memory", "--gpu", "tpu"], ["memory", "--optimizer", "adam"], ["memory", "--batch-size", "-1"],
])
def test_memory_bad_input(args):
    p = run(*args)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_nf4_json():
    out = json.loads(run("nf4", "--json").stdout)
    assert len(out["code_book"]) == 16 and out["code_book"][0] == -1.0 and out["code_book"][-1] == 1.0
    assert out["bits_per_param"] == 4.5                                        # FACTS.md
    assert out["bits_per_param_double_quant"] == pytest.approx(4.127, abs=5e-4)  # FACTS.md


def test_broken_pipe_is_quiet():
    p = subprocess.run(f"{sys.executable} -m loracalc models --json | head -c 10", shell=True, capture_output=True,
                       text=True, timeout=60)
    assert "Traceback" not in p.stderr
