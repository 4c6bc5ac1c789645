"""One 4-bit base, two adapters, requests routed by name and one mixed batch."""

from __future__ import annotations

import pytest
from lab_helpers import run_lab

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_adapter(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "qv-r8"
    run_lab("qlora_finetune.py", "--model", tiny_model, "--max-steps", 5, "--lr", "1e-2", "--targets", "q,v",
            "--rank", 8, "--output-dir", out)
    return out / "adapter"


def test_routed_and_mixed_batch_answers_agree(tiny_model, trained_adapter, small_adapter):
    proc = run_lab("serve_adapters.py", "--base", tiny_model, "--adapter", f"qv={small_adapter}",
                   "--adapter", f"all={trained_adapter / 'adapter'}", "--switch-repeats", 20)
    out = proc.stdout
    assert "NF4 4-bit" in out
    assert "mixed batch: 6 requests over 3 adapters in one generate call" in out
    assert "mixed-batch answers identical to the routed ones: 6/6" in out
    # q,v at rank 8 on 2 layers: q 8*(64+64) + v 8*(64+32) = 1,792 per layer, 3,584 in all, kept in fp32
    # (peft's default) = 14,336 bytes = 14.34 kB of extra memory on top of the shared base.
    qv_row = next(line for line in out.splitlines() if line.startswith("qv "))
    assert "14.34 kB" in qv_row


def test_unknown_adapter_name_in_a_request(tiny_model, small_adapter):
    proc = run_lab("serve_adapters.py", "--base", tiny_model, "--adapter", f"qv={small_adapter}",
                   "--request", "sql: count rows", check=False)
    assert proc.returncode == 2 and "known names: qv, base" in proc.stderr
