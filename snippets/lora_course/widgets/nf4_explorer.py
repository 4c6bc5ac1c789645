"""The NF4 widgets on the "QLoRA" page.

``nf4_explorer``: a seeded block of 64 standard-normal weights (``random.Random(seed)``, so the page,
the tests and the terminal draw the same block), the 16 NF4 levels scaled by the block's absmax drawn
against the weights, each weight's 4-bit code and dequantized value, and the error of NF4 against plain
4-bit integers and FP4 on the same block. The Reroll button sends ``action="reroll"``; the seed lives in
a hidden input this function renders, so each reroll draws the next block.
``nf4_bits``: block size and double quantization -> bits per parameter and a chosen model's weight storage.
"""
from __future__ import annotations

import functools
import random
from typing import Any

import loracalc

from . import _common as c
from .registry import widget

BLOCK = 64
SEED_MAX = 2**31 - 1
DEFAULT_SEED = 0


def draw_block(seed: int, n: int = BLOCK) -> list[float]:
    """The n weights the explorer shows for this seed: stdlib ``random.Random(seed).gauss(0, 1)``."""
    rng = random.Random(seed)
    return [rng.gauss(0.0, 1.0) for _ in range(n)]


@widget("nf4_explorer")
def nf4_explorer(seed: str = "0", action: str = "", **_: Any) -> dict[str, Any]:
    s = c.integer(seed if c.text(seed) else str(DEFAULT_SEED), "seed", 0, SEED_MAX, "seed")
    if c.text(action) == "reroll":
        s = (s + 1) % (SEED_MAX + 1)
    from loracalc import nf4

    weights = draw_block(s)
    cmp = nf4.compare_formats(weights, block_size=BLOCK)
    q = cmp["nf4"]
    absmax = q["absmax"][0]
    return {
        "seed_state": f'<input type="hidden" name="seed" value="{s}">',
        "seed_label": f"#{s}",
        "absmax": f"{absmax:.4f}",
        "err_nf4": f"{cmp['nf4']['mean_abs_error']:.4f}",
        "err_int4": f"{cmp['int4']['mean_abs_error']:.4f}",
        "err_fp4": f"{cmp['fp4']['mean_abs_error']:.4f}",
        "error_table": error_table(cmp),
        "values_table": values_table(weights, q["codes"], q["dequantized"]),
        "svg": levels_svg(weights, q["dequantized"], nf4.code_book(), absmax),
        "announce": (f"Block {s}: mean absolute error NF4 {cmp['nf4']['mean_abs_error']:.4f}, "
                     f"int4 {cmp['int4']['mean_abs_error']:.4f}, FP4 {cmp['fp4']['mean_abs_error']:.4f}."),
    }


def error_table(cmp: dict) -> str:
    names = {"nf4": "NF4 (normal quantiles)", "int4": "int4 (evenly spaced)", "fp4": "FP4 (E2M1)"}
    best = min(cmp, key=lambda k: cmp[k]["mean_abs_error"])
    rows = []
    for key, label in names.items():
        r = cmp[key]
        cls = ' class="lc-chosen"' if key == best else ""
        rows.append(f'<tr{cls}><th scope="row">{label}</th><td class="lc-num">{r["mean_abs_error"]:.4f}</td>'
                    f'<td class="lc-num">{r["rmse"]:.4f}</td><td class="lc-num">{r["max_abs_error"]:.4f}</td></tr>')
    return ('<table class="lc-table"><caption>Error on this block of 64 weights (lower is better)</caption>'
            '<thead><tr><th scope="col">4-bit format</th><th scope="col" class="lc-num">mean |error|</th>'
            '<th scope="col" class="lc-num">RMS error</th><th scope="col" class="lc-num">max |error|</th></tr></thead>'
            '<tbody>' + "".join(rows) + '</tbody></table>')


def values_table(weights, codes, deq) -> str:
    rows = "".join(
        f'<tr><td class="lc-num">{i}</td><td class="lc-num">{w:+.4f}</td><td class="lc-num">{k}</td>'
        f'<td class="lc-num">{v:+.4f}</td><td class="lc-num">{v - w:+.4f}</td></tr>'
        for i, (w, k, v) in enumerate(zip(weights, codes, deq)))
    return ('<table class="lc-table"><caption>The block, weight by weight</caption><thead><tr>'
            '<th scope="col" class="lc-num">#</th><th scope="col" class="lc-num">weight</th>'
            '<th scope="col" class="lc-num">NF4 code</th><th scope="col" class="lc-num">dequantized</th>'
            '<th scope="col" class="lc-num">error</th></tr></thead><tbody>' + rows + '</tbody></table>')


