"""Every text-generation and image-text-to-text model_type transformers ships, and what loracalc does with it.

    PYTHONPATH=snippets OMP_NUM_THREADS=1 .venv/bin/python scripts/model_type_coverage.py [--configs 4] [--types a,b]

The list comes from the installed transformers' auto mappings (``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` and
``MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES``). Each model_type ends in one of four states:

- ``exact``: loracalc has a family spec, and every config variant of ``tests/snippets/family_configs.py`` built
  with transformers on the meta device has the same total parameter count, and the same LoRA count as peft's
  ``get_peft_model`` at several ranks and target sets (``check_family_config``, as ``family_coverage.py`` does);
- ``wrong``: a spec, and some variant differs (the list must hold none);
  A vision-language wrapper loracalc describes whole (``loracalc.vision.WRAPPERS``) is ``exact`` the same way over
  ``tests/snippets/test_vlm.py``'s variants and the config class's own default config.json (``check_wrapper``):
  totals against the model ``AutoModelForImageTextToText`` builds, LoRA against peft over the whole model and
  over the language model alone;
- ``refused``: no spec; the config class's own default config.json is refused in one line, and where the line
  advises passing the ``text_config``, that text_config is counted (the advice must not lead to a second refusal);
- ``untested``: a spec, but transformers built none of its variants.

Writes ``snippets/lora_course/data/model_type_coverage.json``, which ``{{ table.model_type_coverage }}`` shows.
With ``--types`` only those types are checked again and the others keep their recorded rows.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "snippets", "lora_course", "data", "model_type_coverage.json")


def transformers_types() -> dict[str, list[str]]:
    """model_type -> the pipelines it appears under, from the installed transformers' auto mappings."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)
    out: dict[str, list[str]] = {}
    for mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        out.setdefault(mt, []).append("text-generation")
    for mt in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        out.setdefault(mt, []).append("image-text-to-text")
    return dict(sorted(out.items()))


def default_config(mt: str) -> dict:
    """The config.json transformers writes for its config class's defaults (a bare model_type if it cannot)."""
    from transformers import AutoConfig
    try:
        return AutoConfig.for_model(mt).to_dict()
    except Exception:          # noqa: BLE001 - some config classes need arguments; the bare type still tests the refusal
        return {"model_type": mt}


