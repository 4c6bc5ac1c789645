"""Helpers for the lab tests: run a lab script in a fresh process exactly as a user would from the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "gpu_labs"

from gpu_labs import labkit  # noqa: E402  (the repository root is on the path: pyproject.toml)


def lab_env() -> dict:
    env = dict(os.environ)
    # No model hub, one thread per process: the machine is shared and small.
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1")
    return env


def run_lab(script: str, *args, timeout: float = 240, check: bool = True, env: dict | None = None):
    """Run `python gpu_labs/SCRIPT args...` from the repository root; return the CompletedProcess."""
    proc = subprocess.run([sys.executable, str(LABS / script), *map(str, args)], cwd=REPO, env=env or lab_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                             f"stderr:\n{proc.stderr[-4000:]}")
    return proc
