"""Plots for the evidence page, drawn from the saved results (no training here).

    .venv/bin/python gpu_labs/evidence/plots.py            # reads snippets/lora_course/data/evidence.json
    .venv/bin/python gpu_labs/evidence/plots.py --png /tmp/evidence-png   # also PNG copies, for looking at

Each figure is written twice, `NAME-light.svg` and `NAME-dark.svg`, with a transparent background;
the page shows the one that matches the reader's colour scheme (Material's `#only-light` / `#only-dark`).
Text stays text in the SVG (`svg.fonttype: none`), so it is searchable and scales with the page.

Each is also drawn for a phone, `NAME-light.phone.svg` / `NAME-dark.phone.svg`: narrow, panels stacked, legends
under the plot, no text under PHONE_MIN_PT. The site's build (hooks/phone_images.py) serves that file to screens
600 px wide or less, where the wide drawing would shrink its text to about 6 px.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_IN = REPO / "snippets" / "lora_course" / "data" / "evidence.json"
DEFAULT_OUT = REPO / "docs" / "assets" / "evidence"

THEMES = {
    "light": {"text": "#333333", "grid": "#d9d9d9", "full": "#1a1a1a", "qlora": "#c0392b", "random": "#8c8c8c",
              "ranks": ["#440154", "#3b528b", "#21918c", "#27a35a", "#8a9a00", "#c77c00"],
              "families": {"full": "#1a1a1a", "lora_qv": "#2a6fdb", "lora_all": "#1e8f4e", "qlora_qv": "#c0392b",
                           "dora_qv": "#8e44ad", "pissa_qv": "#b9770e"}},
    "dark": {"text": "#e0e0e0", "grid": "#4a4a4a", "full": "#f2f2f2", "qlora": "#ff8a80", "random": "#9e9e9e",
             "ranks": ["#b57bff", "#7f9cff", "#4fc3d9", "#3ddc97", "#a5e05a", "#f2e55c"],
             "families": {"full": "#f2f2f2", "lora_qv": "#7fb0ff", "lora_all": "#5fd38d", "qlora_qv": "#ff8a80",
                           "dora_qv": "#d7a6f0", "pissa_qv": "#f5c26b"}},
}
KIND_LABEL = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
              "down_proj": "down"}
SCHEME_LABEL = {"fixed": "fixed α = 16 (LoRA paper)", "2r": "α = 2r", "rslora": "rsLoRA (α = 5.66, scale α/√r)"}
SCHEME_SHORT = {"fixed": "fixed α", "2r": "α = 2r", "rslora": "rsLoRA"}
SCHEME_COLOR = {"fixed": "lora_qv", "2r": "qlora_qv", "rslora": "lora_all"}  # reuse the theme's three hues
METHOD_COLOR = {"full": "full", "lora_qv": "lora_qv", "lora_all": "lora_all", "qlora_qv": "qlora_qv",
                "dora_qv": "dora_qv", "pissa_qv": "pissa_qv"}


# A phone's column is about 358 px (390 px less Material's margins). A drawing PHONE_WIDTH_IN wide (266 pt) shows
# there at about 1.3 px per point once its labels are added, so PHONE_MIN_PT keeps every label at 11 px or more
# (tests/browser/test_phone.py measures it), and no label is a superscript (10⁻² would be drawn at 0.7 size).
PHONE_WIDTH_IN = 3.7
PHONE_MIN_PT = 9


def fs(size: float, phone: bool) -> float:
    """A font size in points: as drawn for a wide screen, or at least PHONE_MIN_PT on a phone."""
    return max(size, PHONE_MIN_PT) if phone else size


def title(ax, text: str, size: float, phone: bool) -> None:
    """An axes title; on a phone the line breaks are redrawn for the narrow width."""
    if phone:
        import textwrap
        text = "\n".join(textwrap.wrap(" ".join(text.split()), 44))
    ax.set_title(text, fontsize=fs(size, phone))


def legend(ax, phone: bool, size: float, **wide):
    """A legend where the wide drawing puts it (WIDE keyword arguments), or under the plot on a phone."""
    if phone:
        wide = {k: v for k, v in wide.items() if k not in ("loc", "bbox_to_anchor", "ncol", "borderaxespad")}
        # tight_layout fits plot and legend into the figure: each phone figure is drawn tall enough for both
        return ax.legend(loc="upper left", bbox_to_anchor=(-0.15, -0.22), ncol=1, fontsize=fs(size, phone), **wide)
    return ax.legend(fontsize=size, **wide)


def cell_label(c) -> str:
    if c["rank"] is None:
        return c["label"]
    text = f"{c['label']} r={c['rank']}"
    return text if c["rank"] == 8 else f"{text}, {SCHEME_SHORT[c['scheme']]}"


def style(plt, theme: dict, phone: bool = False) -> None:
    plt.rcParams.update({
        "svg.fonttype": "none", "font.family": "sans-serif", "font.size": 10 if not phone else PHONE_MIN_PT,
        "figure.facecolor": "none", "axes.facecolor": "none", "savefig.facecolor": "none",
        "savefig.transparent": True,
        "text.color": theme["text"], "axes.labelcolor": theme["text"], "axes.edgecolor": theme["text"],
        "xtick.color": theme["text"], "ytick.color": theme["text"], "axes.titlecolor": theme["text"],
        "grid.color": theme["grid"], "axes.grid": True, "grid.linewidth": 0.6,
        "legend.frameon": False, "svg.hashsalt": "evidence",  # stable ids: re-running gives the same file
        "axes.spines.top": False, "axes.spines.right": False,
    })


def plain_log_labels(minor: bool = False):
    """Tick labels like 0.05, 1, 8 instead of 5x10^-2 (minor ticks: only 2 and 5 of each decade)."""
    from matplotlib.ticker import FuncFormatter

    def fmt(value, _pos):
        lead = round(value / 10 ** __import__("math").floor(__import__("math").log10(value)), 6)
        if minor and lead not in (2, 5):
            return ""
        return f"{value:g}"
    return FuncFormatter(fmt)


def clipped(stat):
    """Mean and the distance to its 95% interval's ends, clipped to [0, 1] (the interval is over seeds)."""
    m = stat["mean"]
    lo, hi = stat["ci95"] if stat["n"] > 1 else (m, m)
    return m, max(0.0, m - max(0.0, lo)), max(0.0, min(1.0, hi) - m)


