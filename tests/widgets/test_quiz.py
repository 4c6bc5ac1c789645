"""The quiz widget: locking, scoring, retry, broken stored state."""
from __future__ import annotations

import re

from lora_course import quiz as quiz_data
from lora_course.widgets import quiz as qw

from .conftest import assert_clean, call_widget


def _answers(pick):
    """inputs choosing, for question i, the option id pick(question) (None leaves it unanswered)."""
    out = {}
    for i, q in enumerate(quiz_data.questions(), start=1):
        choice = pick(q)
        if choice is not None:
            out[f"q{i}"] = choice
    return out


def _locked(outputs):
    return re.search(r'name="locked" value="([^"]*)"', outputs["lock_state"]).group(1)


def test_texts_come_from_the_quiz_data():
    qs = quiz_data.questions()
    out = call_widget("quiz", {})
    for i, q in enumerate(qs, start=1):
        assert out[f"q{i}_prompt"] == q["prompt"]
        for j, opt in enumerate(q["options"]):
            assert out[f"q{i}_{'abcd'[j]}"] == opt["text"]
        assert out[f"q{i}_feedback"] == ""
    assert out["progress"] == f"0 of {len(qs)} answered"


def test_all_right_scores_full_marks():
    qs = quiz_data.questions()
    out = call_widget("quiz", _answers(lambda q: q["answer"]))
    assert out["score"] == f"Score: {len(qs)}/{len(qs)}"
    assert "meets the aim" in out["verdict"]
    for i in range(1, len(qs) + 1):
        assert "Right." in out[f"q{i}_feedback"]
    assert_clean(out)


def test_wrong_answer_shows_that_options_explanation():
    q = quiz_data.questions()[0]
    wrong = next(o for o in q["options"] if not o["correct"])
    out = call_widget("quiz", {"q1": wrong["id"]})
    assert "Not quite." in out["q1_feedback"]
    from html import escape
    assert escape(wrong["explanation"], quote=True) in out["q1_feedback"]
    assert out["score"] == "Score so far: 0/1"


def test_choosing_locks_the_question():
    q = quiz_data.questions()[0]
    wrong = next(o for o in q["options"] if not o["correct"])
    first = call_widget("quiz", {"q1": wrong["id"]})
    # the reader then clicks the right answer: the locked first choice stands
    second = call_widget("quiz", {"q1": q["answer"], "locked": _locked(first)})
    assert "Not quite." in second["q1_feedback"]
    assert _locked(second) == _locked(first)


def test_four_of_five_meets_the_aim_and_three_does_not():
    qs = quiz_data.questions()
    aim = quiz_data.pass_mark()
    assert aim == 4  # the module asks for 4/5
    def pick_first_n_right(n):
        return {f"q{i}": (q["answer"] if i <= n else next(o["id"] for o in q["options"] if not o["correct"]))
                for i, q in enumerate(qs, start=1)}
    assert "meets the aim" in call_widget("quiz", pick_first_n_right(4))["verdict"]
    out3 = call_widget("quiz", pick_first_n_right(3))
    assert out3["score"] == "Score: 3/5" and "Aim for 4/5" in out3["verdict"]


def test_retry_clears_everything():
    qs = quiz_data.questions()
    done = call_widget("quiz", _answers(lambda q: q["answer"]))
    out = call_widget("quiz", {**_answers(lambda q: q["answer"]), "locked": _locked(done), "action": "retry"})
    assert _locked(out) == ""
    assert all(out[f"q{i}_feedback"] == "" for i in range(1, len(qs) + 1))


def test_broken_or_old_stored_state_is_ignored():
    for junk in ["", ";;;", "zzz", "rank-arithmetic:z", "old-question:a;rank-arithmetic", "\x00:\x00",
                 "rank-arithmetic:b;rank-arithmetic:a"]:
        out = qw.quiz(locked=junk, q1="zz", q9="a")
        assert "of 5 answered" in out["progress"]


def test_a_repeated_update_keeps_announcing_the_verdict():
    # the page sends a radio's choice twice (input and change events); the second must not blank the read-out
    first = call_widget("quiz", {"q2": "a"})
    again = call_widget("quiz", {"q2": "a", "locked": _locked(first)})
    assert first["announce"].startswith("Question 2:")
    assert again["announce"] == first["announce"]
    assert call_widget("quiz", {"action": "retry", "locked": _locked(first)})["announce"] == "Quiz reset."
