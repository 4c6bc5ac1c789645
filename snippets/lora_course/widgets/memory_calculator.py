"""The GPU memory calculator on the "GPU memory" page.

Inputs (strings from the form): a model preset or a pasted ``config.json``, the method, rank, target
modules, batch size, sequence length, gradient checkpointing, optimizer, attention implementation, the
training stack's recipe and loss, activation offloading, optimizer in backward, paged state in host
memory, DoRA, and a chosen GPU. Outputs: the two totals (needed on the card, which the GPU verdicts use,
and the allocated peak), what sits in CPU memory and what is allocated outside the peak, a stacked bar of the breakdown whose segments carry each term's
formula (on hover and on keyboard focus, and in a table), the methods side by side, every GPU
with a usage-vs-capacity bar, the largest batch and sequence that fit on the chosen GPU, the JSON
that ``python -m loracalc memory --json`` prints, and predicted vs measured where the labs measured it.
Several GPUs (number, strategy, CPU offload): memory per GPU by term, host memory, and the fewest GPUs of
the chosen type per strategy (``loracalc.sharding``).
"""
from __future__ import annotations

import functools
import inspect
import json
from typing import Any

import loracalc
from loracalc import gpus as catalog
from loracalc import sharding
from loracalc.cli import params_text
from loracalc.preference import preference_memory

from .. import measured
from . import _common as c
from . import trainer_config as trainer
from .registry import widget

# Every input is validated by the engine (estimate_memory, count_params, get_gpu); their errors name the
# same fields as this form's inputs.
FIELDS = ("method", "base_format", "rank", "targets", "batch_size", "seq_len", "gradient_checkpointing", "optimizer", "attention",
          "recipe", "loss", "activation_offload", "optimizer_in_backward", "paged_state_on_host", "dora",
          "gradient_accumulation", "adapt", "images_per_sample", "image_size")


def _model(model: str, config: str, config_z: str = "", changed: str = ""):
    """The architecture the form asks for, and the outputs that keep a reader's config.json in the link."""
    name, data, outputs = c.model_source(model, config, config_z, changed)
    if data is not None:   # a pasted, dropped or linked config.json, named as `loracalc --config FILE` names it
        return c.config_model(data), outputs
    probed = measured.models()  # the labs' tiny Llama, so its measured runs can be compared here
    if name in probed:
        return probed[name], outputs
    if name not in loracalc.list_models():
        raise loracalc.LoraCalcError("model", f"model must be a preset or 'config' (got {name!r})")
    return loracalc.get_model(name), outputs


def _gpu(name: str):
    try:
        return loracalc.get_gpu(c.text(name) or "h100-80gb")
    except loracalc.LoraCalcError as exc:
        raise loracalc.LoraCalcError("gpu", exc.message) from None


def _key(settings: dict, leave_out: str) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in settings.items() if k != leave_out)


@functools.lru_cache(maxsize=256)
def _largest(kind: str, arch, gpu_name: str, key: tuple) -> int:
    """The engine's largest batch / sequence that fits, cached: a change of batch size does not change the
    largest batch, so typing in one field does not redo that search (it keeps an update within a frame)."""
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in key}
    search = loracalc.max_batch_size if kind == "batch" else loracalc.max_seq_len
    return search(arch, loracalc.get_gpu(gpu_name), **settings)


