"""Replace ``{{ fig.NAME }}`` and ``{{ table.NAME }}`` in page Markdown with loracalc's figures.

The values come from ``lora_course.figures.render_figure`` / ``render_table`` (so no page types a number).
An unknown name fails the build with the page and the name. Fenced code blocks and inline code spans
are left untouched, so a page can show the placeholder syntax itself.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

# loracalc from snippets/: the same files the tests import and the browser loads.
SNIPPETS = Path(__file__).resolve().parent.parent / "snippets"
if str(SNIPPETS) not in sys.path:
    sys.path.insert(0, str(SNIPPETS))
# MkDocs puts sys.path back as it was once a hook module has loaded, so the packages are bound now, from this
# checkout's snippets/; an import at render time would find whichever copy an installed .pth points at.
import loracalc  # noqa: E402,F401
import lora_course.figures  # noqa: E402,F401

PLACEHOLDER = re.compile(r"\{\{\s*(fig|table)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:.+?)(?<!`)\1(?!`)", re.S)


def render(text: str, where: str = "<text>") -> str:
    """Text with every placeholder outside code replaced (raises PluginError on an unknown name)."""
    from lora_course import figures

    def replace(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2)
        try:
            return figures.render_figure(name) if kind == "fig" else figures.render_table(name)
        except KeyError as exc:
            if name not in (figures.FIGURES if kind == "fig" else figures.TABLES):
                raise PluginError(f"{where}: unknown {kind} {{{{ {kind}.{name} }}}}: {exc.args[0]}") from None
            raise PluginError(f"{where}: {{{{ {kind}.{name} }}}} failed: KeyError: {exc}") from exc
        except Exception as exc:
            raise PluginError(f"{where}: {{{{ {kind}.{name} }}}} failed: {type(exc).__name__}: {exc}") from exc

    def outside_inline_code(chunk: str) -> str:
        out, pos = [], 0
        for m in INLINE_CODE.finditer(chunk):
            out.append(PLACEHOLDER.sub(replace, chunk[pos:m.start()]))
            out.append(m.group(0))
            pos = m.end()
        out.append(PLACEHOLDER.sub(replace, chunk[pos:]))
        return "".join(out)

    result: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        if fence is None:
            m = FENCE_OPEN.match(line)
            if m:
                result.append(outside_inline_code("".join(prose)))
                prose = []
                fence = m.group("fence")
                result.append(line)
            else:
                prose.append(line)
        else:
            result.append(line)
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                fence = None
    result.append(outside_inline_code("".join(prose)))
    return "".join(result)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "{{" not in markdown:
        return markdown
    return render(markdown, page.file.src_uri)
