"""The terminal tables, in process (fast): numbers right-aligned under their header, words left-aligned,
and a command line with no command or a bad flag answered with one line and status 2."""
from __future__ import annotations

import re

import pytest

from loracalc.cli import main

NUMBER = re.compile(r"^[\d,./]+( ?(GB|B))?$")


def table(text: str) -> tuple[list[tuple[int, int]], list[str]]:
    """Column spans read from the dashed rule under the header, and the table's lines."""
    lines = text.splitlines()
    k = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[k])]
    body = []
    for line in lines[k + 1:]:
        if not line.strip():
            break                              # the table ends at the first blank line
        body.append(line)
    assert len(body) >= 3
    return spans, [lines[k - 1]] + body


def check_alignment(text: str, numeric_columns: set[int]):
    spans, rows = table(text)
    for row in rows[1:]:
        for col, (a, b) in enumerate(spans):
            cell = row[a:b]
            if not cell.strip():
                continue
            if col in numeric_columns:
                assert NUMBER.match(cell.strip()), (col, cell)
                assert cell.endswith(cell.strip()) and len(cell) == b - a, (col, row)    # flush right
            elif col < len(spans) - 1:
                assert cell.startswith(cell.strip()[:1]) and cell[0] != " ", (col, row)  # flush left


def out(capsys, *argv) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_models_table_aligns_numbers_right(capsys):
    # name | params | hidden | layers | heads | vocab | tied | source: the four counts are numbers
    check_alignment(out(capsys, "models"), {1, 2, 3, 5})


def test_memory_table_aligns_memory_right(capsys):
    text = out(capsys, "memory", "--model", "llama-3.1-8b")
    check_alignment(text, {1})
    assert text.splitlines()[0].startswith("Llama-3.1 8B: qlora, rank 16")


def test_gpus_table_aligns_memory_right(capsys):
    check_alignment(out(capsys, "gpus"), {2})


@pytest.mark.parametrize("argv", [[], ["params", "--no-such-flag"], ["frobnicate"]])
def test_no_or_unknown_command_is_usage_and_status_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("loracalc: error:") and "\n" not in err
