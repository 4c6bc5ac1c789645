"""Serve several LoRA adapters from one copy of a base model: load the base once (in 4-bit), attach each
adapter under a name, answer requests routed by adapter name, and answer a mixed batch in which every
row uses a different adapter, in a single generate call.

    python gpu_labs/serve_adapters.py --base meta-llama/Llama-3.1-8B \
        --adapter support=runs/support/adapter --adapter sql=runs/sql/adapter \
        --request "support: My invoice is wrong, what do I do?" --request "sql: Count the users per country"

The script prints, per adapter, its size on disk, load time and the memory it adds to the shared base
(a rank-16 all-linear adapter on an 8B Llama is 42M parameters: 168 MB in fp32, peft's default), and the
time to switch adapters. Use `base:` as the adapter name for the plain base model.
On a CPU the same commands work with the tiny model (`python gpu_labs/labkit.py tiny-model runs/tiny-llama`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if not __package__:  # run as `python gpu_labs/serve_adapters.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from gpu_labs import labkit  # noqa: E402 - standard library only, so --help stays instant
from gpu_labs.core import LabError  # noqa: E402

BASE = "base"  # the request name that means "no adapter"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--base", required=True, help="base model id or folder (the one the adapters were trained on)")
    add("--adapter", action="append", default=[], metavar="NAME=PATH", help="an adapter folder and the name requests use for it; repeat for more")
    add("--request", action="append", default=[], metavar="NAME: PROMPT", help="a request routed to adapter NAME ('base' = no adapter); repeat for more")
    add("--four-bit", action=argparse.BooleanOptionalAction, default=True, help="load the base in NF4 (bitsandbytes); --no-four-bit keeps 16-bit weights")
    add("--max-new-tokens", type=int, default=24, help="tokens generated per answer (greedy decoding)")
    add("--switch-repeats", type=int, default=200, help="adapter switches timed to average the switch time")
    return p


def parse_adapters(specs: list[str]) -> dict[str, Path]:
    if not specs:
        raise LabError("give at least one --adapter NAME=PATH (train one with gpu_labs/qlora_finetune.py).")
    adapters = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise LabError(f"--adapter {spec!r}: write it as NAME=PATH, e.g. --adapter support=runs/support/adapter")
        if name == BASE or name in adapters:
            raise LabError(f"--adapter {spec!r}: the name '{name}' is {'reserved for the base model' if name == BASE else 'used twice'}.")
        if not (Path(path) / "adapter_config.json").is_file():
            raise LabError(f"--adapter {spec!r}: {path} has no adapter_config.json; pass the folder a training run saved.")
        adapters[name] = Path(path)
    return adapters


def parse_requests(specs: list[str], names: list[str]) -> list[tuple[str, str]]:
    if not specs:  # default: every adapter and the base answer the same two prompts
        prompts = ["Convert to upper case: adapter", "Add the numbers: 2 and 3"]
        return [(name, prompt) for prompt in prompts for name in [*names, BASE]]
    requests = []
    for spec in specs:
        name, sep, prompt = spec.partition(":")
        if not sep or name.strip() not in [*names, BASE]:
            raise LabError(f"--request {spec!r}: start it with an adapter name and a colon; known names: "
                           f"{', '.join([*names, BASE])}.")
        requests.append((name.strip(), prompt.strip()))
    return requests


def model_bytes(model) -> int:
    """Bytes of every parameter and buffer, counting a packed 4-bit weight as the bytes it occupies."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    adapters = parse_adapters(args.adapter)
    requests = parse_requests(args.request, list(adapters))
    labkit.quiet_libraries()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpu_labs import labdata
    from gpu_labs import labmodels

    on_gpu = torch.cuda.is_available()
    dtype = labkit.resolve_compute_dtype("auto")
    kwargs = {"dtype": dtype, "device_map": {"": 0} if on_gpu else None}
    kept = []
    if args.four_bit:
        # The same settings the training lab used, so the adapters see the base they were trained on.
        kwargs["quantization_config"], kept = labmodels.bnb_4bit_config(args.base, dtype)
    # The first adapter's folder holds the tokenizer the training run used (chat template included).
    first = next(iter(adapters.values()))
    tokenizer = AutoTokenizer.from_pretrained(first if (first / "tokenizer_config.json").is_file() else args.base)
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    labdata.ensure_pad_token(tokenizer)

    cuda_before = torch.cuda.memory_allocated() if on_gpu else 0
    started = time.perf_counter()
    try:
        base = AutoModelForCausalLM.from_pretrained(args.base, **kwargs)
    except OSError as err:
        raise LabError(f"could not load --base {args.base}: {err}") from None
    base.eval()
    base_bytes = model_bytes(base)
    print(f"base {args.base} loaded once in {time.perf_counter() - started:.2f} s "
          f"({'NF4 4-bit' if args.four_bit else str(dtype).replace('torch.', '')}, {labkit.human_bytes(base_bytes)} "
          f"of weights{', CUDA ' + labkit.human_bytes(torch.cuda.memory_allocated() - cuda_before) if on_gpu else ''})")
    if kept:
        print("note: " + labmodels.describe_kept(kept))

    # --8<-- [start:load_adapters]
    model, rows = None, []
    for name, path in adapters.items():
        before, cuda_mark = (model_bytes(model) if model else base_bytes), (torch.cuda.memory_allocated() if on_gpu else 0)
        t0 = time.perf_counter()
        if model is None:
            model = PeftModel.from_pretrained(base, path, adapter_name=name)  # wraps the base, no copy
        else:
            model.load_adapter(path, adapter_name=name)  # another small A/B pair per adapted layer
        load_s = time.perf_counter() - t0
        rows.append((name, labkit.dir_size_bytes(path), load_s, model_bytes(model) - before,
                     (torch.cuda.memory_allocated() - cuda_mark) if on_gpu else None))
    model.eval()
    # --8<-- [end:load_adapters]

    names = list(adapters)
    t0 = time.perf_counter()
    for i in range(args.switch_repeats):
        model.set_adapter(names[i % len(names)])  # flips which A/B pairs are active; no weights move
    switch_us = (time.perf_counter() - t0) / args.switch_repeats * 1e6

    print(f"\n{'adapter':<12} {'on disk':>11} {'load':>9} {'extra memory':>13}  (base: {labkit.human_bytes(base_bytes)})")
    for name, disk, load_s, extra, cuda_extra in rows:
        cuda = f", CUDA +{labkit.human_bytes(cuda_extra)}" if cuda_extra is not None else ""
        print(f"{name:<12} {labkit.human_bytes(disk):>11} {load_s * 1000:>7.1f} ms {labkit.human_bytes(extra):>13}  "
              f"({100 * extra / base_bytes:.1f}% of the base{cuda})")
    print(f"switching the active adapter: {switch_us:.0f} us per switch (mean of {args.switch_repeats})")

    def generate(prompts: list[str], **extra) -> tuple[list[str], float]:
        # The chat template already starts with BOS where the model expects one: add no second one.
        texts = [labdata.prompt_text(tokenizer, p) for p in prompts]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not tokenizer.chat_template)
        batch = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=args.max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, **extra)
        texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        # An empty answer means the model emitted end-of-text at once (common for an undertrained adapter).
        return [t.strip().replace("\n", " ") or "<end of text>" for t in texts], time.perf_counter() - t0

    # --8<-- [start:routed]
    routed = {}
    print("\nrouted by adapter (one batch per adapter):")
    for name in dict.fromkeys(n for n, _ in requests):
        prompts = [p for n, p in requests if n == name]
        if name == BASE:
            with model.disable_adapter():  # the plain base answers
                answers, seconds = generate(prompts)
        else:
            model.set_adapter(name)
            answers, seconds = generate(prompts)
        for prompt, answer in zip(prompts, answers):
            routed[(name, prompt)] = answer
            print(f"  [{name}] {prompt!r} -> {answer!r}")
        print(f"  ({len(prompts)} request(s) in {seconds:.2f} s)")
    # --8<-- [end:routed]

    # peft cannot split a batch by adapter inside its wrapper for fused MoE expert weights
    # (lora.ParamWrapper), nor for DoRA layers (their magnitude is applied to the whole batch).
    unsupported = (["fused MoE expert weights"] if getattr(model, "targeted_parameter_names", None) else []) + \
        [f"DoRA ({name})" for name, config in model.peft_config.items() if getattr(config, "use_dora", False)]
    if unsupported:
        print(f"\nmixed batch: skipped. peft does not support mixed adapter batches with {', '.join(unsupported)}; "
              "route by adapter as above.")
        return 0
    # --8<-- [start:mixed_batch]
    # One generate call, a different adapter per row: peft splits the batch by adapter inside every
    # adapted layer and runs the shared base weights once for all rows. "__base__" means no adapter.
    row_adapters = [("__base__" if n == BASE else n) for n, _ in requests]
    mixed, seconds = generate([p for _, p in requests], adapter_names=row_adapters)
    # --8<-- [end:mixed_batch]
    print(f"\nmixed batch: {len(requests)} requests over {len(set(row_adapters))} adapters in one generate call, "
          f"{seconds:.2f} s")
    same = 0
    for (name, prompt), answer in zip(requests, mixed):
        match = answer == routed[(name, prompt)]
        same += match
        print(f"  [{name}] {prompt!r} -> {answer!r}{'' if match else '  (differs from the routed answer)'}")
    print(f"mixed-batch answers identical to the routed ones: {same}/{len(requests)}")
    return 0 if same == len(requests) else 1


if __name__ == "__main__":
    labkit.run_cli(main)
