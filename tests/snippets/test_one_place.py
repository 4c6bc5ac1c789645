"""A family is named in one place: its spec in ``loracalc/families.py`` (and its one line of tiny shape in
``loracalc/tiny_shapes.py``). Every other file reads the families from there instead of keeping its own list.
"""
from __future__ import annotations

import ast
from pathlib import Path

from loracalc.families import FAMILIES
from loracalc.tiny_shapes import TINY, tiny_config

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("tests", "scripts", "gpu_labs", "hooks", "snippets/lora_course")
# A test of one structure names its family, and a few such tests share a file; a file naming more distinct families
# than this keeps a list by hand.
MAX_NAMED = 4
# Files that may name more, each with the reason. Records and published configs are data about real checkpoints,
# not lists to keep in step.
ALLOWED = {
    "tests/snippets/test_new_families.py": "published config.json of one checkpoint per new family, with its source",
    "tests/snippets/test_family_defaults.py": "the config classes whose defaults are compared key by key (a sample "
                                              "chosen for their num_key_value_heads defaults)",
    "tests/snippets/test_nf4.py": "bitsandbytes' quantized tensors checked on a sample of structures (MoE, Conv1D, "
                                  "FalconLinear, MLA) at sizes bitsandbytes' CPU path takes",
    # the labs' own model set; another branch is rewriting these files (issue 25, the labs on the libraries)
    "gpu_labs/labmodels.py": "the labs' model set (being rewritten)",
    "gpu_labs/lab_outputs.py": "the labs' model set (being rewritten)",
    "tests/gpu_labs/test_families.py": "the labs' model set (being rewritten)",
}


def named_families(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and n.value in FAMILIES}


def hand_kept_lists(root: Path = ROOT, limit: int = MAX_NAMED) -> dict[str, list[str]]:
    out = {}
    for folder in SCANNED:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if "__pycache__" in path.parts or rel in ALLOWED:
                continue
            names = named_families(path)
            if len(names) > limit:
                out[rel] = sorted(names)
    return out


def test_no_file_outside_the_engine_lists_the_families_by_hand():
    found = hand_kept_lists()
    assert not found, ("these files name families by hand; read them from loracalc.families.FAMILIES (a field of "
                       "the spec) or loracalc.tiny_shapes.TINY instead:\n"
                       + "\n".join(f"{f}: {', '.join(v)}" for f, v in found.items()))


def test_the_scan_finds_a_planted_list(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "planted.py").write_text(f"FAMS = {sorted(FAMILIES)[:6]!r}\n")
    assert list(hand_kept_lists(tmp_path)) == ["tests/planted.py"]


def test_the_allow_list_names_real_files():
    assert all((ROOT / rel).is_file() for rel in ALLOWED)


def test_every_family_has_one_tiny_shape():
    missing = sorted(set(FAMILIES) - set(TINY))
    assert not missing, (f"no tiny shape for {', '.join(missing)}: add one line to TINY in "
                         "snippets/loracalc/tiny_shapes.py (the tests and scripts build its small model from it)")
    unknown = sorted(set(TINY) - set(FAMILIES))
    assert not unknown, f"tiny shapes for families with no spec: {', '.join(unknown)}"


def test_tiny_configs_are_read_by_the_engine():
    import loracalc
    for mt in TINY:
        assert loracalc.model_from_config(tiny_config(mt), name=mt).model_type == mt
