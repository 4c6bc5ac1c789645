"""Pre-flight: the memory estimate from a trainer's own config file, before the run.

``preflight(text)`` reads a TRL / transformers Trainer config (the YAML that ``trl sft --config`` takes, or a
JSON of TrainingArguments / SFTConfig / DPOConfig / GRPOConfig and ModelConfig fields), an axolotl YAML or a
torchtune recipe YAML, maps each setting that changes memory onto ``estimate_memory`` (or, for DPO, ORPO, KTO and
GRPO, ``preference_memory``), and says where each value came from: the file's key, or the tool's own default
when the file leaves it out. Keys that do not change memory are listed as ignored, not guessed at.

YAML is read by a small reader of the subset these files use (nested mappings and lists by indentation, inline
``[a, b]`` lists, scalars, comments); anchors, multi-line strings and several documents are refused in one line.
"""
from __future__ import annotations

import json
import re
from typing import Any

from .errors import LoraCalcError

# --------------------------------------------------------------------------------------------- YAML subset


def _scalar(text: str) -> Any:
    t = text.strip()
    if t in ("", "~", "null", "Null", "NULL"):
        return None
    if t in ("true", "True", "TRUE", "yes"):
        return True
    if t in ("false", "False", "FALSE", "no"):
        return False
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    if t.startswith("[") and t.endswith("]"):
        inner = t[1:-1].strip()
        return [_scalar(x) for x in _split_inline(inner)] if inner else []
    if t.startswith("{") and t.endswith("}"):
        inner = t[1:-1].strip()
        pairs = [p.split(":", 1) for p in _split_inline(inner)] if inner else []
        return {k.strip(): _scalar(v) for k, v in pairs}
    if re.fullmatch(r"[-+]?\d+", t):
        return int(t)
    # YAML 1.1 as PyYAML reads it: a float has a dot (3e-4 stays a string there, and here)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+)([eE][-+]\d+)?", t):
        return float(t)
    return t


def _split_inline(text: str) -> list[str]:
    out, depth, cur, quote = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        cur += ch
    return out + [cur] if cur.strip() else out


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def read_yaml(text: str) -> Any:
    """The YAML subset above, as Python values."""
    lines = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        if "\t" in line[:len(line) - len(line.lstrip())]:
            raise LoraCalcError("config", f"line {n}: YAML indentation must be spaces, not tabs")
        body = line.strip()
        if body.startswith(("&", "*", "|", ">", "!")) or re.search(r":\s*[|>&*!]", body):
            raise LoraCalcError("config", f"line {n}: anchors, tags and multi-line strings are not read here; "
                                          "write the value on one line")
        lines.append((n, len(line) - len(line.lstrip()), body))
    value, rest = _block(lines, 0, lines[0][1] if lines else 0)
    if rest < len(lines):
        raise LoraCalcError("config", f"line {lines[rest][0]}: indentation does not match the lines above")
    return value


def _block(lines: list, i: int, indent: int) -> tuple[Any, int]:
    if i >= len(lines):
        return None, i
    if lines[i][2].startswith("- ") or lines[i][2] == "-":
        out_list: list = []
        while i < len(lines) and lines[i][1] == indent and (lines[i][2].startswith("- ") or lines[i][2] == "-"):
            n, _, body = lines[i]
            item = body[2:].strip() if body != "-" else ""
            if not item:
                value, i = _block(lines, i + 1, lines[i + 1][1]) if i + 1 < len(lines) and lines[i + 1][1] > indent \
                    else (None, i + 1)
                out_list.append(value)
            elif re.match(r"^[^\[{'\"][^:]*:(\s|$)", item):    # "- key: value" opens a mapping
                sub = [(n, indent + 2, item)]
                j = i + 1
                while j < len(lines) and lines[j][1] > indent:
                    sub.append(lines[j])
                    j += 1
                value, _ = _block(sub, 0, indent + 2)
                out_list.append(value)
                i = j
            else:
                out_list.append(_scalar(item))
                i += 1
        return out_list, i
    out: dict = {}
    while i < len(lines) and lines[i][1] == indent:
        n, _, body = lines[i]
        if ":" not in body:
            raise LoraCalcError("config", f"line {n}: expected 'key: value'")
        key, _, rest = body.partition(":")
        key = key.strip().strip("'\"")
        if rest.strip():
            out[key] = _scalar(rest)
            i += 1
        elif i + 1 < len(lines) and (lines[i + 1][1] > indent or
                                     (lines[i + 1][1] == indent and lines[i + 1][2].startswith("- "))):
            out[key], i = _block(lines, i + 1, lines[i + 1][1])
        else:
            out[key] = None
            i += 1
    return out, i