@widget("memory_calculator")
def memory_calculator(model: str = "llama-3.1-8b", config: str = "", method: str = "qlora", rank: str = "16",
                      targets: str = "all-linear", batch_size: str = "1", seq_len: str = "2048",
                      gradient_checkpointing: str = "on", optimizer: str = "adamw", attention: str = "sdpa",
                      recipe: str = "peft", loss: str = "full", activation_offload: str = "off",
                      optimizer_in_backward: str = "off", paged_state_on_host: str = "auto", dora: str = "off",
                      base_format: str = "bf16",
                      gradient_accumulation: str = "1", autocast: str = "recipe", gpu: str = "h100-80gb", gpus: str = "1", strategy: str = "ddp", offload: str = "none",
                      samples: str = "2000", avg_tokens: str = "", epochs: str = "1",
                      images_per_sample: str = "0", image_size: str = "", adapt: str = "all",
                      objective: str = "sft", reference: str = "default", generation: str = "generate",
                      num_generations: str = "8", completion_len: str = "512",
                      trainer_config: str = "", config_z: str = "", _changed: str = "", **_: Any) -> dict[str, Any]:
    form = {k: v for k, v in locals().items() if k != "_"}
    if c.text(_changed) == trainer.FIELD:
        # a trainer's config just given: the form takes its settings (the page writes them into the fields)
        got = trainer.read(trainer_config)
        if got is not None:
            filled = trainer.form_values(got, FORM_DEFAULTS)
            out = memory_calculator(**{**form, **filled, "_changed": ""})
            out["_set"] = {**out.get("_set", {}), **filled}
            return out
    arch, source = _model(model, config, config_z, _changed)
    raw = {"method": method, "rank": c.text(rank), "targets": targets, "batch_size": c.text(batch_size),
           "seq_len": c.text(seq_len), "gradient_checkpointing": c.text(gradient_checkpointing) or "off",
           "optimizer": optimizer, "attention": attention, "recipe": c.text(recipe) or "peft",
           "loss": c.text(loss) or "full", "activation_offload": c.text(activation_offload) or "off",
           "optimizer_in_backward": c.text(optimizer_in_backward) or "off",
           "dora": c.text(dora) or "off", "gradient_accumulation": c.text(gradient_accumulation),
           "adapt": c.text(adapt) or "all", "images_per_sample": c.text(images_per_sample) or "0",
           "base_format": c.text(base_format) or "bf16"}
    if c.text(image_size):
        raw["image_size"] = c.text(image_size)
    paged = c.text(paged_state_on_host) or "auto"
    if paged != "auto":
        raw["paged_state_on_host"] = paged   # "on" or "off"; anything else gets the engine's one-line message
    ac = c.text(autocast) or "recipe"
    if ac != "recipe":
        raw["autocast"] = ac         # "on" or "off"; anything else gets the engine's one-line message
    g = _gpu(gpu)
    pref = dict(objective=c.text(objective) or "sft", reference=c.text(reference) or "default",
                generation=c.text(generation) or "generate", num_generations=c.text(num_generations),
                completion_len=c.text(completion_len), gpu_bytes=g.memory_bytes)
    tuned = pref["objective"] != "sft"
    if tuned:   # TRL's own loss (fused head or full logits) unless the reader chose another
        est = preference_memory(arch, **pref, **{k: v for k, v in raw.items() if k != "loss" or v != "full"})
    else:
        est = loracalc.estimate_memory(arch, **raw)
    st = est.settings
    s = {k: st[k] for k in FIELDS if k in st}  # the validated settings, as the engine read them (paged state: where it went)
    if ac != "recipe":
        s["autocast"] = st["autocast"]
    total = int(est.total_bytes)
    # DoRA is a LoRA variant: the full fine-tuning column leaves it out
    # full fine-tuning has its own mixed precision instead of a chosen autocast
    per_method = {m: (est if m == s["method"] else
                      _other_method(arch, m, s, pref if tuned else None))
                  for m in loracalc.METHODS}
    limit = int(g.memory_bytes)
    # the largest batch and sequence are searched for supervised fine-tuning only
    mb = None if tuned else _largest("batch", arch, g.name, _key(s, "batch_size"))
    ms = None if tuned else _largest("seq", arch, g.name, _key(s, "seq_len"))
    counts = loracalc.count_params(arch, rank=s["rank"], targets=s["targets"], adapt=st.get("adapt"))
    trainable = counts.total_params if s["method"] == "full" else counts.lora_params
    alloc = int(est.allocated_peak_bytes)
    out = {
        "total": c.fmt_gb(total),
        "allocated_peak": c.fmt_gb(alloc),
        "host": (", ".join(f"{t.label}: {c.fmt_gb(t.bytes)}" for t in est.host) or "nothing"),
        "host_ram": host_ram(arch, s),
        "off_peak": (", ".join(f"{t.label}: {c.fmt_gb(t.bytes)}" for t in est.off_peak) or "nothing"),
        "model_params": (f"{c.fmt_int(counts.total_params)} parameters, {c.fmt_int(trainable)} trained "
                         f"({c.fmt_pct(100 * trainable / counts.total_params)})"),
        "summary": (f"{loracalc.METHODS[s['method']]} of {arch.display_name}, rank {s['rank']}, batch {s['batch_size']}, "
                    f"sequence {s['seq_len']:,}"),
        "stack": stack_html(est),
        "terms_table": terms_table(est),
        "methods": methods_html(per_method, s["method"]),
        "gpus": gpus_html(total, g.name, st),
        **verdict_outputs(total, limit, card_label(g), catalog.cannot_run(g, st),
                          catalog.limit_lines(g, st)),
        "explain": explain(per_method, s),
        "max_batch": ("not searched for preference tuning" if tuned else
                      c.fmt_int(mb) if mb else "none (batch 1 does not fit)"),
        "max_seq": ("not searched for preference tuning" if tuned else c.fmt_int(ms) if ms else "none"),
        "objective_note": objective_note(est) if tuned else "Supervised fine-tuning: no preference pairs, no generation.",
        "vision_note": vision_note(arch, est),
        "json": json.dumps(est.to_dict(), indent=2),
        # what `loracalc params --config config.json --rank R --targets T` prints, for any family
        "params_text": params_text(arch, s["rank"], s["targets"], st.get("adapt")),
        "measured": measured_html(arch, s, total),
    }
    out.update(multi_gpu(est, arch, g, s, gpus, strategy, offload))
    # a preference or RL step's time counts its reference forwards and generation (loracalc.speed); the engine
    # reads batch_size as pairs, answers or completions, as the memory estimate does
    timed_pref = ({k: pref[k] for k in ("objective", "generation", "num_generations", "completion_len")}
                  | {"reference": None if pref["reference"] == "default" else pref["reference"]}) if tuned else {}
    out.update(time_and_cost(arch, g, {**s, **timed_pref}, total, samples, avg_tokens, epochs))
    out.update(source)
    out["_url"]["trainer_config"] = ""     # the file's text stays in the box, never in the address
    out["trainer_read"] = trainer_read(trainer_config, form, arch.display_name)
    out["announce"] = (f"Needed on the card {out['total']}, allocated peak {out['allocated_peak']}. "
                       f"{out['gpu_verdict']}. {out['per_gpu_verdict']}.")
    return out


