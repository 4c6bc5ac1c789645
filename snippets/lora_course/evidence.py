"""Figures and tables from the saved evidence experiment (``data/evidence.json``, schema 2).

The experiment itself is ``gpu_labs/evidence/experiment.py`` (torch + peft); this module only reads its
results, with the standard library, so the page's prose quotes the saved numbers and nothing else.

A *cell* is one method at one rank under one LoRA scaling scheme (``lora_qv_r64_rslora``); each cell got
its own learning-rate search on the validation split, and its summary covers the chosen rate's seeds,
scored on the test split.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from .registry import figure, table

DATA = Path(__file__).resolve().parent / "data" / "evidence.json"

SCHEME_LABEL = {"fixed": "fixed α = 16 (LoRA paper)", "2r": "α = 2r", "rslora": "rsLoRA, α = 5.66"}
SCHEME_SHORT = {"fixed": "fixed α", "2r": "α = 2r", "rslora": "rsLoRA"}


@lru_cache(maxsize=1)
def results() -> dict:
    """The saved results of the full run."""
    return json.loads(DATA.read_text(encoding="utf-8"))


def cells() -> list[dict]:
    return results()["cells"]


def cell(name: str) -> dict:
    """One cell's summary over seeds, e.g. ``"lora_qv_r8_fixed"`` or ``"full"``."""
    for c in cells():
        if c["name"] == name:
            return c
    raise KeyError(f"no cell {name!r} in evidence.json")


def has(name: str) -> bool:
    return any(c["name"] == name for c in cells())


def seed0_runs(name: str) -> list[dict]:
    """One cell's seed-0 runs, one per learning rate its search tried, from the lowest rate up."""
    return sorted((x for x in results()["runs"] if x["cell"] == name and x["seed"] == 0), key=lambda x: x["lr"])


def percent(x: float, digits: int = 0) -> str:
    return f"{100 * x:.{digits}f}%"


def interval(stat: dict, fmt) -> str:
    """Mean with its 95% interval over seeds, e.g. ``41% (35–47%)``; one seed: the mean alone."""
    if stat["n"] < 2:
        return f"{fmt(stat['mean'])} (1 seed)"
    lo, hi = stat["ci95"]
    return f"{fmt(stat['mean'])} ({fmt(lo)} to {fmt(hi)})"


def pct_interval(stat: dict) -> str:
    """Exact match as percentages; the interval is clipped to 0-100% (a t-interval over three seeds can
    cross the ends, and no rate can)."""
    if stat["n"] < 2:
        return f"{percent(stat['mean'])} (1 seed)"
    lo, hi = (min(1.0, max(0.0, v)) for v in stat["ci95"])
    return f"{percent(stat['mean'])} ({percent(lo)}–{percent(hi)})"


def label(c: dict) -> str:
    """``LoRA q,v r=64, rsLoRA``; at r = 8 the schemes coincide, so no scheme is named."""
    if c["rank"] is None:
        return c["label"]
    text = f"{c['label']} r={c['rank']}"
    return text if c["rank"] == 8 else f"{text}, {SCHEME_SHORT[c['scheme']]}"


def lr_text(x: float) -> str:
    return f"{x:.2g}"


def energy_at(rank: int, which: str = "update") -> float:
    """Mean over matrix kinds of the share of energy in the top ``rank`` directions."""
    sp = results()["spectra"]
    i = sp["ranks"].index(rank)
    kinds = sp["kinds"].values()
    return sum(k[which][i] for k in kinds) / len(kinds)


def kb(n: float) -> str:
    return f"{n / 1000:,.0f} kB"  # decimal, as everywhere on the site


def best_lr(scheme: str, rank: int, method: str = "lora_qv") -> float:
    """The chosen rate of a LoRA cell; at r = 8 every scheme shares the one cell."""
    for r, lr, _edge in results()["lr_by_rank"][scheme]:
        if r == rank:
            return lr
    raise KeyError(f"no {method} cell at r={rank} under {scheme}")


# --- setup ----------------------------------------------------------------------------------------

def _setting(key, fmt=str):
    return lambda: fmt(results()["settings"][key])


for _key in ("ft_steps", "ft_batch", "n_task_train", "lr_points", "max_widen", "hidden_size", "num_layers",
             "intermediate_size", "num_heads"):
    figure(f"evidence_{_key}")(_setting(_key))
figure("evidence_pretrain_steps")(_setting("pretrain_steps", lambda v: f"{v:,}"))
figure("evidence_fixed_alpha")(_setting("fixed_alpha", lambda v: f"{v:g}"))
figure("evidence_rslora_alpha")(_setting("rslora_alpha", lambda v: f"{v:.2f}"))


@figure("evidence_seeds")
def seeds() -> str:
    return str(len(results()["settings"]["seeds"]))


