"""Run by tests/snippets/test_sharding_fsdp1.py in a process of its own (it starts a one-rank gloo group).

A stack of layers, each a frozen Linear plus a two-Linear adapter, under gradient checkpointing, wrapped four ways:
no FSDP; FSDP1 (``FullyShardedDataParallel``) with peft's ``fsdp_auto_wrap_policy`` rule (a leaf module whose weight
is trainable is a unit of its own, so each layer's flat parameter is frozen); FSDP1 with each layer one unit (its
flat parameter then holds the trainable adapter too); FSDP2 (``fully_shard``). During the backward of layer 0 it
counts, among the inputs layers 1 to L-1 ran on (their recompute's, with reentrant checkpointing), those still
alive and those alive with a gradient (only a reentrant recompute's input is a leaf that can hold one). Prints JSON.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import weakref

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

H, B, S = 16, 2, 8


class Layer(nn.Module):
    def __init__(self, i: int, seen: list):
        super().__init__()
        self.i, self.seen = i, seen
        self.w = nn.Linear(H, H, bias=False)
        self.w.weight.requires_grad_(False)
        self.a = nn.Linear(H, 2, bias=False)
        self.b = nn.Linear(2, H, bias=False)

    def forward(self, x):
        if torch.is_grad_enabled():             # the recompute in backward (reentrant) or the forward (not)
            self.seen.append((self.i, weakref.ref(x)))
        return x + torch.tanh(self.w(x)) + self.b(self.a(x))


class Stack(nn.Module):
    def __init__(self, layers: int, reentrant: bool, seen: list):
        super().__init__()
        self.reentrant = reentrant
        self.emb = nn.Embedding(10, H)
        self.emb.weight.requires_grad_(False)
        self.layers = nn.ModuleList(Layer(i, seen) for i in range(layers))

    def forward(self, ids):
        x = self.emb(ids).requires_grad_(True)   # what enable_input_require_grads does for reentrant checkpointing
        for layer in self.layers:
            x = checkpoint(layer, x, use_reentrant=self.reentrant)
        return x.float().pow(2).mean()


def wrap(model: nn.Module, how: str) -> nn.Module:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy, _or_policy, lambda_auto_wrap_policy
    cpu = torch.device("cpu")
    if how == "fsdp1_peft_policy":
        adapters = functools.partial(lambda_auto_wrap_policy, lambda_fn=lambda m: len(list(m.children())) == 0
                                     and getattr(m, "weight", None) is not None and m.weight.requires_grad)
        policy = functools.partial(_or_policy, policies=[adapters, ModuleWrapPolicy({Layer})])
        return FSDP(model, auto_wrap_policy=policy, use_orig_params=True, device_id=cpu)
    if how == "fsdp1_layer_units":
        return FSDP(model, auto_wrap_policy=ModuleWrapPolicy({Layer}), use_orig_params=True, device_id=cpu)
    if how == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        mesh = init_device_mesh("cpu", (1,))
        for layer in model.layers:
            fully_shard(layer, mesh=mesh)
        return fully_shard(model, mesh=mesh)
    return model


def probe(how: str, layers: int, reentrant: bool) -> dict[str, int]:
    seen: list = []
    torch.manual_seed(0)
    stack = Stack(layers, reentrant, seen)
    first = stack.layers[0]
    model = wrap(stack, how)
    held = {}

    def at_layer0(module, grad_in, grad_out):
        alive = [ref() for i, ref in seen if i > 0 and ref() is not None]
        held.update(inputs=len({id(t) for t in alive}), grads=len({id(t) for t in alive if t.grad is not None}))

    first.w.register_full_backward_hook(at_layer0)
    model(torch.randint(0, 10, (B, S))).backward()
    return dict(held)


def main() -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", sys.argv[1] if len(sys.argv) > 1 else "29541")
    dist.init_process_group("gloo", rank=0, world_size=1)
    out = {}
    for how in ("none", "fsdp1_peft_policy", "fsdp1_layer_units", "fsdp2"):
        for layers in (4, 6):
            for reentrant in (True, False):
                out[f"{how}/{layers}/{'reentrant' if reentrant else 'non-reentrant'}"] = probe(how, layers, reentrant)
    dist.destroy_process_group()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
