"""Build switches and the build version.

- ``OFFLINE=true`` builds the copy meant for file:// reading: Material's offline plugin is enabled in
  mkdocs.yml, and this hook turns ``navigation.instant`` off (the offline plugin does not work with it).
- ``on_post_build`` hashes every built file into a short version and writes it into ``sw.js`` (the
  service worker's cache key, so a new build replaces the old cache) and ``assets/build.json``, with the
  versions of the libraries the numbers were checked with (``requirements/lock.txt``).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig

from lora_course.versions import verified   # the lock's versions of the libraries the numbers are checked with

OFFLINE = os.environ.get("OFFLINE", "").lower() in ("1", "true", "yes")


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    if OFFLINE:
        features = config.theme.get("features", [])
        config.theme["features"] = [f for f in features if not f.startswith("navigation.instant")]
    return config


def on_post_build(config: MkDocsConfig) -> None:
    site = Path(config.site_dir)
    digest = hashlib.sha256()
    files = sorted(p for p in site.rglob("*") if p.is_file() and p.name not in ("sw.js", "build.json"))
    for path in files:
        digest.update(path.relative_to(site).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    version = digest.hexdigest()[:12]
    # What the service worker stores on install: the pages and Pyodide; everything else is cached when fetched.
    # (sw.js stores Pyodide and snippets.zip only once a widget page has loaded them.)
    def wanted(rel: str) -> bool:
        if rel == "404.html" or rel.endswith(".map"):
            return False
        return (rel.endswith(".html") or rel == "search/search_index.json" or rel == "assets/snippets.zip"
                or rel.startswith("assets/pyodide/")
                or rel.startswith("assets/") and rel.rsplit(".", 1)[-1] in ("css", "js", "woff2", "png", "svg"))
    precache = [rel for rel in (p.relative_to(site).as_posix() for p in files) if wanted(rel)]
    (site / "assets").mkdir(exist_ok=True)
    (site / "assets" / "build.json").write_text(json.dumps({"version": version, "offline": OFFLINE,
                                                           "versions": verified()}))
    sw = site / "sw.js"
    if sw.exists():
        text = sw.read_text()
        text = text.replace("__BUILD_VERSION__", version)
        text = text.replace('"__PRECACHE__"', json.dumps(precache))
        sw.write_text(text)