def read_config_text(text: str) -> dict:
    """A trainer config as a dict: JSON if it parses as JSON, else the YAML subset."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise LoraCalcError("config", f"not valid JSON (line {err.lineno}: {err.msg})") from None
    else:
        data = read_yaml(text)
    if not isinstance(data, dict):
        raise LoraCalcError("config", "a trainer config is a mapping of settings (key: value), not a list or a value")
    return data


# --------------------------------------------------------------------------------------------- the three tools

# optimizer names as each tool spells them -> loracalc's
OPTIMIZER_NAMES = {
    "adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw", "adamw": "adamw",
    "torch.optim.adamw": "adamw", "adamw_8bit": "adamw_8bit", "adamw_bnb_8bit": "adamw_8bit",
    "bitsandbytes.optim.adamw8bit": "adamw_8bit", "torchao.optim.adamw8bit": "adamw_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit", "bitsandbytes.optim.pagedadamw8bit": "paged_adamw_8bit",
    "paged_adamw_32bit": "paged_adamw", "paged_adamw": "paged_adamw", "bitsandbytes.optim.pagedadamw": "paged_adamw",
    "sgd": "sgd", "torch.optim.sgd": "sgd",
}
ATTENTION_NAMES = {"sdpa": "sdpa", "flash_attention_2": "flash_attention_2", "eager": "eager",
                   "flash_attention_3": "flash_attention_2"}
PREFERENCE = ("dpo", "orpo", "simpo", "kto", "grpo")


def detect_tool(data: dict) -> str:
    """'torchtune' (a model _component_), 'axolotl' (base_model / micro_batch_size) or 'trl' (Trainer fields)."""
    if isinstance(data.get("model"), dict) and "_component_" in data["model"]:
        return "torchtune"
    if {"base_model", "micro_batch_size", "sequence_len", "adapter"} & set(data):
        return "axolotl"
    if {"model_name_or_path", "per_device_train_batch_size", "max_length", "max_seq_length", "optim",
        "gradient_accumulation_steps", "use_peft", "lora_r"} & set(data):
        return "trl"
    raise LoraCalcError("config", "not a config loracalc recognises: expected TRL / Trainer fields "
                                  "(model_name_or_path, per_device_train_batch_size, ...), an axolotl YAML (base_model, "
                                  "micro_batch_size, ...) or a torchtune recipe (model: _component_: ...)")


class _Reader:
    """Takes values from the file, remembering which key (or which default) gave each setting."""

    def __init__(self, data: dict, tool: str):
        self.data, self.tool, self.used, self.settings, self.origin = data, tool, set(), {}, {}

    def get(self, *keys: str):
        for k in keys:
            if k in self.data and self.data[k] is not None:
                self.used.add(k)
                return k, self.data[k]
        return None, None

    def put(self, setting: str, value: Any, key: str | None, default_why: str = "") -> None:
        self.settings[setting] = value
        self.origin[setting] = f"{key}: {self.data[key]!r}" if key else f"{self.tool}'s default{default_why}"


def _optimizer(name: Any) -> str:
    text = str(name).strip().lower().rsplit("(", 1)[0]
    if text not in OPTIMIZER_NAMES:
        raise LoraCalcError("config", f"optimizer {name!r} is not one loracalc models; it knows: "
                                      + ", ".join(sorted(OPTIMIZER_NAMES)))
    return OPTIMIZER_NAMES[text]


def _targets(value: Any) -> str:
    if value in ("all-linear", "all_linear"):
        return "all-linear"
    if isinstance(value, str):
        return value
    return ",".join(str(v) for v in value)


def _trl(r: _Reader) -> None:
    key, model = r.get("model_name_or_path", "model")
    r.settings["model_id"] = model
    k4, q4 = r.get("load_in_4bit")
    k8, q8 = r.get("load_in_8bit")
    kp, peft = r.get("use_peft")
    method = "qlora" if q4 else "lora_8bit" if q8 else "lora" if peft else "full"
    r.put("method", method, k4 if q4 else k8 if q8 else kp, " (no use_peft: every weight trains)")
    if method != "full":
        k, v = r.get("lora_r")
        r.put("rank", int(v) if v else 16, k, " (ModelConfig.lora_r = 16)")
        k, v = r.get("lora_target_modules")
        r.put("targets", _targets(v) if v else "q,v", k, " (peft's targets for the model type: q_proj, v_proj for Llama)")
    k, v = r.get("per_device_train_batch_size")
    r.put("batch_size", int(v) if v else 8, k, " (8)")
    k, v = r.get("max_length", "max_seq_length")
    r.put("seq_len", int(v) if v else 1024, k, " (SFTConfig.max_length = 1024)")
    k, v = r.get("activation_checkpointing", "gradient_checkpointing")
    r.put("gradient_checkpointing", bool(v) if k else True, k, " (SFTConfig turns checkpointing on)")
    k, v = r.get("gradient_accumulation_steps")
    r.put("gradient_accumulation", int(v) if v else 1, k, " (1)")
    k, v = r.get("optim")
    r.put("optimizer", _optimizer(v) if v else "adamw", k, " (adamw_torch_fused)")
    k, v = r.get("attn_implementation")
    r.put("attention", ATTENTION_NAMES.get(str(v), "sdpa") if v else "sdpa", k, " (sdpa)")
    # TRL 1.16's trainers score through a fused head (add_fused_lm_head): no full logits, counted as cce
    r.put("loss", "cce", None, " (the fused LM head TRL's SFT, DPO, KTO and GRPO trainers add)")
    k, v = r.get("bf16", "fp16")
    r.put("autocast", bool(v) if k else True, k, " (SFTConfig: bf16 = True)")
    k, v = r.get("num_generations")
    if k:
        r.put("objective", "grpo", k)
        r.put("num_generations", int(v), k)
        k, v = r.get("max_completion_length")
        r.put("completion_len", int(v) if v else 512, k, " (GRPOConfig.max_completion_length = 512)")


def _axolotl(r: _Reader) -> None:
    k, model = r.get("base_model")
    r.settings["model_id"] = model
    ka, adapter = r.get("adapter")
    k8, q8 = r.get("load_in_8bit")
    r.get("load_in_4bit")          # what adapter: qlora implies
    method = {"qlora": "qlora", "lora": "lora_8bit" if q8 else "lora"}.get(str(adapter), "full") if adapter else "full"
    r.put("method", method, ka, " (no adapter: full fine-tuning)")
    if method != "full":
        k, v = r.get("lora_r")
        r.put("rank", int(v) if v else 8, k, " (lora_r)")
        kl, linear = r.get("lora_target_linear")
        km, mods = r.get("lora_target_modules")
        r.put("targets", "all-linear" if linear else _targets(mods) if mods else "q,v", kl if linear else km,
              " (peft's targets for the model type)")
    k, v = r.get("micro_batch_size")
    r.put("batch_size", int(v) if v else 1, k, " (1)")
    k, v = r.get("sequence_len")
    r.put("seq_len", int(v) if v else 2048, k, " (2048)")
    k, v = r.get("gradient_checkpointing")
    r.put("gradient_checkpointing", bool(v), k, " (off)")
    if v in ("offload", "unsloth"):
        r.put("activation_offload", True, k)
    k, v = r.get("gradient_accumulation_steps")
    r.put("gradient_accumulation", int(v) if v else 1, k, " (1)")
    k, v = r.get("optimizer")
    r.put("optimizer", _optimizer(v) if v else "adamw", k, " (adamw_torch_fused)")
    kf, flash = r.get("flash_attention")
    ks, _ = r.get("sdp_attention")
    r.put("attention", "flash_attention_2" if flash else "sdpa", kf if flash else ks, " (sdpa)")
    kr, rl = r.get("rl")
    objective = str(rl).lower() if rl and str(rl).lower() in PREFERENCE else None
    kl, liger = r.get("liger_fused_linear_cross_entropy")
    kc, cce = r.get("cut_cross_entropy")
    plugins = r.data.get("plugins") or []
    if cce or any("CutCrossEntropy" in str(p) for p in plugins):
        r.used.add("plugins")
        r.put("loss", "cce", kc or "plugins")
    elif liger:
        r.put("loss", "fused_linear", kl)
    elif objective:
        # axolotl's rl: runs TRL's own trainers (AxolotlDPOTrainer subclasses trl's DPOTrainer), with their loss
        from .preference import LOSS
        r.put("loss", LOSS[objective], None, f" (rl: {objective} runs TRL's trainer, which scores as TRL does)")
    else:
        r.put("loss", "full", None, " (transformers' loss over the full logits)")
    k, v = r.get("bf16", "fp16")
    r.put("autocast", bool(v) if k else False, k, " (off)")
    if objective:
        r.put("objective", objective, kr)


_TT_MODEL = re.compile(r"(?:(q?lora)_)?(llama|qwen|gemma|mistral|phi)(\d+)(?:_(\d+))?_(\d+(?:_\d+)?b)$")


def _torchtune(r: _Reader) -> None:
    comp = str(r.data["model"]["_component_"])
    r.used.add("model")
    m = _TT_MODEL.search(comp.rsplit(".", 1)[-1])
    kind = m.group(1) if m else None
    r.settings["model_id"] = (f"{m.group(2)}-{m.group(3)}{'.' + m.group(4) if m.group(4) else ''}-"
                              f"{m.group(5).replace('_', '.')}" if m else comp)
    r.put("method", {"qlora": "qlora", "lora": "lora"}.get(kind or "", "full"), None,
          f" (the model builder {comp.rsplit('.', 1)[-1]})")
    r.origin["method"] = f"model._component_: {comp!r}"
    model = r.data["model"]
    if kind:
        r.put("rank", int(model.get("lora_rank", 8)), None, "")
        r.origin["rank"] = f"model.lora_rank: {model.get('lora_rank', 8)!r}"
        # torchtune's module names -> transformers' (torchtune/models/convert_weights.py)
        mods = [{"w1": "gate_proj", "w2": "down_proj", "w3": "up_proj", "output_proj": "o_proj"}.get(x, x)
                for x in model.get("lora_attn_modules", ["q_proj", "v_proj"])]
        if model.get("apply_lora_to_mlp"):
            mods += ["gate_proj", "up_proj", "down_proj"]
        r.put("targets", ",".join(mods), None)
        r.origin["targets"] = "model.lora_attn_modules + apply_lora_to_mlp"
    k, v = r.get("batch_size")
    r.put("batch_size", int(v) if v else 1, k, " (1)")
    tok = r.data.get("tokenizer") or {}
    r.put("seq_len", int(tok.get("max_seq_len") or 2048), None, " (tokenizer.max_seq_len unset: 2048 assumed)")
    if tok.get("max_seq_len"):
        r.origin["seq_len"] = f"tokenizer.max_seq_len: {tok['max_seq_len']!r}"
    k, v = r.get("enable_activation_checkpointing")
    r.put("gradient_checkpointing", bool(v), k, " (off)")
    k, v = r.get("enable_activation_offloading")
    if v:
        r.put("activation_offload", True, k)
    k, v = r.get("gradient_accumulation_steps")
    r.put("gradient_accumulation", int(v) if v else 1, k, " (1)")
    opt = r.data.get("optimizer") or {}
    r.used.add("optimizer")
    r.put("optimizer", _optimizer(opt.get("_component_", "torch.optim.AdamW")), None)
    r.origin["optimizer"] = f"optimizer._component_: {opt.get('_component_')!r}"
    k, v = r.get("optimizer_in_bwd")
    if v:
        r.put("optimizer_in_backward", True, k)
    loss = str((r.data.get("loss") or {}).get("_component_", ""))
    r.used.add("loss")
    kc, compiled = r.get("compile")
    # a plain torch.nn.CrossEntropyLoss gets the bf16 logits as they are (no fp32 upcast in the recipe)
    r.put("loss", ("chunked_compiled" if compiled else "chunked") if "Chunked" in loss else "full_16bit", None)
    r.origin["loss"] = f"loss._component_: {loss!r}" + (", compile: true" if compiled else "")
    r.put("recipe", "torchtune", None, "")
    r.origin["recipe"] = "torchtune (its own QLoRA: bf16, no fp32 upcast, its NF4 tensors)"


def read_trainer_config(text: str) -> dict:
    """{"tool", "model_id", "settings" (for estimate_memory / preference_memory), "origin" (setting -> where it
    came from), "ignored" (top-level keys that change no memory term)}."""
    data = read_config_text(text)
    tool = detect_tool(data)
    r = _Reader(data, tool)
    {"trl": _trl, "axolotl": _axolotl, "torchtune": _torchtune}[tool](r)
    model_id = r.settings.pop("model_id", None)
    return {"tool": tool, "model_id": model_id, "settings": r.settings, "origin": r.origin,
            "ignored": sorted(k for k in data if k not in r.used)}


def preset_for(model_id: Any) -> Any:
    """The preset a config's model names (a preset's own name, or the Hub id its config.json was read from),
    or None."""
    from .models import PRESETS

    wanted = str(model_id or "").strip().lower()
    match = [a for a in PRESETS.values() if wanted and (a.name == wanted or f"/{wanted}/" in a.source.lower()
                                                         or a.source.lower().endswith(f"/{wanted}/blob/main/config.json"))]
    return match[0] if match else None


def preflight(text: str, model: Any = None) -> tuple[Any, dict]:
    """(the estimate, what was read). MODEL overrides the file's model (a preset name, config dict or
    Architecture); without it the file's model must be a preset (matched by its Hub id)."""
    from .memory import estimate_memory
    from .models import Architecture, get_model
    from .preference import preference_memory

    read = read_trainer_config(text)
    if model is None:
        model = preset_for(read["model_id"])
        if model is None:
            raise LoraCalcError("model", f"the config's model {read['model_id']!r} is not a preset: pass its "
                                         "config.json (--config) or a preset (--model)")
    arch = model if isinstance(model, Architecture) else get_model(model)
    s = dict(read["settings"])
    objective = s.pop("objective", "sft")
    gen = {k: s.pop(k) for k in ("num_generations", "completion_len") if k in s}
    if objective == "sft":
        est = estimate_memory(arch, **s)
    else:
        est = preference_memory(arch, objective, **gen, **s)
    read["objective"] = objective
    return est, read
