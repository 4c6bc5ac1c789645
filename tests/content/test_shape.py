"""The module's shape: a 90-minute core path, every page stating its minutes, optional pages marked optional,
the deep dives' runnable examples running, and the completion page naming what comes next honestly."""
from __future__ import annotations

import contextlib
import io
import re

import pytest
import yaml

from .helpers import DOCS, ROOT, page_text

CORE_MINUTES = 90  # the module's promise (README, site description, home page): "about 90"
CORE_SLACK = 5     # issue 28: the core path's minutes add up to about 90, not to an exact total


def front_matter(rel: str) -> dict:
    text = page_text(rel)
    assert text.startswith("---\n"), rel
    return yaml.safe_load(text[4:text.index("\n---\n", 4)]) or {}


def all_pages() -> list[str]:
    return sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "overrides" not in p.parts)


def nav_pages() -> list[str]:
    """Pages of mkdocs.yml's nav, in order (the !ENV and !!python tags are irrelevant here)."""
    class Loader(yaml.SafeLoader):
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)["nav"]
    out = []

    def walk(items):
        for item in items:
            if isinstance(item, str):
                out.append(item)
            else:
                for value in item.values():
                    walk(value) if isinstance(value, list) else out.append(value)
    walk(nav)
    return out


def test_every_page_states_its_minutes():
    for rel in all_pages():
        minutes = front_matter(rel).get("minutes")
        assert isinstance(minutes, int) and 1 <= minutes <= 60, f"{rel}: front matter needs minutes: N"


def test_the_core_path_is_ninety_minutes_and_leads_the_nav():
    # notebook pages (.ipynb) carry no front matter; they are optional labs
    core = [rel for rel in nav_pages() if rel.endswith(".md") and front_matter(rel).get("core")]
    total = sum(front_matter(rel)["minutes"] for rel in core)
    assert abs(total - CORE_MINUTES) <= CORE_SLACK, f"the core path takes {total} minutes, not about {CORE_MINUTES}"
    # the core pages are the first pages of the nav, in reading order; everything after them is optional
    assert nav_pages()[:len(core)] == core
    assert core[0] == "index.md" and core[-1] == "complete.md"


def test_labs_evidence_and_deep_dives_are_optional():
    for rel in all_pages():
        if rel.startswith(("labs/", "deep-dives/")) or rel == "evidence.md":
            assert not front_matter(rel).get("core"), rel


RUNNABLE = re.compile(r"```\{\.python \.runnable\}\n(.*?)```", re.S)


@pytest.mark.parametrize("rel", [p for p in all_pages() if p.startswith("deep-dives/")])
def test_deep_dive_examples_run(rel):
    for code in RUNNABLE.findall(page_text(rel)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, rel, "exec"), {"__name__": "__main__"})
        assert out.getvalue().strip(), f"{rel}: an example printed nothing"


def test_loss_mask_example_masks_the_prompt_and_keeps_eos():
    code = RUNNABLE.findall(page_text("deep-dives/data-and-evaluation.md"))[0]
    ns: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, ns)
    ids, labels = ns["build_example"]([1, 2, 3], [7, 8], eos_id=0)
    assert labels == [-100, -100, -100, 7, 8, 0] and ids[-1] == 0   # -100: torch cross_entropy's ignore_index


def test_completion_page_names_the_next_module_honestly():
    text = page_text("complete.md")
    assert "not part of this site" in text
    links = re.findall(r"\]\((https://[^)]+)\)", text[text.index('class="lc-next"'):])
    assert len(links) >= 2, "the up-next box links where a reader can go"


def test_loracalc_build_time_note_appears_once():
    hits = [rel for rel in all_pages() if "computed at build time by" in page_text(rel)]
    assert hits == ["index.md"]


def test_the_core_path_carries_the_data_essentials():
    # issue 28: what most often breaks a first fine-tune is taught on the core path, not only in a deep dive
    core = [rel for rel in nav_pages() if rel.endswith(".md") and front_matter(rel).get("core")]
    text = "\n".join(page_text(rel) for rel in core)
    for essential in ("apply_chat_template", "end-of-sequence", "-100", "held-out", "load_best_model_at_end",
                      "EarlyStoppingCallback", "overfitting"):
        assert essential in text, f"the core path does not mention {essential}"