@figure("evidence_total_params")
def total_params() -> str:
    return f"{results()['base']['params']:,}"


@figure("evidence_pretrain_tokens")
def pretrain_tokens() -> str:
    return f"{results()['base']['tokens']:,}"


@figure("evidence_vocab_size")
def vocab_size() -> str:
    return str(results()["task"]["vocab_size"])


@figure("evidence_example")
def example() -> str:
    t = results()["task"]
    return f"`{t['example_prompt']}{t['example_target']}`"


@figure("evidence_val_examples")
def val_examples() -> str:
    return str(results()["task"]["val_examples"])


@figure("evidence_test_examples")
def test_examples() -> str:
    return str(results()["task"]["test_examples"])


@figure("evidence_heldout_tokens")
def heldout_tokens() -> str:
    t, s = results()["task"], results()["settings"]
    return f"{t['heldout_pretrain_sequences'] * s['seq_len']:,}"


METHOD_NAME = {"full": "full fine-tuning", "lora_qv": "LoRA q,v", "lora_all": "LoRA all-linear", "dora_qv": "DoRA q,v",
               "qlora_qv": "QLoRA (NF4) q,v", "pissa_qv": "PiSSA q,v"}


def _planned_label(method, rank, scheme) -> str:
    if rank is None:
        return METHOD_NAME[method]
    return f"{METHOD_NAME[method]} r={rank}" + ("" if rank == 8 else f", {SCHEME_SHORT[scheme]}")


@figure("evidence_cells_not_run")
def cells_not_run() -> str:
    """Planned cells (Settings.cells) that the run's deadline left out, or "none"."""
    present = {c["name"] for c in cells()}
    cut = {c["name"]: len(c["rates_tried"]) for c in results().get("cut_short", [])}
    missing = []
    for m, r, sc in results()["settings"]["cells"]:
        name = "full" if r is None else f"{m}_r{r}_{sc}"
        if name in cut:
            missing.append(f"{_planned_label(m, r, sc)} (its search stopped after {cut[name]} rates)")
        elif name not in present:
            missing.append(_planned_label(m, r, sc))
    return "none" if not missing else "; ".join(missing)


@figure("evidence_cells_one_seed")
def cells_one_seed() -> str:
    """Cells that got only the search's seed before the deadline (no interval), or "none"."""
    one = [label(c) for c in cells() if c["exact_match"]["n"] < 2]
    return "none" if not one else "; ".join(one)


@figure("evidence_seed_counts")
def seed_counts() -> str:
    """How many seeds each cell got at its chosen rate, in words: "3 for every cell", or the counts by cell."""
    by_n: dict[int, list[str]] = {}
    for c in cells():
        by_n.setdefault(c["exact_match"]["n"], []).append(label(c))
    if len(by_n) == 1:
        return f"{next(iter(by_n))} for every cell"
    return "; ".join(f"{n} for {', '.join(names)}" for n, names in sorted(by_n.items(), reverse=True))


@figure("evidence_cell_count")
def cell_count() -> str:
    return str(len(cells()))


@figure("evidence_run_count")
def run_count() -> str:
    return str(len(results()["runs"]))


@figure("evidence_median_run_seconds")
def median_run_seconds() -> str:
    """Median training time of one fine-tuning run (steps only, evaluation excluded), on the busy machine."""
    times = sorted(r["train_seconds"] for r in results()["runs"])
    return f"{times[len(times) // 2]:.0f}"


@figure("evidence_lr_step")
def lr_step() -> str:
    return f"{results()['settings']['lr_step']:.2f}"


@figure("evidence_wall_minutes")
def wall_minutes() -> str:
    return f"{results()['wall_seconds'] / 60:.0f}"


@figure("evidence_workers")
def workers() -> str:
    return str(results()["workers"])


@figure("evidence_command")
def command() -> str:
    """The command(s) that produced the file: a resumed run lists each invocation with its wall time."""
    calls = results().get("invocations") or [{"command": results()["command"], "wall_seconds": results()["wall_seconds"]}]
    return "; then ".join(f"`{c['command']}` ({c['wall_seconds'] / 60:.0f} min)" for c in calls)


@figure("evidence_versions")
def versions() -> str:
    v = results()["library_versions"]
    return ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "transformers", "peft", "bitsandbytes") if k in v)


# --- baselines ------------------------------------------------------------------------------------

@figure("evidence_base_test_loss")
def base_test_loss() -> str:
    return f"{results()['base']['task_test_loss']:.2f}"


@figure("evidence_base_exact_match")
def base_exact_match() -> str:
    return percent(results()["base"]["task_test_exact_match"])


@figure("evidence_mode_answer")
def mode_answer() -> str:
    return f"`{results()['baselines']['most_common_answer']['answer']}`"


