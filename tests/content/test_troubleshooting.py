"""The troubleshooting page: at least 20 entries, each with a symptom, the text people search for, a cause, a
fix and a link to a tracker thread or library source; silent failures first; the defaults it quotes match the
installed libraries; and the messages it quotes are the ones those libraries raise."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from lora_course import figures, troubleshooting

from .helpers import ROOT, TOKEN, page_text

PAGE = "troubleshooting.md"
FIELDS = ("Symptom", "Searched as", "Cause", "Fix", "Source")
LINK = re.compile(r"\]\((https://github\.com/[\w.-]+/[\w.-]+/(?:issues|pull)/\d+)\)")


def entries() -> list[tuple[str, str, str]]:
    """(section anchor, entry title, entry text) for each ### entry, in page order."""
    out, section = [], ""
    for block in re.split(r"^(?=#{2,3} )", page_text(PAGE), flags=re.M):
        head = block.splitlines()[0] if block.strip() else ""
        if head.startswith("## "):
            section = re.search(r"#([\w-]+) \}", head).group(1)
        elif head.startswith("### "):
            out.append((section, head, block))
    return out


def test_at_least_twenty_entries_each_complete():
    found = entries()
    assert len(found) >= 20, len(found)
    for _, head, text in found:
        for field in FIELDS:
            assert f"**{field}:**" in text, f"{head}: no {field}"
        assert LINK.search(text.split("**Source:**", 1)[1]), f"{head}: its source names no tracker thread"
        assert re.search(r"\{ #[\w-]+ \}$", head), f"{head}: needs an anchor the quiz can link to"


def test_silent_failures_come_first_and_are_the_larger_part():
    sections = [section for section, _, _ in entries()]
    assert sections == sorted(sections, key=lambda s: s != "silent")   # all silent ones before the errors
    assert sections.count("silent") >= 10


def test_links_name_real_trackers_of_the_libraries():
    links = [m for _, _, text in entries() for m in LINK.findall(text)]
    repos = {"/".join(u.split("/")[3:5]) for u in links}
    for repo in ("huggingface/peft", "huggingface/trl", "huggingface/transformers",
                 "bitsandbytes-foundation/bitsandbytes", "unslothai/unsloth"):
        assert repo in repos, f"no thread from {repo}"


def test_every_token_resolves_and_no_number_is_typed_for_a_default():
    text = page_text(PAGE)
    for kind, name in TOKEN.findall(text):
        assert (figures.render_figure if kind == "fig" else figures.render_table)(name).strip()
    prose = TOKEN.sub("", text)
    for typed in ("1024", "1,024", "max_lora_rank 16"):
        assert typed not in prose, f"{PAGE} types {typed!r}; use a figure"


def test_page_is_in_the_nav_and_optional():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(rf":\s*{re.escape(PAGE)}\s*$", nav, re.M)
    assert "core: true" not in page_text(PAGE)


def _source(module: str, rel: str) -> str:
    """A file of an installed library, read without importing it (torch and trl take seconds to import)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{module} is not installed")
    return (Path(list(spec.submodule_search_locations)[0]) / rel).read_text(encoding="utf-8")


def test_trl_max_length_default_matches_trl():
    src = _source("trl", "trainer/sft_config.py")
    default = int(re.search(r"\n    max_length: [^=]+= field\(\s*default=(\d+)", src).group(1))
    assert figures.render_figure("trl_sft_default_max_length") == f"{default:,}"
    assert all(len(source) > 20 for _, source in troubleshooting.DEFAULTS.values())


# (library, file in it, text as the page quotes it, the same text as the source writes it)
QUOTED = [
    ("torch", "utils/checkpoint.py", "None of the inputs have requires_grad=True. Gradients will be None", None),
    ("torch", "amp/grad_scaler.py", "Attempting to unscale FP16 gradients.", None),
    ("transformers", "trainer_utils.py", "You cannot perform fine-tuning on purely quantized models.", None),
    ("transformers", "generation/utils.py", "A decoder-only architecture is being used, but right-padding was detected!",
     None),
    ("transformers", "data/data_collator.py", "labels[labels == self.tokenizer.pad_token_id] = -100", None),
    ("transformers", "trainer.py", "stage3_gather_16bit_weights_on_model_save=false. Saving the full checkpoint instead",
     None),
    ("peft", "tuners/tuners_utils.py", "not found in the base model. Please check the target modules and try again.",
     "Please check the target modules and try again."),  # the source splits it over two literals
    ("peft", "peft_model.py", "Found missing adapter keys while loading the checkpoint", None),
    ("peft", "tuners/lora/bnb.py", "Merge lora module to 4-bit linear may get different generations due to rounding errors.",
     None),
    ("peft", "utils/save_and_load.py",
     "Setting `save_embedding_layers` to `True` as the embedding layer has been resized during finetuning.", None),
]


@pytest.mark.parametrize("module,rel,quoted,in_source", QUOTED, ids=[q[2][:40] for q in QUOTED])
def test_quoted_messages_are_the_libraries_own(module, rel, quoted, in_source):
    assert (in_source or quoted) in _source(module, rel), f"{module}/{rel} no longer says {quoted!r}"
    page = page_text(PAGE).replace("self.tokenizer.pad_token_id", "tokenizer.pad_token_id")
    assert quoted.replace("self.tokenizer", "tokenizer") in page, quoted


def test_peft_loads_adapters_frozen_by_default():
    src = _source("peft", "peft_model.py")
    signature = re.search(r"def from_pretrained\((.*?)\)", src, re.S).group(1)
    assert "is_trainable: bool = False" in signature
