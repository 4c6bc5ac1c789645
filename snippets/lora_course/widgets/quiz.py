"""The knowledge check on the "Knowledge check" page: a learning loop over a pool of questions.

The questions come from ``lora_course.quiz`` (numbers in them filled from loracalc). The page has
``per_check()`` slots, one ``<fieldset>`` each, with radio inputs named ``q1`` .. ``qN`` whose values are
option ids; ``set`` (a hidden input this function renders) says which set of pool questions fills them.

For each question the state keeps the first answer (what the score counts) and the current one:
``"q-id:first:current;..."`` in a hidden ``locked`` input. Choosing locks the question and shows why the
option is right or wrong; a wrong pick also shows the right answer and why, and a link back to the exact
section. Actions: ``again-qN`` reopens question N (its first answer still counts for the score);
``retry`` clears the set; ``next-set`` moves to the next set of questions. ``reset_inputs`` names the radio
groups the page must clear. A stored state that is broken or from an older quiz is ignored, never fatal
(the older ``"q-id:option"`` form is read as a first answer).
"""
from __future__ import annotations

import re
from typing import Any

from .. import quiz as quiz_data

from . import _common as c
from .registry import widget

LETTERS = "abcdefgh"


def _parse_state(state: str, qs: list[dict]) -> dict[str, list[str]]:
    """{question id: [first option, current option or ""]} for the questions of ``qs``."""
    valid = {q["id"]: {o["id"] for o in q["options"]} for q in qs}
    out: dict[str, list[str]] = {}
    for part in c.text(state).split(";"):
        bits = part.split(":")
        if len(bits) == 2:
            bits.append(bits[1])
        if len(bits) != 3:
            continue
        qid, first, current = bits
        if qid in valid and qid not in out and first in valid[qid] and (current == "" or current in valid[qid]):
            out[qid] = [first, current]
    return out


def _set_index(value: Any) -> int:
    text = c.text(value).strip()
    return int(text) % quiz_data.set_count() if text.isdigit() else 0


def _sentence(text: str) -> str:
    """``text`` as the end of a sentence: a full stop unless it already ends with punctuation."""
    text = text.rstrip()
    return text if text.endswith((".", "?", "!")) else text + "."


def _href(section: str) -> str:
    """A page-relative link from the knowledge-check page (directory URLs: knowledge-check/)."""
    page, _, anchor = section.partition("#")
    stem = re.sub(r"(index)?\.md$", "", page)
    return "../" + stem + ("/" if stem and not stem.endswith("/") else "") + (f"#{anchor}" if anchor else "")


def _reread(q: dict) -> str:
    title = q["section_title"] or q["section"]
    return (f'<p class="lc-reread">Reread: <a href="{c.esc(_href(q["section"]))}">{c.esc(title)}</a></p>')


def _feedback(i: int, q: dict, first: str, current: str) -> str:
    ids = [o["id"] for o in q["options"]]
    if not current:
        return (f'<div class="lc-feedback lc-again">Choose again. Your first answer, '
                f'{LETTERS[ids.index(first)].upper()}, still counts for the score.</div>')
    opt = q["options"][ids.index(current)]
    letter = LETTERS[ids.index(current)].upper()
    cls, word = ("lc-right", "Right.") if opt["correct"] else ("lc-wrong", "Not quite.")
    html = (f'<div class="lc-feedback {cls}" data-locked="{c.esc(current)}">'
            f'<p><span class="lc-verdict-word">{word}</span> You chose {letter}: {c.esc(_sentence(opt["text"]))} '
            f'{c.esc(opt["explanation"])}</p>')
    if not opt["correct"]:
        right = q["options"][ids.index(q["answer"])]
        html += (f'<p><strong>The answer is {LETTERS[ids.index(q["answer"])].upper()}:</strong> '
                 f'{c.esc(_sentence(right["text"]))} {c.esc(right["explanation"])}</p>')
    if first != current:
        html += f'<p class="lc-note">First answer: {LETTERS[ids.index(first)].upper()} (this is what the score counts).</p>'
    html += _reread(q)
    if not opt["correct"]:
        html += (f'<p><button type="button" class="lc-again-button" data-action="again-q{i}">'
                 f'Try question {i} again</button></p>')
    return html + "</div>"


