"""Datasets as practitioners have them, turned into token ids with the loss on answer tokens only.

Three JSONL layouts are read, detected line by line, and all become a list of chat messages:

    {"instruction": "...", "response": "..."}                      the labs' own pairs (field names settable)
    {"instruction": "...", "input": "...", "output": "..."}         Alpaca (input may be empty or missing)
    {"messages": [{"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}]}        the chat format most tools use

A tokenizer with a chat template renders the conversation exactly as the model will see it when served
(`apply_chat_template`); one without falls back to the labs' `### Instruction:` prompt. Either way every
answer ends with the tokenizer's EOS token, so the model learns where to stop, and only answer tokens
carry a label. Standard library only at import time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gpu_labs.core import DEFAULT_DATASET, LABS_DIR, LabError

ROLES = ("system", "user", "assistant")
IGNORE = -100  # the label value PyTorch's cross-entropy skips


def format_prompt(instruction: str) -> str:
    """The prompt template for tokenizers without a chat template; the response follows it directly."""
    return f"### Instruction:\n{instruction.strip()}\n\n### Response:\n"


def _row_to_messages(row: dict, where: str, instruction_field: str, response_field: str) -> list[dict]:
    """One JSON object -> chat messages, or a LabError that names the line and what to change."""
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise LabError(f"{where}: 'messages' must be a non-empty list of {{\"role\": ..., \"content\": ...}}.")
        for i, message in enumerate(messages):
            if (not isinstance(message, dict) or message.get("role") not in ROLES
                    or not isinstance(message.get("content"), str)):
                raise LabError(f"{where}: messages[{i}] must be {{\"role\": one of {', '.join(ROLES)}, "
                               f"\"content\": text}}; got {json.dumps(message)[:80]}.")
        if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
            raise LabError(f"{where}: no non-empty assistant message, so nothing to learn from this line.")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    # Alpaca names its answer "output" and may add an "input" (the text the instruction is about).
    answer_field = response_field
    if response_field not in row and response_field == "response" and "output" in row:
        answer_field = "output"
    for field in (instruction_field, answer_field):
        if not isinstance(row.get(field), str) or not row[field].strip():
            found = ", ".join(sorted(row)) or "none"
            raise LabError(f"{where}: missing or empty text field '{field}' (keys on this line: {found}). Add it, "
                           "name your fields with --instruction-field / --response-field, or use a 'messages' list.")
    prompt = row[instruction_field].strip()
    extra = row.get("input")
    if isinstance(extra, str) and extra.strip():
        prompt = f"{prompt}\n\n{extra.strip()}"
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": row[answer_field].strip()}]


def load_conversations(path: str | os.PathLike, instruction_field: str = "instruction",
                       response_field: str = "response") -> list[list[dict]]:
    """Read a JSONL file in any of the three layouts; blank lines are skipped. Every problem names the
    file and line and says what to change."""
    path = Path(path)
    if not path.is_file():
        raise LabError(f"{path}: no such file. Pass a JSONL file of instruction/response pairs, Alpaca rows or "
                       f"'messages' lists, for example --dataset {DEFAULT_DATASET.relative_to(LABS_DIR.parent)}")
    conversations = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise LabError(f"{where}: not valid JSON ({err.msg} at column {err.colno}). "
                               "Each line must be one JSON object, e.g. "
                               '{"instruction": "...", "response": "..."}') from None
            if not isinstance(row, dict):
                raise LabError(f"{where}: expected a JSON object, got {type(row).__name__}.")
            conversations.append(_row_to_messages(row, where, instruction_field, response_field))
    if not conversations:
        raise LabError(f"{path}: the file holds no examples.")
    return conversations


def load_dataset_conversations(name: str, instruction_field: str, response_field: str,
                               split: str = "train") -> list[list[dict]]:
    """A local JSONL file, or a dataset on the Hugging Face Hub (needs the `datasets` package)."""
    if Path(name).suffix in {".jsonl", ".json"} or Path(name).exists():
        return load_conversations(name, instruction_field, response_field)
    try:
        import datasets  # noqa: PLC0415 - optional dependency, only for Hub datasets
    except ImportError:
        raise LabError(f"'{name}' is not a local file, so it would be loaded from the Hub, which needs the "
                       "`datasets` package: pip install datasets (or pass a local .jsonl file).") from None
    table = datasets.load_dataset(name, split=split)
    return [_row_to_messages(dict(row), f"{name}[{i}]", instruction_field, response_field)
            for i, row in enumerate(table)]


def ensure_pad_token(tokenizer) -> str:
    """Give the tokenizer a pad token if it has none, and say which. The labs mask padding by position
    (attention mask and our own labels), never by token id, so reusing EOS as padding cannot hide the
    EOS labels at the end of answers; a tokenizer's unk token is still preferred because it is never a
    real target."""
    if tokenizer.pad_token_id is not None:
        return f"pad token {tokenizer.pad_token!r} (the tokenizer's own)"
    if tokenizer.unk_token_id is not None:
        tokenizer.pad_token = tokenizer.unk_token
        return f"pad token {tokenizer.unk_token!r} (set from unk: the tokenizer had none)"
    if tokenizer.eos_token_id is None:
        raise LabError("the tokenizer has neither a pad, unk nor EOS token; add one with "
                       "tokenizer.add_special_tokens({'pad_token': '<pad>'}) and resize the model's embeddings.")
    tokenizer.pad_token = tokenizer.eos_token
    return f"pad token {tokenizer.eos_token!r} (set from EOS: padding is masked by position, not by id)"


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _template_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt,
                                        return_dict=True)
    return list(out["input_ids"])


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a prompt ready for the model to answer: the same text training put before each answer."""
    if tokenizer.chat_template:
        return _template_ids(tokenizer, messages, add_generation_prompt=True)
    text = "".join(format_prompt(m["content"]) if m["role"] != "assistant" else m["content"] + "\n\n"
                   for m in messages if m["role"] != "system")
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def prompt_text(tokenizer, user_text: str) -> str:
    """The rendered prompt for one user message (what the serving lab sends to generate)."""
    messages = [{"role": "user", "content": user_text}]
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return format_prompt(user_text)


