"""The knowledge check: well-formed data, one correct answer each, every option explained,
and every number filled from loracalc (so it cannot go stale)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lora_course import quiz

DATA = Path(quiz.__file__).resolve().parent / "data" / "quiz.json"


@pytest.fixture(scope="module")
def questions():
    return quiz.questions()


def test_five_questions(questions):
    assert len(questions) == 5
    assert len({q["id"] for q in questions}) == 5


def test_exactly_one_correct_and_every_option_explained(questions):
    for q in questions:
        assert q["prompt"].strip()
        assert len(q["options"]) >= 3
        correct = [o for o in q["options"] if o["correct"]]
        assert len(correct) == 1, q["id"]
        assert q["answer"] == correct[0]["id"]
        assert len({o["id"] for o in q["options"]}) == len(q["options"])
        assert len({o["text"] for o in q["options"]}) == len(q["options"]), f"{q['id']}: duplicate option text"
        for o in q["options"]:
            assert o["text"].strip() and len(o["explanation"].strip()) > 20, (q["id"], o["id"])


def test_no_placeholder_left_unfilled(questions):
    blob = json.dumps(questions)
    assert not re.search(r"\{[a-z_0-9]+\}", blob)


def test_raw_data_types_no_headline_number():
    raw = DATA.read_text(encoding="utf-8")
    for value in ("65,536", "16,777,216", "4.127", "4.5", "0.516"):
        assert value not in raw, f"quiz.json types {value}; use a {{figure}} placeholder"


def test_numbers_match_cited_values(questions):
    """Correct answers against FACTS.md: r=8 on a 4096x4096 layer is 65,536 parameters; NF4 with
    double quantization stores 4.127 bits per weight; mixed-precision AdamW costs 16 bytes per parameter."""
    by_id = {q["id"]: q for q in questions}

    def correct_text(qid):
        q = by_id[qid]
        return next(o["text"] for o in q["options"] if o["correct"])

    assert correct_text("rank-arithmetic") == "65,536"
    assert "4,096" in by_id["rank-arithmetic"]["prompt"] or "4096" in by_id["rank-arithmetic"]["prompt"]
    assert correct_text("nf4-storage").startswith("4.127")
    assert correct_text("bytes-per-parameter").startswith("16 ")
    wrong = [o["text"] for o in by_id["rank-arithmetic"]["options"] if not o["correct"]]
    assert "16,777,216" in wrong


def test_quiz_follows_the_figures(monkeypatch):
    """Change a figure and the quiz changes with it: the quiz reads loracalc, it does not copy it."""
    from lora_course import figures

    monkeypatch.setitem(figures.FIGURES, "headline_square_lora", lambda: "SENTINEL")
    qs = quiz.questions()
    assert any(o["text"] == "SENTINEL" for o in qs[0]["options"])


def test_pass_mark():
    assert quiz.pass_mark() == 4
