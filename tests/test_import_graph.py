"""No import circle among the project's modules: snippets/ (the engine and the course layer), gpu_labs/, hooks/
and scripts/.

Module-level imports only, read with ``ast`` (statements at the top of a module, inside ``if`` / ``try`` blocks
too, never inside a function): those run when the module is imported, so a circle among them is one Python
may trip over depending on which module comes first. ``tests/snippets/test_imports.py`` is stricter inside
snippets/ (it counts imports inside functions as well).

Names: a package under snippets/ by its dotted name (``loracalc.memory``); a file in gpu_labs/, hooks/ or
scripts/ by its folder and stem (``gpu_labs.labkit``) and, because the labs and scripts put their own folder on
``sys.path``, by its bare stem too (``import labkit``).
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.snippets.test_imports import find_cycle   # the one cycle finder (tests/snippets/test_imports.py)

ROOT = Path(__file__).resolve().parents[1]
FLAT = ("gpu_labs", "hooks", "scripts")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every module of the four folders."""
    out: dict[str, Path] = {}
    for path in (root / "snippets").rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(root / "snippets").with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for folder in FLAT:
        for path in (root / folder).glob("*.py"):
            out[f"{folder}.{path.stem}"] = path
    return out


def _aliases(mods: dict[str, Path]) -> dict[str, str]:
    """Every name a module can be imported by -> its canonical name."""
    names = {m: m for m in mods}
    for m in mods:
        folder, _, stem = m.partition(".")
        if folder in FLAT and stem not in names:
            names[stem] = m
    return names


def _top_level(tree: ast.Module):
    """Import statements that run on import: the module's body, into if/try/with blocks, not into def/class."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    stack.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = modules(root)
    names = _aliases(mods)
    out: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _top_level(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in names else mod for a in node.names]
            for t in targets:
                # `import a.b.c` runs a, a.b and a.b.c: the deepest known one is what the code asked for
                while t and t not in names:
                    t = t.rpartition(".")[0]
                if t and names[t] != name:
                    out[name].add(names[t])
    return out


def test_no_import_circle_among_the_projects_modules():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_graph_sees_every_folder_and_their_edges():
    g = graph()
    assert {"loracalc.memory", "lora_course.widgets", "gpu_labs.labkit", "hooks.widgets",
            "scripts.family_activation_check"} <= set(g)
    assert "loracalc.choices" in g["hooks.widgets"]                 # a hook reads the engine
    assert "loracalc.tiny_shapes" in g["scripts.family_activation_check"]
    assert any(d.startswith("gpu_labs.") for m, deps in g.items() if m.startswith("gpu_labs.") for d in deps)


def test_a_planted_circle_is_found(tmp_path):
    for folder in ("snippets/pkg", "gpu_labs", "hooks", "scripts"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "snippets/pkg/__init__.py").write_text("")
    (tmp_path / "snippets/pkg/a.py").write_text("from . import b\n")
    (tmp_path / "snippets/pkg/b.py").write_text("def f():\n    from . import a\n")   # inside a function: no edge
    (tmp_path / "gpu_labs/lab_one.py").write_text("import lab_two\n")
    (tmp_path / "gpu_labs/lab_two.py").write_text("try:\n    from gpu_labs import lab_one\nexcept ImportError:\n"
                                                  "    pass\n")
    g = graph(tmp_path)
    assert g["pkg.a"] == {"pkg.b"} and g["pkg.b"] == set()
    assert find_cycle(g) == ["gpu_labs.lab_one", "gpu_labs.lab_two", "gpu_labs.lab_one"]
