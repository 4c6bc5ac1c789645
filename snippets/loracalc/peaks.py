"""The step's peak: which of the terms that change during a step are alive together at each moment.

Three moments compete in every run: the loss (every kept activation, the head and the loss's own tensors;
gradients were set to None by zero_grad), backward through a checkpointed layer (kept inputs, that layer's
recomputed activations, gradients so far) and the end of backward (all gradients). DoRA and a training loop
that holds the last step's outputs add their own. The terms shown are those alive at the largest; the others
are listed apart.
"""
from __future__ import annotations

from .terms import Term

# the order the terms are shown in (the gradients first)
ORDER = ("activations", "vision_activations", "recomputed", "bnb_inputs", "dequant_saved", "dora_activations", "dora_weights", "dora_transient",
         "last_step", "logits_so_far", "logits", "head_lora_grads", "dequant_head", "dequant_layer", "optimizer_temp")


def moments(grad_key: str, gc: bool, dora: bool, holds_last_step: bool, accum: int) -> dict[str, list[str]]:
    """Each moment of the step and the keys of the terms alive at it."""
    out = {"loss": ["activations", "logits", "head_lora_grads"]
           + ([] if gc else (["dora_activations", "dora_weights"] if dora else []))
           + ([] if gc else ["bnb_inputs", "dequant_saved"]) + ["dequant_head"],
           "end of backward": [grad_key, "optimizer_temp"]}
    if dora and not gc:
        # a DoRA module's forward in the last layer (everything kept so far, counted whole: an upper bound); with
        # checkpointing the first pass keeps no graph, so the identity dies sooner, and the recompute holds more
        out["forward through a DoRA layer"] = ["activations", "dora_activations", "dora_weights", "bnb_inputs",
                                               "last_step", "dora_transient"]
    if holds_last_step:
        # the output layer's forward: the last step's logits and kept inputs are alive, this step's logits so
        # far (all chunks but one), and a quantized head is dequantized in forward as in backward
        out["forward through the output layer"] = (["activations"] + ([] if gc else ["bnb_inputs", "dequant_saved"])
                                                   + ["last_step", "logits_so_far", "dequant_head"])
    if accum > 1:
        # the earlier micro-batches' gradients stay alive through every later forward and backward
        for k in out:
            if k != "end of backward":
                out[k].append(grad_key)
    if gc:
        out["backward through a recomputed layer"] = ["activations", "recomputed", grad_key] + (
            ["dora_activations", "dora_weights"] if dora else []) + ["bnb_inputs", "dequant_saved", "dequant_layer"]
        if dora:
            # recomputing a layer rebuilds its weight norms before its backward dequantizes anything: the
            # transients never meet; the layer's recomputed activations are counted whole (an upper bound)
            out["recompute of a DoRA layer in backward"] = ["activations", "recomputed", grad_key,
                                                            "dora_activations", "dora_weights", "bnb_inputs",
                                                            "dora_transient"]
    # a vision tower's kept tensors live from its forward until backward reaches it, after the language model's
    for k in out:
        if "activations" in out[k]:
            out[k].insert(out[k].index("activations") + 1, "vision_activations")
    return out


def at_peak(dyn: dict[str, Term], alive: dict[str, list[str]], grad_key: str) -> tuple[str, list[Term], list[Term]]:
    """(the moment of the peak, the terms alive then, the others), each list in display order."""
    alive = {k: [x for x in v if x in dyn] for k, v in alive.items()}
    peak_at = max(alive, key=lambda k: sum(dyn[x].bytes for x in alive[k]))
    shown = [grad_key] + [k for k in ORDER if k != grad_key]
    on = [dyn[k] for k in shown if k in dyn and k in alive[peak_at]]
    off = [dyn[k] for k in shown if k in dyn and k not in alive[peak_at]]
    return peak_at, on, off
