"""Notebook pages (mkdocs-jupyter renders docs/**/*.ipynb from their saved outputs; it never runs them).

- A bar under the title: download the .ipynb (mkdocs-jupyter's ``include_source`` copies it beside the page)
  and, when the repository is known (``extra.notebook_repo``, "OWNER/REPO", or a GitHub ``repo_url``;
  branch "main"), open it in Colab; with neither, no Colab link. A link is not a fetch: nothing here loads from another host.
- Code cells become focusable, so a keyboard can scroll a long line.
- nbconvert's template carries a script that would import Mermaid from cdnjs when a notebook has a
  Mermaid diagram; it is removed, so no page can reach another host.
"""
from __future__ import annotations

import html
import os
import re

CDN_SCRIPT = re.compile(r"<script[^>]*>(?:(?!</script>).)*cdnjs\.cloudflare\.com(?:(?!</script>).)*</script>", re.S)
FIRST_H1_END = re.compile(r"</h1>")
# nbconvert's code cells scroll sideways (overflow: auto) but cannot take focus: keyboard users could not
# scroll them. tabindex 0 makes each one a stop, as Material does for its own code blocks.
CODE_CELL = re.compile(r'<div class="highlight-ipynb')


def strip_cdn_scripts(page_html: str) -> str:
    return CDN_SCRIPT.sub("", page_html)


def links_bar(src_path: str, size_bytes: int, repo: str | None) -> str:
    name = os.path.basename(src_path)
    parts = [f'<a href="{html.escape(name)}" download>Download the notebook</a> '
             f'<span class="lc-nb-size">({size_bytes / 1000:.0f} kB, outputs from a CPU run)</span>']
    if repo:
        url = f"https://colab.research.google.com/github/{repo}/blob/main/docs/{src_path}"
        parts.append(f'<a href="{html.escape(url)}">Open in Colab</a>')
    return '<p class="lc-notebook-links">' + " · ".join(parts) + "</p>"


def notebook_repo(config) -> str | None:
    """"OWNER/REPO" for Colab links: extra.notebook_repo, else a GitHub repo_url; None when neither is set."""
    given = (config.get("extra") or {}).get("notebook_repo")
    if given:
        return given
    match = re.match(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?$", config.get("repo_url") or "")
    return match.group(1) if match else None


def on_post_page(output: str, page, config) -> str:
    if not page.file.src_uri.endswith(".ipynb"):
        return output
    output = CODE_CELL.sub('<div tabindex="0" class="highlight-ipynb', strip_cdn_scripts(output))
    repo = notebook_repo(config)
    bar = links_bar(page.file.src_uri, os.path.getsize(page.file.abs_src_path), repo)
    return FIRST_H1_END.sub("</h1>" + bar, output, count=1)
