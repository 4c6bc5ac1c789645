"""The knowledge check on the "Knowledge check" page.

The questions come from ``lora_course.quiz.questions()`` (numbers in them filled from loracalc). The page
holds one ``<fieldset>`` per question with radio inputs named ``q1`` .. ``qN`` whose values are option
ids; this function fills in every text, and records the first answer chosen for each question in a
hidden ``locked`` input that it renders itself (``"q-id:option-id;..."``), so a later change of the
radio does not change the result: choosing locks the question. ``action="retry"`` clears the locks
(the Retry button is also a form reset, so the radios clear too). A stored state that is broken or
from an older quiz (unknown question or option ids) is ignored, never fatal.
"""
from __future__ import annotations

from typing import Any

from .. import quiz as quiz_data

from . import _common as c
from .registry import widget

LETTERS = "abcdefgh"


def _parse_locks(locked: str, qs: list[dict]) -> dict[str, str]:
    valid = {q["id"]: {o["id"] for o in q["options"]} for q in qs}
    locks: dict[str, str] = {}
    for part in c.text(locked).split(";"):
        qid, sep, oid = part.partition(":")
        if sep and qid in valid and oid in valid[qid] and qid not in locks:
            locks[qid] = oid
    return locks


@widget("quiz")
def quiz(action: str = "", locked: str = "", **answers: Any) -> dict[str, Any]:
    qs = quiz_data.questions()
    total = len(qs)
    aim = quiz_data.pass_mark()
    locks = {} if c.text(action) == "retry" else _parse_locks(locked, qs)
    before = set(locks)
    if c.text(action) != "retry":
        for i, q in enumerate(qs, start=1):
            chosen = c.text(answers.get(f"q{i}"))
            if q["id"] not in locks and chosen in {o["id"] for o in q["options"]}:
                locks[q["id"]] = chosen

    out: dict[str, Any] = {}
    verdicts: dict[str, str] = {}
    score = 0
    for i, q in enumerate(qs, start=1):
        out[f"q{i}_prompt"] = q["prompt"]
        for j, opt in enumerate(q["options"]):
            out[f"q{i}_{LETTERS[j]}"] = opt["text"]
        chosen = locks.get(q["id"])
        if chosen is None:
            out[f"q{i}_feedback"] = ""
            continue
        opt = next(o for o in q["options"] if o["id"] == chosen)
        letter = LETTERS[[o["id"] for o in q["options"]].index(chosen)].upper()
        score += bool(opt["correct"])
        verdicts[q["id"]] = f"Question {i}: {'Right' if opt['correct'] else 'Not quite'}. {opt['explanation']}"
        cls, word = ("lc-right", "Right.") if opt["correct"] else ("lc-wrong", "Not quite.")
        out[f"q{i}_feedback"] = (
            f'<div class="lc-feedback {cls}" data-locked="{c.esc(chosen)}">'
            f'<span class="lc-verdict-word">{word}</span> You chose {letter}: {c.esc(opt["text"])}. '
            f'{c.esc(opt["explanation"])}</div>')

    # Read out the verdict of the question answered just now; the page may send the same answer twice (input
    # and change events), and the repeat must not silence it, so with nothing new the latest verdict stands.
    fresh = [qid for qid in locks if qid not in before]
    if c.text(action) == "retry":
        out["announce"] = "Quiz reset."
    elif fresh or locks:
        out["announce"] = verdicts[(fresh or list(locks))[-1]]
    else:
        out["announce"] = ""
    answered = len(locks)
    state = ";".join(f"{qid}:{oid}" for qid, oid in locks.items())
    out["lock_state"] = f'<input type="hidden" name="locked" value="{c.esc(state)}">'
    out["progress"] = f"{answered} of {total} answered"
    if answered < total:
        out["score"] = f"Score so far: {score}/{answered}" if answered else "No answers yet"
        out["verdict"] = f"Answer all {total} to see your result; aim for {aim}/{total}."
    else:
        out["score"] = f"Score: {score}/{total}"
        out["verdict"] = (f"That meets the aim of {aim}/{total}." if score >= aim else
                          f"Aim for {aim}/{total}: reread the pages behind the questions you missed, then retry.")
    return out