FORM_DEFAULTS = {k: p.default for k, p in inspect.signature(memory_calculator).parameters.items()
                 if isinstance(p.default, str)}


def trainer_read(text: str, form: dict, model_shown: str) -> str:
    """What the trainer's config box says it read; while the reader edits other fields, a file that no longer
    reads gets the engine's line here (its error under the box came when it was given)."""
    try:
        got = trainer.read(text)
    except loracalc.LoraCalcError as exc:
        return f'<p class="lc-note">Your trainer\'s config is not read: {c.esc(exc.message)}</p>'
    if got is None:
        return ""
    return trainer.read_html(got, {k: c.text(v) for k, v in form.items()}, model_shown)


def _other_method(arch, method: str, s: dict, pref: dict | None):
    """The same settings with another method, for the per-method comparison (a full fine-tune has no adapter
    to switch off: its reference is a second model)."""
    settings = {**{k: v for k, v in s.items() if not (method == "full" and k == "autocast")},
                "method": method, "dora": s["dora"] and method != "full",
                # a GPTQ, AWQ, HQQ or torchao base is LoRA's; the other methods store the base their own way
                "base_format": s.get("base_format", "bf16") if method == "lora" else "bf16"}
    if pref is None:
        return loracalc.estimate_memory(arch, **settings)
    ref = pref["reference"]
    if method == "full" and ref == "adapter-off":   # no adapter to switch off: the trainer loads a second model
        ref = "separate"
    return preference_memory(arch, **{**pref, "reference": ref}, **{k: v for k, v in settings.items() if k != "loss"})


