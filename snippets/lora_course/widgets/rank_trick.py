"""The rank-trick widgets on "The rank trick" page.

``rank_trick``: one square d x d projection W and its LoRA pair B (d x r), A (r x d), drawn to relative
scale, with the counts d^2 and 2dr, their ratio and the break-even rank.
``model_lora``: a whole model (a preset, or the reader's own config.json pasted, dropped or from a link), a rank
and target modules -> the exact trainable parameter count and percentage, the adapter's size on disk in bf16
and fp32, and what ``python -m loracalc params`` prints for the same inputs (as text and as JSON).
"""
from __future__ import annotations

import json
from typing import Any

import loracalc
from loracalc.cli import params_text

from . import _common as c
from .registry import widget

D_MIN, D_MAX = 64, 16384
R_MIN, R_MAX = 1, 512

# Models whose hidden size the rank-trick presets offer, smallest to largest; their d is read
# from the engine's presets (published config.json values), never typed here.
PRESETS = (
    "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "qwen2.5-14b",
    "llama-3.1-70b", "llama-3.1-405b",
)

TARGET_CHOICES = {
    "q,v": "q_proj, v_proj",
    "q,k,v,o": "q, k, v, o (attention)",
    "all-linear": "all linear layers",
}


def _hidden_size(name: str) -> int:
    return int(loracalc.get_model(name).hidden_size)


def _preset_d(preset: str) -> int | None:
    preset = c.text(preset) or "custom"
    if preset == "custom":
        return None
    if preset not in PRESETS:
        raise loracalc.LoraCalcError("preset", f"preset must be Custom or one of: {', '.join(PRESETS)} (got {preset!r})")
    return _hidden_size(preset)


# ------------------------------------------------------------------ the square matrix
@widget("rank_trick")
def rank_trick(d: str = "4096", r: str = "8", preset: str = "custom", _changed: str = "", **_: Any) -> dict[str, Any]:
    # A typed d is the reader's choice: it switches the preset to Custom (never silently overridden, and
    # checked like any typed d). Choosing a preset writes its d into the field (the page applies "_set").
    if c.text(_changed) == "d":
        preset = "custom"
    pd = _preset_d(preset)
    if pd is None:
        d_val = c.integer(d, "d", D_MIN, D_MAX, "d (hidden size)")
    else:
        d_val = pd
    r_val = c.integer(r, "r", R_MIN, R_MAX, "rank r")
    full = loracalc.square_full_params(d_val)
    try:  # the engine refuses a rank above d; its message goes under the r field
        lora = loracalc.square_lora_params(d_val, r_val)
    except loracalc.LoraCalcError as exc:
        raise loracalc.LoraCalcError("r", f"{exc.message} (the rank cannot exceed d)") from None
    ratio = full / lora
    break_even = d_val / 2
    d_note = (f"d = {d_val:,}, the hidden size of {loracalc.get_model(c.text(preset)).display_name}"
              if pd is not None else f"d = {d_val:,} (custom)")
    verdict = ("LoRA is smaller than W" if lora < full else
               "LoRA is as large as W: no saving at the break-even rank" if lora == full else
               "LoRA is larger than W: past the break-even rank")
    return {
        "d_used": c.fmt_int(d_val),
        "d_note": d_note,
        "r_used": c.fmt_int(r_val),
        "full_params": c.fmt_int(full),
        "lora_params": c.fmt_int(lora),
        "ratio": c.fmt_ratio(ratio),
        "lora_share": c.fmt_pct(100 * lora / full),
        "break_even": c.fmt_int(break_even) if break_even == int(break_even) else f"{break_even:,.1f}",
        "verdict": verdict,
        "svg": matrices_svg(d_val, r_val),
        "_set": {"d": str(d_val), "preset": c.text(preset) or "custom"},
        "announce": (f"d = {d_val:,}, r = {r_val:,}: LoRA trains {c.fmt_int(lora)} numbers against "
                     f"{c.fmt_int(full)} in W, {c.fmt_ratio(ratio)} fewer."),
    }


# The home page's rank slider: the same function under its own name, so that a page (or a test) looking for
# "the rank-trick widget" finds the full one on its page, not the slider on the home page.
widget("rank_slider")(rank_trick)


