"""Mutation testing of the numbers engine (a benchmark-style script, not a test): plant one small bug at
a time in ``snippets/loracalc/*.py`` and count how many the fast tests catch.

    /work/main/.venv/bin/python benchmarks/mutation.py --sample 200          # a stratified sample
    /work/main/.venv/bin/python benchmarks/mutation.py --list                # every mutant, nothing run
    /work/main/.venv/bin/python benchmarks/mutation.py --rerun benchmarks/mutation_report.json
                                                                             # only the last survivors
    options: --modules memory,nf4  --jobs 2  --timeout 120  --seed 0  --output FILE

How it works. The engine's modules are found on disk (every ``snippets/loracalc/*.py`` but the package's
``__init__`` and ``__main__``), parsed with ``ast`` and walked; each mutation point yields one mutant:

* constants: an int n becomes n+1 and n-1 (0 -> 1, 1 -> 0 and 2), a float x becomes x/2 (0.0 -> 1.0),
  True <-> False;
* arithmetic: + <-> -, * -> /, / -> *, // -> /, % -> //, ** -> *, << <-> >>, & <-> |;
  a term of a sum or difference dropped (``a + b`` -> ``a`` and -> ``b``); unary minus dropped;
* comparisons: < <-> <=, > <-> >=, == <-> !=, in <-> not in, is <-> is not;
* boolean: and <-> or, ``not x`` -> ``x``, a condition that is not a comparison negated (if, ternary);
* dropped statements: an augmented assignment (``x += term``) or a bare call (``add(...)``,
  ``notes.append(...)``) becomes ``pass``.

Docstrings, strings, f-strings, joined text (labels, formula text, URLs) and the arguments of ``raise`` (error messages)
are not mutated: the tests check messages by field, not by wording. A mutant is identified by its module,
enclosing function, the source it replaces and the replacement, never by a line number, so the list of
equivalent mutants below survives edits elsewhere in the engine.

Each mutant is written into a temporary copy of the tree (the real files are never touched), and the
fast tests that read the engine (tests/snippets, tests/widgets, tests/content; plain-pytest markers) run
there with ``-x -q -p no:cacheprovider`` and a per-mutant timeout, the module's own test files first,
then pure-Python ones, then those importing torch, so a caught mutant costs a few seconds. A mutant is killed when the run fails (a failing test, an import error, or the
timeout); it survives when every test passes. The score is killed / (run - equivalent), per module and
in total, written with the survivors to ``benchmarks/mutation_report.json``.

Equivalent mutants (no test can tell them apart from the engine, because the behaviour is the same) are
listed in ``EQUIVALENT`` with the reason; they are run anyway and reported apart, out of the score.
Survivors that do change behaviour but have no honest test here (see ``EXPLAINED``) stay in the score,
with their reason in the report.
"""
from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import copy
import datetime as dt
import hashlib
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "snippets" / "loracalc"
TEST_DIRS = ("tests/snippets", "tests/widgets", "tests/content")
DEFAULT_OUT = ROOT / "benchmarks" / "mutation_report.json"
# tiny_shapes.py is test data beside the specs (the tiny models the tests and scripts build), never read by the
# calculator: its numbers are checked by the slow tests that build those models, not by the fast set
SKIP_MODULES = {"__init__.py", "__main__.py", "tiny_shapes.py"}
# files whose tests import the heavy libraries (or start subprocesses) run after the pure-Python ones
HEAVY = re.compile(r"^\s*(import|from)\s+(torch|peft|transformers|bitsandbytes|hypothesis|subprocess)\b|"
                   r"importorskip\(|from \.hf import", re.M)
COPY_IGNORE = shutil.ignore_patterns(".git", "node_modules", "site", "site-offline", ".venv", "__pycache__",
                                     ".hypothesis", ".pytest_cache", "runs", "*.egg-info", "build")

# Mutants that behave exactly like the engine. Key: "module:function:original -> replacement", with "#k" for
# the k-th mutant that reads the same in that function (0 first); value: why no test can catch it.
_TYPE_ONLY = ("the import under TYPE_CHECKING (RunSettings) is for annotations only, which `from __future__ import "
              "annotations` never evaluates; importing run_settings at run time instead makes no import cycle (it "
              "imports neither module), so loading and every result are the same")
