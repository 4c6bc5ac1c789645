"""Fixtures for the lab tests: a tiny Llama-shaped model built offline and one shared QLoRA run."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_helpers import labkit, run_lab


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight Llama-shaped model and a BPE tokenizer trained on the shipped dataset, saved
    with save_pretrained so the labs load it through from_pretrained like a Hub model."""
    import torch

    torch.set_num_threads(1)
    return labkit.build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def trained_adapter(tiny_model, tmp_path_factory) -> Path:
    """One QLoRA run on the shipped dataset, shared by the tests that only read its results."""
    out = tmp_path_factory.mktemp("runs") / "qlora"
    run_lab("qlora_finetune.py", "--model", tiny_model, "--max-steps", 30, "--lr", "1e-2", "--seed", 1,
            "--output-dir", out)
    return out


@pytest.fixture(scope="session")
def toy_lm() -> Path:
    """The labs' default CPU model: the evidence experiment's pretrained toy-world model (gpu_labs/toy_model.py),
    built once into the project's .cache/ (reused by later sessions while its recipe is unchanged)."""
    from gpu_labs import toy_model

    return toy_model.build(toy_model.DEFAULT_DIR)


@pytest.fixture(scope="session")
def toy_qlora_run(toy_lm, tmp_path_factory) -> Path:
    """One short QLoRA run of the lab on the toy model and its task, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("runs") / "toy-qlora"
    proc = run_lab("qlora_finetune.py", "--model", toy_lm, *TOY_RUN, "--output-dir", out)
    (out / "stdout.txt").write_text(proc.stdout)
    return out


# The page's command, shortened (60 steps instead of 200) to keep the slow suite's time in check.
TOY_RUN = ("--max-steps", 60, "--batch-size", 16, "--grad-accum", 1, "--lr", "5e-3", "--eval-ratio", "0.1",
           "--eval-every", 20, "--seq-len", 32)