# The chart is drawn twice: for a wide screen, and 340 units wide for a phone (shown up to 719 px, widgets.css),
# where the wide one would have to scroll sideways to keep its 13-unit labels at 11 px or more.
# (width, height, left margin, dot radius, half the width of a dequantized-value bar, classes)
WIDE = (640.0, 300.0, 44.0, 4.0, 3.0, "lc-wide-only")
PHONE = (340.0, 300.0, 40.0, 2.4, 2.0, "lc-phone-only")


def levels_svg(weights, deq, code, absmax) -> str:
    """The block against the 16 scaled NF4 levels: the wide drawing, then the phone one."""
    return "".join(levels_drawing(weights, deq, code, absmax, layout) for layout in (WIDE, PHONE))


def levels_drawing(weights, deq, code, absmax, layout) -> str:
    n = c.num
    W, H, left, dot, bar, shown = layout
    right, top, bottom = 10.0, 10.0, 22.0
    pw, ph = W - left - right, H - top - bottom
    lim = absmax * 1.05

    def y(v):
        return top + (lim - v) / (2 * lim) * ph

    def x(i):
        return left + (i + 0.5) * pw / len(weights)

    parts = [f'<svg class="lc-svg lc-nf4-svg {shown}" viewBox="0 0 {n(W)} {n(H)}" role="img" '
             f'aria-label="64 weights between {min(weights):.2f} and {max(weights):.2f}, the 16 NF4 levels scaled by '
             f'absmax {absmax:.3f}, and each weight\'s dequantized value">']
    for k, lv in enumerate(code):
        cls = "lc-level lc-level-zero" if lv == 0 else "lc-level"
        yy = y(lv * absmax)
        parts.append(f'<line class="{cls}" x1="{n(left)}" x2="{n(W - right)}" y1="{n(yy)}" y2="{n(yy)}"/>')
        if k in (0, 7, 15):
            parts.append(f'<text class="lc-svg-small" x="{n(left - 4)}" y="{n(yy + 4)}" text-anchor="end">{lv * absmax:+.2f}</text>')
    for i, (w, v) in enumerate(zip(weights, deq)):
        xx = x(i)
        parts.append(f'<line class="lc-err" x1="{n(xx)}" x2="{n(xx)}" y1="{n(y(w))}" y2="{n(y(v))}"/>')
        parts.append(f'<line class="lc-deq" x1="{n(xx - bar)}" x2="{n(xx + bar)}" y1="{n(y(v))}" y2="{n(y(v))}"/>')
        parts.append(f'<circle class="lc-weight" cx="{n(xx)}" cy="{n(y(w))}" r="{n(dot)}"/>')
    parts.append(f'<text class="lc-svg-small" x="{n(left + pw / 2)}" y="{n(H - 6)}" text-anchor="middle">'
                 'weight index in the block (0 to 63)</text>')
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------ many blocks
SUMMARY_BLOCKS = 1000  # blocks #0 to #999: the same draws the explorer shows one at a time
FORMATS = {"nf4": "NF4", "int4": "int4", "fp4": "FP4"}
CHOSEN = ' class="lc-chosen"'


def blocks_summary(n_blocks: int = SUMMARY_BLOCKS) -> dict[str, Any]:
    """Every format's errors over blocks 0..n-1 and how often each one has the lowest RMS error."""
    from loracalc import nf4

    wins = {k: 0 for k in FORMATS}
    sums = {k: {"mean_abs_error": 0.0, "rmse": 0.0} for k in FORMATS}
    for seed in range(n_blocks):
        cmp = nf4.compare_formats(draw_block(seed), block_size=BLOCK)
        best = min(FORMATS, key=lambda k: (cmp[k]["rmse"], k))
        wins[best] += 1
        for k in FORMATS:
            for m in sums[k]:
                sums[k][m] += cmp[k][m]
    return {"n": n_blocks, "wins": wins,
            "mean": {k: {m: v / n_blocks for m, v in sums[k].items()} for k in FORMATS}}


