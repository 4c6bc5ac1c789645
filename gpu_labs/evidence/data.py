"""The toy world of the evidence experiment: a pretraining corpus, a new task, and a character tokenizer.

Everything is generated from a seed, so nothing is downloaded and every run sees the same text.

* Pretraining text: short English-like sentences about people (name, age, city, job), often two in a
  row about the same person, so the model learns to carry a name from one sentence to the next, plus
  "roster" lines that use the characters `=` and `;` in an unrelated way.
* The new task, never seen in pretraining: read one of those sentences and write a fixed-order record,
  `tom is 27 and lives in oslo. => name=tom;age=27;city=oslo`. The model already knows the words and
  the characters; what it has to learn is the format and which fact goes into which field.

Standard library only (torch is not needed to build the data).
"""
from __future__ import annotations

import random

NAMES = ("tom ana li omar eva raj mia ken zoe ivan sara leo nina paul yuki amir lena hugo rosa ben "
         "ida max noor carl emma jon kim otto vera sam").split()
CITIES = ("oslo lima rome kyiv cairo lagos quito dakar hanoi porto riga bern turin delhi seoul perth "
          "tunis accra baku minsk").split()
JOBS = "baker nurse pilot judge tailor farmer singer doctor miner clerk".split()

# Sentence shapes that say a person's name, age and city. Pretraining sees all of them, the task
# inputs are drawn from the same shapes, so the input side of the task is familiar text.
FACT_TEMPLATES = (
    "{n} is {a} and lives in {c}.",
    "{n} lives in {c} and is {a}.",
    "in {c} lives {n}, aged {a}.",
    "{n} ({a}) is from {c}.",
    "{n}, {a}, moved to {c}.",
    "at {a}, {n} lives in {c}.",
)
# Follow-up sentences that repeat the name (teaches copying a name from context).
FOLLOW_TEMPLATES = (
    " {n} works as a {j}.",
    " {n} is a {j} there.",
    " people call {n} the {j}.",
    " {n} likes {c2} too.",
)

# --8<-- [start:task_format]
PROMPT_SEPARATOR = " => "


def task_target(name: str, age: int, city: str) -> str:
    """The new output format: fixed field order, `key=value` pairs separated by `;`."""
    return f"name={name};age={age};city={city}"
# --8<-- [end:task_format]


def _person(rng: random.Random) -> tuple[str, int, str]:
    return rng.choice(NAMES), rng.randint(18, 89), rng.choice(CITIES)


def pretraining_line(rng: random.Random) -> str:
    """One line of the pretraining corpus."""
    if rng.random() < 0.2:
        # A roster line: '=' and ';' appear, but never as a record of one sentence.
        people = [f"{rng.choice(NAMES)}={rng.randint(18, 89)}" for _ in range(rng.randint(2, 4))]
        return "ages: " + "; ".join(people) + "."
    n, a, c = _person(rng)
    line = rng.choice(FACT_TEMPLATES).format(n=n, a=a, c=c)
    if rng.random() < 0.6:
        line += rng.choice(FOLLOW_TEMPLATES).format(n=n, j=rng.choice(JOBS), c2=rng.choice(CITIES))
    return line


def task_example(rng: random.Random) -> tuple[str, str]:
    """(prompt, target) for the new task."""
    n, a, c = _person(rng)
    sentence = rng.choice(FACT_TEMPLATES).format(n=n, a=a, c=c)
    return sentence + PROMPT_SEPARATOR, task_target(n, a, c)


# --- tokenizer ----------------------------------------------------------------------------------

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


class CharTokenizer:
    """One token per character; ids 0-2 are pad, begin and end of sequence."""

    def __init__(self, texts):
        chars = sorted({ch for text in texts for ch in text})
        self.itos = [PAD, BOS, EOS] + chars
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi[ch] for ch in text]

    def decode(self, ids) -> str:
        return "".join(self.itos[i] for i in ids if i > 2)


def build_tokenizer() -> CharTokenizer:
    """The alphabet is every character the generators can emit (covers corpus and task alike)."""
    samples = list(NAMES) + list(CITIES) + list(JOBS) + list(FACT_TEMPLATES) + list(FOLLOW_TEMPLATES)
    samples += ["0123456789", "ages: =;.", PROMPT_SEPARATOR, task_target("x", 1, "y")]
    return CharTokenizer(samples)


def make_datasets(seed: int, n_pretrain: int, n_task_train: int, n_task_val: int):
    """The pretraining lines and the task's train/validation splits (disjoint prompts)."""
    rng = random.Random(seed)
    pretrain = [pretraining_line(rng) for _ in range(n_pretrain)]
    seen, train, val = set(), [], []
    while len(val) < n_task_val:
        prompt, target = task_example(rng)
        if prompt not in seen:
            seen.add(prompt)
            val.append((prompt, target))
    while len(train) < n_task_train:
        prompt, target = task_example(rng)
        if prompt not in seen:
            seen.add(prompt)
            train.append((prompt, target))
    return pretrain, train, val


if __name__ == "__main__":
    rng = random.Random(0)
    for _ in range(4):
        print(pretraining_line(rng))
    for _ in range(3):
        print("".join(task_example(rng)))
    print(len(build_tokenizer()), "tokens")