EQUIVALENT: dict[str, str] = {
    "cli.py:main:False -> True":
        "json.dumps(allow_nan=True) prints the same text: the engine's outputs are finite (inputs are validated; "
        "the property tests in tests/snippets/test_properties.py find no NaN), so nothing is ever written "
        "differently",
    "models.py:model_from_param_count:err / target -> (err * target)#0":
        "the first element of the score: every candidate then counts as 'not within 2%', but the second element "
        "still ranks those within 2% by their depth-for-width (a few units) ahead of the rest (their error, "
        "over 2% of at least 10M parameters), so the same shape wins",
    "models.py:model_from_param_count:h <= 3072 -> (h <= 3073)":
        "every candidate width is a multiple of 128, so no width lies between 3072 and 3073",
    "models.py:model_from_param_count:3072 -> 3073":
        "every candidate width is a multiple of 128, so no width lies between 3072 and 3073",
    "models.py:model_from_param_count:err / target > 0.02 -> (err / target >= 0.02)":
        "differs only when a candidate misses the target by exactly 2.000...% as a float, which no parameter "
        "count reaches (both sides of the tie would give a model within 2% anyway)",
    "dora.py:<module>:TYPE_CHECKING -> (not (TYPE_CHECKING))": _TYPE_ONLY,
    "bnb_kernels.py:<module>:TYPE_CHECKING -> (not (TYPE_CHECKING))": _TYPE_ONLY,
    "terms.py:MemoryEstimate:False -> True":
        "the default of MemoryEstimate.approximate: its one constructor (memory.py's estimate_memory) always passes "
        "approximate=arch.approximate, so the default is never used",
    "fit.py:_largest:1 -> 2#2":
        "the doubling search's first step: starting at 2 instead of 1 probes other batch sizes on the way, but "
        "the bisection that follows covers every value between the last fit and the first miss, so the answer "
        "is the same (memory grows with batch size and sequence length)",
}

# Survivors that change behaviour but that no honest test here can catch, with the reason (still counted as
# survivors in the score).
_BOUND = ("an input bound moved: tests/snippets/test_bounds.py reads each range from the error message and "
          "checks both edges, so a bound changed on purpose moves the test with it; the bound itself is a "
          "choice of the engine with no outside source to pin it to")
EXPLAINED: dict[str, str] = {
    "models.py:model_from_config:24 -> 23": _BOUND,
    "models.py:model_from_config:24 -> 25": _BOUND,
    "params.py:square_lora_params:20 -> 19": _BOUND,
    "params.py:square_lora_params:20 -> 21": _BOUND,
    "run_settings.py:read_settings:0.99 -> 0.495": _BOUND,
    "run_settings.py:read_settings:4096 -> 4097#1": _BOUND + " (loss_chunks at most 4096)",
    "run_settings.py:read_settings:4096 -> 4095#1": _BOUND + " (loss_chunks at most 4096)",
    "models.py:<module>:12 -> 11": _BOUND + " (MAX_PARAMS, 100T)",
    "models.py:<module>:12 -> 13": _BOUND + " (MAX_PARAMS, 100T)",
    "models.py:<module>:28 -> 29#0":
        "Llama-3.2-3B's layer count (28) typed one higher: no test here can see a preset's layer count without "
        "its published config.json or a parameter count to the unit (FACTS.md has those for five Llama presets, "
        "where the same mutant is caught); the shape checks catch its widths, heads and kv heads",
}


@dataclass
class Mutant:
    module: str          # file name, e.g. memory.py
    function: str        # enclosing def (dotted), or <module>
    kind: str            # constant, arithmetic, drop-term, comparison, boolean, negate, drop-statement
    line: int            # where it is today (for reading the report; not part of the identity)
    original: str
    replacement: str
    start: int           # byte offsets of the replaced source
    end: int
    occurrence: int = 0  # the same key more than once in one function

    @property
    def key(self) -> str:
        return f"{self.module}:{self.function}:{self.original} -> {self.replacement}"

    @property
    def id(self) -> str:
        return hashlib.sha1(f"{self.key}#{self.occurrence}".encode()).hexdigest()[:10]


# ------------------------------------------------------------------------------------ generation
_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
               ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.LShift: ast.RShift, ast.RShift: ast.LShift,
               ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd}
_CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
             ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


def _constant_variants(v):
    if isinstance(v, bool):
        return [not v]
    if isinstance(v, int):
        return {0: [1], 1: [0, 2]}.get(v, [v + 1, v - 1])
    if isinstance(v, float):
        return [1.0] if v == 0 else [v / 2]
    return []


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, source: bytes):
        self.module, self.source = module, source
        self.line_starts = [0]
        for line in source.splitlines(keepends=True):
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.stack: list[str] = []
        self.out: list[Mutant] = []

    # -- helpers
    def _span(self, node) -> tuple[int, int]:
        return (self.line_starts[node.lineno - 1] + node.col_offset,
                self.line_starts[node.end_lineno - 1] + node.end_col_offset)

    def _text(self, node) -> str:
        a, b = self._span(node)
        return " ".join(self.source[a:b].decode("utf-8").split())

    def _add(self, node, kind: str, replacement: str, whole=None):
        target = whole or node
        a, b = self._span(target)
        self.out.append(Mutant(self.module, ".".join(self.stack) or "<module>", kind, target.lineno,
                               self._text(target), replacement, a, b))

    @staticmethod
    def _expr(node) -> str:
        return "(" + ast.unparse(node) + ")"

    # -- scopes and what is never mutated
    def visit_FunctionDef(self, node):
        self.stack.append(node.name)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
            body = body[1:]                                   # the docstring
        for d in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(d)
        for stmt in body:
            self.visit(stmt)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.stack.append(node.name)
        for stmt in node.body:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue
            self.visit(stmt)
        self.stack.pop()

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant):
            return                                            # a docstring or a bare string
        if isinstance(node.value, ast.Call):
            self._add(node, "drop-statement", "pass")
        self.generic_visit(node)

    def visit_Raise(self, node):
        return                                                # error messages

    def visit_JoinedStr(self, node):
        return                                                # labels and formula text

    def visit_ImportFrom(self, node):
        return

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)                            # not the annotation

    def visit_arg(self, node):
        return

    def visit_Subscript(self, node):
        self.visit(node.value)
        if not isinstance(node.slice, ast.Constant) or not isinstance(node.slice.value, str):
            self.visit(node.slice)

    # -- mutation points
    def visit_Constant(self, node):
        for v in _constant_variants(node.value):
            self._add(node, "constant", repr(v))

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.Not):
            self._add(node, "boolean", self._expr(node.operand))
        elif isinstance(node.op, ast.USub) and not isinstance(node.operand, ast.Constant):
            self._add(node, "arithmetic", self._expr(node.operand))
        self.generic_visit(node)

    @staticmethod
    def _is_text(node) -> bool:
        return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))

    def visit_BinOp(self, node):
        if self._is_text(node.left) or self._is_text(node.right):
            self.generic_visit(node)                          # joining text (labels, URLs) is not arithmetic
            return
        swap = _BINOP_SWAP.get(type(node.op))
        if swap:
            self._add(node, "arithmetic", self._expr(ast.BinOp(node.left, swap(), node.right)))
        if isinstance(node.op, (ast.Add, ast.Sub)):
            self._add(node, "drop-term", self._expr(node.left))
            self._add(node, "drop-term", self._expr(node.right))
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._add(node, "drop-statement", "pass")
        swap = _BINOP_SWAP.get(type(node.op))
        if swap:
            new = ast.AugAssign(node.target, swap(), node.value)
            self._add(node, "arithmetic", ast.unparse(new))
        self.generic_visit(node)

    def visit_Compare(self, node):
        for k, op in enumerate(node.ops):
            swap = _CMP_SWAP.get(type(op))
            if swap:
                ops = list(node.ops)
                ops[k] = swap()
                self._add(node, "comparison", self._expr(ast.Compare(node.left, ops, node.comparators)))
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._add(node, "boolean", self._expr(ast.BoolOp(other, node.values)))
        self.generic_visit(node)

    def _negate_test(self, test):
        if not isinstance(test, (ast.Compare, ast.BoolOp)) and not (
                isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)):
            self._add(test, "negate", "(not " + self._expr(test) + ")")

    def visit_If(self, node):
        self._negate_test(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node):
        self._negate_test(node.test)
        self.generic_visit(node)


