"""Merge a LoRA adapter into a 16-bit copy of its base model, check the merged model computes the same
logits as base + adapter, and save it as an ordinary model folder (no peft needed to load it).

    python gpu_labs/merge_export.py --adapter runs/llama8b-qlora/adapter --output runs/llama8b-merged

The base defaults to the one named in the adapter's adapter_config.json; pass --base to override.
For a QLoRA adapter, --merge-into dequantized merges into the NF4 base dequantized to 16 bits (the weights the
adapter was trained on) instead of the original 16-bit checkpoint; either way the script reports how far each
merge is from the model as trained.
The merge holds the 16-bit base in memory (2 bytes per parameter: 16 GB for an 8B model, on the GPU or,
without one, in CPU RAM); the merged folder is as large as the base, while the adapter alone is megabytes.

On a CPU with the tiny model from `python gpu_labs/labkit.py tiny-model runs/tiny-llama` it takes seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # run as `python gpu_labs/merge_export.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from gpu_labs import labkit  # noqa: E402 - standard library only, so --help stays instant
from gpu_labs import toy_model  # noqa: E402 - standard library at import: held-out prompts a base folder ships
from gpu_labs.core import LabError  # noqa: E402

# Largest |merged - unmerged| logit difference accepted, relative to the largest |logit|. The merged
# weight W + s*B@A is rounded once to the storage dtype, and the two models add up their products in a
# different order. bf16 keeps 8 significant bits: near |logit| = 6 one bf16 step is 2**-5 = 0.03, and two
# bf16 computations of the same logits differ by a few steps. fp32 agrees to float noise.
RELATIVE_TOLERANCE = {"bf16": 5e-2, "fp16": 1e-2, "fp32": 1e-5}

FOUR_BIT_NOTE = """\
Why not merge into the 4-bit base? An NF4 weight can only be one of 16 code values times its
block's scale. Merging computes W + s*B@A and stores the sum as NF4 again, so every merged weight
snaps to the nearest code: a change smaller than half the gap between two codes vanishes, a larger
one is rounded up or down, and the error differs from block to block. Fine-tuning updates are
usually small next to the weights, so a large share of them can be lost in that rounding. The
last line below measures the effect for this adapter on one layer. Serve the 4-bit base with the
adapter kept separate, or merge into a 16-bit base as this script does. A QLoRA adapter was
trained on top of the dequantized NF4 weights, so a merge into the original 16-bit checkpoint is not
exactly the model you trained; a merge into the NF4 base dequantized to 16 bits (model.dequantize(),
--merge-into dequantized) is, up to 16-bit rounding. Where the adapter came from QLoRA, the lines
before the last one show both gaps."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--adapter", required=True, help="folder with adapter_config.json and adapter_model.safetensors")
    add("--base", default=None, help="base model id or folder; default: the one recorded in the adapter config")
    add("--output", required=True, help="folder for the merged model (replaced atomically if it exists)")
    add("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="dtype of the base and the merged weights")
    add("--dataset", default=None, help="JSONL whose first examples feed the logit check (default: the base folder's train.jsonl where it ships one, else gpu_labs/data/instructions.jsonl)")
    add("--check-examples", type=int, default=8, help="how many examples the logit check runs")
    add("--tolerance", type=float, default=None, help="max |logit difference| / max |logit|; default depends on --dtype")
    # original: the published 16-bit checkpoint (its weights were never rounded to NF4, so a QLoRA adapter meets
    # slightly different weights than in training); dequantized: the NF4 base dequantized to --dtype, exactly the
    # weights a QLoRA adapter was trained on, at the price of keeping NF4's rounding in the shipped model
    add("--merge-into", choices=("original", "dequantized"), default="original",
        help="16-bit base to merge into: the original checkpoint, or (QLoRA adapters) the NF4 base dequantized")
    return p


def adapter_base(adapter: Path) -> str:
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise LabError(f"{adapter} has no adapter_config.json: pass the adapter folder a training run saved "
                       "(e.g. runs/qlora/adapter).")
    return json.loads(config_path.read_text())["base_model_name_or_path"]


def logits_of(model, batch) -> "torch.Tensor":  # noqa: F821 - torch is imported lazily
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    mask = batch["attention_mask"].to(device).bool()
    return out.logits[mask].float()  # only real tokens, not padding


def compare(reference, other) -> dict:
    diff = (reference - other).abs().max().item()
    scale = reference.abs().max().item()
    agree = (reference.argmax(-1) == other.argmax(-1)).float().mean().item()
    return {"max_abs_diff": diff, "max_abs_logit": scale, "relative": diff / scale, "top1_agreement": agree}


def four_bit_merge_error(peft_model) -> dict:
    """On the first adapted layer: re-quantize W + s*B@A to NF4 (double quant, block 64, as QLoRA stores
    it) and measure the rounding error against the size of the adapter's update."""
    import bitsandbytes.functional as F
    import torch

    for name, module in peft_model.named_modules():
        # A 2-D weight: fused MoE experts (3-D) are adapted through a parameter wrapper, skipped here.
        base_weight = getattr(module.get_base_layer(), "weight", None) if hasattr(module, "get_base_layer") else None
        if ("default" in getattr(module, "lora_A", {}) and base_weight is not None and base_weight.dim() == 2):
            weight = module.get_base_layer().weight.detach().float().cpu()
            delta = module.get_delta_weight("default").detach().float().cpu()
            break
    else:
        raise LabError("the adapter has no LoRA layers to merge")

    def nf4_roundtrip(w):
        packed, state = F.quantize_4bit(w.contiguous(), blocksize=64, quant_type="nf4", compress_statistics=True)
        return F.dequantize_4bit(packed, state).float()

    base_4bit = nf4_roundtrip(weight)              # what a QLoRA base holds for this layer
    merged_4bit = nf4_roundtrip(base_4bit + delta)  # merge, then store as NF4 again
    survived = merged_4bit - base_4bit             # the update the 4-bit merged model actually applies
    return {"layer": name, "mean_abs_update": delta.abs().mean().item(),
            "mean_abs_rounding_error": (merged_4bit - (base_4bit + delta)).abs().mean().item(),
            "relative_error_of_update": ((survived - delta).norm() / delta.norm()).item()}


def load_base(base_id: str, dtype, device_map, nf4: bool):
    """The 16-bit base to merge into: the checkpoint as published, or loaded in NF4 as the QLoRA lab loads it
    and dequantized back to ``dtype`` (transformers' model.dequantize()), which are the weights the adapter saw."""
    from transformers import AutoModelForCausalLM

    from gpu_labs import labmodels

    try:
        if not nf4:
            return AutoModelForCausalLM.from_pretrained(base_id, dtype=dtype, device_map=device_map)
        bnb, _ = labmodels.bnb_4bit_config(base_id, dtype)  # as the training lab loaded it
        model = AutoModelForCausalLM.from_pretrained(base_id, quantization_config=bnb, dtype=dtype,
                                                     device_map=device_map)
    except OSError as err:
        raise LabError(f"could not load the base {base_id}: {err}. Pass --base with a local folder or Hub id.") from None
    # --8<-- [start:dequantize]
    model = model.dequantize(dtype=dtype)  # every Linear4bit -> nn.Linear holding its NF4 weights in 16 bits
    # --8<-- [end:dequantize]
    return model


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    adapter = Path(args.adapter)
    base_id = args.base or adapter_base(adapter)
    labkit.quiet_libraries()
    from gpu_labs import labdata

    conversations = labdata.load_conversations(args.dataset or toy_model.default_dataset(base_id))

    import time

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpu_labs import labmodels

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    tolerance = args.tolerance if args.tolerance is not None else RELATIVE_TOLERANCE[args.dtype]
    device_map = {"": 0} if torch.cuda.is_available() else None
    tokenizer = AutoTokenizer.from_pretrained(adapter if (adapter / "tokenizer_config.json").exists() else base_id)
    labdata.ensure_pad_token(tokenizer)
    examples = labdata.tokenize_conversations(conversations[: args.check_examples], tokenizer, 512)
    batch = labkit.pad_collate(tokenizer.pad_token_id)(examples)

    settings_path = adapter / "run_settings.json"
    from_qlora = (settings_path.is_file()
                  and json.loads(settings_path.read_text())["settings"].get("method") == "qlora")
    if args.merge_into == "dequantized" and not from_qlora:
        raise LabError("--merge-into dequantized is for adapters trained on an NF4 base (the lab's --method qlora); "
                       f"{adapter} has no run_settings.json saying so. Use --merge-into original.")

    started = time.perf_counter()
    base = load_base(base_id, dtype, device_map, nf4=args.merge_into == "dequantized")
    # --8<-- [start:merge]
    model = PeftModel.from_pretrained(base, adapter)  # base + adapter, computed side by side
    model.eval()
    unmerged = logits_of(model, batch)
    layer_check = four_bit_merge_error(model)
    merged = model.merge_and_unload()  # W <- W + (alpha/r) * B @ A in every adapted layer; peft removed
    merged_logits = logits_of(merged, batch)
    # --8<-- [end:merge]
    check = compare(unmerged, merged_logits)
    print(f"base {base_id} ({args.dtype}{', dequantized from NF4' if args.merge_into == 'dequantized' else ''}) "
          f"+ adapter {adapter}: loaded and merged in {time.perf_counter() - started:.1f} s")
    print(f"logit check on {len(examples)} examples ({unmerged.shape[0]} tokens): max |merged - base+adapter| = "
          f"{check['max_abs_diff']:.3g} (largest |logit| {check['max_abs_logit']:.3g}, relative "
          f"{check['relative']:.2e}, tolerance {tolerance:.0e}); same top-1 token on {100 * check['top1_agreement']:.1f}%")
    if not check["relative"] <= tolerance:
        raise LabError(f"merged logits differ from base + adapter by {check['relative']:.2e} (relative), above the "
                       f"tolerance {tolerance:.0e}. Check that --base is the model the adapter was trained on.")

    # --8<-- [start:save]
    output = Path(args.output)
    with labkit.atomic_directory(output) as staging:
        merged.save_pretrained(staging)  # safetensors + config.json: loads with from_pretrained, no peft
        tokenizer.save_pretrained(staging)
        report = {"base": base_id, "adapter": str(adapter), "dtype": args.dtype, "merge_into": args.merge_into,
                  "tolerance": tolerance,
                  "logit_check": check, "nf4_merge_error": layer_check, "versions": labkit.library_versions()}
        (staging / "merge_report.json").write_text(json.dumps(report, indent=1))
    reloaded = AutoModelForCausalLM.from_pretrained(output, dtype=dtype, device_map=device_map)
    # --8<-- [end:save]
    reload_diff = compare(merged_logits, logits_of(reloaded, batch))["max_abs_diff"]
    print(f"saved the merged model to {output}/ ({labkit.human_bytes(labkit.dir_size_bytes(output))}; "
          f"the adapter alone is {labkit.human_bytes(labkit.dir_size_bytes(adapter))}); reloaded from disk: "
          f"max logit difference {reload_diff:.3g}")

    heldout = toy_model.heldout_rows(base_id)  # a base that ships held-out prompts (the toy model)
    if heldout:
        print("held-out prompts: the 16-bit base (before) and the merged model reloaded without peft (after)")
        before = toy_model.answer(AutoModelForCausalLM.from_pretrained(base_id, dtype=dtype, device_map=device_map),
                                  tokenizer, heldout)
        print("\n".join(toy_model.report(heldout, toy_model.scores(heldout, before, reloaded, tokenizer), show=2)))

    trained_note = ""
    if from_qlora:
        # The model as trained (NF4 base + adapter) against a merge into each 16-bit base: the one saved above
        # and the other route, so both gaps are on one screen.
        bnb, _ = labmodels.bnb_4bit_config(base_id, dtype)  # as the training lab loaded it
        as_trained = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base_id, quantization_config=bnb, dtype=dtype, device_map=device_map),
            adapter)
        labmodels.keep_training_kernel(as_trained)   # the forward the adapter was trained with (see there)
        trained_logits = logits_of(as_trained, batch)
        del as_trained
        other = "original" if args.merge_into == "dequantized" else "dequantized"
        other_merged = PeftModel.from_pretrained(load_base(base_id, dtype, device_map, nf4=other == "dequantized"),
                                                 adapter).merge_and_unload()
        gaps = {args.merge_into: compare(trained_logits, merged_logits),
                other: compare(trained_logits, logits_of(other_merged, batch))}
        del other_merged
        labels = {"original": "merged into the original 16-bit base",
                  "dequantized": "merged into the NF4 base dequantized (model.dequantize())"}
        trained_note = "".join(
            f"\nThe model as trained (NF4 base + adapter) vs {labels[route]}: max logit difference "
            f"{gaps[route]['max_abs_diff']:.3g}, same top-1 token on {100 * gaps[route]['top1_agreement']:.1f}%."
            for route in ("original", "dequantized"))
        report["gap_to_trained"] = gaps
        (output / "merge_report.json").write_text(json.dumps(report, indent=1))
    print()
    print(FOUR_BIT_NOTE + trained_note)
    print(f"Measured on {layer_check['layer']}: the adapter changes a weight by {layer_check['mean_abs_update']:.2e} "
          f"on average; re-quantizing W + update to NF4 moves it by {layer_check['mean_abs_rounding_error']:.2e}, "
          f"so the 4-bit merged layer applies the update with a {100 * layer_check['relative_error_of_update']:.0f}% "
          "relative error.")
    return 0


if __name__ == "__main__":
    labkit.run_cli(main)
