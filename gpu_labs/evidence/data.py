"""The toy world of the evidence experiment: a pretraining corpus, a new task, and a character tokenizer.

Everything is generated from a seed, so nothing is downloaded and every run sees the same text.\nThe tokenizer is word-level and built here from the generators' own vocabulary.

* Pretraining text: short English-like sentences about people (name, age, city, job), often two in a
  row about the same person, so the model learns to carry a name from one sentence to the next, plus
  "roster" lines that use the tokens `=` and `;` in an unrelated way.
* The new task, never seen in pretraining: read one of those sentences and write a fixed-order record,
  `tom is 27 and lives in oslo. => group=young;region=europe`. The model already knows every word and
  symbol, which group an age belongs to and which region each city is in; what it has to learn is the
  new output format, and to fill it with facts it can already state in prose.

Standard library only (torch is not needed to build the data).
"""
from __future__ import annotations

import random
import re

NAMES = ("tom ana li omar eva raj mia ken zoe ivan sara leo nina paul yuki amir lena hugo rosa ben "
         "ida max noor carl emma jon kim otto vera sam").split()
CITIES = ("oslo lima rome kyiv cairo lagos quito dakar hanoi porto riga bern turin delhi seoul perth "
          "tunis accra baku minsk").split()
JOBS = "baker nurse pilot judge tailor farmer singer doctor miner clerk".split()
REGION = {**dict.fromkeys("oslo rome kyiv porto riga bern turin minsk".split(), "europe"),
          **dict.fromkeys("cairo lagos dakar tunis accra".split(), "africa"),
          **dict.fromkeys("hanoi delhi seoul baku".split(), "asia"),
          **dict.fromkeys("lima quito".split(), "america"), "perth": "oceania"}
GROUPS = ("young", "middle", "old")

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
    " the age of {n} is {a}.",
    " {c} is a big city.",
    " {n} is a common name.",
)
# The two facts the task's record needs: an age's group and a city's region.
FACT_FOLLOW_TEMPLATES = (
    " {c} is in {r}.",
    " at {a}, {n} is {g}.",
    " {n} is {g} and {c} is in {r}.",
)
# Restatements of the same facts in a different shape (teaches copying age and city, too).
RESTATE_TEMPLATES = (
    " so: {n}, {a}, {c}.",
    " that is {n} of {c}, {a}.",
    " {c} has {n} ({a}).",
    " we met {n}, {a}, in {c}.",
)

# --8<-- [start:task_format]
PROMPT_SEPARATOR = " => "


def age_group(age: int) -> str:
    return "young" if age < 40 else "middle" if age < 65 else "old"


def task_target(name: str, age: int, city: str) -> str:
    """The new output: a fixed-order record of two facts derived from the sentence.

    The age becomes its group (under 40, 40-64, 65 and over) and the city its region. The pretraining
    text states both facts in passing ("at 27, tom is young.", "oslo is in europe."), never as a record.
    """
    return f"group={age_group(age)};region={REGION[city]}"
# --8<-- [end:task_format]


def fact_entropy_nats() -> dict:
    """Entropy of the record's two facts when the sentence is ignored (ages 18-89 and cities uniform).

    A model that writes the format perfectly but guesses the facts from their base rates pays exactly
    this much loss per record; dividing by the record's length in tokens gives its per-token loss.
    """
    import math
    groups = [age_group(a) for a in range(18, 90)]
    regions = [REGION[c] for c in CITIES]

    def entropy(values):
        return -sum(values.count(v) / len(values) * math.log(values.count(v) / len(values)) for v in set(values))

    def top_share(values):
        return max(values.count(v) for v in set(values)) / len(values)

    tokens = len(build_tokenizer().encode(task_target("tom", 30, "oslo"))) + 1  # + </s>
    return {"group": entropy(groups), "region": entropy(regions), "tokens_per_record": tokens,
            "mode_exact_match": top_share(groups) * top_share(regions)}


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
    roll = rng.random()
    if roll < 0.5:  # the facts the task needs, stated in prose
        line += rng.choice(FACT_FOLLOW_TEMPLATES).format(n=n, a=a, c=c, g=age_group(a), r=REGION[c])
    elif roll < 0.7:
        line += rng.choice(FOLLOW_TEMPLATES).format(n=n, a=a, c=c, j=rng.choice(JOBS), c2=rng.choice(CITIES))
    elif roll < 0.9:
        line += rng.choice(RESTATE_TEMPLATES).format(n=n, a=a, c=c)
    return line


def task_example(rng: random.Random) -> tuple[str, str]:
    """(prompt, target) for the new task."""
    n, a, c = _person(rng)
    sentence = rng.choice(FACT_TEMPLATES).format(n=n, a=a, c=c)
    return sentence + PROMPT_SEPARATOR, task_target(n, a, c)


# --- tokenizer ----------------------------------------------------------------------------------

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
_TOKEN = re.compile(r"\w+|[^\w\s]")


# --8<-- [start:tokenizer]
class WordTokenizer:
    """One token per word, number or punctuation mark (spaces are dropped); ids 0-2 are pad, <s>, </s>.

    Whole words keep the experiment small: a name or an age is one token, so copying it into the
    record is one step, which a two-layer model can learn in a hundred fine-tuning steps.
    """

    def __init__(self, vocabulary):
        self.itos = [PAD, BOS, EOS] + sorted(set(vocabulary))
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi[t] for t in _TOKEN.findall(text)]

    def decode(self, ids) -> str:
        return "".join(self.itos[i] for i in ids if i > 2)  # exact for the task's records (no spaces)
# --8<-- [end:tokenizer]


def build_tokenizer() -> WordTokenizer:
    """The vocabulary is every token the generators can emit (corpus and task alike)."""
    templates = FACT_TEMPLATES + FOLLOW_TEMPLATES + RESTATE_TEMPLATES + FACT_FOLLOW_TEMPLATES + ("ages: =;.", PROMPT_SEPARATOR,
                                                                         "group=;region=")
    words = [t for tpl in templates for t in _TOKEN.findall(re.sub(r"\{\w+\}", " ", tpl))]
    words += NAMES + CITIES + JOBS + list(GROUPS) + list(set(REGION.values())) + [str(a) for a in range(18, 90)]
    return WordTokenizer(words)


def make_datasets(seed: int, n_pretrain: int, n_task_train: int, n_task_val: int, n_task_test: int = 0):
    """The pretraining lines and the task's train, validation and test splits (pairwise disjoint prompts).

    Validation picks each method's learning rate; test is touched only to report the chosen runs, so the
    reported numbers are not flattered by the choice.
    """
    rng = random.Random(seed)
    pretrain = [pretraining_line(rng) for _ in range(n_pretrain)]
    seen = set()

    def draw(n):
        out = []
        while len(out) < n:
            prompt, target = task_example(rng)
            if prompt not in seen:
                seen.add(prompt)
                out.append((prompt, target))
        return out

    val = draw(n_task_val)
    train = draw(n_task_train)
    test = draw(n_task_test)  # drawn last, so the other two splits are the same whatever its size
    if n_task_test:
        return pretrain, train, val, test
    return pretrain, train, val


def heldout_pretraining(seed: int, n_lines: int) -> list[str]:
    """Pretraining-distribution text the base never trained on (its own seed): the yardstick for forgetting."""
    rng = random.Random(f"heldout-{seed}")
    return [pretraining_line(rng) for _ in range(n_lines)]


if __name__ == "__main__":
    rng = random.Random(0)
    for _ in range(4):
        print(pretraining_line(rng))
    for _ in range(3):
        print("".join(task_example(rng)))
    print(len(build_tokenizer()), "tokens")
