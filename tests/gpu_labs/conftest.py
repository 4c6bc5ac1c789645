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