def host_ram(arch, s: dict) -> str:
    """Host (CPU) RAM of the job's other stages, one process (loracalc.host_memory; `loracalc host`)."""
    from loracalc.host_memory import host_memory
    # the run's own settings (optimizer, precision, where a VLM's adapters go) size the saved state too
    common = dict(method=s["method"], rank=s["rank"], targets=s["targets"],
                  **{k: s[k] for k in ("optimizer", "precision", "adapt") if s.get(k) is not None})
    load = host_memory(arch, "load", **common)
    save = host_memory(arch, "save", **common)
    merge = host_memory(arch, "merge", **common)
    return (f"loading {c.fmt_gb(load.peak_bytes)} (checkpoint pages mapped from disk, which the kernel can drop), "
            f"saving a checkpoint {c.fmt_gb(save.peak_bytes)}, merging the adapter and exporting on a CPU "
            f"{c.fmt_gb(merge.peak_bytes)}" if s["method"] != "full" else
            f"loading {c.fmt_gb(load.peak_bytes)} (checkpoint pages mapped from disk, which the kernel can drop), "
            f"saving a checkpoint {c.fmt_gb(save.peak_bytes)}")


def vision_note(arch, est) -> str:
    """What the images add, or that the model has no vision tower."""
    if not arch.vision:
        return f"{arch.display_name} reads text only: these settings apply to a vision-language config.json."
    s = est.settings
    per = s.get("image_tokens_per_image") or 0
    return (f"{arch.display_name} is counted whole: vision tower, projector and language model. "
            + (f"Each image adds {per:,} tokens: the language model sees {s['lm_seq_len']:,} per sequence."
               if s.get("images_per_sample") else "No images per example: text tokens only."))


def objective_note(est) -> str:
    """What the objective adds, in one paragraph: rows per forward, the reference, the generation."""
    s = est.settings
    return (f"{s['objective'].upper()}: {s['batch_size']} per device means {s['rows_per_forward']} sequences per "
            f"forward; reference: {s['reference']}. " + " ".join(n for n in est.notes[1:] if not n.startswith("peak at")))


OFFLOADS = {"none": (False, False), "optimizer": (True, False), "params": (False, True)}


def _hours(seconds: float) -> str:
    return f"{seconds / 60:,.0f} min" if seconds < 3600 else f"{seconds / 3600:,.1f} h"


