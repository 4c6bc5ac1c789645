"""Every choice list comes from the engine: ``loracalc.choices.CHOICES`` feeds the CLI's help and the widgets'
``<select>`` options, so a new optimizer, recipe, loss, attention, method, strategy or GPU cannot miss one."""
from __future__ import annotations

from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from loracalc import estimate_memory
from loracalc.choices import CHOICES, MEMORY_SETTINGS, SERVING_CHOICES
from loracalc.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
WIDGETS = ROOT / "snippets" / "widgets"
# the calculator offers every setting but precision (its full fine-tuning column is always mixed precision)
NOT_IN_CALCULATOR = {"precision"}


def command_help(monkeypatch, command: str = "memory") -> str:
    monkeypatch.setenv("COLUMNS", "100000")      # one line per option: no wrapping inside a name
    sub = next(a for a in _parser()._actions if a.dest == "command")
    return sub.choices[command].format_help()


@pytest.mark.parametrize("setting", sorted(CHOICES))
def test_every_option_is_in_the_cli_help(setting, monkeypatch):
    command = "serve" if setting in SERVING_CHOICES else "memory"
    text = command_help(monkeypatch, command)
    missing = [f"{key}: {label}" for key, label in CHOICES[setting].items() if f"{key}: {label}" not in text]
    assert not missing, f"python -m loracalc {command} --help does not list {missing}"


def built(page: str) -> BeautifulSoup:
    import hooks.widgets
    return BeautifulSoup(hooks.widgets.prerender((WIDGETS / page).read_text(), page), "html.parser")


def test_every_option_is_in_the_built_calculator():
    soup = built("memory-calculator.html")
    for setting, table in CHOICES.items():
        if setting in NOT_IN_CALCULATOR or setting not in MEMORY_SETTINGS:
            continue
        sel = soup.select_one(f'select[name="{setting}"]')
        assert sel is not None, f"the calculator has no <select name={setting!r}>"
        assert sel.get("data-choices") == setting, f"<select name={setting!r}> must read data-choices={setting!r}"
        assert [(o["value"], o.get_text()) for o in sel.find_all("option")] == list(table.items())
        assert len(sel.select("option[selected]")) == 1


def test_the_serving_calculator_offers_the_engines_formats_ranks_and_gpus():
    soup = built("serving-memory.html")
    for setting in ("weights", "max_lora_rank", "gpu"):
        sel = soup.select_one(f'select[name="{setting}"]')
        assert [(o["value"], o.get_text()) for o in sel.find_all("option")] == list(CHOICES[setting].items()), setting


def test_a_subset_keeps_the_engine_labels_and_one_default():
    sel = built("home-try.html").select_one('select[name="gpu"]')
    options = {o["value"]: o.get_text() for o in sel.find_all("option")}
    assert options and all(CHOICES["gpu"][k] == v for k, v in options.items())
    assert [o["value"] for o in sel.select("option[selected]")] == [sel["data-default"]]


def test_a_widget_asking_for_an_unknown_option_fails_the_build():
    from mkdocs.exceptions import PluginError

    import hooks.widgets
    html = '<select name="optimizer" data-choices="optimizer" data-only="adamw,lion"></select>'
    with pytest.raises(PluginError, match="lion"):
        hooks.widgets.fill_choices(BeautifulSoup(html, "html.parser"))


@pytest.mark.parametrize("setting", ["method", "optimizer", "attention", "precision", "recipe", "loss"])
def test_every_option_is_accepted_by_the_engine(setting):
    for value in CHOICES[setting]:
        kw = {setting: value}
        if setting == "precision":
            kw["method"] = "full"
        assert estimate_memory("llama-3.2-1b", seq_len=128, **kw).total_bytes > 0


def test_every_gpu_option_says_its_memory_once():
    """A reader picks a GPU by its memory: each label names it in GB, once (the catalog's own name may already)."""
    from loracalc.gpus import GPUS
    for key, label in CHOICES["gpu"].items():
        assert label.count("GB") == 1 and f"{GPUS[key].memory_gb:g}" in label, label
