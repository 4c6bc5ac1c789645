"""Figures and tables from the saved evidence experiment (``data/evidence.json``).

The experiment itself is ``gpu_labs/evidence/experiment.py`` (torch + peft); this module only reads its
results, with the standard library, so the page's prose quotes the saved numbers and nothing else.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .registry import figure, table

DATA = Path(__file__).resolve().parent / "data" / "evidence.json"

METHOD_LABEL = {"full": "full fine-tuning", "lora_qv": "LoRA q,v", "lora_all": "LoRA all-linear",
                "qlora_qv": "QLoRA (NF4) q,v"}


@lru_cache(maxsize=1)
def results() -> dict:
    """The saved results of the full run."""
    return json.loads(DATA.read_text(encoding="utf-8"))


def config(name: str) -> dict:
    """One configuration's summary over seeds, e.g. ``"lora_qv_r8"`` or ``"full"``."""
    for c in results()["configs"]:
        if c["name"] == name:
            return c
    raise KeyError(f"no configuration {name!r} in evidence.json")


def percent(x: float, digits: int = 0) -> str:
    return f"{100 * x:.{digits}f}%"


def trainable(name: str) -> str:
    p = config(name)["trainable_percent"]
    return f"{p:.2f}%" if p >= 0.1 else f"{p:.3f}%"


def kib(n: float) -> str:
    return f"{n / 1024:,.0f} KiB"


def spread(stat: dict, fmt) -> str:
    """Mean with the range over seeds, e.g. ``0.93 (0.91-0.95)``."""
    return f"{fmt(stat['mean'])} ({fmt(stat['min'])}–{fmt(stat['max'])})"


def energy_at(rank: int, which: str = "update") -> float:
    """Mean over matrix kinds of the share of energy in the top ``rank`` directions."""
    sp = results()["spectra"]
    i = sp["ranks"].index(rank)
    kinds = sp["kinds"].values()
    return sum(k[which][i] for k in kinds) / len(kinds)


# --- inline figures -------------------------------------------------------------------------------

def _gain(name):
    return lambda: f"{config(name)['gain_fraction']['mean']:.2f}"


def _exact(name):
    return lambda: percent(config(name)["exact_match"]["mean"])


def _trainable(name):
    return lambda: trainable(name)


for _name in ("lora_qv_r1", "lora_qv_r8", "lora_qv_r64", "lora_all_r1", "lora_all_r8", "lora_all_r64", "qlora_qv_r8",
              "full"):
    _short = (_name.replace("qlora_qv_", "qlora_") if _name.startswith("qlora")
              else _name.replace("lora_qv_", "qv_").replace("lora_all_", "all_"))
    figure(f"evidence_{_short}_gain_fraction")(_gain(_name))
    figure(f"evidence_{_short}_exact_match")(_exact(_name))
    figure(f"evidence_{_short}_trainable_percent")(_trainable(_name))


@figure("evidence_r8_gain_fraction")
def r8_gain_fraction() -> str:
    return _gain("lora_qv_r8")()


@figure("evidence_r8_gain_range")
def r8_gain_range() -> str:
    g = config("lora_qv_r8")["gain_fraction"]
    return f"{g['min']:.3f}–{g['max']:.3f}"


@figure("evidence_min_lora_gain_fraction")
def min_lora_gain_fraction() -> str:
    return f"{min(c['gain_fraction']['mean'] for c in results()['configs'] if 'lora' in c['family']):.2f}"


@figure("evidence_best_lora_exact_match")
def best_lora_exact_match() -> str:
    best = max((c for c in results()["configs"] if c["family"] != "full"), key=lambda c: c["exact_match"]["mean"])
    return f"{percent(best['exact_match']['mean'])} ({METHOD_LABEL[best['family']]}, r={best['rank']})"


@figure("evidence_total_params")
def total_params() -> str:
    return f"{results()['base']['params']:,}"


@figure("evidence_base_loss")
def base_loss() -> str:
    return f"{results()['base']['task_val_loss']:.2f}"