@figure("evidence_mode_exact_match")
def mode_exact_match() -> str:
    return percent(results()["baselines"]["most_common_answer"]["test_exact_match"], 1)


@figure("evidence_mode_expected_exact_match")
def mode_expected_exact_match() -> str:
    return percent(results()["baselines"]["most_common_answer"]["expected_exact_match"], 1)


@figure("evidence_format_only_loss")
def format_only_loss() -> str:
    return f"{results()['baselines']['format_only']['loss']:.2f}"


@figure("evidence_format_only_gain_fraction")
def format_only_gain_fraction() -> str:
    return f"{results()['baselines']['format_only']['gain_fraction']:.2f}"


# --- headline results -----------------------------------------------------------------------------

def _exact(name):
    return lambda: pct_interval(cell(name)["exact_match"])


def _gain(name):
    return lambda: interval(cell(name)["gain_fraction"], lambda x: f"{x:.2f}")


def _trainable(name):
    return lambda: f"{cell(name)['trainable_percent']:.2f}%"


def _forgetting(name):
    return lambda: interval(cell(name)["forgetting"], lambda x: f"{x:+.2f}")


def _lr(name):
    return lambda: lr_text(cell(name)["lr"])


_SHORT = {"full": "full", "lora_qv_r8_fixed": "qv_r8", "lora_all_r8_fixed": "all_r8", "dora_qv_r8_fixed": "dora_r8",
          "pissa_qv_r8_fixed": "pissa_r8", "qlora_qv_r1_fixed": "qlora_r1", "qlora_qv_r64_fixed": "qlora_r64"}
for _name, _short in _SHORT.items():
    figure(f"evidence_{_short}_exact_match")(_exact(_name))
    figure(f"evidence_{_short}_gain_fraction")(_gain(_name))
    figure(f"evidence_{_short}_trainable_percent")(_trainable(_name))
    figure(f"evidence_{_short}_forgetting")(_forgetting(_name))
    figure(f"evidence_{_short}_lr")(_lr(_name))


@figure("evidence_best_lora_cell")
def best_lora_cell() -> str:
    """The LoRA-family cell with the highest mean exact match, and its score."""
    best = max((c for c in cells() if c["rank"] is not None), key=lambda c: c["exact_match"]["mean"])
    return f"{label(best)}: {pct_interval(best['exact_match'])}"


@figure("evidence_lora_exact_range")
def lora_exact_range() -> str:
    """Lowest and highest mean exact match over every adapter cell."""
    means = [c["exact_match"]["mean"] for c in cells() if c["rank"] is not None]
    return f"{percent(min(means))} to {percent(max(means))}"


@figure("evidence_full_forget_after")
def full_forget_after() -> str:
    return f"{cell('full')['forget_after']['mean']:.2f}"


@figure("evidence_base_heldout_loss")
def base_heldout_loss() -> str:
    return f"{results()['base']['heldout_pretrain_loss']:.2f}"


@figure("evidence_lora_forgetting_range")
def lora_forgetting_range() -> str:
    """Smallest and largest mean forgetting over the adapter cells (change in held-out pretraining loss)."""
    vals = [c["forgetting"]["mean"] for c in cells() if c["rank"] is not None]
    return f"{min(vals):+.2f} to {max(vals):+.2f}"


@figure("evidence_qlora_forget_note")
def qlora_forget_note() -> str:
    """What quantizing alone does to the held-out loss (the NF4 base before training), when QLoRA ran."""
    q = [c for c in cells() if c["method"] == "qlora_qv"]
    if not q:
        return "No QLoRA cell was reached, so what quantizing alone costs the old text is not measured here."
    start, base = q[0]["forget_before"]["mean"], results()["base"]["heldout_pretrain_loss"]
    shift = start - base
    smallest = min(c["forgetting"]["mean"] for c in q)
    if abs(shift) < 0.05 * abs(smallest):  # under a twentieth of QLoRA's own figure: not worth splitting out
        moved = "by less than 0.0001" if abs(shift) < 5e-5 else f"by {shift:+.4f}"
        return (f"Before any training the NF4 base scores {start:.4f} on that text against the unquantized base's "
                f"{base:.4f}, so quantizing alone moved it {moved}: QLoRA's figure is fine-tuning's doing.")
    return (f"Before any training the NF4 base scores {start:.3f} on that text against the unquantized base's "
            f"{base:.3f}, so {shift:+.3f} of QLoRA's figure is the cost of quantizing, not of fine-tuning.")


@figure("evidence_learn_forget_verdict")
def learn_forget_verdict() -> str:
    """Which adapter cells both learned less and forgot less than full fine-tuning (means over seeds)."""
    full = cell("full")
    lora = [c for c in cells() if c["rank"] is not None]
    both = [c for c in lora if c["exact_match"]["mean"] < full["exact_match"]["mean"]
            and c["forgetting"]["mean"] < full["forgetting"]["mean"]]
    return f"{len(both)} of the {len(lora)} adapter cells"