def tokenize_conversation(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one conversation: labels are the ids on assistant answers (each closed by
    EOS) and IGNORE everywhere else.

    With a chat template the whole conversation is rendered once; each answer starts where the ids of the
    conversation so far (with the generation prompt) stop matching the full ids, as TRL's SFTTrainer finds
    its completion, and ends where the ids through that answer end. Comparing token ids, not strings,
    keeps the split right even where a template or BPE merge changes text at the boundary."""
    eos = tokenizer.eos_token_id
    if tokenizer.chat_template:
        ids = _template_ids(tokenizer, messages)
        spans = []  # (start, end) of each answer in the rendered ids
        for i, message in enumerate(messages):
            if message["role"] == "assistant":
                start = _common_prefix(_template_ids(tokenizer, messages[:i], add_generation_prompt=True), ids)
                end = _common_prefix(_template_ids(tokenizer, messages[:i + 1]), ids)
                # Whatever a template puts after an answer's EOS (often a newline) is not the answer: the
                # model stops at EOS and never predicts it.
                closing = [j for j in range(start, end) if ids[j] == eos]
                spans.append((start, closing[-1] + 1 if closing else end))
        labels = [IGNORE] * len(ids)
        for start, end in spans:
            labels[start:end] = ids[start:end]
        # A template that does not close answers with EOS would never teach the model to stop: add one
        # after each such answer, last answer first so the earlier spans keep their positions.
        for start, end in reversed(spans):
            if eos is not None and eos not in ids[start:end]:
                ids = ids[:end] + [eos] + ids[end:]
                labels = labels[:end] + [eos] + labels[end:]
        return ids, labels
    ids, labels = [], []
    for i, message in enumerate(messages):
        if message["role"] == "system":
            continue
        if message["role"] == "user":
            part = tokenizer(format_prompt(message["content"]), add_special_tokens=not ids)["input_ids"]
            ids, labels = ids + part, labels + [IGNORE] * len(part)
        else:
            part = tokenizer(message["content"].strip(), add_special_tokens=False)["input_ids"]
            part += [eos] if eos is not None else []
            ids, labels = ids + part, labels + part
            if i + 1 < len(messages):
                sep = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
                ids, labels = ids + sep, labels + [IGNORE] * len(sep)
    return ids, labels


def tokenize_conversations(conversations: list[list[dict]], tokenizer, seq_len: int) -> list[dict]:
    """Token ids and answer-only labels for every conversation, cut at seq_len; conversations whose
    answers all fall beyond seq_len are dropped (nothing left to learn from them)."""
    examples = []
    for messages in conversations:
        ids, labels = tokenize_conversation(tokenizer, messages)
        ids, labels = ids[:seq_len], labels[:seq_len]
        if all(label == IGNORE for label in labels):
            continue
        examples.append({"input_ids": ids, "labels": labels})
    if not examples:
        raise LabError(f"--seq-len {seq_len} is shorter than every prompt, so no answer token is left to "
                       "train on. Raise --seq-len.")
    return examples


def split_train_eval(items: list, eval_ratio: float, seed: int) -> tuple[list, list]:
    """A held-out share of the examples, chosen by a seeded shuffle (random.Random: the split must not
    depend on torch's global generator, which training also draws from)."""
    import random

    if eval_ratio <= 0:
        return list(items), []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(items) * eval_ratio))
    if n_eval >= len(items):
        raise LabError(f"--eval-ratio {eval_ratio} leaves no training examples out of {len(items)}; use a "
                       "smaller ratio (0.1 is common).")
    held = set(order[:n_eval])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]