def time_and_cost(arch, g, s: dict, total: int, samples: str, avg_tokens: str, epochs: str) -> dict[str, str]:
    """The run's time and cost on the chosen GPU, and every card it fits on, cheapest first (loracalc.speed)."""
    from loracalc.speed import estimate_time

    work = {"samples": c.text(samples), "avg_tokens": c.text(avg_tokens) or s["seq_len"], "epochs": c.text(epochs)}
    if s.get("objective", "sft") != "sft":
        del work["avg_tokens"]     # pairs, answers or prompts of seq_len tokens each (the engine's reading)

    def timed(card):
        if not card.peak_bf16_tflops:     # no cited throughput (Radeon cards, Macs): no time, said so
            return None
        return estimate_time(arch, card.name, **s, **work)

    cards = loracalc.list_gpus()
    probe = next(card for card in cards if card.peak_bf16_tflops)
    estimate_time(arch, probe.name, **s, **work)        # bad examples / tokens / epochs: the engine's message
    chosen = timed(g)
    if chosen is None:
        line = f"{card_label(g)} has no cited speed figures, so no time or cost is given for it."
    else:
        price = (f"${chosen.cost:,.2f} at ${chosen.price_per_gpu_hour:,.2f} per GPU-hour" if chosen.cost is not None
                 else "no price cited for this card")
        line = (f"On {card_label(g)}: about {c.fmt_int(chosen.tokens_per_second)} tokens/s, "
                f"{_hours(chosen.total_seconds)} for {c.fmt_int(chosen.total_tokens)} tokens; {price}.")
    if fit_state(total, int(g.memory_bytes)) == "no":
        line += " It does not fit this card, though: see the cards below."
    rows = []
    for card in cards:
        if fit_state(total, int(card.memory_bytes)) == "no":
            rows.append((3, 0.0, card, "does not fit"))
            continue
        t = timed(card)
        if t is None:
            rows.append((2, 0.0, card, "fits; no cited speed figures"))
        else:
            rows.append((0 if t.cost is not None else 1, t.cost or t.total_seconds, card, t))
    items = []
    for _, _, card, t in sorted(rows, key=lambda r: (r[0], r[1])):
        cls = ' class="lc-chosen"' if card.name == g.name else ""
        if isinstance(t, str):
            what = t
        else:
            cost = f"${t.cost:,.2f}" if t.cost is not None else "no cited price"
            what = f"{cost} · {_hours(t.total_seconds)} · {c.fmt_int(t.tokens_per_second)} tokens/s"
        items.append(f'<li{cls}><span class="lc-gpu-name">{c.esc(sold_as(card))}</span>: '
                     f'<span class="lc-cost">{c.esc(what)}</span></li>')
    # a list, not a table: it reads in one column on a phone (the page keeps its tables to five)
    listing = ('<p class="lc-note">Every card, cheapest first (one GPU, on-demand prices from the GPU catalog):</p>'
               '<ol class="lc-costs">' + "".join(items) + "</ol>")
    return {"time_cost": line, "gpu_costs": listing}


def multi_gpu(est, arch, g, s: dict, gpus: str, strategy: str, offload: str) -> dict[str, str]:
    """Per-GPU memory for the chosen number of GPUs and strategy, and the fewest GPUs per strategy."""
    off = c.text(offload) or "none"
    if off not in OFFLOADS:
        raise loracalc.LoraCalcError("offload", f"offload must be one of: {', '.join(OFFLOADS)} (got {offload!r})")
    sh = sharding.shard_estimate(est, arch, c.text(gpus) or "1", c.text(strategy) or "ddp", *OFFLOADS[off])
    limit = int(g.memory_bytes)
    per = sh.per_gpu_bytes
    rows = []
    for t in sh.terms:
        rows.append(f'<tr><th scope="row">{c.esc(t.label)}<br><span class="lc-formula">{c.esc(t.formula)}</span></th>'
                    f'<td class="lc-num">{c.fmt_gb(t.gpu_bytes, 2)}</td>'
                    f'<td class="lc-num">{c.fmt_gb(t.host_bytes, 2) if t.host_bytes else "-"}</td></tr>')
    table = ('<table class="lc-table lc-terms"><caption>Each GPU, term by term</caption><thead><tr>'
             '<th scope="col">term</th><th scope="col" class="lc-num">per GPU</th>'
             '<th scope="col" class="lc-num">host, per GPU</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")
    need = {}
    for name in sharding.STRATEGIES:
        flags = (False, False) if name == "ddp" else (sh.offload_optimizer and not sh.offload_params, sh.offload_params)
        need[name] = _fewest(arch, g.name, name, flags, _key(s, ""))
    items = "".join(
        f'<li><span class="lc-gpu-name">{c.esc(sharding.STRATEGIES[k])}</span> '
        f'<strong>{c.esc(c.fmt_int(v) + " x " + g.display_name if v else "no number of GPUs fits")}</strong></li>'
        for k, v in need.items())
    host = f"; host memory {c.fmt_gb(sh.host_bytes_total)} in all" if sh.host_bytes_total else ""
    verdict = (f"{sh.gpus} x {g.display_name}, {sharding.STRATEGIES[sh.strategy]}: {c.fmt_gb(per)} per GPU, "
               + ("fits" if per <= limit else f"does not fit in {c.fmt_gb(limit)}") + host)
    return {"per_gpu_total": c.fmt_gb(per), "per_gpu_verdict": verdict, "per_gpu_table": table,
            "gpus_needed": f'<ul class="lc-needed">{items}</ul>'}


@functools.lru_cache(maxsize=256)
def _fewest(arch, gpu_name: str, strategy: str, flags: tuple, key: tuple):
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in key}
    return sharding.smallest_gpu_count(arch, gpu_name, strategy, *flags, **settings)