# --- learning rate against rank -------------------------------------------------------------------

@figure("evidence_lr_vs_rank_sentence")
def lr_vs_rank_sentence() -> str:
    """Per scheme, the chosen rates at r = 1, 8 and 64 and how far they move, in one sentence each."""
    parts = []
    for scheme, pts in results()["lr_by_rank"].items():
        rates = {r: lr for r, lr, _ in pts}
        lo, hi = min(rates.values()), max(rates.values())
        steps = round(math.log(hi / lo) / math.log(results()["settings"]["lr_step"]))
        move = "the same rate at every rank" if steps == 0 else (
            f"{steps} grid step{'s' if steps > 1 else ''} apart (a factor of {hi / lo:.2g})")
        listed = ", ".join(f"{lr_text(lr)} at r={r}" for r, lr in sorted(rates.items()))
        parts.append(f"{SCHEME_LABEL[scheme]}: {listed}, {move}")
    return "; ".join(parts) + "."


@figure("evidence_edge_cells")
def edge_cells() -> str:
    """Cells whose chosen rate was still at an edge of what was tried after widening (none is the hope)."""
    edge = [label(c) for c in cells() if c["at_edge"]]
    return "no cell" if not edge else ", ".join(edge)


@figure("evidence_widened_cells")
def widened_cells() -> str:
    return str(sum(1 for c in cells() if c["widened"]))


@figure("evidence_full_to_lora_lr_ratio")
def full_to_lora_lr_ratio() -> str:
    return f"{cell('lora_qv_r8_fixed')['lr'] / cell('full')['lr']:.0f}"


# --- costs and the low-rank check -----------------------------------------------------------------

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


@figure("evidence_greedy_check")
def greedy_check() -> str:
    checks = results()["spectra"]["greedy_check"]
    return f"{sum(c['agree'] for c in checks)} of {sum(c['examples'] for c in checks)}"


# --- tables ---------------------------------------------------------------------------------------

@table("evidence_results")
def results_table() -> str:
    """One row per cell: what it trains, the rate it got, and what it reaches on the test split."""
    rows = ["| cell | trainable | learning rate | exact match (test) | test loss | fraction of full FT's loss gain "
            "| forgetting (Δ pretraining loss) |",
            "|---|---|---|---|---|---|---|"]
    for c in cells():
        rows.append(
            f"| {label(c)} | {c['trainable_params']:,} ({c['trainable_percent']:.2f}%) | {lr_text(c['lr'])} "
            f"| {pct_interval(c['exact_match'])} | {interval(c['test_loss'], lambda x: f'{x:.3f}')} "
            f"| {interval(c['gain_fraction'], lambda x: f'{x:.2f}')} "
            f"| {interval(c['forgetting'], lambda x: f'{x:+.2f}')} |")
    return "\n".join(rows)


@table("evidence_lr_search")
def lr_search_table() -> str:
    """Every cell's search at seed 0: validation loss at each rate tried, the chosen one in bold."""
    rows = ["| cell | rates tried (validation loss; **chosen**) | widened | chosen at an edge? |", "|---|---|---|---|"]
    for c in cells():
        tried = []
        for point in c["sweep"]:
            loss = "diverged" if point["val_loss"] is None else f"{point['val_loss']:.3f}"
            text = f"{lr_text(point['lr'])}: {loss}"
            tried.append(f"**{text}**" if point["lr"] == c["lr"] else text)
        rows.append(f"| {label(c)} | {' · '.join(tried)} | {c['widened']}× | {'yes' if c['at_edge'] else 'no'} |")
    return "\n".join(rows)


@table("evidence_lr_by_rank")
def lr_by_rank_table() -> str:
    """Chosen rate per scheme and rank (LoRA on q,v)."""
    by = results()["lr_by_rank"]
    ranks = sorted({r for pts in by.values() for r, _, _ in pts})
    rows = ["| scheme | " + " | ".join(f"r = {r}" for r in ranks) + " | update scale at r = 1 / 8 / 64 |",
            "|---|" + "---|" * len(ranks) + "---|"]
    s = results()["settings"]
    scale = {"fixed": lambda r: s["fixed_alpha"] / r, "2r": lambda r: s["alpha_over_r"],
             "rslora": lambda r: s["rslora_alpha"] / math.sqrt(r)}
    for scheme, pts in by.items():
        rates = {r: lr for r, lr, _ in pts}
        cells_ = " | ".join(lr_text(rates[r]) if r in rates else "–" for r in ranks)
        scales = " / ".join(f"{scale[scheme](r):.3g}" for r in (1, 8, 64))
        rows.append(f"| {SCHEME_LABEL[scheme]} | {cells_} | {scales} |")
    return "\n".join(rows)


