"""The labs' default CPU model (gpu_labs/toy_model.py): the evidence experiment's pretrained toy-world model in
the layout of a Hub model, and a lab run that teaches it the new task.

What is asserted is measured on the model, not copied from an earlier run: the base states facts of its
world, and the lab's fine-tuning lifts exact match on prompts it never trained on by a clear margin.
"""
from __future__ import annotations

import json
import math
import random
import sys

import pytest
from lab_helpers import LABS

from gpu_labs import toy_model

sys.path.insert(0, str(LABS / "evidence"))
import data  # noqa: E402  (the toy world, stdlib only)


def test_the_tokenizer_has_the_experiments_ids():
    tokenizer = toy_model.hf_tokenizer()
    words = data.build_tokenizer()
    rng = random.Random(11)
    for _ in range(300):
        line = data.pretraining_line(rng)
        assert tokenizer(line, add_special_tokens=False)["input_ids"] == words.encode(line), line
    prompt, target = data.task_example(rng)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt.replace(" => ", "")},
                                         {"role": "assistant", "content": target}], tokenize=True, return_dict=True)
    # the chat template renders the experiment's own task format: <s> sentence => record </s>
    assert ids["input_ids"] == [words.bos_id] + words.encode(prompt + target) + [words.eos_id]
    assert tokenizer.decode(words.encode(target)) == target
    assert tokenizer("#")["input_ids"] == [tokenizer.unk_token_id]  # outside the toy vocabulary: <unk>, no error


def test_task_files_are_disjoint_from_each_other():
    train, heldout = toy_model.task_rows()
    assert len(train) == toy_model.N_TRAIN and len(heldout) == toy_model.N_HELDOUT
    assert not {r["instruction"] for r in train} & {r["instruction"] for r in heldout}


@pytest.mark.slow
def test_it_loads_like_a_hub_model_and_knows_its_world(toy_lm):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(toy_lm)
    tokenizer = AutoTokenizer.from_pretrained(toy_lm)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "train.jsonl",
                 "heldout.jsonl"):
        assert (toy_lm / name).is_file(), name
    # Learned something: on text of its world it never trained on, the loss is far below a uniform guess
    # over the vocabulary (ln V).
    lines = data.heldout_pretraining(0, 40)
    ids = tokenizer([f"<s>{line}</s>" for line in lines], add_special_tokens=False)["input_ids"]
    losses = [model(input_ids=torch.tensor([row]), labels=torch.tensor([row])).loss.item() for row in ids]
    assert sum(losses) / len(losses) < math.log(len(tokenizer)) / 2
    # ...and states a fact of the world: which region a city is in (data.REGION), greedy.
    right = 0
    for city, region in list(data.REGION.items())[:8]:
        prompt = tokenizer(f"<s>tom is 27 and lives in {city}. {city} is in", add_special_tokens=False, return_tensors="pt")
        out = model.generate(**prompt, max_new_tokens=1, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        right += tokenizer.decode(out[0, -1:]) == region
    assert right >= 6, right


@pytest.mark.slow
def test_the_lab_teaches_it_the_new_task(toy_qlora_run):
    results = json.loads((toy_qlora_run / "adapter" / "run_settings.json").read_text())["results"]
    scores = results["heldout_exact_match"]
    assert scores["prompts"] == toy_model.N_HELDOUT
    print(f"exact match on {scores['prompts']} held-out prompts: {scores['before']:.1%} -> {scores['after']:.1%}")
    assert scores["after"] >= scores["before"] + 0.1
    stdout = (toy_qlora_run / "stdout.txt").read_text()
    assert "held-out prompts" in stdout and "before:" in stdout and "after:" in stdout
    log = [json.loads(line) for line in (toy_qlora_run / "train_log.jsonl").read_text().splitlines()]
    evals = [row["eval_loss"] for row in log if "eval_loss" in row]
    assert len(evals) == 3 and evals[-1] < evals[0]
    assert "eval loss by step: 20:" in stdout


def test_the_recorded_toy_outputs_are_current():
    """The lab pages show gpu_labs/output/{toy-command,qlora-toy-model,merge-toy-model}.txt, written by
    lab_outputs.py: they must come from the command it runs now, and show the improvement they claim."""
    import re

    from gpu_labs import lab_outputs

    assert (lab_outputs.OUT / "toy-command.txt").read_text() == lab_outputs.toy_commands()
    recorded = (lab_outputs.OUT / "qlora-toy-model.txt").read_text()
    assert recorded.startswith(f"$ {lab_outputs.toy_command()}\n"), "re-run python gpu_labs/lab_outputs.py --only toy"
    before, after = map(float, re.search(r"exact match ([\d.]+)% before fine-tuning, ([\d.]+)% after", recorded).groups())
    assert after >= before + 10
    assert re.search(r"^eval loss by step: 25: ", recorded, re.M)
    merged = (lab_outputs.OUT / "merge-toy-model.txt").read_text()
    assert "--adapter runs/toy-qlora/adapter" in merged.splitlines()[0]
    # the merged model (16-bit, the update folded into W) scores about what the 4-bit base + adapter scored
    merged_after = float(re.search(r"exact match [\d.]+% before fine-tuning, ([\d.]+)% after", merged).group(1))
    assert abs(merged_after - after) <= 5