def lr_vs_rank(result, theme, plt, phone=False):
    fig, ax = plt.subplots(figsize=(PHONE_WIDTH_IN, 4.6) if phone else (6.4, 4.0))
    # Rates come from a grid, so schemes often pick the same one: a small sideways nudge keeps each visible.
    nudge = {"fixed": 0.92, "2r": 1.0, "rslora": 1.087}
    for scheme, pts in result["lr_by_rank"].items():
        color = theme["families"][SCHEME_COLOR[scheme]]
        ranks = [p[0] * nudge[scheme] for p in pts]
        rates = [p[1] for p in pts]
        ax.plot(ranks, rates, color=color, marker="o", ms=6, lw=1.8, label=SCHEME_LABEL[scheme])
        for r, lr, edge in pts:
            if edge:  # still at the edge of its search: the true best may lie beyond
                ax.plot([r * nudge[scheme]], [lr], marker="o", ms=12, mfc="none", color=color, ls="none")
    full = next(c for c in result["cells"] if c["name"] == "full")
    ax.axhline(full["lr"], color=theme["full"], ls=":", lw=1.2)
    ax.annotate(f"full fine-tuning's rate, {full['lr']:.2g}", (1, full["lr"]), xytext=(2, 4), textcoords="offset points",
                fontsize=fs(8, phone), color=theme["text"])
    ax.set_xscale("log", base=2)
    ranks = sorted({p[0] for pts in result["lr_by_rank"].values() for p in pts})
    ax.set_xticks(ranks)
    ax.set_xticklabels([str(r) for r in ranks])
    ax.set_yscale("log")
    ticks = sorted({p[1] for pts in result["lr_by_rank"].values() for p in pts})
    ax.set_yticks(ticks, [f"{t:.2g}" for t in ticks])  # the grid points themselves, plainly written
    ax.yaxis.set_minor_formatter(plain_log_labels(minor=True))
    ax.set_xlabel("LoRA rank r (q,v)")
    ax.set_ylabel("best learning rate (validation loss)")
    title(ax, "Best learning rate against rank, per scaling scheme (r = 8 is shared;\n"
          "open ring: still at the edge of its search)", 10, phone)
    legend(ax, phone, 8)
    fig.tight_layout()
    return fig


