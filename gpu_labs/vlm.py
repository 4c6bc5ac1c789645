"""Vision-language pieces for the VLM lab (gpu_labs/vlm_finetune.py).

- tiny random VLMs of two families, built offline from transformers' own classes and saved with their
  processor, in the layout of a Hub download: LLaVA (a CLIP vision tower, a two-layer projector, Llama) and
  Gemma 3 (a SigLIP tower, an average-pooling projector, Gemma 3's text model);
- a dataset of pictures the lab draws (a coloured shape on white) with questions about them, in the
  "images" + "messages" layout TRL and the Hub's VLM datasets use;
- the collator: the prompt (with its images) and the answer are processed apart and joined, so the labels
  can be -100 on everything but the answer;
- the names of the language model's linear layers, the usual place for the adapters.

Standard library only at import time; torch, transformers and PIL are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from pathlib import Path

if not __package__:  # run as `python gpu_labs/vlm.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from gpu_labs import labmodels
from gpu_labs.core import LabError, atomic_directory, quiet_libraries, run_cli

# What the drawn pictures hold, and the two questions asked of them.
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30),
           "purple": (140, 50, 170), "orange": (245, 130, 20)}
SHAPES = ("square", "circle", "triangle")
QUESTIONS = {"colour": "What colour is the shape?", "shape": "Which shape is in the picture?"}
IMAGE_SIZE = 32            # pixels, square: 16 patches of 8 x 8 in both tiny towers

# Each tiny VLM: its vision tower's placeholder tokens (added to the tokenizer as special tokens), the token
# the chat template writes where an image goes, and the modules that stay 16-bit under QLoRA (the vision tower
# and projector, as practitioners keep them). The shapes: text as labmodels' tiny models (hidden 64, 2 layers),
# a vision tower of hidden 32 and 2 layers on 32 x 32 pictures in 8 x 8 patches.
_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=512, initializer_range=0.1)
_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
               image_size=IMAGE_SIZE, patch_size=8)
TINY_VLMS = {
    # LLaVA: every patch becomes one image token (the CLS token dropped): (32 / 8)^2 = 16 per picture
    "llava": dict(tokens=["<image>"], placeholder="<image>", vision_modules=("vision_tower", "multi_modal_projector")),
    # Gemma 3: the projector average-pools the 4 x 4 patches to mm_tokens_per_image = 4 tokens, between
    # begin- and end-of-image tokens
    "gemma3": dict(tokens=["<start_of_image>", "<end_of_image>", "<image_soft_token>"],
                   placeholder="<start_of_image>", vision_modules=("vision_tower", "multi_modal_projector")),
}
VISION_MODULES = ("vision_tower", "multi_modal_projector", "visual", "vision_model", "connector")


def chat_template(image_placeholder: str) -> str:
    """labmodels' chat format, with content that may be a list of parts: an image part writes the placeholder
    the processor expands into image tokens."""
    part = ("{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
            "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '" + image_placeholder + "' }}"
            "{% else %}{{ part['text'] | trim }}{% endif %}{% endfor %}{% endif %}")
    turn = "{{ '<|' + message['role'] + '|>\n' + message['content'] | trim }}"
    if turn not in labmodels.CHAT_TEMPLATE:
        raise AssertionError("labmodels.CHAT_TEMPLATE changed: update vlm.chat_template")
    return labmodels.CHAT_TEMPLATE.replace(turn, "{{ '<|' + message['role'] + '|>\n' }}" + part)


def _configs(family: str, tokenizer):
    """The transformers config of a tiny `family` VLM whose token ids match `tokenizer`."""
    import transformers

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in TINY_VLMS[family]["tokens"]}
    text = dict(_TEXT, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if family == "llava":
        return transformers.LlavaConfig(
            vision_config=transformers.CLIPVisionConfig(**_VISION, projection_dim=32),
            text_config=transformers.LlamaConfig(**text), image_token_id=ids["<image>"], vision_feature_layer=-1)
    return transformers.Gemma3Config(
        vision_config=dict(_VISION), text_config=dict(text, head_dim=16, sliding_window=64), mm_tokens_per_image=4,
        boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"])


def _processor(family: str, tokenizer):
    """The family's processor around `tokenizer`, with the PIL image processors (no torchvision needed)."""
    from transformers import Gemma3Processor, LlavaProcessor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    template = chat_template(TINY_VLMS[family]["placeholder"])
    if family == "llava":
        images = LlavaImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
        return LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=_VISION["patch_size"],
                              vision_feature_select_strategy="default", chat_template=template,
                              image_token="<image>", num_additional_image_tokens=1)
    images = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return Gemma3Processor(image_processor=images, tokenizer=tokenizer, chat_template=template, image_seq_length=4)