# No inputs: the build prerenders it and the page never asks Python again (it takes about a second).
@widget("nf4_summary")
def nf4_summary(**_: Any) -> dict[str, Any]:
    res = blocks_summary()
    n, wins, mean = res["n"], res["wins"], res["mean"]
    share = {k: 100 * wins[k] / n for k in FORMATS}
    rows = "".join(
        f'<tr{CHOSEN if k == "nf4" else ""}><th scope="row">{FORMATS[k]}</th>'
        f'<td class="lc-num">{c.num(round(share[k], 1))}%</td>'
        f'<td class="lc-num">{mean[k]["mean_abs_error"]:.4f}</td><td class="lc-num">{mean[k]["rmse"]:.4f}</td></tr>'
        for k in FORMATS)
    table = (f'<table class="lc-table"><caption>{c.fmt_int(n)} blocks of {BLOCK} weights (blocks #0 to '
             f'#{n - 1})</caption><thead><tr><th scope="col">4-bit format</th>'
             '<th scope="col" class="lc-num">lowest RMS error in</th><th scope="col" class="lc-num">mean |error|</th>'
             '<th scope="col" class="lc-num">mean RMS error</th></tr></thead><tbody>' + rows + "</tbody></table>")
    return {
        "headline": (f"Over {c.fmt_int(n)} blocks, NF4 has the lowest RMS error in {c.num(round(share['nf4'], 1))}% of "
                     f"them; int4 wins {c.num(round(share['int4'], 1))}% and FP4 {c.num(round(share['fp4'], 1))}%. "
                     f"On average NF4's RMS error is {mean['nf4']['rmse']:.4f} against {mean['int4']['rmse']:.4f} "
                     f"for int4 and {mean['fp4']['rmse']:.4f} for FP4: one block can go either way, the average "
                     "cannot."),
        "table": table,
    }


# --------------------------------------------------------------------------------------------- bits
ERROR_SAMPLE = 4096  # standard-normal weights (seed 0) quantized at each block size, for its error cost
REFERENCE_BLOCK = 64


@functools.lru_cache(maxsize=64)
def block_size_error(block_size: int) -> float:
    """NF4's RMS error on ERROR_SAMPLE standard-normal weights with this block size (cached per size)."""
    from loracalc import nf4

    rng = random.Random(0)
    xs = [rng.gauss(0.0, 1.0) for _ in range(ERROR_SAMPLE)]
    q = nf4.quantize_blockwise(xs, block_size, nf4.code_book())
    deq = nf4.dequantize_blockwise(q)
    return (sum((y - x) ** 2 for x, y in zip(xs, deq)) / len(xs)) ** 0.5

@widget("nf4_bits")
def nf4_bits(block_size: str = "64", double_quant: str = "on", model: str = "llama-3.1-70b",
             **_: Any) -> dict[str, Any]:
    from loracalc import nf4

    arch = c.preset(model, "llama-3.1-70b")
    dq = c.on_off(double_quant, "double_quant")
    store = nf4.weight_storage_bytes(arch, block_size=c.text(block_size), double_quant=dq)  # validates block_size
    bits = nf4.bits_per_param(block_size=c.text(block_size), double_quant=dq)
    bf16 = 2 * loracalc.total_params(arch)
    bs = c.integer(block_size, "block_size", 1, 10**9)  # already validated by the engine above
    err, ref = block_size_error(bs), block_size_error(REFERENCE_BLOCK)
    change = 100 * (err / ref - 1)
    cost = (f"NF4's RMS error at block size {c.fmt_int(bs)}: {err:.4f} on {c.fmt_int(ERROR_SAMPLE)} normal weights, "
            + ("the reference." if bs == REFERENCE_BLOCK else
               f"{abs(change):.0f}% {'more' if change > 0 else 'less'} than at block size {REFERENCE_BLOCK} ({ref:.4f}).")
            + " A larger block stores fewer scales but lets one outlier stretch the levels for more weights.")
    return {
        "error_cost": cost,
        "bits": f"{bits:.4g}",
        "bits_split": f"4-bit code + {bits - 4:.4g} bits of scales",
        "model_name": arch.display_name,
        "storage": c.fmt_gb(store, 1),
        "storage_bf16": c.fmt_gb(bf16, 1),
        "storage_note": (f"{c.fmt_ratio(round(bf16 / store, 1))} smaller than bf16. Embeddings, the output layer and "
                         "the norms stay in 16 bit; only the linear layers inside the decoder blocks are 4-bit."),
        "announce": f"{bits:.4g} bits per parameter; {arch.display_name} weights {c.fmt_gb(store, 1)}.",
    }
