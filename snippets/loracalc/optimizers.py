"""Optimizers, one small class each: the state it keeps per trainable value and the temporaries of its step.

A new optimizer is one more class here and one line in ``OPTIMIZER_CLASSES``; the CLI, the widget's choices
and ``estimate_memory`` read them from there. Sizes come as the list of trainable tensors' sizes (values),
so a state that depends on a tensor's shape or size (paging thresholds, one tensor at a time) can see it.
"""
from __future__ import annotations

from .terms import Term, term

PAGED_MIN_NUMEL = 100_000   # bitsandbytes pages only state tensors of at least 1e5 values (get_state_buffer)
# 8-bit state: one byte per value plus an fp32 absmax per block of 256 values
_BNB_8BIT = 2 * (1 + 4 / 256)


class Optimizer:
    key = ""
    label = ""
    # --8<-- [start:optimizer_state]
    per_value = 0.0               # state bytes per trainable value, at fp32 parameters
    in_param_dtype = False        # torch keeps its state in the parameter's dtype (zeros_like)
    # --8<-- [end:optimizer_state]
    paged = False                 # bitsandbytes' paged optimizers: state in CUDA managed memory
    bf16_label = ""               # the label when the state follows bf16 parameters

    def state_bytes(self, param_bytes: int) -> float:
        """State bytes per trainable value of ``param_bytes``: torch's optimizers keep it in the parameter's dtype;
        bitsandbytes' 32-bit optimizers always keep it in fp32."""
        if self.in_param_dtype:
            return self.per_value * param_bytes / 4
        return self.per_value

    def state_label(self, param_bytes: int) -> str:
        if self.in_param_dtype and self.state_bytes(param_bytes) != self.per_value:
            return f"Optimizer state: {self.bf16_label}"   # bf16 parameters, bf16 state
        return f"Optimizer state: {self.label}"

    def step_temporaries(self, sizes: list[int], state_bytes: float, in_backward: bool,
                         fused: bool) -> tuple[float, str] | None:
        """(bytes, formula) the step allocates beside the state, alive with the gradients; None for none."""
        return None


class AdamW(Optimizer):
    key, label = "adamw", "AdamW (fp32 m and v)"
    per_value, in_param_dtype, bf16_label = 8.0, True, "AdamW (bf16 m and v)"   # m and v

    def step_temporaries(self, sizes, state_bytes, in_backward, fused):
        # torch's AdamW, unless fused (torchtune's configs), runs its step with foreach kernels (the default on
        # CUDA): _foreach_sqrt makes a temporary of the second moment's size for every tensor at once, alive with
        # all gradients; stepping in backward, one tensor's
        if fused:
            return None
        v_b = state_bytes / 2
        n_v = max(sizes) if in_backward else sum(sizes)
        return v_b * n_v, f"{v_b:g} B x {n_v:,} " + ("(largest tensor)" if in_backward else "trainable params")


class AdamW8bit(Optimizer):
    key, label, per_value = "adamw_8bit", "8-bit AdamW (bitsandbytes)", _BNB_8BIT


class PagedAdamW(Optimizer):
    key, label, per_value, paged = "paged_adamw", "paged AdamW (bitsandbytes, fp32 state)", 8.0, True


class PagedAdamW8bit(Optimizer):
    key, label, per_value, paged = "paged_adamw_8bit", "paged 8-bit AdamW (bitsandbytes)", _BNB_8BIT, True


class SGD(Optimizer):
    key, label = "sgd", "SGD with momentum"
    per_value, in_param_dtype, bf16_label = 4.0, True, "SGD momentum (bf16)"   # one momentum buffer


OPTIMIZER_CLASSES = (AdamW, AdamW8bit, PagedAdamW, PagedAdamW8bit, SGD)
OPTIMIZER_FACTS: dict[str, Optimizer] = {cls.key: cls() for cls in OPTIMIZER_CLASSES}
OPTIMIZERS = {k: o.label for k, o in OPTIMIZER_FACTS.items()}
# Optimizer state bytes per trainable parameter (fp32 parameters). bitsandbytes' 8-bit optimizers store each
# state in one byte plus an fp32 absmax per block of 256 values.
STATE_BYTES = {k: o.per_value for k, o in OPTIMIZER_FACTS.items()}


def _state_bytes(optimizer: str, param_bytes: int) -> float:
    """Optimizer state bytes per trainable parameter of ``param_bytes`` (see ``Optimizer.state_bytes``)."""
    return OPTIMIZER_FACTS[optimizer].state_bytes(param_bytes)


def state_terms(optimizer: str, param_bytes: int, state_sizes: list[int], trainable: int, where: str,
                on_host: bool) -> tuple[list[Term], list[Term], list[str]]:
    """(terms on the card, terms in host memory, notes) for the optimizer's state over ``trainable`` values
    (``state_sizes``: the sizes of the tensors that carry state; ``where``: what the values are, for the text)."""
    opt = OPTIMIZER_FACTS[optimizer]
    st = opt.state_bytes(param_bytes)
    label = opt.state_label(param_bytes)
    if not opt.paged:
        return [term("optimizer", label, st * trainable, f"{st:g} B x {trainable:,} {where}")], [], []
    # bitsandbytes allocates paged state with cudaMallocManaged, outside PyTorch's allocator; only tensors
    # of PAGED_MIN_NUMEL values or more are paged, smaller ones get ordinary tensors
    big = sum(t for t in state_sizes if t >= PAGED_MIN_NUMEL)
    small = trainable - big
    card = [term("optimizer", label + " (tensors under 100k values)", st * small, f"{st:g} B x {small:,} params")]
    paged = term("optimizer_paged", label + " (paged, CUDA managed memory)", st * big,
                 f"{st:g} B x {big:,} params in tensors of 100k values or more", "managed")
    if on_host:
        return card, [paged], ["paged optimizer state counted in host memory (evicted there under memory pressure)"]
    return card + [paged], [], []