@figure("evidence_full_loss")
def full_loss() -> str:
    return f"{config('full')['val_loss']['mean']:.3f}"


@figure("evidence_r8_loss")
def r8_loss() -> str:
    return f"{config('lora_qv_r8')['val_loss']['mean']:.3f}"


@figure("evidence_pretrain_steps")
def pretrain_steps() -> str:
    return f"{results()['settings']['pretrain_steps']:,}"


@figure("evidence_pretrain_tokens")
def pretrain_tokens() -> str:
    return f"{results()['base']['tokens']:,}"


@figure("evidence_vocab_size")
def vocab_size() -> str:
    return str(results()["task"]["vocab_size"])


@figure("evidence_ft_steps")
def ft_steps() -> str:
    return str(results()["settings"]["ft_steps"])


@figure("evidence_ft_batch")
def ft_batch() -> str:
    return str(results()["settings"]["ft_batch"])


@figure("evidence_seeds")
def seeds() -> str:
    return str(len(results()["settings"]["seeds"]))


@figure("evidence_example")
def example() -> str:
    t = results()["task"]
    return f"`{t['example_prompt']}{t['example_target']}`"


@figure("evidence_lr_grid")
def lr_grid() -> str:
    return ", ".join(f"{x:g}" for x in results()["settings"]["lr_grid"])


for _fam in ("full", "lora_qv", "lora_all", "qlora_qv"):
    figure(f"evidence_lr_{_fam}")(lambda _f=_fam: f"{results()['learning_rates'][_f]:g}")


@figure("evidence_energy_top8_update")
def energy_top8_update() -> str:
    return percent(energy_at(8))


@figure("evidence_energy_top8_random")
def energy_top8_random() -> str:
    return percent(energy_at(8, "random"))


@figure("evidence_energy_top1_update")
def energy_top1_update() -> str:
    return percent(energy_at(1))


@figure("evidence_energy_top1_random")
def energy_top1_random() -> str:
    return percent(energy_at(1, "random"))


@figure("evidence_energy_top16_update")
def energy_top16_update() -> str:
    return percent(energy_at(16))


@figure("evidence_memory_full")
def memory_full() -> str:
    return kib(config("full")["memory_bytes"]["total"])


@figure("evidence_memory_r8")
def memory_r8() -> str:
    return kib(config("lora_qv_r8")["memory_bytes"]["total"])


@figure("evidence_memory_qlora")
def memory_qlora() -> str:
    return kib(config("qlora_qv_r8")["memory_bytes"]["total"])


@figure("evidence_greedy_check")
def greedy_check() -> str:
    checks = results()["spectra"]["greedy_check"]
    return f"{sum(c['agree'] for c in checks)} of {sum(c['examples'] for c in checks)}"


@figure("evidence_wall_minutes")
def wall_minutes() -> str:
    return f"{results()['wall_seconds'] / 60:.0f}"


@figure("evidence_versions")
def versions() -> str:
    v = results()["library_versions"]
    return ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "transformers", "peft", "bitsandbytes") if k in v)


# --- tables ---------------------------------------------------------------------------------------

@table("evidence_results")
def results_table() -> str:
    """One row per method: what it trains and what it reaches (means, seed ranges in brackets)."""
    rows = ["| method | r | trainable params | learning rate | val loss | exact match | fraction of full FT's loss gain |",
            "|---|---|---|---|---|---|---|"]
    for c in results()["configs"]:
        rows.append(
            f"| {METHOD_LABEL[c['family']]} | {c['rank'] or '–'} | {c['trainable_params']:,} ({trainable(c['name'])}) "
            f"| {c['lr']:g} | {spread(c['val_loss'], lambda x: f'{x:.3f}')} "
            f"| {spread(c['exact_match'], lambda x: f'{100 * x:.0f}%')} "
            f"| {spread(c['gain_fraction'], lambda x: f'{x:.3f}')} |")
    return "\n".join(rows)


