"""The memory calculator's "Your trainer's config" box: a TRL / Trainer, axolotl or torchtune file read into the form.

The engine reads the file (``loracalc.preflight.read_trainer_config``, what ``loracalc preflight FILE`` reads);
this module only turns what it read into the form's values (strings, as the form holds them) and into the lines
that say where each value came from. The page puts the values into the fields (``_set``), so the estimate below
is the one the terminal prints for the same file.
"""
from __future__ import annotations

from typing import Any

from loracalc.errors import LoraCalcError
from loracalc.params import _SHORT
from loracalc.preflight import preset_for, read_trainer_config

from . import _common as c

FIELD = "trainer_config"

# The form's fields a trainer's config decides: what the file leaves out goes back to the form's default, which
# is the engine's default (so the form holds exactly the settings `loracalc preflight` passes on).
FILLED = ("method", "rank", "targets", "batch_size", "seq_len", "gradient_checkpointing", "gradient_accumulation",
          "optimizer", "attention", "loss", "autocast", "recipe", "activation_offload", "optimizer_in_backward",
          "objective", "num_generations", "completion_len", "dora", "base_format", "paged_state_on_host",
          "images_per_sample", "image_size", "adapt", "reference", "generation")
_LONG_TO_SHORT = {long: short for short, long in _SHORT.items()}
_SHORT_ORDER = list(_SHORT)


def targets_value(targets: str) -> str:
    """The engine's targets in the form's spelling: q_proj -> q, in the order q, k, v, o, gate, up, down."""
    if targets == "all-linear":
        return targets
    names = [_LONG_TO_SHORT.get(t.strip(), t.strip()) for t in targets.split(",") if t.strip()]
    names = list(dict.fromkeys(names))
    return ",".join(sorted(names, key=lambda n: (_SHORT_ORDER.index(n) if n in _SHORT_ORDER else len(_SHORT_ORDER), n)))


def _form_value(setting: str, value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if setting == "targets":
        return targets_value(str(value))
    return str(value)


def read(text: Any) -> dict | None:
    """What the engine reads from the box (None when it is empty); its one-line message, under the box, if not."""
    raw = c.text(text)
    if not raw:
        return None
    if len(raw) > c.MAX_CONFIG_CHARS:
        raise LoraCalcError(FIELD, f"the trainer's config is {len(raw):,} characters; these files are a few kB "
                                   f"(at most {c.MAX_CONFIG_CHARS:,} are read): is it the right file?")
    try:
        return read_trainer_config(raw)
    except LoraCalcError as exc:
        raise LoraCalcError(FIELD, exc.message) from None


def form_values(got: dict, defaults: dict[str, str]) -> dict[str, str]:
    """The form's values for what was read: each setting the file decides, the form's default for the rest."""
    s = got["settings"]
    values = {k: defaults[k] for k in FILLED}
    values.update({k: _form_value(k, v) for k, v in s.items() if k in values})
    values["objective"] = s.get("objective", "sft")
    preset = preset_for(got["model_id"])
    if preset is not None:
        values["model"] = preset.name
    return values


def read_html(got: dict, now: dict[str, str], model_shown: str) -> str:
    """Each setting with the key it came from (or the tool's default), the keys not read, and a line on the model.
    NOW: the form's values, so a setting changed in the form since is said to be."""
    preset = preset_for(got["model_id"])
    if preset is not None:
        model = (f'<p class="lc-note">A {c.esc(got["tool"])} config for <code>{c.esc(got["model_id"])}</code>: '
                 f'the calculator\'s {c.esc(preset.display_name)}.</p>')
    else:
        model = (f'<p class="lc-note lc-trainer-model">The config\'s model <code>{c.esc(got["model_id"])}</code> is '
                 f'not in the calculator\'s catalog: choose it under Model, or paste its config.json (or load it from '
                 f'the Hub). The numbers below are for {c.esc(model_shown)}.</p>')
    rows = []
    for setting, origin in got["origin"].items():
        value = got["settings"].get(setting)
        form = _form_value(setting, value)
        changed = setting in now and now[setting] != form
        rows.append(f'<li><code>{c.esc(setting)}</code> = {c.esc(form)}: from <code>{c.esc(origin)}</code>'
                    + (f' <em>(changed here since: {c.esc(now[setting])})</em>' if changed else "") + "</li>")
    ignored = (f'<p class="lc-note">Not read (no memory term depends on them): '
               f'{c.esc(", ".join(got["ignored"]))}.</p>' if got["ignored"] else "")
    return model + f'<ul class="lc-trainer-read">{"".join(rows)}</ul>' + ignored