def lr_search(result, theme, plt, phone=False):
    if phone:  # the two panels stacked, each with its legend under it
        fig, axes = plt.subplots(2, 1, figsize=(PHONE_WIDTH_IN, 11.5), sharey=True)
    else:
        fig, axes = plt.subplots(1, 2, figsize=(9.4, 3.9), sharey=True)
    dashes = {1: ":", 8: "-", 64: "--"}
    for c in result["cells"]:
        pts = [p for p in c["sweep"] if p["val_loss"] is not None]
        x, y = [p["lr"] for p in pts], [p["val_loss"] for p in pts]
        if c["method"] == "lora_qv":
            ax, color = axes[0], theme["families"][SCHEME_COLOR[c["scheme"]]] if c["rank"] != 8 else theme["full"]
            style_ = dashes.get(c["rank"], "-")
        else:
            ax, color, style_ = axes[1], theme["families"][METHOD_COLOR[c["method"]]], "-" if c["rank"] != 1 else ":"
        ax.plot(x, y, color=color, ls=style_, marker="o", ms=3.5, lw=1.4, label=cell_label(c))
        chosen = [p for p in pts if p["lr"] == c["lr"]]
        if chosen:
            ax.plot([c["lr"]], [chosen[0]["val_loss"]], marker="*", ms=11, color=color, ls="none")
    for ax in axes:
        ax.set_xscale("log")
        if phone:
            ax.xaxis.set_major_formatter(plain_log_labels())
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain_log_labels())
        ax.yaxis.set_minor_formatter(plain_log_labels(minor=True))
        ax.set_xlabel("peak learning rate (AdamW, cosine)")
        legend(ax, phone, 7)
    title(axes[0], "LoRA q,v: ranks 1 (dotted), 8, 64 (dashed)", 9, phone)
    title(axes[1], "other methods", 9, phone)
    for ax in axes if phone else axes[:1]:
        ax.set_ylabel("final validation loss (seed 0, log)")
    if not phone:  # on a phone the page's caption says it
        fig.suptitle("Every cell's learning-rate search (star: the chosen rate)", color=theme["text"], fontsize=10)
    fig.tight_layout()
    return fig


def exact_match(result, theme, plt, phone=False):
    cs = result["cells"]
    fig, ax = plt.subplots(figsize=(PHONE_WIDTH_IN if phone else 7.4, (0.46 if phone else 0.32) * len(cs) + 1.4))
    for i, c in enumerate(cs):
        m, lo, hi = clipped(c["exact_match"])
        color = theme["families"][METHOD_COLOR[c["method"]]]
        ax.errorbar([m], [i], xerr=[[lo], [hi]], color=color, marker="s" if c["rank"] is None else "o", ms=5,
                    capsize=3, lw=1.4)
    base = result["baselines"]["most_common_answer"]["test_exact_match"]
    ax.axvline(base, color=theme["random"], ls="--", lw=1.2)
    ax.annotate("always the most common record", (base, -0.9), xytext=(4, 0), textcoords="offset points",
                fontsize=fs(7.5, phone), color=theme["text"], va="center")
    ax.set_ylim(len(cs) - 0.5, -1.3)  # inverted: the first cell on top, the label above it
    ax.set_yticks(range(len(cs)))
    labels = [cell_label(c) for c in cs]
    if phone:  # two lines, so the plot keeps most of the narrow width
        labels = [t.replace(" r=", "\nr=", 1) if len(t) > 18 else t for t in labels]
    ax.set_yticklabels(labels, fontsize=fs(8, phone))
    ax.set_xlim(-0.02, 1.04)  # room for a marker at 100%
    ax.set_xlabel("exact match on the test prompts\n(mean of seeds, 95% interval)" if phone else
                  "exact match on the test prompts (mean of seeds, 95% interval)")
    title(ax, "What each cell learned, at its own best learning rate", 10, phone)
    fig.tight_layout()
    return fig


# One marker per rank and scheme, so cells of one family (one colour) stay apart in the legend: the chosen
# points crowd into a small patch, where labels written beside them would overlap.
CELL_MARKER = {(None, None): "s", (8, "fixed"): "o", (1, "fixed"): "v", (1, "2r"): "^", (1, "rslora"): "<",
               (64, "fixed"): "D", (64, "2r"): "P", (64, "rslora"): "X"}


