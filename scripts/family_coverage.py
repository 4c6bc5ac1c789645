"""Count every supported family live against transformers + peft and record which configs matched.

    PYTHONPATH=snippets OMP_NUM_THREADS=1 .venv/bin/python scripts/family_coverage.py [--configs 12]

For each model_type in loracalc's family specs it builds the config variants of
``tests/snippets/family_configs.py`` with transformers on the meta device and compares total parameters and
peft's LoRA counts (several ranks and target sets) with loracalc's; multimodal wrappers loracalc.vision does not
describe are tried too and must be refused in one line. Writes ``snippets/lora_course/data/family_coverage.json``
(read by ``{{ table.family_coverage }}``) and the same table into README.md between its markers.
A few minutes on two CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "snippets", "lora_course", "data", "family_coverage.json")
README = os.path.join(ROOT, "README.md")
START, END = "<!-- family-coverage:start -->", "<!-- family-coverage:end -->"

# wrappers people bring whose vision tower loracalc does not describe (loracalc.vision counts Gemma 3, LLaVA,
# Mistral 3, PaliGemma, the Qwen VLMs, Gemma 4, Llama 3.2 Vision... whole: scripts/model_type_coverage.py checks those): their config.json nests a
# text_config next to a vision tower's config, and they must be refused in one line
WRAPPERS = {
    "idefics2": {"model_type": "idefics2", "text_config": {"model_type": "mistral"}, "vision_config": {}},
    "glm4v": {"model_type": "glm4v", "text_config": {"model_type": "glm4v_text"}, "vision_config": {}},
    "gemma3n": {"model_type": "gemma3n", "text_config": {"model_type": "gemma3n_text"}, "vision_config": {},
                "audio_config": {}},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=12, help="config variants per family (default 12)")
    ap.add_argument("--families", default="", help="comma-separated model_types to count again (default: all); "
                    "the other rows of the record stay as they were, with their own versions and dates")
    ap.add_argument("--wrappers-only", action="store_true",
                    help="try the wrappers again and keep every family's recorded row (seconds, not minutes)")
    args = ap.parse_args()
    sys.path[:0] = [os.path.join(ROOT, "snippets"), ROOT]
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import peft
    import transformers

    import loracalc
    from loracalc.families import FAMILIES
    from tests.snippets.family_configs import variants
    from tests.snippets.test_families import check_family_config

    rows = []
    t0 = time.time()
    stamp = {"transformers": transformers.__version__, "peft": peft.__version__,
             "date": time.strftime("%Y-%m-%d", time.gmtime())}
    chosen = [] if args.wrappers_only else ([f for f in args.families.split(",") if f] or sorted(FAMILIES))
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        ap.error(f"--families: not a supported model_type: {', '.join(unknown)}")
    for mt in chosen:
        exact = refused = failed = checks = 0
        first_failure = ""
        for kw in variants(mt, args.configs):
            try:
                loracalc.model_from_config({"model_type": mt, **kw})
            except loracalc.LoraCalcError:
                refused += 1
                continue
            try:
                checks += check_family_config(mt, kw)
                exact += 1
            except (AssertionError, loracalc.LoraCalcError) as exc:
                failed += 1
                first_failure = first_failure or str(exc)[:200]
        rows.append({"model_type": mt, "configs": exact + refused + failed, "exact": exact, "refused": refused,
                     "failed": failed, "comparisons": checks, "first_failure": first_failure,
                     "moe": FAMILIES[mt].moe is not None, "attention": FAMILIES[mt].attention, **stamp})
        print(f"{mt:14} exact {exact:3}  refused {refused:2}  failed {failed:2}  ({checks} comparisons)", flush=True)
    wrappers = []
    for mt, cfg in WRAPPERS.items():
        try:
            loracalc.model_from_config(cfg)
            wrappers.append({"model_type": mt, "refused": False, "message": ""})
        except loracalc.LoraCalcError as exc:
            wrappers.append({"model_type": mt, "refused": True, "message": str(exc)})
    if (args.families or args.wrappers_only) and os.path.exists(OUT):
        # a partial run replaces only its own families' rows; the others keep the versions they were counted with
        with open(OUT, encoding="utf-8") as f:
            old = json.load(f)
        kept = [{"transformers": old.get("transformers"), "peft": old.get("peft"), "date": old.get("date"), **r}
                for r in old["families"] if r["model_type"] not in chosen and r["model_type"] in FAMILIES]
        rows = sorted(kept + rows, key=lambda r: r["model_type"])
    record = {**stamp, "seconds": round(time.time() - t0),
              "configs_per_family": args.configs, "families": rows, "wrappers": wrappers}
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    sys.path.insert(0, os.path.join(ROOT, "snippets"))
    from lora_course.coverage import coverage_table
    with open(README, encoding="utf-8") as f:
        text = f.read()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        with open(README, "w", encoding="utf-8") as f:
            f.write(head + START + "\n" + coverage_table() + "\n" + END + tail)
    print(f"wrote {os.path.relpath(OUT, ROOT)} and README.md ({record['seconds']} s)")
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