# --------------------------------------------------------------------- verdicts
def sold_as(g) -> str:
    """The card's name with the size it is sold as, unless the name already says it."""
    return g.display_name if "GB" in g.display_name else f"{g.display_name} ({g.memory_gb} GB)"


def card_label(g) -> str:
    """The card as sold and what CUDA reports as usable, in GB (10^9 B) and GiB (2^30 B): memory is made in binary
    sizes, so a card sold as 24 GB can show 25.8 GB (24.0 GiB) usable, or less than 24 GB where the card keeps some."""
    return (f"{g.display_name} (sold as {g.memory_gb} GB; {c.fmt_gb(g.memory_bytes)} = "
            f"{g.memory_bytes / 2**30:,.1f} GiB usable)")


# Above this share of the card the estimate fits on paper but leaves little for what it leaves out
# (allocator fragmentation, a longer sample in the batch, a framework's own buffers): "tight".
TIGHT_SHARE = 0.90


def fit_state(total: int, limit: int) -> str:
    """'fits', 'tight' (over TIGHT_SHARE of the card) or 'no'."""
    if total > limit:
        return "no"
    return "tight" if total > TIGHT_SHARE * limit else "fits"


def verdict_outputs(total: int, limit: int, gpu_name: str, blocked=(), limit_lines=()) -> dict[str, str]:
    """The verdict line, its state (for the page's colour and icon) and the headroom, in words. ``blocked``: the
    card's ``catalog.Limit`` records these settings hit (a card that cannot run them gets that verdict
    whatever the memory says); ``limit_lines``: the engine's words on them and on what runs only with care."""
    state = fit_state(total, limit)
    share = f"{c.num(round(100 * total / limit))}%"
    more = "".join(f". {line[:1].upper()}{line[1:]}" for line in limit_lines)
    if blocked:
        out = verdict_outputs(total, limit, gpu_name)
        line = (f"Cannot run on {gpu_name}: {', '.join(lim.what for lim in blocked)}; in memory it "
                f"{'does not fit' if state == 'no' else 'would fit'} (needs {c.fmt_gb(total)} of "
                f"{c.fmt_gb(limit)}){more}")
        return {**out, "gpu_verdict": line, "verdict_state": "no", "verdict_word": "Cannot run",
                "verdict_badge": '<span class="lc-verdict lc-verdict--no">Cannot run</span>'}
    if state == "no":
        headroom = f"{c.fmt_gb(total - limit)} short"
        line = f"Does not fit on {gpu_name}: needs {c.fmt_gb(total)}, {headroom}"
        word = "Does not fit"
    elif state == "tight":
        headroom = f"{c.fmt_gb(limit - total)} free"
        line = (f"Tight on {gpu_name}: needs {c.fmt_gb(total)} ({share}), only {c.fmt_gb(limit - total)} "
                f"to spare; fragmentation or a longer batch can push it over")
        word = "Tight"
    else:
        headroom = f"{c.fmt_gb(limit - total)} free"
        line = f"Fits on {gpu_name}: needs {c.fmt_gb(total)} ({share}), {headroom}"
        word = "Fits"
    return {"gpu_verdict": line + more, "verdict_state": state, "verdict_word": word, "headroom": headroom,
            "verdict_badge": f'<span class="lc-verdict lc-verdict--{state}">{c.esc(word)}</span>'}