def check_refusal(mt: str) -> dict:
    """Give loracalc the type's default config.json: it must refuse in one line, and advice must hold."""
    import loracalc
    cfg = default_config(mt)
    try:
        loracalc.model_from_config(cfg)
    except loracalc.LoraCalcError as exc:
        msg = str(exc)
        row = {"status": "refused", "message": msg}
        if "\n" in msg:
            row.update(status="wrong", problem="the refusal is more than one line")
        if "pass its text_config" in msg:
            try:
                loracalc.model_from_config(cfg["text_config"])
            except (loracalc.LoraCalcError, KeyError, TypeError) as inner:
                row.update(status="wrong", problem=f"its text_config is refused too: {inner}")
        return row
    except Exception as exc:   # noqa: BLE001 - a traceback instead of one line is what this script looks for
        return {"status": "wrong", "problem": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return {"status": "wrong", "problem": "counted without a family spec"}


def check_family(mt: str, n: int) -> dict:
    import loracalc
    from tests.snippets.family_configs import variants
    from tests.snippets.test_families import check_family_config
    exact = failed = skipped = checks = 0
    first = ""
    for kw in variants(mt, n):
        try:
            loracalc.model_from_config({"model_type": mt, **kw})
        except loracalc.LoraCalcError:
            skipped += 1
            continue
        try:
            checks += check_family_config(mt, kw)
            exact += 1
        except (AssertionError, loracalc.LoraCalcError) as exc:
            failed += 1
            first = first or str(exc)[:200]
    status = "wrong" if failed else ("exact" if exact else "untested")
    return {"status": status, "configs": exact + failed, "exact": exact, "failed": failed, "comparisons": checks,
            **({"problem": first} if first else {})}


def check_wrapper(mt: str, n: int) -> dict:
    """A vision-language wrapper: its tiny variants (totals and LoRA) and its default config.json (totals)."""
    import loracalc
    from tests.snippets.hf import total_params
    from tests.snippets.test_vlm import check_vlm_config, hf_vlm, vlm_variants
    exact = failed = checks = 0
    first = ""
    tiny = vlm_variants(mt)[:max(n, 1)]
    for cfg in tiny + [default_config(mt)]:
        try:
            if cfg in tiny:
                checks += check_vlm_config(cfg)
            else:           # the default config.json: a full-size model, totals only
                try:
                    _, model = hf_vlm(cfg)
                except ValueError:      # transformers cannot build it (Aya Vision's): loracalc must refuse it too
                    try:
                        loracalc.model_from_config(cfg)
                    except loracalc.LoraCalcError:
                        checks += 1
                        continue
                    raise AssertionError(f"{mt}'s default config is counted but transformers cannot build it")
                assert loracalc.total_params(loracalc.model_from_config(cfg)) == total_params(model), mt
                checks += 1
            exact += 1
        except (AssertionError, loracalc.LoraCalcError) as exc:
            failed += 1
            first = first or str(exc)[:200]
    status = "wrong" if failed else ("exact" if exact else "untested")
    return {"status": status, "configs": exact + failed, "exact": exact, "failed": failed, "comparisons": checks,
            "whole": "vision tower, projector and language model", **({"problem": first} if first else {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=4, help="config variants per family with a spec (default 4)")
    ap.add_argument("--types", default="", help="comma-separated model_types to check again (default: all)")
    args = ap.parse_args()
    sys.path[:0] = [os.path.join(ROOT, "snippets"), ROOT]
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import peft
    import transformers

    from loracalc.families import FAMILIES
    from loracalc.vision import WRAPPERS
    types = transformers_types()
    only = {t for t in args.types.split(",") if t}
    old = {}
    if only and os.path.exists(OUT):
        with open(OUT, encoding="utf-8") as f:
            old = {r["model_type"]: r for r in json.load(f)["types"]}
    rows, t0 = [], time.time()
    # every row says which versions and which day checked it, so a partial run's rows and the kept ones differ
    stamp = {"transformers": transformers.__version__, "peft": peft.__version__,
             "date": time.strftime("%Y-%m-%d", time.gmtime())}
    for mt, pipelines in types.items():
        if only and mt not in only and mt in old:
            rows.append(old[mt])
            continue
        row = {"model_type": mt, "pipelines": pipelines, "checked_with": stamp}
        # a type whose config class writes another model_type (GPT-SW3's config.json says "gpt2") is counted as that
        alias = default_config(mt).get("model_type") if mt not in FAMILIES else None
        if mt in WRAPPERS:
            row.update(check_wrapper(mt, args.configs))
        elif isinstance(alias, str) and alias != mt and alias in FAMILIES:
            row.update(check_family(alias, args.configs), counted_as=alias)
        else:
            row.update(check_family(mt, args.configs) if mt in FAMILIES else check_refusal(mt))
        rows.append(row)
        print(f"{mt:28} {row['status']:8} {row.get('problem', '')[:100]}", flush=True)
    # families loracalc counts that no auto mapping lists (the text towers of Qwen2.5-VL, Qwen3-VL and Mllama) still
    # belong on the page
    for mt in sorted(set(FAMILIES) - set(types)):
        rows.append({"model_type": mt, "pipelines": [], "checked_with": stamp, **check_family(mt, args.configs)})
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("exact", "wrong", "refused", "untested")}
    record = {"generated_by": "scripts/model_type_coverage.py", "transformers": transformers.__version__,
              "peft": peft.__version__, "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "seconds": round(time.time() - t0), "configs_per_family": args.configs, "counts": counts,
              "types": rows}
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(f"{counts} -> {os.path.relpath(OUT, ROOT)} ({record['seconds']} s)")
    return 0 if counts["wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
