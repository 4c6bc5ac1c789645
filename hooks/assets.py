"""Put what the browser needs into the built site, from pinned sources, never from a CDN.

- The Pyodide core from ``node_modules/pyodide`` (the version package.json pins) -> ``assets/pyodide/``.
- KaTeX (math rendering) from ``node_modules/katex/dist`` -> ``assets/vendor/katex/``.
- ``snippets/loracalc/`` and ``snippets/lora_course/`` (code and data, the files the tests import) -> ``assets/snippets.zip``,
  which the Pyodide worker unpacks and imports.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "node_modules"
# Only the files the worker loads: the core, the wasm, the standard library and the lock file.
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json")
KATEX_FILES = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js")


def _pinned(name: str) -> str:
    pins = json.loads((ROOT / "package.json").read_text())["dependencies"]
    installed = json.loads((NODE / name / "package.json").read_text())["version"]
    if installed != pins[name]:
        raise PluginError(f"node_modules/{name} is {installed}, package.json pins {pins[name]}: run `npm ci`")
    return installed


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime or dst.stat().st_size != src.stat().st_size:
        shutil.copy2(src, dst)


PACKAGES = ("loracalc", "lora_course")   # the engine and the course layer: what the browser imports


def zip_snippets(dest: Path) -> None:
    """Zip the Python packages of snippets/ (sources and data, no caches), paths starting with each package's name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in PACKAGES:
            package = ROOT / "snippets" / name
            for path in sorted(package.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".json", ".csv", ".txt"):
                    # A fixed timestamp keeps the zip (and the build version) identical between builds.
                    info = zipfile.ZipInfo(path.relative_to(package.parent).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    zf.writestr(info, path.read_bytes())


def on_post_build(config) -> None:
    site = Path(config.site_dir)
    if not (NODE / "pyodide").is_dir() or not (NODE / "katex").is_dir():
        raise PluginError("node_modules is missing: run scripts/setup (or `npm ci`) first")
    version = _pinned("pyodide")
    for name in PYODIDE_FILES:
        _copy(NODE / "pyodide" / name, site / "assets" / "pyodide" / name)
    (site / "assets" / "pyodide" / "VERSION").write_text(version + "\n")
    _pinned("katex")
    dist = NODE / "katex" / "dist"
    for name in KATEX_FILES:
        _copy(dist / name, site / "assets" / "vendor" / "katex" / name)
    for font in (dist / "fonts").glob("*.woff2"):
        _copy(font, site / "assets" / "vendor" / "katex" / "fonts" / font.name)
    zip_snippets(site / "assets" / "snippets.zip")