@table("evidence_costs")
def costs_table() -> str:
    """One row per cell: training state in bytes and activations kept for backward. Time per step is left
    out: on the shared machine one cell's seeds differ by more than the cells do (see evidence_step_time_*)."""
    rows = ["| cell | weights | gradients | AdamW state | total | saved for backward |",
            "|---|---|---|---|---|---|"]
    for c in cells():
        if c["rank"] is not None and c["rank"] != 8 and c["method"] == "lora_qv" and c["scheme"] != "fixed":
            continue  # the scheme changes only a scalar: same bytes as the fixed-alpha cell
        m = c["memory_bytes"]
        rows.append(f"| {label(c)} | {kb(m['weights'])} | {kb(m['grads'])} | {kb(m['optimizer'])} "
                    f"| {kb(m['total'])} | {kb(m['saved_for_backward'])} |")
    return "\n".join(rows)


def _step_time_spread() -> tuple[dict, float]:
    """The cell whose seeds' ms per step differ most (as max / min), and that ratio."""
    def ratio(c: dict) -> float:
        v = c["ms_per_step"]["values"]
        return max(v) / min(v)
    worst = max(cells(), key=ratio)
    return worst, ratio(worst)


@figure("evidence_step_time_within_cell")
def step_time_within_cell() -> str:
    """The widest spread of ms per step among one cell's seeds (same code, same settings, other seed)."""
    c, r = _step_time_spread()
    v = c["ms_per_step"]["values"]
    return f"{min(v):.0f} to {max(v):.0f} ms per step across the seeds of {label(c)}, a factor of {r:.1f}"


@figure("evidence_step_time_between_cells")
def step_time_between_cells() -> str:
    """The range of the cells' mean ms per step, and whether one cell's own seeds spread wider."""
    means = sorted(c["ms_per_step"]["mean"] for c in cells())
    _, r = _step_time_spread()
    between = means[-1] / means[0]
    wider = "narrower" if between < r else "no narrower"
    return (f"the cells' means run from {means[0]:.0f} to {means[-1]:.0f} ms (a factor of "
            f"{between:.1f}), a range {wider} than that one cell's seeds")


@table("evidence_energy")
def energy_table() -> str:
    """Share of the full fine-tuning update's energy in its top r directions, next to a Gaussian matrix."""
    sp = results()["spectra"]
    shown = [r for r in (1, 4, 8, 16) if r in sp["ranks"]]
    head = " | ".join(f"top {r}: ΔW / random" for r in shown)
    rows = [f"| matrix | shape | {head} | ‖ΔW‖ / ‖W‖ |", "|---|---|" + "---|" * len(shown) + "---|"]
    for kind, k in sp["kinds"].items():
        cells_ = " | ".join(f"{percent(k['update'][sp['ranks'].index(r)])} / {percent(k['random'][sp['ranks'].index(r)])}"
                            for r in shown)
        rows.append(f"| `{kind}` | {k['shape'][0]}×{k['shape'][1]} | {cells_} | {k['relative_change']:.2f} |")
    return "\n".join(rows)


@table("evidence_forgetting_by_rate")
def forgetting_by_rate_table() -> str:
    """Seed-0 runs of full fine-tuning and LoRA r=8 at every rate their searches tried: what each rate
    learned (validation loss, test exact match) and forgot (change in held-out pretraining loss)."""
    r = results()
    before = r["base"]["heldout_pretrain_loss"]
    rows = ["| cell | learning rate | validation loss | exact match (test) | forgetting |", "|---|---|---|---|---|"]
    for name in ("full", "lora_qv_r8_fixed"):
        if not has(name):
            continue
        chosen = cell(name)["lr"]
        for run in seed0_runs(name):
            mark = " (chosen)" if run["lr"] == chosen else ""
            val = "diverged" if run["val_loss"] is None else f"{run['val_loss']:.3f}"
            forget = "–" if run["forget_after"] is None else f"{run['forget_after'] - before:+.2f}"
            rows.append(f"| {label(cell(name))} | {lr_text(run['lr'])}{mark} | {val} | {percent(run['test_exact'])} "
                        f"| {forget} |")
    return "\n".join(rows)


@figure("evidence_full_forgetting_choice")
def full_forgetting_choice() -> str:
    """Full fine-tuning's chosen rate against the least-forgetting rate whose validation loss was within 10%
    of the chosen one (seed 0): how much forgetting the validation-loss choice left on the table."""
    before = results()["base"]["heldout_pretrain_loss"]
    chosen = next(x for x in seed0_runs("full") if x["lr"] == cell("full")["lr"])
    alt = _gentler_full_run()
    if alt is None:
        return (f"no other rate came within 10% of the chosen rate's validation loss, so the search offered no "
                f"cheaper choice")

    def describe(x):
        return (f"at {lr_text(x['lr'])} its validation loss was {x['val_loss']:.3f}, exact match "
                f"{percent(x['test_exact'])}, and the held-out pretraining loss rose by {x['forget_after'] - before:.2f}")
    return f"{describe(chosen)}; {describe(alt)}"