def learn_forget(result, theme, plt, phone=False):
    from matplotlib.lines import Line2D
    fig, ax = plt.subplots(figsize=(PHONE_WIDTH_IN, 6.6) if phone else (8.6, 4.6))
    before = result["base"]["heldout_pretrain_loss"]
    handles = []  # markers alone: an error-bar glyph in the legend hides the marker's shape
    for c in result["cells"]:
        color = theme["families"][METHOD_COLOR[c["method"]]]
        # The search's runs (seed 0, every rate): how much forgetting depends on the rate, not just the method.
        sweep = sorted((r for r in result["runs"] if r["cell"] == c["name"] and r["seed"] == 0
                        and r["forget_after"] is not None), key=lambda r: r["lr"])
        ax.plot([r["forget_after"] - before for r in sweep], [r["test_exact"] for r in sweep], color=color, lw=0.6,
                alpha=0.35, marker=".", ms=4)
        f, e = c["forgetting"], c["exact_match"]
        m, lo, hi = clipped(e)
        f_half = (f["ci95"][1] - f["mean"]) if f["n"] > 1 else 0.0
        marker = CELL_MARKER.get((c["rank"], c["scheme"]), "o")
        ax.errorbar([f["mean"]], [m], xerr=[[f_half], [f_half]], yerr=[[lo], [hi]], color=color, lw=0.9, capsize=2,
                    marker=marker, ms=6)
        handles.append(Line2D([], [], color=color, marker=marker, ms=6, ls="none", label=cell_label(c)))
    ax.set_xlabel("forgetting: held-out pretraining loss\nafter minus before (nats)" if phone else
                  "forgetting: held-out pretraining loss after minus before (nats)")
    ax.set_ylabel("exact match on the new task (test)")
    ax.set_ylim(-0.02, 1.05)
    legend(ax, phone, 7.5, handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), labelcolor=theme["text"],
           handlelength=1.2, borderaxespad=0)
    title(ax, "Learning against forgetting: chosen rates (bars: 95% over seeds),\n"
          "faint: every rate each search tried (seed 0)", 10, phone)
    fig.tight_layout()
    return fig


def energy(result, theme, plt, phone=False):
    spectra = result["spectra"]
    ranks = spectra["ranks"]
    fig, ax = plt.subplots(figsize=(PHONE_WIDTH_IN, 5.4) if phone else (6.4, 4.2))
    palette = theme["ranks"] + [theme["qlora"]]
    for (kind, v), color in zip(spectra["kinds"].items(), palette):
        ax.plot(ranks, v["update"], color=color, lw=1.8, marker="o", ms=3.5,
                label=f"ΔW {KIND_LABEL[kind]} ({v['shape'][0]}×{v['shape'][1]})")
    shown = set()
    for kind, v in spectra["kinds"].items():
        shape = tuple(sorted(v["shape"], reverse=True))  # a matrix and its transpose share singular values
        if shape in shown:
            continue
        shown.add(shape)
        ax.plot(ranks, v["random"], color=theme["random"], lw=1.4, ls="--" if len(shown) == 1 else ":",
                label=f"Gaussian {shape[0]}×{shape[1]}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks)
    ax.set_xticklabels([str(r) for r in ranks])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("r (top singular directions kept)")
    ax.set_ylabel("share of the update's energy (‖·‖²)")
    title(ax, "Energy in the top r directions: full FT's ΔW vs Gaussian noise", 10, phone)
    legend(ax, phone, 7.5, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


FIGURES = {"lr-vs-rank": lr_vs_rank, "lr-search": lr_search, "exact-match": exact_match, "learn-forget": learn_forget,
           "energy": energy}


def make_all(result: dict, out_dir: Path, png_dir: Path | None = None) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (variant, theme), phone in ((v, p) for v in THEMES.items() for p in (False, True)):
        plt.rcdefaults()
        style(plt, theme, phone)
        suffix = f"{variant}.phone" if phone else variant
        # the phone drawing is cropped to what it draws, legends under the plot included
        crop = {"bbox_inches": "tight", "pad_inches": 0.05} if phone else {}
        for name, draw in FIGURES.items():
            fig = draw(result, theme, plt, phone=phone)
            path = out_dir / f"{name}-{suffix}.svg"
            fig.savefig(path, metadata={"Date": None, "Creator": None}, **crop)
            written.append(path)
            if png_dir:
                png_dir.mkdir(parents=True, exist_ok=True)
                bg = "#ffffff" if variant == "light" else "#1e2129"  # Material's default and slate backgrounds
                fig.savefig(png_dir / f"{name}-{suffix}.png", dpi=90, facecolor=bg, transparent=False, **crop)
            plt.close(fig)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="Draw the evidence page's plots from the saved results.")
    parser.add_argument("--results", type=Path, default=DEFAULT_IN)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--png", type=Path, help="also write PNG copies here (for looking at them)")
    args = parser.parse_args()
    for path in make_all(json.loads(args.results.read_text()), args.out, args.png):
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


if __name__ == "__main__":
    main()