# Terms that hold the frozen base model, however a method stores it.
_WEIGHT_TERMS = {"weights", "weights_4bit", "weights_quantized", "weights_16bit", "kbit_upcast",
                 "master_weights"}


def explain(per_method: dict, s: dict) -> str:
    """One line when the methods come out in an unexpected order (QLoRA above LoRA, LoRA above full):
    which terms grew and which shrank, from the engine's own terms; empty otherwise."""
    order = [("qlora", "lora", "QLoRA", "LoRA"), ("lora", "full", "LoRA", "full fine-tuning")]
    for low, high, low_name, high_name in order:
        a, b = per_method[low], per_method[high]
        if a.total_bytes <= b.total_bytes:
            continue

        def by_key(est):
            out: dict[str, tuple[str, float]] = {}
            for t in est.terms:
                key = "weights" if t.key in _WEIGHT_TERMS else t.key
                short = t.label.split(" (")[0].split(",")[0]  # "Activations saved for backward (...)" -> its head
                label = "the frozen weights" if key == "weights" else "the " + short[:1].lower() + short[1:]
                old = out.get(key, (label, 0.0))
                out[key] = (label, old[1] + t.bytes)
            return out

        ta, tb = by_key(a), by_key(b)
        diffs = {k: ta.get(k, ("", 0.0))[1] - tb.get(k, ("", 0.0))[1] for k in set(ta) | set(tb)}
        labels = {k: (ta.get(k) or tb.get(k))[0] for k in diffs}
        grew = sorted((k for k in diffs if diffs[k] > 0.05e9), key=lambda k: -diffs[k])[:2]
        shrank = sorted((k for k in diffs if diffs[k] < -0.05e9), key=lambda k: diffs[k])[:1]
        why = " and ".join(f"{labels[k]} (+{c.fmt_gb(diffs[k])})" for k in grew)
        line = (f"Why is {low_name} above {high_name} here ({c.fmt_gb(a.total_bytes)} against {c.fmt_gb(b.total_bytes)})? "
                f"At batch {s['batch_size']} × sequence {s['seq_len']:,} the per-token terms dominate, and {low_name} "
                f"makes {why} larger")
        if low == "qlora" and s.get("recipe", "peft") == "peft":
            line += (" (prepare_model_for_kbit_training turns the embeddings and norms to fp32, so the hidden states "
                     "kept for the backward pass take 4 bytes a value instead of 2)")
        if shrank:
            k = shrank[0]
            line += f", more than the {c.fmt_gb(-diffs[k])} it saves on {labels[k]}"
        return line + "."
    return ""


# --------------------------------------------------------------------- pieces of HTML
def _pct(part: float, whole: float) -> float:
    return 0.0 if whole <= 0 else max(0.0, min(100.0, 100.0 * part / whole))


def stack_html(est) -> str:
    total = est.total_bytes
    segs = []
    for t in est.terms:
        if t.bytes <= 0:
            continue
        tip = f"{t.label}: {c.fmt_gb(t.bytes, 2)} = {t.formula}"
        segs.append(
            f'<span class="lc-seg lc-term-{c.esc(t.key)}" style="width:{c.num(_pct(t.bytes, total))}%" '
            f'tabindex="0" role="img" aria-label="{c.esc(tip)}" title="{c.esc(tip)}" data-tip="{c.esc(tip)}"></span>')
    return (f'<div class="lc-stack" aria-label="Breakdown of {c.esc(c.fmt_gb(total))}" role="group">'
            + "".join(segs) + "</div>")