def _grid_steps(a: float, b: float) -> int:
    return round(abs(math.log(a / b)) / math.log(results()["settings"]["lr_step"]))


@figure("evidence_old_claim_verdict")
def old_claim_verdict() -> str:
    """The first run's assumption tested: under alpha = 2r, is the best rate at r = 1 and r = 64 the one at r = 8?"""
    pts = {r: lr for r, lr, _ in results()["lr_by_rank"].get("2r", [])}
    if 8 not in pts or len(pts) < 2:
        return "the run did not reach the α = 2r cells, so the assumption stays untested"
    parts = []
    for r in sorted(k for k in pts if k != 8):
        steps = _grid_steps(pts[r], pts[8])
        where = "the same grid point" if steps == 0 else (
            f"{steps} grid step{'s' if steps > 1 else ''} {'lower' if pts[r] < pts[8] else 'higher'}")
        parts.append(f"at r = {r} it was {lr_text(pts[r])}, {where}")
    return f"under α = 2r the best rate at r = 8 was {lr_text(pts[8])}; " + "; ".join(parts)


@figure("evidence_r8_vs_full_overlap")
def r8_vs_full_overlap() -> str:
    """Whether the 95% intervals of LoRA r=8 and full fine-tuning's exact match overlap (so no difference shown)."""
    a, b = cell("lora_qv_r8_fixed")["exact_match"], cell("full")["exact_match"]
    if a["n"] < 2 or b["n"] < 2:
        return "with a single seed on one side there is no interval to compare"
    overlap = a["ci95"][0] <= b["ci95"][1] and b["ci95"][0] <= a["ci95"][1]
    gap = b["mean"] - a["mean"]
    if overlap:
        return (f"the two intervals overlap: full fine-tuning's mean is {100 * gap:.0f} points "
                f"{'higher' if gap > 0 else 'lower'}, but three seeds do not show that the two differ")
    text = f"the two intervals do not overlap: full fine-tuning is {100 * gap:.0f} points {'ahead' if gap > 0 else 'behind'}"
    flat = [who for who, st in (("full fine-tuning", b), ("LoRA r = 8", a)) if st["std"] == 0]
    if flat:  # a zero-width t-interval says only that these seeds agreed, not that no seed could differ
        text += (f" ({' and '.join(flat)}'s interval has no width because its seeds all scored the same; "
                 f"that is what {a['n']} seeds showed, not a guarantee for a fourth)")
    return text


@figure("evidence_full_forgets_most")
def full_forgets_most() -> str:
    """How many adapter cells forgot less than full fine-tuning at their chosen rates (means over seeds)."""
    full = cell("full")["forgetting"]["mean"]
    lora = [c for c in cells() if c["rank"] is not None]
    less = sum(1 for c in lora if c["forgetting"]["mean"] < full)
    return f"{less} of the {len(lora)} adapter cells"


@figure("evidence_gain_range")
def gain_range() -> str:
    """Lowest and highest mean fraction of full fine-tuning's loss gain over the adapter cells."""
    vals = [c["gain_fraction"]["mean"] for c in cells() if c["rank"] is not None]
    return f"{min(vals):.2f} to {max(vals):.2f}"


@figure("evidence_r64_2r_at_r8_rate")
def r64_2r_at_r8_rate() -> str:
    """The first run's confound, measured: LoRA r=64 under alpha = 2r at r=8's rate against its own best (seed 0)."""
    if not (has("lora_qv_r64_2r") and has("lora_qv_r8_fixed")):
        return "the run did not reach that cell"
    own, r8 = cell("lora_qv_r64_2r"), cell("lora_qv_r8_fixed")["lr"]
    pts = {p["lr"]: p for p in own["sweep"]}
    if r8 not in pts:
        return "its search did not try r = 8's rate"
    if r8 == own["lr"]:
        return f"its own search chose r = 8's rate, {lr_text(r8)}"
    runs = {x["lr"]: x for x in seed0_runs(own["name"])}
    a, b = runs[r8], runs[own["lr"]]
    return (f"at r = 8's rate, {lr_text(r8)}, its validation loss was {a['val_loss']:.3f} and its exact match "
            f"{percent(a['test_exact'])}; at its own best, {lr_text(own['lr'])}, {b['val_loss']:.3f} and "
            f"{percent(b['test_exact'])} (seed 0)")


@figure("evidence_below_mode_cells")
def below_mode_cells() -> str:
    """Cells whose mean exact match does not beat always writing the most common record."""
    mode = results()["baselines"]["most_common_answer"]["test_exact_match"]
    low = [f"{label(c)} ({percent(c['exact_match']['mean'])})" for c in cells() if c["exact_match"]["mean"] <= mode]
    return "no cell" if not low else "; ".join(low)


