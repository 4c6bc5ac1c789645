"""The package runs unchanged in Pyodide (Python 3.14 in WebAssembly), the way the site loads it."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYODIDE = ROOT / "node_modules" / "pyodide"

SCRIPT = r"""
import { loadPyodide } from "%(pyodide)s/pyodide.mjs";
import fs from "node:fs";
import path from "node:path";
const py = await loadPyodide({ indexURL: "%(pyodide)s/" });
function copy(src, dst) {
  py.FS.mkdirTree(dst);
  for (const f of fs.readdirSync(src)) {
    const s = path.join(src, f), d = dst + "/" + f;
    if (fs.statSync(s).isDirectory()) { if (f !== "__pycache__") copy(s, d); }
    else py.FS.writeFile(d, fs.readFileSync(s));
  }
}
copy("%(pkg)s", "/lib/loracalc");
console.log(py.runPython(`
import sys, json
sys.path.insert(0, "/lib")
import loracalc
from loracalc import nf4, hub
c = loracalc.count_params("llama-3.1-8b", 16, "all-linear")
try:
    loracalc.estimate_memory("llama-3.1-8b", batch_size=0)
    err = None
except loracalc.LoraCalcError as e:
    err = e.field
json.dumps({"version": sys.version_info[:2], "total": c.total_params, "lora": c.lora_params,
            "nf4": nf4.code_book(), "bits": nf4.bits_per_param(), "err": err,
            "mem": loracalc.estimate_memory("llama-3.1-70b").total_bytes,
            "hub_url": hub.config_url("Qwen/Qwen3-8B@refs/pr/1")})
`));
"""


@pytest.mark.slow
def test_runs_in_pyodide(tmp_path):
    node = shutil.which("node")
    if not node or not (PYODIDE / "pyodide.mjs").exists():
        pytest.skip("node or node_modules/pyodide is not installed")
    script = tmp_path / "run.mjs"
    script.write_text(SCRIPT % {"pyodide": PYODIDE, "pkg": ROOT / "snippets" / "loracalc"})
    p = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["version"][0] == 3 and out["version"][1] >= 12
    assert out["total"] == 8_030_261_248 and out["lora"] == 41_943_040      # FACTS.md
    assert out["nf4"][1] == pytest.approx(-0.6961928, abs=1e-7)             # FACTS.md
    assert out["bits"] == 4 + 8 / 64 + 32 / (64 * 256)
    assert out["err"] == "batch_size"
    # the Hub module imports in Pyodide (its urllib request is never made there: the page uses fetch())
    assert out["hub_url"] == "https://huggingface.co/Qwen/Qwen3-8B/resolve/refs%2Fpr%2F1/config.json"   # hf_hub_url's
    import loracalc
    assert out["mem"] == loracalc.estimate_memory("llama-3.1-70b").total_bytes  # CPython and Pyodide agree