def terms_table(est) -> str:
    rows = []
    for t in est.terms:
        rows.append(
            f'<tr><th scope="row"><span class="lc-swatch lc-term-{c.esc(t.key)}" aria-hidden="true"></span>'
            f'{c.esc(t.label)}<br><span class="lc-formula">{c.esc(t.formula)}</span></th>'
            f'<td class="lc-num">{c.fmt_gb(t.bytes, 2)}</td>'
            f'<td class="lc-num">{c.num(round(_pct(t.bytes, est.total_bytes), 1))}%</td></tr>')
    return ('<table class="lc-table lc-terms"><caption>Each term and its formula</caption><thead><tr>'
            '<th scope="col">term and formula</th><th scope="col" class="lc-num">memory</th>'
            '<th scope="col" class="lc-num">share</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def methods_html(per_method: dict, chosen: str) -> str:
    top = max(e.total_bytes for e in per_method.values())
    cells = []
    for m, e in per_method.items():
        cls = "lc-method lc-chosen" if m == chosen else "lc-method"
        cells.append(
            f'<div class="{cls}"><div class="lc-method-name">{c.esc(loracalc.METHODS[m])}</div>'
            f'<div class="lc-method-total">{c.fmt_gb(e.total_bytes)}</div>'
            f'<div class="lc-method-bar" style="width:{c.num(_pct(e.total_bytes, top))}%" aria-hidden="true"></div></div>')
    return '<div class="lc-methods">' + "".join(cells) + "</div>"


def gpus_html(total: int, chosen: str, settings=None) -> str:
    items = []
    for g in loracalc.list_gpus():
        cap = int(g.memory_bytes)
        state = fit_state(total, cap)
        blocked = catalog.cannot_run(g, settings) if settings else []
        if blocked:
            state = "no"
        ok = state != "no"
        cls = {"fits": "lc-gpu-yes", "tight": "lc-gpu-yes lc-gpu-tight", "no": "lc-gpu-no"}[state]
        if g.name == chosen:
            cls += " lc-chosen"
        used = _pct(total, cap)
        verdict = (f"{'tight' if state == 'tight' else 'fits'}: {c.num(round(100 * total / cap))}% of {c.fmt_gb(cap)} usable" if ok else
                   f"cannot run {', '.join(lim.what for lim in blocked)}" if blocked else
                   f"does not fit: {c.fmt_ratio(round(total / cap, 1))} its {c.fmt_gb(cap)} usable")
        items.append(
            f'<li class="{cls}"><span class="lc-gpu-name">{c.esc(sold_as(g))}</span>'
            f'<span class="lc-gpu-bar" aria-hidden="true"><span class="lc-gpu-fill" style="display:block;width:{c.num(used)}%"></span></span>'
            f'<span class="lc-gpu-verdict">{c.esc(verdict)}</span></li>')
    return '<ul class="lc-gpus">' + "".join(items) + "</ul>"


def measured_html(arch, s, total: int) -> str:
    rec = measured.lookup(arch.name, **s)
    if rec is None:
        recs = measured.records()
        runs = sorted({r.model for r in recs})
        hint = ""
        if runs:
            def values(key):
                vals = sorted({r.settings.get(key) for r in recs}, key=str)
                return " or ".join(f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v) for v in vals)
            hint = (f" The labs' memory probe measured {', '.join(runs)} (methods {values('method')}, "
                    f"batch {values('batch_size')}, sequence {values('seq_len')}, rank {values('rank')}, "
                    f"optimizer {values('optimizer')}): choose it to compare.")
        return f'<p class="lc-note">No measurement recorded for these settings.{c.esc(hint)}</p>'
    meas, pred = int(rec.peak_bytes), int(rec.predicted_bytes)
    diff = (pred - meas) / meas * 100 if meas else 0.0
    diff_text = "within 0.05%" if abs(diff) < 0.05 else f"{diff:+.1f}%"
    return (f'<p class="lc-measured">Measured on {c.esc(rec.gpu)}: peak <strong>{c.fmt_mb(meas)}</strong>; '
            f'loracalc predicted <strong>{c.fmt_mb(pred)}</strong> for that run ({diff_text}). '
            + ('A CPU run has no CUDA context or allocator slack, so its prediction leaves those terms out; '
               'the total above includes them.' if rec.device == "cpu" else "") + '</p>')
