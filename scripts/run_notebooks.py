"""Run the lab notebooks top to bottom on this machine and save their outputs, or check saved outputs are current.

    .venv/bin/python scripts/run_notebooks.py            # run every notebook, save outputs in place
    .venv/bin/python scripts/run_notebooks.py --check    # run into a temporary copy; exit 1 if a saved output is stale

The saved outputs on the site come from this script only (never edited by hand). It strips what a run
leaves behind that is not the notebook's business: kernel and timing metadata, the paths of the
machine it ran on. Cells tagged ``check`` print figures that must not change between runs (parameter
counts, stored bytes, predicted memory); ``--check`` compares their text with the saved one.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "docs" / "labs" / "notebooks"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}
TIMEOUT_S = 900   # per cell; a notebook runs in one to two minutes on a 2-core CPU


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def execute(path: Path, workdir: Path):
    """The notebook at PATH run top to bottom in a fresh kernel, its lab files written under WORKDIR."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {"LAB_WORKDIR": str(workdir), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)   # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return clean(nb, workdir)


def clean(nb, workdir: Path):
    """Keep what a reader needs: sources, outputs, tags. Paths of this machine become relative ones, and a
    progress bar's many carriage-return updates become its last state, as Jupyter itself shows them."""
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    nb.metadata = copy.deepcopy(KERNEL)
    replacements = [(str(workdir), "runs/notebooks"), (str(ROOT), "."), (str(Path.home()), "~")]
    for cell in nb.cells:
        tags = cell.metadata.get("tags")
        cell.metadata = {"tags": tags} if tags else {}
        if "outputs" in cell:   # a stream that printed only whitespace shows as an empty box
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "stream" or o.get("text", "").strip()]
        for output in cell.get("outputs", []):
            output.pop("metadata", None) if output.get("output_type") == "stream" else None
            if "text" in output:
                for old, new in replacements:
                    output["text"] = output["text"].replace(old, new)
            for key, value in output.get("data", {}).items():
                if key.startswith("text/") and isinstance(value, str):
                    for old, new in replacements:
                        value = value.replace(old, new)
                    output["data"][key] = value
    return nb


def output_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        elif "text/plain" in output.get("data", {}):
            parts.append(output["data"]["text/plain"])
    return "".join(parts)


def stale_cells(saved, fresh) -> list[str]:
    """Descriptions of the ``check`` cells whose fresh output differs from the saved one."""
    problems = []
    for i, (a, b) in enumerate(zip(saved.cells, fresh.cells)):
        if "check" in a.metadata.get("tags", []) and output_text(a) != output_text(b):
            problems.append(f"cell {i}: saved\n{output_text(a)}\nfresh\n{output_text(b)}")
    if len(saved.cells) != len(fresh.cells):
        problems.append("the number of cells changed")
    return problems


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: every one in docs/labs/notebooks)")
    parser.add_argument("--check", action="store_true", help="run into a temporary copy and compare `check` cells")
    args = parser.parse_args(argv)
    status = 0
    for path in args.paths or notebooks():
        with tempfile.TemporaryDirectory(prefix="lab-notebook-") as tmp:
            t0 = time.perf_counter()
            fresh = execute(path, Path(tmp))
            seconds = time.perf_counter() - t0
        if args.check:
            problems = stale_cells(nbformat.read(path, as_version=4), fresh)
            print(f"{path.name}: ran in {seconds:.0f} s; " + ("saved outputs are current" if not problems else
                                                               "STALE:\n" + "\n".join(problems)))
            status |= bool(problems)
        else:
            nbformat.write(fresh, path)
            print(f"{path.name}: ran in {seconds:.0f} s, saved ({path.stat().st_size / 1024:.0f} KiB)")
    return status


if __name__ == "__main__":
    sys.exit(main())