@widget("quiz")
def quiz(action: str = "", locked: str = "", set: str = "0", **answers: Any) -> dict[str, Any]:  # noqa: A002
    pool = quiz_data.questions()
    per = quiz_data.per_check()
    aim = quiz_data.pass_mark()
    act = c.text(action)
    index = _set_index(set)
    if act == "next-set":
        index = (index + 1) % quiz_data.set_count()
    qs = [pool[j] for j in quiz_data.check_set(index)]
    state = {} if act in ("retry", "next-set") else _parse_state(locked, qs)
    reopened = None
    match = re.fullmatch(r"again-q(\d+)", act)
    if match and 1 <= int(match.group(1)) <= per and qs[int(match.group(1)) - 1]["id"] in state:
        reopened = int(match.group(1))
        state[qs[reopened - 1]["id"]][1] = ""
    before = {qid: cur for qid, (_, cur) in state.items()}
    if act not in ("retry", "next-set"):
        for i, q in enumerate(qs, start=1):
            chosen = c.text(answers.get(f"q{i}"))
            if i == reopened or chosen not in {o["id"] for o in q["options"]}:
                continue
            if q["id"] not in state:
                state[q["id"]] = [chosen, chosen]
            elif state[q["id"]][1] == "":
                state[q["id"]][1] = chosen

    out: dict[str, Any] = {}
    verdicts: dict[str, str] = {}
    first_right = now_right = 0
    for i, q in enumerate(qs, start=1):
        out[f"q{i}_prompt"] = q["prompt"]
        for j, opt in enumerate(q["options"]):
            out[f"q{i}_{LETTERS[j]}"] = opt["text"]
        if q["id"] not in state:
            out[f"q{i}_feedback"] = ""
            continue
        first, current = state[q["id"]]
        correct = {o["id"]: o["correct"] for o in q["options"]}
        first_right += correct[first]
        now_right += bool(current) and correct[current]
        out[f"q{i}_feedback"] = _feedback(i, q, first, current)
        if current:
            opt = next(o for o in q["options"] if o["id"] == current)
            verdict = f"Question {i}: {'Right' if opt['correct'] else 'Not quite'}. {opt['explanation']}"
            if not opt["correct"]:
                right = next(o for o in q["options"] if o["id"] == q["answer"])
                verdict += f" The answer is {_sentence(right['text'])}"
            verdicts[q["id"]] = verdict

    # Read out the verdict of the question answered just now; the page may send the same answer twice (input
    # and change events), and the repeat must not silence it, so with nothing new the latest verdict stands.
    fresh = [qid for qid, (_, cur) in state.items() if cur and before.get(qid) != cur]
    if act == "retry":
        out["announce"] = "Quiz reset."
    elif act == "next-set":
        out["announce"] = f"Set {index + 1} of {quiz_data.set_count()}: {per} new questions."
    elif reopened:
        out["announce"] = f"Question {reopened} reopened: choose again."
    elif fresh or verdicts:
        out["announce"] = verdicts[(fresh or list(verdicts))[-1]]
    else:
        out["announce"] = ""
    out["reset_inputs"] = ([f"q{i}" for i in range(1, per + 1)] if act in ("retry", "next-set")
                           else [f"q{reopened}"] if reopened else [])
    answered = len(state)
    serial = ";".join(f"{qid}:{first}:{cur}" for qid, (first, cur) in state.items())
    out["lock_state"] = (f'<input type="hidden" name="locked" value="{c.esc(serial)}">'
                         f'<input type="hidden" name="set" value="{index}">')
    out["set_label"] = f"Set {index + 1} of {quiz_data.set_count()}"
    out["progress"] = f"{answered} of {per} answered"
    if answered < per:
        out["score"] = f"First-try score so far: {first_right}/{answered}" if answered else "No answers yet"
        out["verdict"] = f"Answer all {per} to see your result; aim for {aim}/{per} on first tries."
    else:
        out["score"] = f"Score: {first_right}/{per} on first tries"
        again = f" Now right: {now_right}/{per}." if now_right != first_right else ""
        out["verdict"] = ((f"That meets the aim of {aim}/{per}." if first_right >= aim else
                           f"Aim for {aim}/{per}: reread the sections linked under the questions you missed, "
                           "try them again, then take the next set.") + again)
    return out