# --- sentences whose truth depends on the run -----------------------------------------------------
# The page's conclusions are built here from the saved numbers, so a new run cannot leave a hand-typed
# claim behind that its results no longer support.

@figure("evidence_seed_scores")
def seed_scores() -> str:
    """Per-seed test exact match (seed order) of full fine-tuning and LoRA r=8 at their chosen rates."""
    def scores(name):
        return ", ".join(percent(v) for v in cell(name)["exact_match"]["values"])
    return f"full fine-tuning {scores('full')}; LoRA r = 8 {scores('lora_qv_r8_fixed')}"


@figure("evidence_solved_seeds")
def solved_seeds() -> str:
    """How many seeds of full fine-tuning and LoRA r=8 wrote at least 99% of the test records right."""
    def solved(name):
        values = cell(name)["exact_match"]["values"]
        return f"{sum(v >= 0.99 for v in values)} of {len(values)}"
    return (f"{solved('full')} full fine-tuning seeds and {solved('lora_qv_r8_fixed')} LoRA r = 8 seeds wrote "
            f"at least 99% of the test records right")


def _rank_moves(scheme: str) -> dict:
    """{rank: grid steps from r = 8's rate, signed (negative: lower)} for one scheme, r = 8 excluded."""
    pts = {r: lr for r, lr, _ in results()["lr_by_rank"].get(scheme, [])}
    if 8 not in pts:
        return {}
    return {r: int(math.copysign(_grid_steps(lr, pts[8]), math.log(lr / pts[8]) or 1.0))
            for r, lr in sorted(pts.items()) if r != 8}


def _moves_text(moves: dict) -> str:
    def one(r, k):
        if k == 0:
            return f"r = {r} chose the same rate"
        return f"r = {r} chose {abs(k)} grid step{'s' if abs(k) > 1 else ''} {'lower' if k < 0 else 'higher'}"
    return ", ".join(one(r, k) for r, k in moves.items())


@figure("evidence_lr_rank_summary")
def lr_rank_summary() -> str:
    """Per scheme, where the chosen rates at r = 1 and 64 sit relative to r = 8's, in grid steps."""
    parts = [f"under {SCHEME_SHORT[s]}, {_moves_text(m)}" for s in results()["lr_by_rank"]
             if (m := _rank_moves(s))]
    return "Relative to r = 8's rate, " + "; ".join(parts)


@figure("evidence_single_rate_schemes")
def single_rate_schemes() -> str:
    """The schemes under which r = 8's rate was also the chosen rate at every other rank, or none."""
    same = [SCHEME_SHORT[s] for s in results()["lr_by_rank"] if (m := _rank_moves(s)) and not any(m.values())]
    if not same:
        return "Under none of the three schemes did a single rate serve every rank"
    if len(same) == 3:
        return "Under all three schemes a single rate served every rank"
    return f"A single rate served every rank under {' and '.join(same)} only"


@figure("evidence_old_claim_holds")
def old_claim_holds() -> str:
    """The first run's assumption (one rate tuned at r = 8 serves every rank) against every scheme's searches."""
    moved = {s: m for s in results()["lr_by_rank"] if (m := _rank_moves(s))}
    misses = [(s, r, k) for s, m in moved.items() for r, k in m.items() if k]
    if not misses:
        return "it holds here: every scheme chose r = 8's rate at r = 1 and at r = 64"
    worst = max(abs(k) for _, _, k in misses)
    where = "; ".join(f"{SCHEME_SHORT[s]} at r = {r}" for s, r, _ in misses)
    return (f"it does not hold in general: {len(misses)} of the {sum(len(m) for m in moved.values())} "
            f"searches away from r = 8 chose another rate (up to {worst} grid step{'s' if worst > 1 else ''}; "
            f"{where})")


@figure("evidence_r64_2r_cost_note")
def r64_2r_cost_note() -> str:
    """What using r = 8's rate at r = 64 under alpha = 2r (the first run's practice) cost on seed 0."""
    if not (has("lora_qv_r64_2r") and has("lora_qv_r8_fixed")):
        return "The run did not reach both cells, so that cost is not measured."
    own, r8 = cell("lora_qv_r64_2r"), cell("lora_qv_r8_fixed")["lr"]
    runs = {x["lr"]: x for x in seed0_runs(own["name"])}
    if r8 == own["lr"] or r8 not in runs:
        return "Here the first run's practice would have cost r = 64 nothing."
    drop = runs[own["lr"]]["test_exact"] - runs[r8]["test_exact"]
    if drop > 0.05:
        return (f"Had this run used r = 8's rate at r = 64, as the first run did, r = 64 would have scored "
                f"{100 * drop:.0f} points less exact match on seed 0.")
    return (f"The first run's rate was not r = 64's best, but on seed 0 the difference in exact match was "
            f"{100 * drop:+.0f} points, within what one seed on {results()['task']['test_examples']} prompts "
            f"can tell apart.")


