"""The lab notebooks (docs/labs/notebooks): clean files with saved outputs from one real top-to-bottom run
(fast checks), and a fresh run on CPU that must reproduce every ``check`` cell's saved output (slow)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import run_notebooks  # noqa: E402

NOTEBOOKS = run_notebooks.notebooks()
MACHINE_PATHS = re.compile(r"(/root/|/home/|/work/|/tmp/|/Users/|[A-Z]:\\\\)")
MAX_FILE_BYTES = 200_000
MAX_OUTPUT_BYTES = 60_000


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"qlora-walkthrough.ipynb", "where-the-memory-goes.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_outputs_come_from_one_top_to_bottom_run(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    assert all(c["outputs"] for c in code), "a code cell without output: run scripts/run_notebooks.py"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_small_and_carries_no_machine_details(path):
    text = path.read_text()
    nb = json.loads(text)
    assert len(text.encode()) < MAX_FILE_BYTES
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}
    for cell in nb["cells"]:
        assert set(cell.get("metadata", {})) <= {"tags"}
        for output in cell.get("outputs", []):
            assert len(json.dumps(output)) < MAX_OUTPUT_BYTES
            assert "metadata" not in output or output["output_type"] != "stream"
    assert not MACHINE_PATHS.search(text), MACHINE_PATHS.search(text).group(0)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_is_short_and_explained(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert len("".join(cell["source"]).splitlines()) <= 25, f"cell {i} is long"
            before = nb["cells"][i - 1]
            first = "".join(cell["source"]).lstrip()
            assert before["cell_type"] == "markdown" or first.startswith("#"), f"cell {i} has no sentence saying why"


def test_the_stale_check_notices_a_changed_figure():
    import nbformat

    saved = nbformat.read(NOTEBOOKS[0], as_version=4)
    fresh = nbformat.read(NOTEBOOKS[0], as_version=4)
    cell = next(c for c in fresh.cells if "check" in c.metadata.get("tags", []))
    cell.outputs[0]["text"] = cell.outputs[0]["text"].replace("1", "2")
    assert run_notebooks.stale_cells(saved, fresh)
    assert not run_notebooks.stale_cells(saved, nbformat.read(NOTEBOOKS[0], as_version=4))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_cpu_and_its_saved_outputs_are_current(path, tmp_path):
    import nbformat

    fresh = run_notebooks.execute(path, tmp_path)
    errors = [o for c in fresh.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue") if errors else ""
    assert run_notebooks.stale_cells(nbformat.read(path, as_version=4), fresh) == []
    text = "\n".join(run_notebooks.output_text(c) for c in fresh.cells)
    if path.stem == "qlora-walkthrough":
        # what peft counts and what loracalc predicts, from the fresh run's own printout
        peft, calc = map(lambda s: int(s.replace(",", "")),
                         re.search(r"peft: ([\d,]+) trainable \| loracalc: ([\d,]+)", text).groups())
        assert peft == calc > 0
        table = [line for line in text.splitlines() if " B  loracalc " in line]
        assert table and all(line.rstrip().endswith("same") for line in table)
        assert "saved the merged model" in text
    else:
        worst = float(re.search(r"largest error: ([+-][\d.]+)%", text).group(1))
        assert abs(worst) < 2.0


@pytest.mark.slow
def test_notebook_pages_render_saved_outputs_with_a_download_link(built_site):
    for path in NOTEBOOKS:
        page = built_site / "labs" / "notebooks" / path.stem / "index.html"
        html = page.read_text()
        assert f'href="{path.name}" download' in html
        assert (page.parent / path.name).read_bytes() == path.read_bytes()
        assert "colab.research.google.com" not in html   # no public repository configured in this build
        assert "cdnjs" not in html
    walk = (built_site / "labs" / "notebooks" / "qlora-walkthrough" / "index.html").read_text()
    assert "trainable | loracalc:" in walk   # the saved outputs are on the page


def test_colab_link_appears_only_for_a_configured_repository():
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebooks_hook", ROOT / "hooks" / "notebooks.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    bar = hook.links_bar("labs/notebooks/x.ipynb", 3000, "owner/repo")
    assert 'href="x.ipynb" download' in bar and "(3 kB" in bar  # decimal units, as everywhere on the site
    assert "https://colab.research.google.com/github/owner/repo/blob/main/docs/labs/notebooks/x.ipynb" in bar
    assert "colab" not in hook.links_bar("labs/notebooks/x.ipynb", 2048, None)



def test_colab_repository_comes_from_notebook_repo_or_a_github_repo_url():
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebooks_hook", ROOT / "hooks" / "notebooks.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    assert hook.notebook_repo({"extra": {"notebook_repo": "a/b"}, "repo_url": "https://github.com/c/d"}) == "a/b"
    assert hook.notebook_repo({"extra": {}, "repo_url": "https://github.com/c/d.git"}) == "c/d"
    assert hook.notebook_repo({"extra": {}, "repo_url": "https://gitlab.com/c/d"}) is None
    assert hook.notebook_repo({"extra": {}, "repo_url": None}) is None
