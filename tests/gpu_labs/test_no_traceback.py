"""No lab ever prints a traceback: known library limits are worked around or refused in one line, and any
other library error becomes one line plus the path of a full log (exit status 2)."""

from __future__ import annotations

import re
import sys

import pytest
from lab_helpers import lab_env, labkit, run_lab


def test_library_error_becomes_one_line_and_a_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPU_LABS_LOG_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["gpu_labs/some_lab.py", "--flag"])

    def main():
        import json
        return json.loads("{not json")  # any exception from a library, raised deep inside it

    with pytest.raises(SystemExit) as exit_info:
        labkit.run_cli(main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first, where = err.strip().splitlines()
    assert first.startswith("error: JSONDecodeError") and "Expecting property name" in first
    log = re.match(r"full log: (.*)$", where).group(1)
    text = open(log).read()
    assert "Traceback" in text and "command: gpu_labs/some_lab.py --flag" in text and "json.loads" in text


def test_lab_error_stays_one_line_without_a_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPU_LABS_LOG_DIR", str(tmp_path))

    def main():
        raise labkit.LabError("--rank 0: the rank must be a positive integer.")

    with pytest.raises(SystemExit) as exit_info:
        labkit.run_cli(main)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --rank 0: the rank must be a positive integer."
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_unknown_model_type_from_transformers_is_one_line(tmp_path):
    """transformers raises a ValueError for a config.json it cannot map to a model class: the lab prints
    its first line and where the full log is, never the traceback."""
    model = tmp_path / "odd-model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "no-such-architecture"}')
    env = {**lab_env(), "GPU_LABS_LOG_DIR": str(tmp_path / "logs")}
    proc = run_lab("qlora_finetune.py", "--model", model, "--max-steps", 1, "--output-dir", tmp_path / "run",
                   check=False, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no-such-architecture" in proc.stderr and "full log:" in proc.stderr
    logs = list((tmp_path / "logs").glob("qlora_finetune-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()


@pytest.fixture(scope="module")
def mlp_160_model(tmp_path_factory):
    """The issue's model: a tiny Llama whose MLP width 160 is not a multiple of NF4's block size 64."""
    return labkit.build_tiny_model(tmp_path_factory.mktemp("m160") / "tiny-llama-160", intermediate_size=160)


@pytest.mark.slow
def test_bitsandbytes_cpu_path_rejects_the_shape(mlp_160_model):
    """The limit itself, in bitsandbytes: on a CPU with AVX512-BF16, an eval-mode forward without gradients
    repacks each 4-bit weight (_convert_weight_packed_for_cpu) and down_proj (160 -> 64) cannot be."""
    import torch
    from bitsandbytes.functional import has_avx512bf16
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if torch.cuda.is_available() or not has_avx512bf16():
        pytest.skip("bitsandbytes takes its CPU repacking path only on CPUs with AVX512-BF16")
    torch.set_num_threads(1)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(mlp_160_model, quantization_config=bnb, dtype=torch.float32).eval()
    with torch.no_grad(), pytest.raises(RuntimeError, match=r"shape '\[64, 2\]' is invalid for input of size 160"):
        model(input_ids=torch.tensor([[1, 2, 3]]))


@pytest.mark.slow
def test_labs_keep_those_layers_16_bit_and_say_so(mlp_160_model, tmp_path):
    from gpu_labs import labmodels

    kept = labmodels.cpu_packing_problems(labmodels.meta_model(mlp_160_model))
    assert kept == [("model.layers.0.mlp.down_proj", 160, 64), ("model.layers.1.mlp.down_proj", 160, 64)]
    out = tmp_path / "run"
    proc = run_lab("qlora_finetune.py", "--model", mlp_160_model, "--max-steps", 2, "--batch-size", 2,
                   "--grad-accum", 1, "--eval-ratio", "0.1", "--eval-every", 1, "--output-dir", out)
    assert "kept 2 layer(s) in 16-bit instead of NF4" in proc.stdout and "160 -> 64" in proc.stdout
    served = run_lab("serve_adapters.py", "--base", mlp_160_model, "--adapter", f"a={out / 'adapter'}",
                     "--max-new-tokens", 2, "--switch-repeats", 2)
    assert "kept 2 layer(s)" in served.stdout and "Traceback" not in served.stderr


@pytest.mark.parametrize("script", ["qlora_finetune", "serve_adapters", "merge_export", "memory_probe", "trl_sft",
                                    "labkit", "lab_outputs", "toy_model"])
def test_every_lab_entry_point_goes_through_run_cli(script):
    """A lab that called main() directly would let a library's traceback through."""
    from lab_helpers import LABS

    source = (LABS / f"{script}.py").read_text()
    entry = source.split('if __name__ == "__main__":', 1)[1]
    assert "run_cli(" in entry and "main()" not in entry