def engine_modules(names=None) -> list[Path]:
    mods = sorted(p for p in ENGINE.glob("*.py") if p.name not in SKIP_MODULES)
    if names:
        wanted = {n if n.endswith(".py") else n + ".py" for n in names}
        mods = [p for p in mods if p.name in wanted]
    return mods


def apply(source: bytes, m: Mutant) -> bytes:
    return source[:m.start] + m.replacement.encode() + source[m.end:]


def generate(path: Path) -> list[Mutant]:
    source = path.read_bytes()
    tree = ast.parse(source)
    col = _Collector(path.name, source)
    col.visit(tree)
    original = ast.dump(tree)
    out, seen = [], {}
    for m in col.out:
        try:
            mutated = ast.parse(apply(source, m))
        except SyntaxError:
            continue
        if ast.dump(mutated) == original:
            continue                                          # a no-op after parsing
        m.occurrence = seen.get(m.key, 0)
        seen[m.key] = m.occurrence + 1
        out.append(m)
    return out


def sample(mutants: list[Mutant], n: int | None, seed: int) -> list[Mutant]:
    """A sample stratified by module (each module in proportion, at least a few each)."""
    if not n or n >= len(mutants):
        return mutants
    rng = random.Random(seed)
    by_mod: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_mod.setdefault(m.module, []).append(m)
    picked = []
    for mod, ms in sorted(by_mod.items()):
        k = min(len(ms), max(5, round(n * len(ms) / len(mutants))))
        picked += rng.sample(ms, k)
    rng.shuffle(picked)                   # modules interleaved: a run stopped early still covers each of them
    return picked


# --------------------------------------------------------------------------------------- running
def ordered_tests(root: Path, module: str | None = None) -> list[str]:
    """The fast engine tests, the mutated module's own test files first (test_memory.py for memory.py), then
    the pure-Python files, then those that import torch and friends: a caught mutant stops early (-x)."""
    files = sorted(p for d in TEST_DIRS for p in (root / d).glob("test_*.py"))
    own = [p for p in files if module and Path(module).stem in p.stem]
    rest = [p for p in files if p not in own]
    light = [p for p in rest if not HEAVY.search(p.read_text(encoding="utf-8"))]
    heavy = [p for p in rest if p not in light]
    return [str(p.relative_to(root)) for p in own + light + heavy]


