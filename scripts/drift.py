"""What moves if we take the newest releases: the engine's checks run against them, reported, never failing.

    python3 scripts/drift.py                 # newest releases of every library the numbers depend on
    python3 scripts/drift.py --only transformers,peft
    python3 scripts/drift.py --keep-venv     # reuse .cache/drift/venv on the next run

Every number on the site is a claim about the versions in requirements/lock.txt. This builds a throw-away
virtual environment (.cache/drift/venv) with the newest release of each library the numbers depend on
(torch as a CPU build where one is reachable, else the locked torch, said so), then runs there the checks that
compare the engine with those libraries:

- parameter and LoRA counts of every family's config variants on the meta device, and of every preset, against
  transformers and peft (tests/snippets/test_families.py, test_presets.py, test_family_defaults.py);
- the activation estimate against the bytes autograd saves, per family, method and checkpointing
  (scripts/family_activation_check.py, compared row by row with the recorded run);
- bitsandbytes' NF4 code book and stored bytes, and what autograd keeps per op (test_nf4.py, test_storage.py,
  test_saved_tensors.py).

It prints a Markdown report (also written to .cache/drift/report.md): the versions that differ from the lock,
each check's result, every activation row whose error moved by more than 1 point, and the first lines of each
failure. It exits 0 whatever moved (``--strict``: 1 when something did), so a scheduled CI job can run it
weekly and keep the report. Taking a new release is then a decision: ``scripts/lock --upgrade-package NAME``,
fix what the report shows, re-record, commit.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "snippets"))
from lora_course.versions import locked_versions  # noqa: E402  (stdlib only)

WORK = os.path.join(ROOT, ".cache", "drift")
LOCK = os.path.join(ROOT, "requirements", "lock.txt")
RECORD = os.path.join(ROOT, "snippets", "lora_course", "data", "family_activation_check.json")
# the libraries whose behaviour the numbers describe
LIBRARIES = ("transformers", "peft", "bitsandbytes", "accelerate", "trl", "torch")
CHECKS = {
    "counts on the meta device (families, presets, config defaults)":
        ["tests/snippets/test_families.py", "tests/snippets/test_presets.py", "tests/snippets/test_family_defaults.py"],
    "activations against autograd (per family, measured again)": ["tests/snippets/test_family_activations.py"],
    "bitsandbytes storage and saved tensors":
        ["tests/snippets/test_nf4.py", "tests/snippets/test_storage.py", "tests/snippets/test_saved_tensors.py"],
}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def newest(name: str, python: str) -> str | None:
    """The newest release on the configured indexes (pip's own look-up; None when it cannot say)."""
    out = run([python, "-m", "pip", "index", "versions", name, "--disable-pip-version-check"])
    m = re.search(rf"^{re.escape(name)} \(([^)]+)\)", out.stdout, re.M | re.I)
    return m.group(1) if m else None


def build_venv(venv: str, wanted: dict[str, str], keep: bool) -> tuple[str, list[str]]:
    """A venv with the project's labs and test extras and the wanted versions; returns (python, notes)."""
    notes, py = [], os.path.join(venv, "bin", "python")
    if not (keep and os.path.exists(py)):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    torch = wanted.pop("torch", None)
    if torch:
        # the CPU build of the newest torch, from the configured indexes or PyTorch's CPU index; else the lock's
        got = run(pip + [f"torch=={torch}+cpu"]).returncode == 0 or run(
            pip + [f"torch=={torch}+cpu", "--timeout", "20", "--retries", "0",
                   "--index-url", "https://download.pytorch.org/whl/cpu",
                   "--extra-index-url", "https://pypi.org/simple"]).returncode == 0
        if not got:
            locked = locked_versions()["torch"]
            notes.append(f"torch {torch} has no CPU build reachable from here: the checks ran on the locked "
                         f"torch {locked}")
            run(pip + [f"torch=={locked}+cpu"])
    res = run(pip + ["-e", f"{ROOT}[labs,test]"] + [f"{n}=={v}" for n, v in wanted.items()])
    if res.returncode:
        raise SystemExit(f"drift: could not install the newest releases:\n{res.stderr[-2000:]}")
    return py, notes


def installed(py: str) -> dict[str, str]:
    out = run([py, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"]).stdout
    return {re.sub(r"[._-]+", "-", d["name"]).lower(): d["version"] for d in json.loads(out)}


def pytest_checks(py: str, env: dict) -> list[tuple[str, int, int, list[str]]]:
    results = []
    for title, files in CHECKS.items():
        xml = os.path.join(WORK, "junit.xml")
        run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow",
             f"--junitxml={xml}", *files], cwd=ROOT, env=env)
        passed = failed = 0
        failures = []
        if os.path.exists(xml):
            for case in ET.parse(xml).getroot().iter("testcase"):
                bad = case.find("failure") if case.find("failure") is not None else case.find("error")
                if bad is not None:
                    failed += 1
                    msg = (bad.get("message") or "").splitlines()[0][:160] if bad.get("message") else ""
                    failures.append(f"`{case.get('name')}`: {msg}")
                elif case.find("skipped") is None:
                    passed += 1
        results.append((title, passed, failed, failures))
    return results


def activation_rows(py: str, env: dict) -> tuple[list[str], int]:
    """Rows whose estimate-vs-measurement error moved by more than one point, and how many rows ran."""
    out = os.path.join(WORK, "family_activation_check.json")
    run([py, os.path.join(ROOT, "scripts", "family_activation_check.py"), "--out", out], cwd=ROOT, env=env)
    if not os.path.exists(out):
        return ["the activation check did not run"], 0
    with open(RECORD, encoding="utf-8") as f:
        old = {(r["model_type"], r["method"], r["gradient_checkpointing"]): r for r in json.load(f)["rows"]}
    with open(out, encoding="utf-8") as f:
        new = json.load(f)["rows"]
    moved = []
    for r in new:
        key = (r["model_type"], r["method"], r["gradient_checkpointing"])
        before = old.get(key, {}).get("error_percent")
        after = r.get("error_percent")
        if after is None or before is None or abs(after - before) > 1.0:
            moved.append(f"| {key[0]} | {key[1]} | {'on' if key[2] else 'off'} | "
                         f"{'—' if before is None else f'{before:+.1f}%'} | "
                         f"{r.get('error', '')[:60] if after is None else f'{after:+.1f}%'} |")
    return moved, len(new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated libraries to move (default: all of "
                    + ", ".join(LIBRARIES) + ")")
    ap.add_argument("--keep-venv", action="store_true", help="reuse .cache/drift/venv if it exists")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any check moved")
    args = ap.parse_args()
    libs = [x for x in args.only.split(",") if x] or list(LIBRARIES)
    unknown = sorted(set(libs) - set(LIBRARIES))
    if unknown:
        ap.error(f"--only: not one of {', '.join(LIBRARIES)}: {', '.join(unknown)}")
    os.makedirs(WORK, exist_ok=True)
    t0 = time.time()
    lock = locked_versions(LOCK)
    wanted = {n: v for n in libs if (v := newest(n, sys.executable))}
    py, notes = build_venv(os.path.join(WORK, "venv"), dict(wanted), args.keep_venv)
    now = installed(py)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=os.path.join(ROOT, "snippets"), TRANSFORMERS_VERBOSITY="error")
    checks = pytest_checks(py, env)
    moved, n_rows = activation_rows(py, env)

    lines = [f"# Drift report, {time.strftime('%Y-%m-%d', time.gmtime())}", "",
             "Newest releases against the lock (`requirements/lock.txt`):", "",
             "| library | locked | newest | installed for the checks |", "|---|---|---|---|"]
    for n in LIBRARIES:
        lines.append(f"| {n} | {lock.get(n, '—')} | {wanted.get(n, '—')} | {now.get(n, '—')} |")
    others = sorted(n for n in now if n in lock and now[n].split("+")[0] != lock[n].split("+")[0]
                    and n not in LIBRARIES)
    if others:
        lines += ["", "Also moved with them: " + ", ".join(f"{n} {lock[n]} → {now[n]}" for n in others) + "."]
    lines += [f"- {x}" for x in notes]
    lines += ["", "| check | passed | failed |", "|---|--:|--:|"]
    lines += [f"| {t} | {p} | {f} |" for t, p, f, _ in checks]
    lines += ["", f"Activation estimate vs autograd, rows whose error moved by more than 1 point "
              f"({len(moved)} of {n_rows}):", ""]
    if moved:
        lines += ["| model_type | method | checkpointing | recorded | newest |", "|---|---|---|--:|--:|", *moved]
    else:
        lines.append("none.")
    fails = [x for _, _, _, fl in checks for x in fl]
    if fails:
        lines += ["", "Failures (first 40):", ""] + [f"- {x}" for x in fails[:40]]
    lines += ["", f"({time.time() - t0:.0f} s)"]
    report = "\n".join(lines)
    with open(os.path.join(WORK, "report.md"), "w", encoding="utf-8") as f:
        f.write(report + "\n")
    print(report)
    return 1 if args.strict and (fails or moved) else 0


if __name__ == "__main__":
    sys.exit(main())