def build_tiny_vlm(out_dir: str | os.PathLike, family: str = "llava", seed: int = 0) -> Path:
    """Write a random-weight VLM of `family` with its processor (BPE tokenizer trained on the shipped text,
    image processor, chat template) to out_dir, so the lab loads it with from_pretrained like a Hub model."""
    import torch
    from transformers import AutoModelForImageTextToText

    if family not in TINY_VLMS:
        raise LabError(f"unknown VLM family {family!r}; known: {', '.join(TINY_VLMS)}")
    tokenizer = labmodels.build_tokenizer(chat_template=True)
    tokenizer.add_special_tokens({"additional_special_tokens": labmodels.ROLE_TOKENS + TINY_VLMS[family]["tokens"]})
    if family == "gemma3":  # Gemma3Processor reads these names off the tokenizer
        tokenizer._set_model_specific_special_tokens(special_tokens={
            "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(_configs(family, tokenizer))
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as staging:
        model.save_pretrained(staging)
        _processor(family, tokenizer).save_pretrained(staging)
    return out_dir


# --- data --------------------------------------------------------------------------------------------

def draw(colour: str, shape: str, rng: random.Random):
    """A 32 x 32 picture: one shape of `colour` on white, its size and place varied by rng."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    size = rng.randint(14, 24)
    x, y = rng.randint(2, IMAGE_SIZE - size - 2), rng.randint(2, IMAGE_SIZE - size - 2)
    box, fill = (x, y, x + size, y + size), COLOURS[colour]
    if shape == "square":
        pen.rectangle(box, fill=fill)
    elif shape == "circle":
        pen.ellipse(box, fill=fill)
    else:
        pen.polygon([(x + size // 2, y), (x, y + size), (x + size, y + size)], fill=fill)
    return image


def make_dataset(folder: str | os.PathLike, count: int = 240, seed: int = 0) -> Path:
    """Draw `count` pictures into folder/images and write folder/train.jsonl: one question per picture
    (its colour or its shape), in the layout {"images": [path], "messages": [user with an image part, assistant]}."""
    rng = random.Random(seed)
    folder = Path(folder)
    with atomic_directory(folder) as staging:
        (staging / "images").mkdir()
        with (staging / "train.jsonl").open("w") as out:
            for i in range(count):
                colour, shape = rng.choice(sorted(COLOURS)), rng.choice(SHAPES)
                asked = rng.choice(sorted(QUESTIONS))
                name = f"images/{i:05d}.png"
                draw(colour, shape, rng).save(staging / name)
                answer = colour if asked == "colour" else shape
                out.write(json.dumps({"images": [name], "messages": [
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTIONS[asked]}]},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}) + "\n")
    return folder / "train.jsonl"


def load_dataset(path: str | os.PathLike) -> list[dict]:
    """Rows of a VLM .jsonl as {"images": [PIL images], "prompt": [messages], "completion": [last answer]}.
    Image paths are relative to the file. Each row must end with an assistant turn (the answer learned)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise LabError(f"--dataset {path}: no such file; make one with `python gpu_labs/vlm.py data FOLDER`")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise LabError(f"{where}: not JSON ({err.msg})") from None
        messages, images = row.get("messages"), row.get("images", [])
        if not isinstance(messages, list) or len(messages) < 2 or messages[-1].get("role") != "assistant":
            raise LabError(f"{where}: needs \"messages\", a list ending with the assistant's answer")
        placeholders = sum(1 for m in messages if isinstance(m.get("content"), list)
                           for part in m["content"] if part.get("type") == "image")
        if placeholders != len(images):
            raise LabError(f"{where}: {len(images)} image(s) in \"images\" but {placeholders} image part(s) in the "
                           "messages; each picture needs one {\"type\": \"image\"} part where it appears")
        try:
            pictures = [Image.open(path.parent / name).convert("RGB") for name in images]
        except OSError as err:
            raise LabError(f"{where}: cannot read an image ({err})") from None
        rows.append({"images": pictures, "prompt": messages[:-1], "completion": messages[-1:]})
    if not rows:
        raise LabError(f"{path}: no rows")
    return rows


# --- the collator ------------------------------------------------------------------------------------

# --8<-- [start:collator]
class AnswerOnlyCollator:
    """Batch rows for training: labels on the answer tokens only.

    The prompt (the conversation up to the assistant's turn, with its pictures) goes through the processor,
    which replaces each image placeholder by the family's image tokens and turns each picture into pixel
    values. The answer is tokenized alone. Each row is its prompt's tokens followed by its answer's, padded
    on the right (so every row's positions start at 0); the labels are the input ids with -100 everywhere
    but the answer, so neither the image tokens nor the question are learned."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        render, tokenizer = self.processor.apply_chat_template, self.processor.tokenizer
        prompts, answers = [], []
        for row in rows:
            prompt = render(row["prompt"], tokenize=False, add_generation_prompt=True)
            whole = render(row["prompt"] + row["completion"], tokenize=False)
            if not whole.startswith(prompt):
                raise LabError("the chat template writes the prompt differently once the answer follows; "
                               "the answer cannot be cut out of it")
            prompts.append(prompt)
            answers.append(whole[len(prompt):])
        images = [row["images"] for row in rows]
        p = self.processor(images=images if any(images) else None, text=prompts, padding=True, return_tensors="pt",
                           add_special_tokens=False)
        answer_ids = tokenizer(answers, add_special_tokens=False)["input_ids"]
        keep = p["attention_mask"].bool()
        ids = [p["input_ids"][i][keep[i]].tolist() + answer_ids[i] for i in range(len(rows))]
        labels = [[-100] * int(keep[i].sum()) + answer_ids[i] for i in range(len(rows))]
        # Gemma 3 marks its image tokens (token type 1) for the bidirectional attention among them
        types = [p["token_type_ids"][i][keep[i]].tolist() + [0] * len(answer_ids[i])
                 for i in range(len(rows))] if "token_type_ids" in p else None
        width = max(map(len, ids))

        def pad(seqs, value):
            return torch.tensor([s + [value] * (width - len(s)) for s in seqs])

        batch = {k: v for k, v in p.items() if k not in ("input_ids", "attention_mask", "token_type_ids")}
        batch.update(input_ids=pad(ids, tokenizer.pad_token_id), attention_mask=pad([[1] * len(s) for s in ids], 0),
                     labels=pad(labels, -100))
        if types is not None:
            batch["token_type_ids"] = pad(types, 0)
        return batch
# --8<-- [end:collator]


# --- where the adapters go ---------------------------------------------------------------------------

def language_model_targets(model) -> str:
    """peft's target_modules for every linear layer of the language model and none of the vision tower or
    projector: a regular expression over full module names (peft matches a string pattern whole)."""
    names = sorted({name.rsplit(".", 1)[-1] for name in labmodels.linear_layers(model)
                    if ".language_model." in f".{name}." and not name.endswith("lm_head")})
    if not names:
        raise LabError("no linear layer under a 'language_model' module: is this a vision-language model "
                       "transformers builds with AutoModelForImageTextToText?")
    return r".*\.language_model\..*\.(" + "|".join(map(re.escape, names)) + ")"


def vision_modules_present(model) -> list[str]:
    """The top-level vision parts of `model` (tower, projector) by their transformers names."""
    return sorted({part for name, _ in model.named_modules() for part in name.split(".") if part in VISION_MODULES})


def _cli() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Tiny VLMs and drawn image data for the VLM lab.")
    sub = parser.add_subparsers(dest="command", required=True)
    tiny = sub.add_parser("tiny-vlm", help="write a tiny random-weight VLM + processor to a folder")
    tiny.add_argument("out_dir", help="folder to create (replaced if it exists)")
    tiny.add_argument("--family", choices=sorted(TINY_VLMS), default="llava", help="which VLM family")
    tiny.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    data = sub.add_parser("data", help="draw pictures and write FOLDER/train.jsonl")
    data.add_argument("out_dir", help="folder to create (replaced if it exists)")
    data.add_argument("--count", type=int, default=240, help="how many pictures (one question each)")
    data.add_argument("--seed", type=int, default=0, help="seed for colours, shapes and places")
    args = parser.parse_args()
    quiet_libraries()
    if args.command == "tiny-vlm":
        print(f"tiny {args.family} VLM and processor written to {build_tiny_vlm(args.out_dir, args.family, args.seed)}")
    else:
        print(f"{args.count} pictures and questions written to {make_dataset(args.out_dir, args.count, args.seed)}")


if __name__ == "__main__":
    run_cli(_cli)
