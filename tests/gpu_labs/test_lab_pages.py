"""The lab pages embed code by named snippet section and run loracalc in runnable blocks: every section a
page names must exist in the script, and every runnable block must run."""

from __future__ import annotations

import re

import pytest
from lab_helpers import REPO

SNIPPET = re.compile(r'--8<-- "(gpu_labs/[^":]+):([^"]+)"')
RUNNABLE = re.compile(r"```\{\.python \.runnable\}\n(.*?)```", re.S)


def pages():
    return sorted((REPO / "docs").rglob("*.md"))


def test_every_embedded_lab_section_exists_once():
    used = [(page, *m.groups()) for page in pages() for m in SNIPPET.finditer(page.read_text())]
    assert len(used) >= 10  # the four lab pages and the module pages embed the scripts
    for page, path, section in used:
        source = (REPO / path).read_text()
        assert source.count(f"# --8<-- [start:{section}]") == 1, f"{page.name}: {path}:{section}"
        assert source.count(f"# --8<-- [end:{section}]") == 1, f"{page.name}: {path}:{section}"


def test_lab_pages_do_not_hold_copies_of_the_code():
    for page in sorted((REPO / "docs" / "labs").glob("*.md")):
        text = page.read_text()
        for marker in ("BitsAndBytesConfig(", "LoraConfig(", "merge_and_unload()", "load_adapter("):
            assert marker not in text, f"{page.name} copies code ({marker}); embed the section instead"


@pytest.mark.parametrize("page", ["qlora-finetune.md"])
def test_runnable_blocks_run(page, capsys):
    import loracalc

    if not hasattr(loracalc, "estimate_memory"):
        pytest.skip("loracalc.estimate_memory is not there yet (engine area)")
    blocks = RUNNABLE.findall((REPO / "docs" / "labs" / page).read_text())
    assert blocks
    for code in blocks:
        exec(compile(code, page, "exec"), {})  # noqa: S102 - our own page's example, as the browser runs it
    assert "total:" in capsys.readouterr().out
