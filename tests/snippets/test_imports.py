"""The layout of snippets/: the engine never imports the course layer, and no import circles anywhere.

Read from the source with ``ast`` (every ``import`` statement, at module level or inside a function),
so a lazy import that closes a circle counts as much as a top-level one.
"""
from __future__ import annotations

import ast
from pathlib import Path

SNIPPETS = Path(__file__).resolve().parents[2] / "snippets"
ENGINE, COURSE = "loracalc", "lora_course"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SNIPPETS).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SNIPPETS.rglob("*.py") if "__pycache__" not in p.parts}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules under snippets/ that NAME imports. ``from pkg import x`` is an edge to ``pkg.x`` when that
    is a module, else to ``pkg``. A submodule's parent package is not an edge (Python runs it, but it is
    not what the code asked for, and it would make every package that lists its submodules a circle)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_the_layout_is_what_this_test_reads():
    mods = modules()
    assert {"loracalc", "loracalc.memory", "loracalc.models", "lora_course", "lora_course.figures",
            "lora_course.widgets", "lora_course.widgets.memory_calculator"} <= set(mods)
    # the course layer really uses the engine, and the walker sees it
    assert any(dep.startswith(ENGINE) for deps in graph().values() for dep in deps)


def test_the_engine_never_imports_the_course_layer():
    offenders = {m: sorted(d for d in deps if d.split(".")[0] == COURSE)
                 for m, deps in graph().items() if m.split(".")[0] == ENGINE}
    assert not {m: d for m, d in offenders.items() if d}


def test_the_engine_imports_only_the_standard_library():
    import sys

    for name, path in modules().items():
        if name.split(".")[0] not in (ENGINE, COURSE):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in sys.stdlib_module_names or root in (ENGINE, COURSE), f"{name} imports {root}"


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(g.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_circles_under_snippets():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_circle():
    g = graph()
    g["loracalc.gpus"] = g["loracalc.gpus"] | {"loracalc.memory"}   # what gpus.py once did
    assert find_cycle(g) is not None
    assert find_cycle({"a": {"b"}, "b": set()}) is None
