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
        if not line.strip() or line.startswith("note: "):
            break                              # the table ends at the first blank line or the notes under it
        body.append(line)
    assert len(body) >= 3
    return spans, [lines[k - 1]] + body


def check_alignment(text: str, numeric_columns: set[int], right_words: dict[int, str] | None = None):
    """Numbers flush right; ``right_words``: columns of short text set flush right beside numbers, each with the
    pattern its cells follow; every other column flush left."""
    spans, rows = table(text)
    right_words = {col: re.compile(p) for col, p in (right_words or {}).items()}
    for row in rows[1:]:
        for col, (a, b) in enumerate(spans):
            cell = row[a:b]
            if not cell.strip():
                continue
            if col in numeric_columns or col in right_words:
                assert (NUMBER if col in numeric_columns else right_words[col]).match(cell.strip()), (col, cell)
                assert cell.endswith(cell.strip()) and len(cell) == b - a, (col, row)    # flush right
            elif col < len(spans) - 1:
                if cell.startswith("  in CPU memory: "):
                    cell = cell[2:]                # host memory rows are indented under the totals on purpose
                assert cell.startswith(cell.strip()[:1]) and cell[0] != " ", (col, row)  # flush left


def out(capsys, *argv) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_models_table_aligns_numbers_right(capsys):
    # name | type | params | active | published | hidden | layers | heads/kv | vocab | tied | source: the
    # counts are numbers; "published" is the model card's own words ("30.5B, 3.3B active"), set right beside them
    text = out(capsys, "models")
    assert text.splitlines()[0].split() == ["name", "type", "params", "active", "published", "hidden", "layers",
                                            "heads/kv", "vocab", "tied", "source"]
    check_alignment(text, {2, 3, 5, 6, 8}, {4: r"^[\d.]+B(, [\d.]+B active[a-z ]*)?$"})


GB = re.compile(r"^([\d,]+\.\d\d) GB$")


@pytest.mark.parametrize("argv", [[], ["--method", "full", "--optimizer", "paged_adamw"],
                                  ["--method", "lora", "--activation-offload"]])
def test_memory_table_aligns_memory_right(capsys, argv):
    text = out(capsys, "memory", "--model", "llama-3.1-8b", *argv)
    check_alignment(text, {1})
    assert text.splitlines()[0].startswith("Llama-3.1 8B: " + ("qlora" if not argv else argv[1]) + ", rank 16")
    # the two totals add up the rows printed above them (each rounded to 0.01 GB): the needed-on-card total
    # all of them, the allocated peak all but the reserve (CUDA context) and the paged (managed) state
    spans, rows = table(text)
    (_, label_end), (mem_start, mem_end) = spans[:2]
    gb = {r[:label_end].strip(): float(GB.match(r[mem_start:mem_end].strip()).group(1).replace(",", ""))
          for r in rows[1:]}
    terms = {k: v for k, v in gb.items() if k not in ("allocated peak", "total needed on the card")
             and not k.startswith("in CPU memory")}
    outside = {k: v for k, v in terms.items() if k.startswith("CUDA context") or "managed memory" in k}
    assert gb["total needed on the card"] == pytest.approx(sum(terms.values()), abs=0.005 * len(terms) + 0.005)
    assert gb["allocated peak"] == pytest.approx(sum(terms.values()) - sum(outside.values()),
                                                 abs=0.005 * len(terms) + 0.005)
    assert gb["total needed on the card"] > gb["allocated peak"]
    assert text.count("\nnote: peak at the ") == 1            # which moment is the peak, and what is left out


def test_gpus_table_aligns_memory_right(capsys):
    # name | GPU | sold as | usable bytes (CUDA) | bf16 | usable bytes from
    check_alignment(out(capsys, "gpus"), {2, 3})


@pytest.mark.parametrize("argv", [[], ["params", "--no-such-flag"], ["frobnicate"]])
def test_no_or_unknown_command_is_usage_and_status_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("loracalc: error:") and "\n" not in err


def test_params_table_aligns_counts_right(capsys):
    # module | d_in -> d_out | copies | rank | LoRA params / copy | LoRA params: the last four are counts
    text = out(capsys, "params", "--model", "llama-3.1-8b", "--rank", "16", "--targets", "all-linear")
    check_alignment(text, {2, 3, 4, 5})
