"""Math rendered at build time, so it reads without JavaScript.

pymdownx.arithmatex (generic mode) leaves ``\\( ... \\)`` and ``\\[ ... \\]`` in spans and divs for a script
to render in the browser. Here each one is rendered by the pinned KaTeX in node_modules (one Node process
for the whole build, fed one expression per line) into KaTeX's HTML, which KaTeX's CSS and fonts style,
and MathML, which screen readers read. It runs on the finished page (``on_post_page``), after the search
plugin has read the page: the index keeps the TeX, which hooks/widgets.py turns into reading text.
A TeX error fails the build with the page and the expression.
"""
from __future__ import annotations

import atexit
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent
KATEX = ROOT / "node_modules" / "katex"

# arithmatex (generic): <span class="arithmatex">\( tex \)</span> and <div class="arithmatex">\[ tex \]</div>
MATH = re.compile(r'<(span|div) class="arithmatex">\s*\\([(\[])(.*?)\\[)\]]\s*</\1>', re.S)

NODE_SCRIPT = r"""
const katex = require(process.argv[1]);
const lines = require("readline").createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const { tex, display } = JSON.parse(line);
  let out;
  try {
    out = { html: katex.renderToString(tex, { displayMode: display, throwOnError: true, output: "htmlAndMathml" }) };
  } catch (error) {
    out = { error: String(error && error.message || error) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
});
"""


class _Katex:
    """One Node process running KaTeX, started on first use and closed when the build ends."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.cache: dict[tuple[str, bool], str] = {}

    def render(self, tex: str, display: bool) -> str:
        key = (tex, display)
        if key not in self.cache:
            if self.proc is None:
                node = shutil.which("node")
                if node is None or not (KATEX / "package.json").exists():
                    raise PluginError("math needs Node.js and node_modules/katex: run `npm ci` (scripts/setup)")
                self.proc = subprocess.Popen([node, "-e", NODE_SCRIPT, str(KATEX)], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, text=True, encoding="utf-8")
                atexit.register(self.close)
            self.proc.stdin.write(json.dumps({"tex": tex, "display": display}) + "\n")
            self.proc.stdin.flush()
            answer = json.loads(self.proc.stdout.readline())
            if "error" in answer:
                raise ValueError(answer["error"])
            self.cache[key] = answer["html"]
        return self.cache[key]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
            self.proc = None


KATEX_PROCESS = _Katex()


def render_math(page_html: str, where: str = "<page>") -> str:
    """Every arithmatex span or div of PAGE_HTML rendered by KaTeX (see the module docstring)."""
    if "arithmatex" not in page_html:
        return page_html

    def one(m: re.Match) -> str:
        tag, display, tex = m.group(1), m.group(2) == "[", html.unescape(m.group(3)).strip()
        try:
            rendered = KATEX_PROCESS.render(tex, display)
        except ValueError as exc:
            raise PluginError(f"{where}: KaTeX cannot render {tex!r}: {exc}") from None
        return f'<{tag} class="arithmatex">{rendered}</{tag}>'

    return MATH.sub(one, page_html)


def on_post_page(output: str, page, config) -> str:
    return render_math(output, page.file.src_uri)