def matrices_svg(d: int, r: int) -> str:
    """W (d x d), B (d x r) and A (r x d) side by side at one scale; thin factors keep a visible width."""
    side = 180.0            # drawn size of d
    min_w = 2.5             # so that r = 1 still shows at d = 16384
    t = max(min_w, side * r / d)
    gap = 34.0
    top = 26.0
    x_w = 10.0
    x_b = x_w + side + gap
    x_a = x_b + t + gap * 0.8
    width = x_a + side + 10.0
    height = top + side + 30.0
    y_a = top + (side - t) / 2
    n = c.num
    pct = c.fmt_pct(100 * 2 * r / d)
    label = (f"W is {d:,} by {d:,}; B is {d:,} by {r:,}; A is {r:,} by {d:,}. "
             f"B and A together hold {pct} of the entries of W.")
    parts = [
        f'<svg class="lc-svg lc-rank-svg" viewBox="0 0 {n(width)} {n(height)}" role="img" '
        f'aria-label="{c.esc(label)}" preserveAspectRatio="xMidYMid meet">',
        f'<title>{c.esc(label)}</title>',
        # W: frozen
        f'<rect class="lc-frozen" x="{n(x_w)}" y="{n(top)}" width="{n(side)}" height="{n(side)}" rx="2"/>',
        f'<text class="lc-svg-label" x="{n(x_w + side / 2)}" y="{n(top - 8)}" text-anchor="middle">'
        f'W (frozen) {d:,} × {d:,}</text>',
        f'<text class="lc-svg-op" x="{n(x_w + side + gap / 2)}" y="{n(top + side / 2 + 6)}" text-anchor="middle">+</text>',
        # B: d x r
        f'<rect class="lc-train" x="{n(x_b)}" y="{n(top)}" width="{n(t)}" height="{n(side)}" rx="1"/>',
        f'<text class="lc-svg-label" x="{n(x_b + t / 2)}" y="{n(top + side + 18)}" text-anchor="middle">'
        f'B {d:,}×{r:,}</text>',
        f'<text class="lc-svg-op" x="{n(x_b + t + gap * 0.4)}" y="{n(top + side / 2 + 6)}" text-anchor="middle">×</text>',
        # A: r x d
        f'<rect class="lc-train" x="{n(x_a)}" y="{n(y_a)}" width="{n(side)}" height="{n(t)}" rx="1"/>',
        f'<text class="lc-svg-label" x="{n(x_a + side / 2)}" y="{n(y_a - 8)}" text-anchor="middle">'
        f'A {r:,}×{d:,}</text>',
        '</svg>',
    ]
    return "".join(parts)


# ------------------------------------------------------------------ the whole model
@widget("model_lora")
def model_lora(model: str = "llama-3.1-8b", rank: str = "16", targets: str = "all-linear", config: str = "",
               adapt: str = "all", config_z: str = "", _changed: str = "", **_: Any) -> dict[str, Any]:
    # A pasted, dropped or linked config.json goes the same way as in the memory calculator (_common.model_source)
    name, data, source = c.model_source(model, config, config_z, _changed)
    arch = c.config_model(data) if data is not None else c.preset(name, "llama-3.1-8b")
    r_val = c.integer(rank, "rank", R_MIN, R_MAX, "rank")
    t = c.choice(targets, "targets", TARGET_CHOICES)
    part = c.text(adapt) or "all"
    counts = loracalc.count_params(arch, rank=r_val, targets=t, adapt=part)
    lora = int(counts.lora_params)
    return {
        "model_name": arch.display_name,
        "total_params": c.fmt_int(counts.total_params),
        "lora_params": c.fmt_int(lora),
        "lora_params_per_layer": c.fmt_int(counts.lora_params_per_layer),
        "trainable_percent": c.fmt_pct(counts.trainable_percent),
        "adapter_bf16": c.fmt_bytes(loracalc.adapter_file_bytes(lora, dtype="bf16")),
        "adapter_fp32": c.fmt_bytes(loracalc.adapter_file_bytes(lora, dtype="fp32")),
        "modules_table": _modules_table(counts, arch),
        # what `loracalc params --config config.json --rank R --targets T` prints, and with --json
        "params_text": params_text(arch, r_val, t, part),
        "json": json.dumps({**counts.to_dict(), "display_name": arch.display_name, "model_type": arch.model_type},
                           indent=2),
        **source,
        "announce": (f"{arch.display_name}, rank {r_val}: {c.fmt_int(lora)} trainable parameters, "
                     f"{c.fmt_pct(counts.trainable_percent)} of the model."),
    }


def _modules_table(counts, arch) -> str:
    rows = []
    for m in counts.per_module:
        rows.append(
            f"<tr><th scope=\"row\"><code>{c.esc(m.name)}</code></th>"
            f"<td>{c.fmt_int(m.d_in)} → {c.fmt_int(m.d_out)}</td>"
            f"<td>{c.fmt_int(m.lora_params)}</td></tr>")
    return ("<table class=\"lc-table\"><caption>Adapter per copy of each module "
            f"({c.fmt_int(arch.num_hidden_layers)} layers)</caption>"
            "<thead><tr><th scope=\"col\">module</th><th scope=\"col\">d<sub>in</sub> → d<sub>out</sub></th>"
            "<th scope=\"col\">LoRA params</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