@table("evidence_costs")
def costs_table() -> str:
    """One row per method: training state in bytes, activations kept for backward, time per step."""
    rows = ["| method | r | weights | gradients | AdamW state | total | saved for backward | ms / step |",
            "|---|---|---|---|---|---|---|---|"]
    for c in results()["configs"]:
        m = c["memory_bytes"]
        rows.append(f"| {METHOD_LABEL[c['family']]} | {c['rank'] or '–'} | {kib(m['weights'])} | {kib(m['grads'])} "
                    f"| {kib(m['optimizer'])} | {kib(m['total'])} | {kib(m['saved_for_backward'])} "
                    f"| {c['ms_per_step']['mean']:.0f} |")
    return "\n".join(rows)


@table("evidence_energy")
def energy_table() -> str:
    """Share of the full fine-tuning update's energy in its top r directions, next to a Gaussian matrix."""
    sp = results()["spectra"]
    shown = [r for r in (1, 4, 8, 16) if r in sp["ranks"]]
    head = " | ".join(f"top {r}: ΔW / random" for r in shown)
    rows = [f"| matrix | shape | {head} | ‖ΔW‖ / ‖W‖ |", "|---|---|" + "---|" * len(shown) + "---|"]
    for kind, k in sp["kinds"].items():
        cells = " | ".join(f"{percent(k['update'][sp['ranks'].index(r)])} / {percent(k['random'][sp['ranks'].index(r)])}"
                           for r in shown)
        rows.append(f"| `{kind}` | {k['shape'][0]}×{k['shape'][1]} | {cells} | {k['relative_change']:.2f} |")
    return "\n".join(rows)


@table("evidence_lr_sweep")
def lr_sweep_table() -> str:
    """Final validation loss (and exact match) for each method family and learning rate, seed 0."""
    sweep = results()["lr_sweep"]
    grid = results()["settings"]["lr_grid"]
    rows = ["| method (rank) | " + " | ".join(f"{x:g}" for x in grid) + " |", "|---|" + "---|" * len(grid)]
    for fam, label in METHOD_LABEL.items():
        cells = []
        for lr in grid:
            hit = [r for r in sweep if r["family"] == fam and r["lr"] == lr]
            if not hit:
                cells.append("–")
                continue
            text = f"{hit[0]['val_loss']:.3f} ({100 * hit[0]['exact_match']:.0f}%)"
            cells.append(f"**{text}**" if results()["learning_rates"][fam] == lr else text)
        rank = next((r["rank"] for r in sweep if r["family"] == fam), None)
        rows.append(f"| {label}{f' ({rank})' if rank else ''} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


@figure("evidence_format_only_loss")
def format_only_loss() -> str:
    return f"{results()['format_only']['val_loss']:.2f}"


@figure("evidence_format_only_gain_fraction")
def format_only_gain_fraction() -> str:
    return f"{results()['format_only']['gain_fraction']:.2f}"


@figure("evidence_lr_note")
def lr_note() -> str:
    """The sweep's outcome in one sentence (which rate each family picked, and LoRA's over full FT's)."""
    lrs = results()["learning_rates"]
    ratio = lrs["lora_qv"] / lrs["full"]
    relation = (f"{ratio:g} times the full fine-tuning rate" if ratio > 1 else
                "the same as full fine-tuning" if ratio == 1 else f"{1 / ratio:g} times lower than full fine-tuning")
    return (f"Full fine-tuning did best at {lrs['full']:g}; LoRA on q,v at {lrs['lora_qv']:g} ({relation}), "
            f"LoRA on every linear layer at {lrs['lora_all']:g} and QLoRA at {lrs['qlora_qv']:g}.")


@figure("evidence_mode_exact_match")
def mode_exact_match() -> str:
    return percent(results()["format_only"]["mode_exact_match"])


@figure("evidence_val_examples")
def val_examples() -> str:
    return str(results()["task"]["val_examples"])
