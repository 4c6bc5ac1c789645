"""Datasets in the three common layouts, rendered with a real chat template, with the loss mask checked
token by token. The tokenizer is a real one: byte-level BPE trained on the shipped data, with a Jinja
chat template set, as a Hub tokenizer carries one."""

from __future__ import annotations

import json

import pytest
from lab_helpers import labkit

from gpu_labs import labdata
from gpu_labs import labmodels

IGNORE = -100


@pytest.fixture(scope="module")
def chat_tokenizer():
    return labmodels.build_tokenizer(chat_template=True)


@pytest.fixture(scope="module")
def plain_tokenizer():
    return labmodels.build_tokenizer(chat_template=False)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_three_layouts_become_the_same_messages(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"instruction": "Add 2 and 3.", "response": "5"}])
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Add 2 and 3.", "input": "", "output": "5"}])
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3."},
        {"role": "assistant", "content": "5"}]}])
    expected = [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}]
    assert labdata.load_conversations(pairs) == [expected]
    assert labdata.load_conversations(alpaca) == [
        [{"role": "user", "content": "Add the numbers.\n\n2 and 3"}, {"role": "assistant", "content": "5"}], expected]
    assert labdata.load_conversations(chat) == [[{"role": "system", "content": "Be brief."}, *expected]]


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "no non-empty assistant message"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0] must be"),
    ({"messages": "hi"}, "'messages' must be a non-empty list"),
    ({"instruction": "a", "answer": "b"}, "missing or empty text field 'response'"),
])
def test_bad_rows_name_the_line_and_the_fix(tmp_path, row, message):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "a", "response": "b"}, row])
    with pytest.raises(labkit.LabError, match=f"{data}:2: .*{message}".replace("[", r"\[").replace("]", r"\]")):
        labdata.load_conversations(data)


def test_chat_template_mask_token_by_token(chat_tokenizer):
    tok = chat_tokenizer
    messages = [{"role": "system", "content": "Answer in one line."},
                {"role": "user", "content": "What does the rank r control in LoRA?"},
                {"role": "assistant", "content": "The inner width of A and B."},
                {"role": "user", "content": "Why is B initialised to zero?"},
                {"role": "assistant", "content": "So training starts from the pretrained model."}]
    ids, labels = labdata.tokenize_conversation(tok, messages)
    # The ids are exactly what the tokenizer's own chat template produces for the conversation.
    assert ids == tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert len(labels) == len(ids)
    # Token by token: a label is either IGNORE or the token itself, and the labelled tokens form two runs,
    # each decoding to one answer followed by the EOS token.
    assert all(label in (IGNORE, token) for token, label in zip(ids, labels))
    runs, current = [], []
    for token, label in zip(ids, labels):
        if label == IGNORE:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(token)
    runs += [current] if current else []
    assert [tok.decode(run) for run in runs] == ["The inner width of A and B.</s>",
                                                  "So training starts from the pretrained model.</s>"]
    assert all(run[-1] == tok.eos_token_id for run in runs)
    # Everything before the first answer is the prompt the model sees when served: masked entirely.
    prompt = tok.apply_chat_template(messages[:2], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids[:len(prompt)] == prompt and set(labels[:len(prompt)]) == {IGNORE}
    assert tok.decode(prompt).endswith("<|assistant|>\n") and ids[0] == tok.bos_token_id


def test_template_without_eos_gets_one_after_each_answer(chat_tokenizer):
    tok = chat_tokenizer
    saved = tok.chat_template
    tok.chat_template = ("{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '\n' }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")
    try:
        messages = [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"},
                    {"role": "user", "content": "And 4 and 4?"}, {"role": "assistant", "content": "8"}]
        ids, labels = labdata.tokenize_conversation(tok, messages)
        rendered = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    finally:
        tok.chat_template = saved
    assert ids.count(tok.eos_token_id) == 2 and len(ids) == len(rendered) + 2
    trained = [t for t in labels if t != IGNORE]
    assert tok.decode(trained) == "5\n</s>8\n</s>"


def test_without_chat_template_the_instruction_prompt_is_masked(plain_tokenizer):
    tok = plain_tokenizer
    ids, labels = labdata.tokenize_conversation(tok, [{"role": "user", "content": "Add 2 and 3."},
                                                     {"role": "assistant", "content": "Five."}])
    prompt = tok("### Instruction:\nAdd 2 and 3.\n\n### Response:\n")["input_ids"]
    assert ids[:len(prompt)] == prompt and set(labels[:len(prompt)]) == {IGNORE}
    assert labels[len(prompt):] == ids[len(prompt):] and tok.decode(ids[len(prompt):]) == "Five.</s>"


def test_pad_token_is_set_safely(plain_tokenizer):
    tok = plain_tokenizer
    saved = tok.pad_token
    try:
        tok.pad_token = None
        assert "from unk" in labdata.ensure_pad_token(tok)
        assert tok.pad_token_id == tok.unk_token_id != tok.eos_token_id  # EOS labels can never be padding
    finally:
        tok.pad_token = saved


def test_split_is_seeded_and_disjoint():
    items = list(range(50))
    train, held = labdata.split_train_eval(items, 0.2, seed=3)
    assert len(held) == 10 and sorted(train + held) == items
    assert labdata.split_train_eval(items, 0.2, seed=3) == (train, held)
    assert labdata.split_train_eval(items, 0.2, seed=4)[1] != held
    with pytest.raises(labkit.LabError, match="leaves no training examples"):
        labdata.split_train_eval([1], 0.5, seed=0)
