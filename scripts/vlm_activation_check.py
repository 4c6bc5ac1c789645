"""What a vision tower keeps for backward, against loracalc's rough vision activation term.

    PYTHONPATH=snippets OMP_NUM_THREADS=1 .venv/bin/python scripts/vlm_activation_check.py [--types llava,gemma3] [--gc]

Builds each wrapper's tiny config (``tests/snippets/test_vlm.py``) with a 128-wide, two-layer tower on 64-pixel
images, in bf16 with LoRA (fp32 adapters) on all-linear, runs the vision tower forward on a batch of two images
under ``saved_tensors_hooks`` and prints the bytes it saved (each storage once) beside
``loracalc.vision.vision_activation_bytes`` for the tower (the projector's share left out). A CPU only: SDPA takes
its math path there, which keeps more than CUDA's fused kernels.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(mt: str, gc: bool) -> tuple[int, int]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForImageTextToText

    import loracalc
    from loracalc.vision import vision_activation_bytes
    from tests.snippets.test_vlm import tiny_vlm

    cfg = tiny_vlm(mt)
    side = 64
    cfg["vision_config"].update(hidden_size=128, intermediate_size=256, num_attention_heads=2, num_hidden_layers=2,
                                image_size=side, patch_size=8)
    if isinstance(tiny_vlm(mt)["vision_config"]["image_size"], list):
        cfg["vision_config"].update(image_size=[side, side], patch_size=[8, 8])
    hc = AutoConfig.for_model(mt, **{k: v for k, v in cfg.items() if k != "model_type"})
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(hc).to(torch.bfloat16)
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    pm = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, target_modules="all-linear"))
    for n, p in pm.named_parameters():
        if "lora" in n:
            p.data = p.data.float()
    inner = pm.base_model.model.model
    tower = getattr(inner, "vision_tower", None) or inner.vision_model
    state = {"on": False, "bytes": 0, "seen": set()}

    def pack(t):
        if state["on"] and t.untyped_storage().data_ptr() not in state["seen"]:
            state["seen"].add(t.untyped_storage().data_ptr())
            state["bytes"] += t.untyped_storage().nbytes()
        return t

    tower.register_forward_pre_hook(lambda *a: state.update(on=True))
    tower.register_forward_hook(lambda *a: state.update(on=False))
    batch = 2
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        tower(pixel_values=torch.randn(batch, 3, side, side, dtype=torch.bfloat16))
    arch = loracalc.model_from_config(cfg)
    counts = loracalc.count_params(arch, 8, "all-linear")
    est, _ = vision_activation_bytes(arch, counts, "lora", batch, 1, side, gc, 2, 4)
    proj_in = sum(r.d_in for r in arch.records if r.role == "projector" and r.kind in ("linear", "param"))
    from loracalc.vision import patches_per_image
    return state["bytes"], est - 2 * proj_in * batch * patches_per_image(arch, side)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default="llava,gemma3,internvl,mistral3", help="wrapper model_types")
    ap.add_argument("--gc", action="store_true", help="gradient checkpointing (the forward keeps layer inputs)")
    args = ap.parse_args()
    sys.path[:0] = [os.path.join(ROOT, "snippets"), ROOT]
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    for mt in args.types.split(","):
        saved, est = measure(mt, args.gc)
        print(f"{mt:16} saved {saved:>10,} B   loracalc {est:>10,} B   {est / saved - 1:+.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
