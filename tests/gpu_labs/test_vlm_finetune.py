"""The VLM lab on CPU: two tiny random VLMs (LLaVA: CLIP + Llama; Gemma 3: SigLIP + Gemma 3 text) learn to
answer questions about pictures the test draws, through the lab's Trainer and through TRL's SFTTrainer;
the collator's labels, the adapters' placement and the errors are checked against the libraries."""

from __future__ import annotations

import json
import re

import pytest
from lab_helpers import run_lab

from gpu_labs import vlm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return vlm.make_dataset(tmp_path_factory.mktemp("data") / "shapes", count=240, seed=0)


@pytest.fixture(scope="module", params=sorted(vlm.TINY_VLMS))
def tiny_vlm(request, tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return request.param, vlm.build_tiny_vlm(tmp_path_factory.mktemp("vlm") / request.param, request.param)


def _processor_and_rows(tiny_vlm, shapes, n=4):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_vlm[1]), vlm.load_dataset(shapes)[:n]


# The image tokens each family's processor writes for a 32 x 32 picture in 8 x 8 patches:
# LLaVA one per patch, the CLS token dropped (vision_feature_select_strategy "default",
# processing_llava.py: num_image_tokens = (height // patch_size) * (width // patch_size) + 1, minus 1 for
# "default"); Gemma 3 image_seq_length = mm_tokens_per_image (processing_gemma3.py's full_image_sequence).
IMAGE_TOKENS = {"llava": (32 // 8) ** 2, "gemma3": 4}


def test_collator_learns_the_answer_only(tiny_vlm, shapes):
    processor, rows = _processor_and_rows(tiny_vlm, shapes)
    batch = vlm.AnswerOnlyCollator(processor)(rows)
    tok = processor.tokenizer
    for i, row in enumerate(rows):
        learned = batch["labels"][i][batch["labels"][i] != -100].tolist()
        assert tok.decode(learned) == row["completion"][0]["content"][0]["text"] + tok.eos_token
    config = json.loads((tiny_vlm[1] / "config.json").read_text())
    image_id = config.get("image_token_id", config.get("image_token_index"))
    assert (batch["input_ids"] == image_id).sum(dim=1).tolist() == [IMAGE_TOKENS[tiny_vlm[0]]] * len(rows)


def test_collator_matches_trl(tiny_vlm, shapes):
    """TRL's own vision collator, given the same rows, builds the same ids, mask and labels."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    processor, rows = _processor_and_rows(tiny_vlm, shapes)
    ours = vlm.AnswerOnlyCollator(processor)([dict(r) for r in rows])
    theirs = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)([dict(r) for r in rows])
    for key in ("input_ids", "attention_mask", "labels", "pixel_values"):
        assert ours[key].shape == theirs[key].shape, key
        assert (ours[key] == theirs[key]).all(), key


@pytest.mark.parametrize("adapt", ["language", "all"])
def test_adapters_go_where_asked(tiny_vlm, adapt):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm[1])
    targets = vlm.language_model_targets(model) if adapt == "language" else "all-linear"
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=targets))
    adapted = [n for n, _ in peft_model.named_modules() if n.endswith(".lora_A")]
    in_vision = [n for n in adapted if re.search(r"\.(vision_tower|multi_modal_projector)\.", n)]
    assert adapted and all(".language_model." in n or n in in_vision for n in adapted)
    assert bool(in_vision) == (adapt == "all")
    assert not any("lm_head" in n for n in adapted)


def test_vlm_lab_learns_saves_reloads_and_generates(tiny_vlm, shapes, tmp_path):
    """LLaVA through the lab's Trainer, 150 steps at lr 3e-3: the held-out answers go from none right to some
    right. Gemma 3 through TRL's SFTTrainer, 60 steps (time): it trains, saves, reloads and generates. Both: the
    reloaded base + saved adapter answers exactly as the trained model in memory did."""
    family, model = tiny_vlm
    trainer, steps = ("course", 150) if family == "llava" else ("trl", 60)
    out = tmp_path / "run"
    proc = run_lab("vlm_finetune.py", "--model", model, "--dataset", shapes, "--output-dir", out, "--max-steps", steps,
                   "--lr", "3e-3", "--eval-every", 50, "--save-every", 50, "--trainer", trainer, timeout=600)
    text = proc.stdout
    m = re.search(r"exact match: base model (\d+)/(\d+), reloaded base \+ saved adapter (\d+)/\d+ "
                  r"\(the same answer as the trained model in memory on (\d+)/(\d+)\)", text)
    assert m, text[-2000:]
    base, n, tuned, same, n2 = map(int, m.groups())
    assert base == 0 and same == n2 == n, text[-1500:]
    if trainer == "course":  # measured 16/24 on 2026-12-07
        assert tuned >= n // 3, text[-1500:]
    assert f"{IMAGE_TOKENS[family]} of them for its picture" in text
    settings = json.loads((out / "adapter" / "run_settings.json").read_text())
    # The lab keeps peft's fp32 adapters; TRL casts a 4-bit model's adapters to bf16 when it builds the trainer
    assert set(settings["results"]["adapter_dtypes"]) == ({"float32"} if trainer == "course" else {"bfloat16"})
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "adapter" / "processor_config.json").is_file()


def test_text_only_model_and_bad_rows_get_one_line(tiny_model, shapes, tmp_path):
    proc = run_lab("vlm_finetune.py", "--model", tiny_model, "--dataset", shapes, "--output-dir", tmp_path / "a",
                   check=False)
    assert proc.returncode != 0 and "is a text-only model (llama): use gpu_labs/qlora_finetune.py" in proc.stderr
    bad = tmp_path / "bad.jsonl"
    row = json.loads(shapes.read_text().splitlines()[0])
    row["images"] = []
    bad.write_text(json.dumps(row) + "\n")
    proc = run_lab("vlm_finetune.py", "--model", tiny_model, "--dataset", bad, "--output-dir", tmp_path / "b",
                   check=False)
    assert proc.returncode != 0 and "0 image(s) in \"images\" but 1 image part(s)" in proc.stderr
    assert "Traceback" not in proc.stderr
