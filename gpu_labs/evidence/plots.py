"""Plots for the evidence page, drawn from the saved results (no training here).

    .venv/bin/python gpu_labs/evidence/plots.py            # reads snippets/lora_course/data/evidence.json
    .venv/bin/python gpu_labs/evidence/plots.py --png /tmp/evidence-png   # also PNG copies, for looking at

Each figure is written twice, `NAME-light.svg` and `NAME-dark.svg`, with a transparent background;
the page shows the one that matches the reader's colour scheme (Material's `#only-light` / `#only-dark`).
Text stays text in the SVG (`svg.fonttype: none`), so it is searchable and scales with the page.
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
              "families": {"full": "#1a1a1a", "lora_qv": "#2a6fdb", "lora_all": "#1e8f4e", "qlora_qv": "#c0392b"}},
    "dark": {"text": "#e0e0e0", "grid": "#4a4a4a", "full": "#f2f2f2", "qlora": "#ff8a80", "random": "#9e9e9e",
             "ranks": ["#b57bff", "#7f9cff", "#4fc3d9", "#3ddc97", "#a5e05a", "#f2e55c"],
             "families": {"full": "#f2f2f2", "lora_qv": "#7fb0ff", "lora_all": "#5fd38d", "qlora_qv": "#ff8a80"}},
}
KIND_LABEL = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
              "down_proj": "down"}
FAMILY_LABEL = {"full": "full fine-tuning", "lora_qv": "LoRA on q,v", "lora_all": "LoRA on all linear",
                "qlora_qv": "QLoRA (NF4) on q,v"}


def style(plt, theme: dict) -> None:
    plt.rcParams.update({
        "svg.fonttype": "none", "font.family": "sans-serif", "font.size": 10,
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


def configs(result, family):
    return [c for c in result["configs"] if c["family"] == family]


def loss_curves(result, theme, plt):
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.2), sharex=True)
    full = configs(result, "full")[0]
    for col, family in enumerate(("lora_qv", "lora_all")):
        for c, color in zip(configs(result, family), theme["ranks"]):
            steps = [p[0] for p in c["val_curve"]]
            axes[0, col].plot(steps, [p[1] for p in c["val_curve"]], color=color, lw=1.6, label=f"r={c['rank']}")
            axes[1, col].plot(steps, [p[2] for p in c["val_curve"]], color=color, lw=1.6)
        for row, idx in ((0, 1), (1, 2)):
            axes[row, col].plot([p[0] for p in full["val_curve"]], [p[idx] for p in full["val_curve"]],
                                color=theme["full"], lw=2.2, ls="-", label="full fine-tuning" if row == 0 else None)
        if family == "lora_qv":
            for q in configs(result, "qlora_qv"):
                axes[0, col].plot([p[0] for p in q["val_curve"]], [p[1] for p in q["val_curve"]], color=theme["qlora"],
                                  lw=1.6, ls="--", label=f"QLoRA r={q['rank']}")
                axes[1, col].plot([p[0] for p in q["val_curve"]], [p[2] for p in q["val_curve"]], color=theme["qlora"],
                                  lw=1.6, ls="--")
        axes[0, col].set_title(FAMILY_LABEL[family])
        axes[0, col].set_yscale("log")
        axes[0, col].yaxis.set_major_formatter(plain_log_labels())
        axes[0, col].yaxis.set_minor_formatter(plain_log_labels(minor=True))
        axes[1, col].set_ylim(-0.02, 1.02)
        axes[1, col].set_xlabel("fine-tuning step")
        axes[0, col].legend(fontsize=8, ncol=2)
    axes[0, 0].set_ylabel("validation loss (log scale)")
    axes[1, 0].set_ylabel("exact match")
    fig.suptitle("Validation loss and exact match during fine-tuning (mean of seeds)", color=theme["text"])
    fig.tight_layout()
    return fig


def gain_vs_params(result, theme, plt):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for family in ("lora_qv", "lora_all", "qlora_qv", "full"):
        cs = configs(result, family)
        x = [c["trainable_percent"] for c in cs]
        color = theme["families"][family]
        for ax, key in ((axes[0], "gain_fraction"), (axes[1], "exact_match")):
            y = [c[key]["mean"] for c in cs]
            err = [[c[key]["mean"] - c[key]["min"] for c in cs], [c[key]["max"] - c[key]["mean"] for c in cs]]
            marker = {"full": "s", "qlora_qv": "D"}.get(family, "o")
            ax.errorbar(x, y, yerr=err, color=color, marker=marker, ms=5, lw=1.4, capsize=3,
                        ls="-" if family.startswith("lora") else "none", label=FAMILY_LABEL[family])
            if family.startswith("lora"):
                for c in cs:
                    ax.annotate(f"{c['rank']}", (c["trainable_percent"], c[key]["mean"]), fontsize=7,
                                xytext=(3, -10 if family == "lora_qv" else 5), textcoords="offset points",
                                color=color)
    ref = result.get("format_only")
    if ref:
        axes[0].axhline(ref["gain_fraction"], color=theme["random"], ls="--", lw=1.2)
        axes[0].annotate("format right, facts guessed from base rates", (0.3, ref["gain_fraction"]), fontsize=7.5,
                         xytext=(0, 4), textcoords="offset points", color=theme["text"])
        axes[1].axhline(ref["mode_exact_match"], color=theme["random"], ls="--", lw=1.2)
        axes[1].annotate("always the most common group and region", (0.3, ref["mode_exact_match"]), fontsize=7.5,
                         xytext=(0, -11), textcoords="offset points", color=theme["text"])
    axes[0].set_ylabel("fraction of full fine-tuning's loss gain")
    axes[1].set_ylabel("exact match on held-out prompts")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (% of the model, log scale)")
    axes[1].set_ylim(-0.02, 1.05)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("What each method recovers, against what it trains (numbers on points: rank; bars: seed range)",
                 color=theme["text"], fontsize=10)
    fig.tight_layout()
    return fig


def energy(result, theme, plt):
    spectra = result["spectra"]
    ranks = spectra["ranks"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
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
    ax.set_title("Energy in the top r directions: full FT's ΔW vs Gaussian noise", fontsize=10)
    ax.legend(fontsize=7.5, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def lr_sweep(result, theme, plt):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    sweep = result["lr_sweep"]
    for family in FAMILY_LABEL:
        rows = sorted((r for r in sweep if r["family"] == family), key=lambda r: r["lr"])
        if not rows:
            continue
        color = theme["families"][family]
        label = FAMILY_LABEL[family] + ("" if family == "full" else f" (r={rows[0]['rank']})")
        axes[0].plot([r["lr"] for r in rows], [r["val_loss"] for r in rows], color=color, marker="o", ms=4, lw=1.5,
                     label=label)
        axes[1].plot([r["lr"] for r in rows], [r["exact_match"] for r in rows], color=color, marker="o", ms=4, lw=1.5)
        best = result["learning_rates"][family]
        pick = [r for r in rows if r["lr"] == best]
        if pick:
            axes[0].plot([best], [pick[0]["val_loss"]], marker="*", ms=13, color=color, ls="none")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate (AdamW, cosine schedule)")
    axes[0].set_yscale("log")
    axes[0].yaxis.set_major_formatter(plain_log_labels())
    axes[0].yaxis.set_minor_formatter(plain_log_labels(minor=True))
    axes[0].set_ylabel("final validation loss (log)")
    axes[1].set_ylabel("exact match")
    axes[1].set_ylim(-0.02, 1.05)
    axes[0].legend(fontsize=8)
    fig.suptitle("Learning-rate sweep (seed 0; star: the rate each method then used)", color=theme["text"],
                 fontsize=10)
    fig.tight_layout()
    return fig


FIGURES = {"loss-curves": loss_curves, "gain-vs-params": gain_vs_params, "energy": energy, "lr-sweep": lr_sweep}


def make_all(result: dict, out_dir: Path, png_dir: Path | None = None) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for variant, theme in THEMES.items():
        plt.rcdefaults()
        style(plt, theme)
        for name, draw in FIGURES.items():
            fig = draw(result, theme, plt)
            path = out_dir / f"{name}-{variant}.svg"
            fig.savefig(path, metadata={"Date": None, "Creator": None})
            written.append(path)
            if png_dir:
                png_dir.mkdir(parents=True, exist_ok=True)
                bg = "#ffffff" if variant == "light" else "#1e2129"  # Material's default and slate backgrounds
                fig.savefig(png_dir / f"{name}-{variant}.png", dpi=90, facecolor=bg, transparent=False)
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