@figure("evidence_r1_vs_mode")
def r1_vs_mode() -> str:
    """How the r = 1 cells compare with always writing the most common record."""
    mode = results()["baselines"]["most_common_answer"]["test_exact_match"]
    r1 = [c for c in cells() if c["rank"] == 1]
    if not r1:
        return "No r = 1 cell was run"
    beat = [c for c in r1 if c["exact_match"]["mean"] > mode]
    if not beat:
        return "At r = 1, no cell beat always writing the most common record on average"
    best = max(r1, key=lambda c: c["exact_match"]["mean"])
    return (f"At r = 1, {len(beat)} of {len(r1)} cells beat always writing the most common record on average; "
            f"the best, {label(best)}, reached {pct_interval(best['exact_match'])}")


def _gentler_full_run():
    """Full fine-tuning's least-forgetting seed-0 run among the other rates whose validation loss came within
    10% of the chosen one, or None."""
    sweep = [x for x in seed0_runs("full") if x["val_loss"] is not None]
    chosen = next(x for x in sweep if x["lr"] == cell("full")["lr"])
    near = [x for x in sweep if x["val_loss"] <= 1.1 * chosen["val_loss"] and x["lr"] != chosen["lr"]]
    return min(near, key=lambda x: x["forget_after"]) if near else None


@figure("evidence_forgetting_rate_note")
def forgetting_rate_note() -> str:
    """Whether a near-equal full fine-tuning rate forgot less than the adapter cells did at their chosen rates."""
    alt = _gentler_full_run()
    before = results()["base"]["heldout_pretrain_loss"]
    adapters = [c for c in cells() if c["rank"] is not None]
    if alt is None:
        # No near-equal rate: say what the rates that forgot less than the chosen one gave up in exact match.
        runs = [x for x in seed0_runs("full") if x["forget_after"] is not None]
        chosen = next(x for x in runs if x["lr"] == cell("full")["lr"])
        gentler = sorted((x for x in runs if x["forget_after"] < chosen["forget_after"]), key=lambda x: x["lr"])
        if not gentler:
            return "No rate full fine-tuning's search tried forgot less than the one it chose (seed 0)"
        listed = ", ".join(f"{lr_text(x['lr'])} (held-out loss {x['forget_after'] - before:+.2f}, exact match "
                           f"{percent(x['test_exact'])})" for x in gentler)
        return (f"Full fine-tuning's rates that forgot less than the chosen one (seed 0, held-out loss "
                f"{chosen['forget_after'] - before:+.2f}, exact match {percent(chosen['test_exact'])}): {listed}")
    forget = alt["forget_after"] - before
    more = [c for c in adapters if c["forgetting"]["mean"] > forget]
    return (f"At {lr_text(alt['lr'])}, full fine-tuning's held-out loss rose by {forget:.2f} on seed 0, less than "
            f"the mean rise of {len(more)} of the {len(adapters)} adapter cells at their chosen rates")


@figure("evidence_adapters_forget_less")
def adapters_forget_less() -> str:
    """Whether every adapter cell forgot less than full fine-tuning at the chosen rates, with the exceptions."""
    full = cell("full")["forgetting"]["mean"]
    adapters = [c for c in cells() if c["rank"] is not None]
    not_less = [label(c) for c in adapters if c["forgetting"]["mean"] >= full]
    if not not_less:
        return "every adapter cell forgot less than full fine-tuning, on average over seeds"
    lo, hi = cell("full")["forgetting"]["ci95"]
    overlap = sum(1 for c in adapters if c["forgetting"]["ci95"][0] <= hi and lo <= c["forgetting"]["ci95"][1])
    if len(not_less) == len(adapters):
        return (f"no adapter cell forgot less than full fine-tuning on average over seeds (held-out loss change "
                f"{full:+.2f} for full fine-tuning, {lora_forgetting_range()} for the adapter cells), though the "
                f"95% intervals of {overlap} of the {len(adapters)} overlap full fine-tuning's")
    return (f"{len(adapters) - len(not_less)} of the {len(adapters)} adapter cells forgot less than full "
            f"fine-tuning on average; not {'; '.join(not_less)}")


@figure("evidence_invocation_note")
def invocation_note() -> str:
    """How the file came about: one invocation, or a run stopped and resumed from its progress file."""
    calls = results().get("invocations") or []
    if len(calls) <= 1:
        return "It ran as one invocation."
    return (f"It ran as {len(calls)} invocations, each resuming from the progress file and reusing the runs "
            f"already finished.")
