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


def test_a_pool_larger_than_one_check(questions):
    assert quiz.per_check() == 5  # the page has five slots
    assert len(questions) >= 30   # issue 28: a pool of at least 30
    assert len({q["id"] for q in questions}) == len(questions)


def test_most_questions_are_diagnoses(questions):
    """Issue 28: at least 15 scenarios (a run or a deployment described, what went wrong or what to do), and
    every set the page draws mixes them in, so no set is only recall."""
    scenarios = [q for q in questions if q["kind"] == "scenario"]
    assert len(scenarios) >= 15
    assert {q["kind"] for q in questions} <= set(quiz.KINDS)
    for k in range(quiz.set_count()):
        kinds = [questions[j]["kind"] for j in quiz.check_set(k)]
        assert kinds.count("scenario") >= 2, (k, kinds)


def test_the_data_essentials_are_asked(questions):
    """Chat template and EOS, loss on answers only, a held-out split, epochs and overfitting: each has a
    question that sends the reader back to its section."""
    sections = {q["section"] for q in questions}
    for anchor in ("#chat-templates", "#eos-and-padding", "#loss-on-answers", "#evaluation"):
        assert any(s.endswith(anchor) for s in sections), anchor
    eos = [q for q in questions if "EOS" in q["prompt"] or "stops" in q["prompt"]]
    assert len(eos) >= 2
    evaluation = [q for q in questions if q["section"].endswith("data-and-evaluation.md#evaluation")]
    assert len(evaluation) >= 3   # held-out split, rising eval loss, too many epochs


def test_diagnoses_link_to_the_troubleshooting_entries(questions):
    linked = [q for q in questions if q["section"].startswith("troubleshooting.md#")]
    assert len(linked) >= 8
    assert all(q["kind"] == "scenario" for q in linked)


def test_the_pool_asks_about_the_knobs_serving_and_merging(questions):
    pages = {q["section"].partition("#")[0] for q in questions}
    assert "training-recipe.md" in pages                          # the knobs
    assert any("serving" in q["section"] for q in questions)      # vLLM serving
    assert any("merg" in q["section"] for q in questions)         # merging adapters


def _anchors(md: str) -> set[str]:
    """Ids a page defines: explicit { #id } attributes and the toc extension's heading slugs."""
    from markdown.extensions.toc import slugify

    ids = set(re.findall(r"\{[^}]*#([A-Za-z0-9_-]+)[^}]*\}", md))
    for heading in re.findall(r"^#{1,6} (.+?)\s*(?:\{[^}]*\})?$", md, re.M):
        ids.add(slugify(heading, "-"))
    return ids


def test_reread_links_go_to_an_existing_section(questions):
    docs = Path(__file__).resolve().parents[2] / "docs"
    for q in questions:
        page, _, anchor = q["section"].partition("#")
        assert (docs / page).is_file(), q["id"]
        assert anchor and anchor in _anchors((docs / page).read_text(encoding="utf-8")), (q["id"], q["section"])
        assert q["section_title"].strip(), q["id"]


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


# A number standing alone (not part of a name such as bf16, 4-bit, 70B, ZeRO-3 or 2r). The few allowed are not
# figures: the 2 of "2 x d x r", a loss printed as 0 or 0.0, and a paper's year.
BARE_NUMBER = re.compile(r"(?<![\w.-])\d+(?:[.,]\d+)*(?![\w-])")
NOT_FIGURES = {"0", "0.0", "2", "2023"}


def test_every_number_comes_from_a_figure():
    for q in json.loads(DATA.read_text(encoding="utf-8"))["questions"]:
        texts = [q["prompt"]] + [t for o in q["options"] for t in (o["text"], o["explanation"])]
        for text in texts:
            bare = set(BARE_NUMBER.findall(re.sub(r"\{[a-z_0-9]+\}", "", text))) - NOT_FIGURES
            assert not bare, f"{q['id']} types {sorted(bare)}; use a {{figure}} placeholder"


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
    monkeypatch.setitem(figures.FIGURES, "trl_sft_default_max_length", lambda: "SENTINEL2")
    qs = {q["id"]: q for q in quiz.questions()}
    assert any(o["text"] == "SENTINEL" for o in qs["rank-arithmetic"]["options"])
    assert any("SENTINEL2" in o["text"] for o in qs["truncated-answers"]["options"])


def test_pass_mark():
    assert quiz.pass_mark() == 4
    assert quiz.pass_mark() <= quiz.per_check()
