"""hooks/figures.py: placeholders replaced from lora_course.figures, code left alone, unknown names fail."""
from __future__ import annotations

import importlib.util

import pytest
from mkdocs.exceptions import PluginError

from site_support import ROOT

spec = importlib.util.spec_from_file_location("figures_hook", ROOT / "hooks" / "figures.py")
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)

from lora_course import figures  # noqa: E402  (after the hook put snippets/ on sys.path)


@pytest.fixture
def a_figure():
    name = "platform_test_figure"
    figures.FIGURES[name] = lambda: "65,536"
    figures.TABLES[name] = lambda: "| a | b |\n|---|---|\n| 1 | 2 |"
    yield name
    del figures.FIGURES[name]
    del figures.TABLES[name]


def test_inline_figure_and_table_are_replaced(a_figure):
    text = f"W has {{{{ fig.{a_figure} }}}} entries.\n\n{{{{ table.{a_figure} }}}}\n"
    out = hook.render(text)
    assert "W has 65,536 entries." in out
    assert "| 1 | 2 |" in out
    assert "{{" not in out


def test_code_is_not_touched(a_figure):
    text = (f"Inline `{{{{ fig.{a_figure} }}}}` stays.\n\n```python\nprint('{{{{ fig.{a_figure} }}}}')\n```\n\n"
            f"~~~\n{{{{ fig.nope }}}}\n~~~\n\nBut {{{{ fig.{a_figure} }}}} changes.\n")
    out = hook.render(text)
    assert f"`{{{{ fig.{a_figure} }}}}`" in out
    assert f"print('{{{{ fig.{a_figure} }}}}')" in out
    assert "{{ fig.nope }}" in out
    assert "But 65,536 changes." in out


def test_unknown_name_fails_the_build():
    with pytest.raises(PluginError, match="no_such_figure"):
        hook.render("x {{ fig.no_such_figure }} y", "page.md")
    with pytest.raises(PluginError, match="no_such_table"):
        hook.render("{{ table.no_such_table }}", "page.md")


@pytest.mark.slow
def test_unknown_name_fails_a_real_build(tmp_path):
    """A whole mkdocs build with an unknown figure exits non-zero and names it."""
    import shutil
    import subprocess
    import sys

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Test\n\nIt is {{ fig.this_figure_does_not_exist }}.\n")
    shutil.copytree(ROOT / "hooks", tmp_path / "hooks")
    (tmp_path / "mkdocs.yml").write_text("site_name: t\nhooks:\n  - hooks/figures.py\n")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "this_figure_does_not_exist" in proc.stderr


def test_widget_call_contract():
    """lora_course.widgets.call: ok/outputs for good input; field + message for bad input; unknown widget."""
    from lora_course.widgets import call, WIDGETS

    bad = call("no_such_widget", {})
    assert bad["ok"] is False and "no_such_widget" in bad["message"]
    assert WIDGETS, "no widget registered"


def test_run_code_captures_stdout_value_and_traceback():
    from lora_course.widgets import run_code

    res = run_code("print('hi')\n6 * 7")
    assert res == {"stdout": "hi\n", "hidden_lines": 0, "value": "42", "error": None}
    res = run_code("x = 1\n1 / 0")
    assert res["error"].splitlines()[-1] == "ZeroDivisionError: division by zero"
    assert 'File "<example>", line 2' in res["error"]
    assert run_code("def f(:\n")["error"].splitlines()[-1].startswith("SyntaxError")


def test_notebook_cdn_script_is_removed():
    """mkdocs-jupyter pages: nbconvert's Mermaid loader (an import from cdnjs) never reaches the site."""
    spec = importlib.util.spec_from_file_location("notebooks_hook", ROOT / "hooks" / "notebooks.py")
    notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(notebooks)
    page = ('<p>keep</p><script type="module">\n  const m = (await import("https://cdnjs.cloudflare.com/ajax/libs/'
            'mermaid/11.10.0/mermaid.esm.min.mjs")).default;\n</script><script>keep()</script>')
    out = notebooks.strip_cdn_scripts(page)
    assert "cdnjs" not in out
    assert out == "<p>keep</p><script>keep()</script>"