def pytest_cmd(tests: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0", *tests]


def run_tests(workdir: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """('passed' | 'failed' | 'timeout', seconds, the last lines of output)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(workdir / "snippets")}
    t0 = time.monotonic()
    proc = subprocess.Popen(pytest_cmd(tests), cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    RUNNING.add(proc.pid)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)                   # pytest and anything it started
        proc.communicate()
        return "timeout", time.monotonic() - t0, ""
    finally:
        RUNNING.discard(proc.pid)
    tail = "\n".join(out.strip().splitlines()[-3:])
    return ("passed" if proc.returncode == 0 else "failed"), time.monotonic() - t0, tail


RUNNING: set[int] = set()     # process groups of the test runs in flight, ended if this script is stopped
COPIES: list[Path] = []       # temporary trees, removed at the end or when stopped


def _stop_children(*_):
    for pid in list(RUNNING):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for tree in COPIES:
        shutil.rmtree(tree.parent, ignore_errors=True)
    raise SystemExit(130)


def make_copy() -> Path:
    dest = Path(tempfile.mkdtemp(prefix="loracalc-mutants-")) / "tree"
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE, symlinks=True)
    COPIES.append(dest)
    return dest


def failing_test(tail: str) -> str:
    hit = re.search(r"(FAILED|ERROR) (\S+)", tail)
    return hit.group(2) if hit else tail.splitlines()[-1] if tail else ""


def _write_progress(output: str, results: list[dict]) -> None:
    # results so far, one JSON line each, so a long run can be watched and is not lost if stopped
    with open(str(output) + ".partial", "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modules", type=lambda s: [x for x in s.split(",") if x], default=None,
                   help="engine modules to mutate (default: every snippets/loracalc/*.py)")
    p.add_argument("--sample", type=int, default=None, help="run a stratified sample of this many mutants")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--jobs", type=int, default=1, help="mutants run at once (the machine is shared: 1 or 2)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per mutant (default: 4x the unmutated run, at least 60)")
    p.add_argument("--rerun", default=None, help="a previous report: run only its survivors again")
    p.add_argument("--tests", type=lambda s: [x for x in s.split(",") if x], default=None,
                   help="with --rerun: only these test files (the ones added since; a mutant they kill is killed "
                        "by the whole set, and one they miss had already passed every other test)")
    p.add_argument("--list", action="store_true", help="print the mutants and exit")
    p.add_argument("--summarize", default=None,
                   help="write the report from a run's REPORT.partial (one result per line), e.g. after stopping it")
    p.add_argument("--output", default=str(DEFAULT_OUT), help="where the JSON report goes")
    args = p.parse_args(argv)

    mods = engine_modules(args.modules)
    everything = [m for path in mods for m in generate(path)]
    generated = {path.name: 0 for path in mods}
    for m in everything:
        generated[m.module] += 1
    carried = []
    if args.rerun:
        # the survivors run again; the previous run's killed mutants are carried over (adding tests cannot
        # revive them), so the report stays the whole sample
        prev = json.loads(Path(args.rerun).read_text())
        ids = {s["id"] for s in prev.get("survivors", [])} | {s["id"] for s in prev.get("equivalent", [])}
        chosen = [m for m in everything if m.id in ids]
        known = {m.id for m in everything}
        carried = [{**r, "status": "timeout" if r.get("timeout") else "killed", "carried_over": True}
                   for r in prev.get("killed", []) if r["id"] in known]
    else:
        chosen = sample(everything, args.sample, args.seed)
    if args.summarize:
        results = [json.loads(line) for line in Path(args.summarize).read_text().splitlines() if line.strip()]
        meta = {"seed": args.seed, "sample": args.sample, "command": " ".join(pytest_cmd(["<tests>"])[1:])}
        if Path(args.output).exists():        # the run's own facts, when the report being redone has them
            old = json.loads(Path(args.output).read_text())
            meta |= {k: old[k] for k in ("tests", "rerun_tests", "rerun_of", "timeout_s", "unmutated_run_s", "wall_s",
                                         "seed", "sample") if k in old}
        write_report(results, generated, len(everything), meta | {"summarized_from": args.summarize},
                     Path(args.output), everything)
        return 0
    if args.list:
        for m in chosen:
            print(f"{m.id} {m.module}:{m.line} {m.function} [{m.kind}] {m.original} -> {m.replacement}")
        print(f"{len(chosen)} of {len(everything)} mutants", file=sys.stderr)
        return 0

    signal.signal(signal.SIGTERM, _stop_children)
    signal.signal(signal.SIGINT, _stop_children)
    copies: queue.Queue[Path] = queue.Queue()
    for _ in range(max(1, args.jobs)):
        copies.put(make_copy())
    first = copies.get()
    tests = args.tests or ordered_tests(first)
    status, base_s, tail = run_tests(first, tests, timeout=1800)
    copies.put(first)
    if status != "passed":
        print(f"the unmutated tree fails its tests; fix that first:\n{tail}", file=sys.stderr)
        return 1
    timeout = args.timeout or max(60.0, 4 * base_s)
    print(f"unmutated run: {base_s:.1f} s; {len(chosen)} of {len(everything)} mutants, timeout {timeout:.0f} s",
          file=sys.stderr)

    def one(m: Mutant) -> dict:
        tree = copies.get()
        target = tree / "snippets" / "loracalc" / m.module
        original = target.read_bytes()
        try:
            target.write_bytes(apply(original, m))
            status, secs, tail = run_tests(tree, args.tests or ordered_tests(tree, m.module), timeout)
        finally:
            target.write_bytes(original)
            copies.put(tree)
        return {**{k: v for k, v in asdict(m).items() if k not in ("start", "end")}, "id": m.id,
                "key": m.key, "status": "survived" if status == "passed" else ("timeout" if status == "timeout"
                                                                               else "killed"),
                "seconds": round(secs, 1), "killed_by": "" if status == "passed" else failing_test(tail)}

    results, t0 = list(carried), time.monotonic()
    meta = {"tests": tests, "rerun_tests": args.tests, "command": " ".join(pytest_cmd(["<tests>"])[1:]), "seed": args.seed, "sample": args.sample,
            "rerun_of": args.rerun, "timeout_s": timeout, "unmutated_run_s": round(base_s, 1)}
    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for k, r in enumerate(pool.map(one, chosen), 1):
            results.append(r)
            _write_progress(args.output, results)
            print(f"[{k}/{len(chosen)}] {r['status']:8} {r['module']}:{r['line']} {r['original']} -> "
                  f"{r['replacement']}  ({r['seconds']} s)", file=sys.stderr, flush=True)
    while not copies.empty():
        shutil.rmtree(copies.get().parent, ignore_errors=True)

    write_report(results, generated, len(everything), meta | {"wall_s": round(time.monotonic() - t0, 1)},
                 Path(args.output), everything)
    return 0


def why_equivalent(r: dict) -> str | None:
    """EQUIVALENT's reason for a result: by "key#occurrence" (the k-th same-looking mutant in that function),
    else by the key alone."""
    return EQUIVALENT.get(f"{r['key']}#{r.get('occurrence', 0)}") or EQUIVALENT.get(r["key"])


def why_survived(r: dict) -> str | None:
    return EXPLAINED.get(f"{r['key']}#{r.get('occurrence', 0)}") or EXPLAINED.get(r["key"])


def write_report(results: list[dict], generated: dict, n_generated: int, meta: dict, out: Path,
                 mutants: list[Mutant] = ()) -> dict:
    """Score per module (killed / (killed + non-equivalent survivors)), survivors, equivalents, killed."""
    by_id = {m.id: m for m in mutants}
    for r in results:
        if "occurrence" not in r and r["id"] in by_id:
            r["occurrence"] = by_id[r["id"]].occurrence
    modules = {}
    for name in generated:
        rs = [r for r in results if r["module"] == name]
        eq = [r for r in rs if r["status"] == "survived" and why_equivalent(r)]
        killed = [r for r in rs if r["status"] in ("killed", "timeout")]
        live = [r for r in rs if r["status"] == "survived" and not why_equivalent(r)]
        scored = len(killed) + len(live)
        modules[name] = {"generated": generated[name], "run": len(rs), "killed": len(killed),
                         "timeout": sum(r["status"] == "timeout" for r in rs), "survived": len(live),
                         "equivalent": len(eq),
                         "score_percent": round(100 * len(killed) / scored, 1) if scored else None}
    tot_k = sum(m["killed"] for m in modules.values())
    tot_s = sum(m["survived"] for m in modules.values())
    report = {
        "generated_by": "benchmarks/mutation.py", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0], **meta,
        "total": {"generated": n_generated, "run": len(results), "killed": tot_k, "survived": tot_s,
                  "equivalent": sum(m["equivalent"] for m in modules.values()),
                  "score_percent": round(100 * tot_k / (tot_k + tot_s), 1) if tot_k + tot_s else None},
        "modules": modules,
        "survivors": [{**r, "why": why_survived(r) or "not yet explained"} for r in results
                      if r["status"] == "survived" and not why_equivalent(r)],
        "equivalent": [{**r, "why": why_equivalent(r)} for r in results
                       if r["status"] == "survived" and why_equivalent(r)],
        "killed": [{**{k: r[k] for k in ("id", "module", "function", "kind", "line", "key", "original", "replacement",
                                          "killed_by", "seconds")}, "timeout": r["status"] == "timeout"}
                   for r in results if r["status"] != "survived"],
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{'module':12} {'run':>5} {'killed':>7} {'survived':>9} {'equiv':>6} {'score':>7}")
    for name, s in modules.items():
        score = f"{s['score_percent']:.1f}%" if s["score_percent"] is not None else "-"
        print(f"{name:12} {s['run']:5} {s['killed']:7} {s['survived']:9} {s['equivalent']:6} {score:>7}")
    t = report["total"]
    print(f"{'total':12} {t['run']:5} {t['killed']:7} {t['survived']:9} {t['equivalent']:6} "
          f"{t['score_percent'] if t['score_percent'] is not None else '-'}%")
    for r in report["survivors"]:
        print(f"survived {r['id']} {r['module']}:{r['line']} {r['function']}: {r['original']} -> {r['replacement']}")
    print(f"report: {out}")
    return report


if __name__ == "__main__":
    sys.exit(main())
