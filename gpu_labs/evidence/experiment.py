"""Does LoRA get most of full fine-tuning's gain with a tiny fraction of the parameters, and at what cost
in forgetting? Measure it, with every learning rate searched for rather than carried over.

A small Llama-shaped model (transformers' LlamaConfig, randomly initialised) is pretrained briefly on
a generated corpus (gpu_labs/evidence/data.py), then fine-tuned on a task it never saw (rewrite a
sentence as a record `group=..;region=..`). A *cell* is one method at one rank under one way of setting
lora_alpha: full fine-tuning; LoRA on q,v at r = 1, 8, 64 with fixed alpha, alpha = 2r and rsLoRA; LoRA
on every linear layer; DoRA; PiSSA; QLoRA (NF4 base) at two ranks (Settings.cells). Every cell searches
its own learning rate on the validation split (seed 0, widened while the best is at an edge), then runs
three seeds at the chosen rate, scored on a separate test split: exact match first, loss second, and
the loss on held-out pretraining text before and after (forgetting). Then the low-rank check: the
singular values of full fine-tuning's weight change, next to a Gaussian matrix of the same shape.

Run (CPU is enough, no download; HF_HUB_OFFLINE=1 is set for you):

    .venv/bin/python gpu_labs/evidence/experiment.py --quick   # 85 s on 2 lightly loaded cores: 5 cells, seed 0
    .venv/bin/python gpu_labs/evidence/experiment.py --progress runs/evidence/progress.jsonl --resume \
        --base-dir runs/evidence/base --deadline 14:05        # everything: 91 runs took 35 min on 2 shared cores

The full run writes snippets/lora_course/data/evidence.json (the site renders it; the plots come from
plots.py). --quick writes runs/evidence/quick.json unless --out says otherwise; it runs each of its
cells at the rate the saved run chose, so its runs repeat the saved seed-0 runs (tests/evidence checks
that). --progress keeps every finished run, so --resume continues a stopped run; --deadline stops
starting runs at a UTC time and summarizes what finished (the cells' order is their priority).
Memory: well under 1 GB per worker; each worker process uses one thread.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import data  # noqa: E402  (stdlib only)

DEFAULT_OUT = REPO / "snippets" / "lora_course" / "data" / "evidence.json"
QUICK_OUT = REPO / "runs" / "evidence" / "quick.json"


# --8<-- [start:settings]
@dataclass
class Settings:
    # Base model: Llama-shaped, small enough that one fine-tuning run takes seconds on one CPU core.
    hidden_size: int = 128           # width d; every attention matrix is d x d
    intermediate_size: int = 256     # MLP width (gate/up: d -> 256, down: 256 -> d)
    num_layers: int = 2              # more layers = a better base but slower runs
    num_heads: int = 4               # head_dim = 32
    tie_embeddings: bool = True      # input and output embeddings shared (as in Llama-3.2-1B): copying a token is easy
    # Pretraining: enough to learn the words and to copy a name, not more.
    pretrain_steps: int = 400        # the base model's quality; the largest single cost of --quick
    pretrain_batch: int = 32         # sequences of seq_len tokens
    pretrain_lr: float = 3e-3        # AdamW, cosine decay
    seq_len: int = 48                # tokens per pretraining sequence (about three lines)
    data_seed: int = 0               # the corpus, the task split and the base model's init
    # Fine-tuning on the new task: identical for every method.
    # Measured before choosing 200: with 100 steps the previous full run's test exact match was 33% for full FT
    # (mean of 3 seeds) and 24% for LoRA r=8; with 200, full FT at lr 0.003 scored 68/93/74% (seeds 0/1/2) and
    # LoRA r=8 at 0.0316 37/19/34%. (With 300 steps, seed 0: 65% and 36%, little more for 1.5x the time.)
    # 200 steps cost 14-21 s a run on idle cores (32 s median on busy ones): the grid's 91 runs took 35 min.
    ft_steps: int = 200              # more steps lift every method; the grid's time grows in proportion
    ft_batch: int = 32               # examples per step
    n_task_train: int = 2000         # distinct training prompts (200 x 32 = 6400 examples: 3.2 epochs)
    n_task_val: int = 256            # held-out prompts that choose each cell's learning rate
    n_task_test: int = 256           # other held-out prompts, used only to report the chosen runs
    n_heldout_seqs: int = 64         # held-out pretraining sequences (seq_len tokens): the forgetting yardstick
    warmup_steps: int = 5            # linear warmup, then cosine to zero
    eval_every: int = 50             # validation points on the loss curves (each is a forward pass over n_task_val)
    # LoRA's update is scaled by alpha / r (rsLoRA: alpha / sqrt(r)). Three ways to set alpha across ranks,
    # chosen so that all three give the same scale, 2, at r = 8 (where the old run tuned its rate):
    fixed_alpha: float = 16.0        # the LoRA paper's: one alpha for every rank
    alpha_over_r: float = 2.0        # lora_alpha = 2 r: the scale is 2 at every rank (the first run's choice)
    rslora_alpha: float = 5.657      # rsLoRA: 2 * sqrt(8), so alpha / sqrt(8) = 2
    # Cells: (method, rank, scaling scheme); each gets its own learning-rate search. The schemes coincide at
    # r = 8, so r = 8 runs once ("fixed") and stands for all three.
    # The order is the priority when time runs short (--deadline).
    cells: tuple = (("full", None, None), ("lora_qv", 8, "fixed"),
                    ("lora_qv", 1, "fixed"), ("lora_qv", 1, "2r"), ("lora_qv", 1, "rslora"),
                    ("lora_qv", 64, "fixed"), ("lora_qv", 64, "2r"), ("lora_qv", 64, "rslora"),
                    ("dora_qv", 8, "fixed"), ("pissa_qv", 8, "fixed"), ("lora_all", 8, "fixed"),
                    ("qlora_qv", 64, "fixed"), ("qlora_qv", 1, "fixed"))
    quick_cells: tuple = (("full", None, None), ("lora_qv", 8, "fixed"), ("lora_qv", 64, "rslora"),
                          ("dora_qv", 8, "fixed"), ("pissa_qv", 8, "fixed"))
    seeds: tuple = (0, 1, 2)         # fine-tuning seeds (LoRA init and batch order); the base is shared
    seeds_first: tuple = ("full", "lora_qv_r8_fixed")  # cells whose extra seeds run before other cells' searches
    # Learning-rate search per cell (seed 0, lowest validation loss wins): lr_points rates lr_step apart
    # around the method's centre, widened by one rate while the best is at an edge.
    lr_points: int = 5
    lr_step: float = 3.1623          # sqrt(10): two rates per decade
    lr_centre: dict = field(default_factory=lambda: {
        "full": 3e-3, "lora_qv": 1e-2, "lora_all": 3e-3, "dora_qv": 1e-2, "qlora_qv": 1e-2, "pissa_qv": 3e-3})
    max_widen: int = 3
    lr_bounds: tuple = (1e-5, 1.0)
    # --quick takes each cell's rate from the saved full run; these apply where it has none.
    quick_lr: dict = field(default_factory=lambda: {
        "full": 3e-3, "lora_qv": 3e-2, "lora_all": 3e-3, "dora_qv": 3e-2, "qlora_qv": 3e-2, "pissa_qv": 3e-3})
    energy_ranks: tuple = (1, 2, 4, 8, 16, 32, 64, 128)  # r at which the update's energy share is reported
# --8<-- [end:settings]


# --- the base model ---------------------------------------------------------------------------

def set_threads() -> None:
    import torch
    torch.set_num_threads(1)  # small matrices: one thread per process is faster than two fighting


def encode_task(tokenizer, pairs, length: int):
    """Input ids and labels for (prompt, target) pairs; the loss covers the target and </s> only."""
    import torch
    ids = torch.full((len(pairs), length), tokenizer.pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), length), -100, dtype=torch.long)
    for row, (prompt, target) in enumerate(pairs):
        p = [tokenizer.bos_id] + tokenizer.encode(prompt)
        t = tokenizer.encode(target) + [tokenizer.eos_id]
        ids[row, :len(p) + len(t)] = torch.tensor(p + t)
        labels[row, len(p):len(p) + len(t)] = torch.tensor(t)
    return ids, labels


def pack_corpus(tokenizer, lines, seq_len: int):
    import torch
    stream = []
    for line in lines:
        stream += [tokenizer.bos_id] + tokenizer.encode(line) + [tokenizer.eos_id]
    n = len(stream) // seq_len
    return torch.tensor(stream[: n * seq_len]).view(n, seq_len)


def cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def pretrain_base(s: Settings, out_dir: Path, log) -> dict:
    """Pretrain the base on the generated corpus and save it (model files only; the tokenizer is code)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = data.build_tokenizer()
    lines, _, _ = data.make_datasets(s.data_seed, n_pretrain=s.pretrain_steps * s.pretrain_batch, n_task_train=0,
                                     n_task_val=0)
    corpus = pack_corpus(tok, lines, s.seq_len)
    # --8<-- [start:base_model]
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads, num_key_value_heads=s.num_heads,
        max_position_embeddings=128, tie_word_embeddings=s.tie_embeddings,
        bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
    )
    torch.manual_seed(s.data_seed)
    model = LlamaForCausalLM(config)
    # --8<-- [end:base_model]
    opt = torch.optim.AdamW(model.parameters(), lr=s.pretrain_lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(s.data_seed)
    t0 = time.perf_counter()
    losses = []
    for step in range(s.pretrain_steps):
        for group in opt.param_groups:
            group["lr"] = s.pretrain_lr * cosine_lr(step, s.pretrain_steps, 20)
        batch = corpus[torch.randint(len(corpus), (s.pretrain_batch,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 100 == 0 or step == s.pretrain_steps - 1:
            log(f"  pretrain step {step:4d}  loss {loss.item():.3f}")
    seconds = time.perf_counter() - t0
    model.save_pretrained(out_dir)
    n = sum(p.numel() for p in model.parameters())
    return {"params": n, "steps": s.pretrain_steps, "final_loss": sum(losses[-20:]) / 20, "seconds": seconds,
            "tokens": s.pretrain_steps * s.pretrain_batch * s.seq_len, "vocab_size": len(tok),
            "loss_curve": [[i, round(losses[i], 4)] for i in range(0, s.pretrain_steps, 25)]}


# --- one fine-tuning run ----------------------------------------------------------------------

# Methods as data: what each one adapts and how. "quant" loads the base in NF4 (QLoRA), "use_dora" splits
# each adapted weight into magnitude and direction (DoRA), "init" replaces peft's default A/B init.
METHODS = {
    "full": {"label": "full fine-tuning"},
    "lora_qv": {"label": "LoRA q,v", "targets": ["q_proj", "v_proj"]},
    "lora_all": {"label": "LoRA all-linear", "targets": "all-linear"},
    "dora_qv": {"label": "DoRA q,v", "targets": ["q_proj", "v_proj"], "use_dora": True},
    "qlora_qv": {"label": "QLoRA (NF4) q,v", "targets": ["q_proj", "v_proj"], "quant": "nf4"},
    "pissa_qv": {"label": "PiSSA q,v", "targets": ["q_proj", "v_proj"], "init": "pissa"},
}
SCHEME_LABEL = {"fixed": "fixed α (LoRA paper)", "2r": "α = 2r", "rslora": "rsLoRA (α/√r)"}


def lora_alpha(s: "Settings", scheme: str, rank: int) -> float:
    """lora_alpha for a scaling scheme. All three give the update scale 2 at r = 8, so they differ only
    away from r = 8: fixed alpha scales the update by 16/r, alpha = 2r by 2, rsLoRA by 5.66/sqrt(r)."""
    return {"fixed": s.fixed_alpha, "2r": s.alpha_over_r * rank, "rslora": s.rslora_alpha}[scheme]


def load_for_method(base_dir: Path, method: str, rank: int | None, scheme: str | None, s: Settings):
    """The base model, set up for one method. Returns the model to train."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    spec = METHODS[method]
    if "targets" not in spec:
        return AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if spec.get("quant") == "nf4":
        # --8<-- [start:qlora]
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.float32)  # fp32 compute: only the storage differs
        model = AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=bnb, dtype=torch.float32)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        # --8<-- [end:qlora]
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    # --8<-- [start:lora]
    config = LoraConfig(
        r=rank,
        lora_alpha=lora_alpha(s, scheme, rank),      # fixed 16, or 2r, or 5.66 with rsLoRA's alpha/sqrt(r)
        use_rslora=scheme == "rslora",
        use_dora=spec.get("use_dora", False),
        init_lora_weights=spec.get("init", True),    # True: peft's default (Kaiming A, B = 0); "pissa": top-r SVD
        target_modules=spec["targets"],              # ["q_proj", "v_proj"] or "all-linear"
        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)  # freezes the base; starts at the base model (B = 0; PiSSA: W - BA + BA)
    # --8<-- [end:lora]
    return model


def memory_accounting(model) -> dict:
    """Bytes of weights (frozen + trainable, 4-bit packed where quantized), gradients, and AdamW state."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    quant_stats = 0
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None:  # NF4: per-block scales (themselves quantized) live outside the parameters
            quant_stats += state.absmax.numel() * state.absmax.element_size()
            if getattr(state, "state2", None) is not None:
                quant_stats += state.state2.absmax.numel() * state.state2.absmax.element_size()
    trainable = [p for p in model.parameters() if p.requires_grad]
    grads = sum(p.numel() * p.element_size() for p in trainable)
    adam = sum(2 * p.numel() * 4 for p in trainable)  # exp_avg and exp_avg_sq, fp32
    return {"weights": weights + quant_stats, "grads": grads, "optimizer": adam,
            "total": weights + quant_stats + grads + adam}


def saved_for_backward_bytes(model, ids, labels) -> int:
    """Bytes autograd keeps between forward and backward (activations), parameters excluded."""
    import torch
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_ptrs:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


# --8<-- [start:evaluate]
def evaluate(model, ids, labels) -> tuple[float, float]:
    """Validation loss on the target characters, and exact match.

    Exact match uses one teacher-forced pass: greedy decoding reproduces the target exactly if and only if
    the argmax at every target position (and at </s>) is the right character given the right prefix.
    """
    import torch
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1]
        gold = labels[:, 1:]
        mask = gold != -100
        loss = torch.nn.functional.cross_entropy(logits[mask], gold[mask]).item()
        right = (logits.argmax(-1) == gold) | ~mask
        exact = right.all(dim=1).float().mean().item()
    return loss, exact
# --8<-- [end:evaluate]


def pretraining_loss(model, ids) -> float:
    """Mean next-token loss on held-out pretraining text: how much of the old skill is left."""
    import torch
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item()


def cell_name(method: str, rank: int | None, scheme: str | None) -> str:
    return "full" if rank is None else f"{method}_r{rank}_{scheme}"


def finetune(job: dict) -> dict:
    """Fine-tune the saved base with one method, learning rate and seed. Runs in a worker process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    set_threads()
    import torch
    quiet()
    s = Settings(**job["settings"])
    method, rank, scheme, lr, seed = job["method"], job["rank"], job["scheme"], job["lr"], job["seed"]
    tok = data.build_tokenizer()
    _, train, val, test = data.make_datasets(s.data_seed, 0, s.n_task_train, s.n_task_val, s.n_task_test)
    length = 2 + max(len(p) + len(t) for p, t in train + val + test)
    train_ids, train_labels = encode_task(tok, train, length)
    val_ids, val_labels = encode_task(tok, val, length)
    test_ids, test_labels = encode_task(tok, test, length)
    heldout = pack_corpus(tok, data.heldout_pretraining(s.data_seed, 40 * s.n_heldout_seqs), s.seq_len)[: s.n_heldout_seqs]

    torch.manual_seed(seed)  # LoRA's A init and the batch order
    model = load_for_method(Path(job["base_dir"]), method, rank, scheme, s)
    model.train()  # from_pretrained returns eval mode; see the note in the loop on why it stays in train mode
    total = sum(p.numel() for p in model.parameters())
    if METHODS[method].get("quant"):  # a packed parameter holds two 4-bit weights per byte
        total = model.get_nb_trainable_parameters()[1]
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    memory = memory_accounting(model)
    memory["saved_for_backward"] = saved_for_backward_bytes(model, train_ids[: s.ft_batch], train_labels[: s.ft_batch])
    base_weights = None
    if method == "full" and job.get("spectra"):
        base_weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 2}
    forget_before = pretraining_loss(model, heldout)

    # --8<-- [start:train_loop]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    curve, train_curve, seconds = [], [], 0.0
    for step in range(s.ft_steps + 1):
        if step % s.eval_every == 0 or step == s.ft_steps:
            # No model.eval(): nothing here uses dropout, and bitsandbytes 0.50 on CPU repacks 4-bit weights
            # for inference in eval mode and then stops passing gradients to the adapters.
            curve.append([step, *evaluate(model, val_ids, val_labels)])
        if step == s.ft_steps:
            break
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr * cosine_lr(step, s.ft_steps, s.warmup_steps)
        pick = torch.randint(len(train_ids), (s.ft_batch,), generator=gen)
        loss = model(input_ids=train_ids[pick], labels=train_labels[pick]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - t0
        train_curve.append(loss.item())
    # --8<-- [end:train_loop]
    test_loss, test_exact = evaluate(model, test_ids, test_labels)
    forget_after = pretraining_loss(model, heldout)

    def finite(x):  # a diverged run reports inf, which JSON cannot carry; None marks it
        return x if math.isfinite(x) else None

    result = {
        "cell": cell_name(method, rank, scheme), "method": method, "rank": rank, "scheme": scheme,
        "lr": lr, "seed": seed,
        "trainable_params": n_trainable, "total_params": total,
        "trainable_percent": 100.0 * n_trainable / total,
        "val_loss": finite(curve[-1][1]), "val_exact": curve[-1][2], "start_loss": finite(curve[0][1]),
        "test_loss": finite(test_loss), "test_exact": test_exact,
        "forget_before": finite(forget_before), "forget_after": finite(forget_after),
        "train_seconds": seconds, "ms_per_step": 1000 * seconds / s.ft_steps, "memory_bytes": memory,
        "val_curve": [[st, finite(round(lo, 4)), round(em, 4)] for st, lo, em in curve],
    }
    if base_weights is not None:
        result["spectra"] = update_spectra(model, base_weights, s, seed)
        result["greedy_check"] = greedy_check(model, tok, test[:8])
    return result


# --- the low-rank check -----------------------------------------------------------------------

# --8<-- [start:spectra]
def energy_fractions(matrix, ranks) -> list[float]:
    """Share of the squared Frobenius norm held by the top-r singular directions, for each r."""
    import torch
    s2 = torch.linalg.svdvals(matrix.double()) ** 2
    cumulative = torch.cumsum(s2, 0) / s2.sum()
    return [cumulative[min(r, len(s2)) - 1].item() for r in ranks]


def update_spectra(model, base_weights, s: Settings, seed: int) -> dict:
    """For every weight matrix in the blocks: the energy share of full fine-tuning's change dW = W_ft - W_base
    in its top r directions, and the same for a Gaussian matrix of the same shape."""
    import torch
    gen = torch.Generator().manual_seed(1000 + seed)
    out = {}
    for name, p in model.named_parameters():
        if name not in base_weights or ".layers." not in name:
            continue  # embeddings and lm_head are not LoRA targets here
        delta = p.detach() - base_weights[name]
        noise = torch.randn(delta.shape, generator=gen, dtype=torch.float64)
        kind = name.split(".")[-2]  # q_proj, k_proj, ..., down_proj
        out[name] = {"kind": kind, "shape": list(delta.shape),
                     "relative_change": (delta.norm() / base_weights[name].norm()).item(),
                     "update": energy_fractions(delta, s.energy_ranks),
                     "random": energy_fractions(noise, s.energy_ranks)}
    return out
# --8<-- [end:spectra]


def greedy_check(model, tok, pairs) -> dict:
    """Real greedy generation on a few prompts, to confirm the teacher-forced exact match."""
    import torch
    agree = 0
    for prompt, target in pairs:
        ids = torch.tensor([[tok.bos_id] + tok.encode(prompt)])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=len(target) + 4, do_sample=False,
                                 eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
        text = tok.decode(out[0, ids.shape[1]:].tolist())
        _, exact = evaluate(model, *encode_task(tok, [(prompt, target)], ids.shape[1] + len(target) + 2))
        agree += int((text == target) == bool(exact))
    return {"examples": len(pairs), "agree": agree}


def quiet() -> None:
    import logging
    import warnings
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # one "Loading weights" bar per run says nothing here


# --- the plan ---------------------------------------------------------------------------------

# --8<-- [start:lr_search]
def lr_grid(centre: float, points: int, step: float) -> list[float]:
    """`points` log-spaced rates around `centre`, `step` apart (a factor), rounded to 3 significant digits."""
    half = (points - 1) / 2
    return [float(f"{centre * step ** (i - half):.3g}") for i in range(points)]


def next_rates(tried: dict, step: float, bounds: tuple, widened: int, max_widen: int) -> list[float]:
    """The rates still to try for one cell, given {rate: validation loss} so far (None: diverged).

    The search is done when the best rate has a tried neighbour on both sides; while it sits at an edge
    of the tried range, one more rate beyond that edge is tried (up to `max_widen` times, within `bounds`).
    """
    def score(lr):
        return math.inf if tried[lr] is None else tried[lr]

    rates = sorted(tried)
    best = min(rates, key=score)
    if widened >= max_widen or not math.isfinite(score(best)):
        return []
    if best == rates[0] and best / step >= bounds[0]:
        return [float(f"{best / step:.3g}")]
    if best == rates[-1] and best * step <= bounds[1]:
        return [float(f"{best * step:.3g}")]
    return []


def best_rate(tried: dict) -> float:
    return min(tried, key=lambda lr: math.inf if tried[lr] is None else tried[lr])
# --8<-- [end:lr_search]


def plan_cells(s: Settings, quick: bool) -> list[dict]:
    cells = s.quick_cells if quick else s.cells
    return [{"name": cell_name(m, r, sc), "method": m, "rank": r, "scheme": sc} for m, r, sc in cells]


class Progress:
    """Every finished run is appended to a JSON-lines file, so a stopped run can resume where it was."""

    def __init__(self, path: Path | None, resume: bool):
        self.path, self.done = path, {}
        if path and resume and path.is_file():
            for line in path.read_text().splitlines():
                run = json.loads(line)
                self.done[(run["cell"], run["lr"], run["seed"])] = run
        elif path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def add(self, run: dict) -> None:
        if self.path:
            with self.path.open("a") as f:
                f.write(json.dumps(run) + "\n")


def run_search(cells: list[dict], s: Settings, base_dir: Path, workers: int, log, progress: Progress,
               fixed_lrs: dict | None, deadline: float | None = None) -> list[dict]:
    """Per cell: a learning-rate sweep at seed 0 (widened while the best is at an edge), then the other seeds
    at the rate with the lowest validation loss. With `fixed_lrs` (quick mode) each cell runs only that rate.

    Jobs wait in a local queue (sweeps before extra seeds) and go to `workers` processes one at a time, so no
    cell waits for another's round. After `deadline` (time.time()) nothing new starts; running jobs finish, and
    each cell keeps what it has (fewer seeds, a sweep that may still be at its edge; the summary says so)."""
    import concurrent.futures as cf
    import multiprocessing as mp
    settings = dataclasses.asdict(s)
    state = {c["name"]: {"cell": c, "tried": {}, "widened": 0, "waiting": 0, "chosen": None} for c in cells}
    runs, ready, pending, queue = [], [], {}, []

    def submit(cell, lr, seed):
        job = dict(cell=cell["name"], method=cell["method"], rank=cell["rank"], scheme=cell["scheme"], lr=lr,
                   seed=seed, spectra=cell["method"] == "full", settings=settings, base_dir=str(base_dir))
        state[cell["name"]]["waiting"] += 1
        key = (cell["name"], lr, seed)
        if key in progress.done:
            ready.append((job, progress.done[key]))
        else:
            queue.append(job)

    def pump(pool):
        # Every cell's search comes first, in the cells' order (their priority), then the extra seeds; the
        # cells named in Settings.seeds_first get theirs right after their own search. A run cut short by
        # the deadline thus keeps a chosen rate for as many cells as it can, and intervals where they matter most.
        queue.sort(key=lambda j: (j["seed"] != s.seeds[0] and j["cell"] not in s.seeds_first, priority[j["cell"]]))
        while queue and len(pending) < workers:
            if deadline and time.time() > deadline:
                log(f"  deadline passed: {len(queue)} queued runs dropped")
                queue.clear()
                return
            job = queue.pop(0)
            pending[pool.submit(finetune, job)] = job

    def finished(job, res):
        runs.append(res)
        st = state[res["cell"]]
        st["waiting"] -= 1
        val = "diverged" if res["val_loss"] is None else f"{res['val_loss']:.4f}"
        log(f"  [{len(runs)} done, {len(queue) + len(pending)} to go] {res['cell']:<22} lr {res['lr']:<8g} "
            f"seed {res['seed']}  val {val}  test exact {res['test_exact']:.3f}  {res['train_seconds']:.0f}s")
        if res["seed"] != s.seeds[0] or st["chosen"] is not None:
            return
        st["tried"][res["lr"]] = res["val_loss"]
        if st["waiting"]:
            return  # the rest of this round is still running
        more = [] if fixed_lrs else next_rates(st["tried"], s.lr_step, tuple(s.lr_bounds), st["widened"], s.max_widen)
        if more:
            st["widened"] += 1
            for lr in more:
                submit(st["cell"], lr, s.seeds[0])
        else:
            st["chosen"] = best_rate(st["tried"])
            for seed in s.seeds[1:] if not fixed_lrs else ():
                submit(st["cell"], st["chosen"], seed)

    priority = {c["name"]: i for i, c in enumerate(cells)}
    for cell in cells:
        rates = [fixed_lrs[cell["name"]]] if fixed_lrs else lr_grid(s.lr_centre[cell["method"]], s.lr_points,
                                                                    s.lr_step)
        for lr in rates:
            submit(cell, lr, s.seeds[0])
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        while True:
            while ready:
                finished(*ready.pop(0))
            pump(pool)
            if not pending:
                break
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                res = fut.result()
                progress.add(res)
                finished(job, res)
    for st in state.values():
        if st["chosen"] is None and st["tried"]:
            st["chosen"] = best_rate(st["tried"])  # cut short by the deadline
        st["cell"]["lr"] = st["chosen"]
        st["cell"]["lr_tried"] = sorted(st["tried"])
        st["cell"]["widened"] = st["widened"]
        # A search the deadline cut before its first grid was done has no honest choice to report.
        st["cell"]["searched"] = bool(fixed_lrs) or len(st["tried"]) >= s.lr_points
    return runs


T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}  # Student t, two-sided 95%, by degrees of freedom


def stats(values: list) -> dict:
    """Mean, sample standard deviation, range and a 95% t-interval over seeds (None values: diverged)."""
    values = [v for v in values if v is not None]
    n = len(values)
    if not n:
        return {"mean": None, "std": None, "min": None, "max": None, "ci95": None, "n": 0, "values": []}
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = T95[n - 1] * sd / math.sqrt(n) if n > 1 else 0.0
    return {"mean": mean, "std": sd, "min": min(values), "max": max(values), "ci95": [mean - half, mean + half],
            "n": n, "values": values}


def summarize(cells: list[dict], runs: list[dict], base: dict, s: Settings) -> list[dict]:
    """Per cell: the chosen rate's runs (all seeds) summarized, next to the sweep it came from."""
    full = [r for r in runs if r["cell"] == "full" and r["lr"] == next(c["lr"] for c in cells if c["name"] == "full")]
    full_test = sum(r["test_loss"] for r in full) / len(full) if full else None
    out = []
    for cell in cells:
        mine = sorted((r for r in runs if r["cell"] == cell["name"] and r["lr"] == cell["lr"]), key=lambda r: r["seed"])
        sweep = sorted((r for r in runs if r["cell"] == cell["name"] and r["seed"] == s.seeds[0]), key=lambda r: r["lr"])
        first = mine[0]
        mean_curve = [[pt[0], round(sum(r["val_curve"][i][1] for r in mine) / len(mine), 4),
                       round(sum(r["val_curve"][i][2] for r in mine) / len(mine), 4)]
                      for i, pt in enumerate(first["val_curve"])]
        best_i = [r["lr"] for r in sweep].index(cell["lr"])
        summary = dict(cell)
        summary.update({
            "label": METHODS[cell["method"]]["label"],
            "at_edge": best_i in (0, len(sweep) - 1),
            "sweep": [{"lr": r["lr"], "val_loss": r["val_loss"], "val_exact": r["val_exact"]} for r in sweep],
            "seeds": [r["seed"] for r in mine],
            "trainable_params": first["trainable_params"], "total_params": first["total_params"],
            "trainable_percent": first["trainable_percent"],
            "val_loss": stats([r["val_loss"] for r in mine]),
            "test_loss": stats([r["test_loss"] for r in mine]),
            "exact_match": stats([r["test_exact"] for r in mine]),
            "gain_fraction": stats([(base["task_test_loss"] - r["test_loss"]) / (base["task_test_loss"] - full_test)
                                    if r["test_loss"] is not None and full_test is not None else None for r in mine]),
            "forget_before": stats([r["forget_before"] for r in mine]),
            "forget_after": stats([r["forget_after"] for r in mine]),
            "forgetting": stats([r["forget_after"] - base["heldout_pretrain_loss"]
                                 if r["forget_after"] is not None else None for r in mine]),
            "start_loss": first["start_loss"],
            "train_seconds": stats([r["train_seconds"] for r in mine]),
            "ms_per_step": stats([r["ms_per_step"] for r in mine]),
            "memory_bytes": first["memory_bytes"],
            "val_curve": mean_curve,
        })
        out.append(summary)
    return out


def lr_by_rank(cells: list[dict], method: str = "lora_qv") -> dict:
    """The chosen rate against rank, per scaling scheme. At r = 8 all schemes give the same update scale, so
    the one r = 8 cell (run once, under "fixed") is every scheme's point there."""
    out = {}
    for scheme in SCHEME_LABEL:
        pts = [[c["rank"], c["lr"], c["at_edge"]] for c in cells
               if c["method"] == method and (c["scheme"] == scheme or c["rank"] == 8)]
        if len({p[0] for p in pts}) > 1:
            out[scheme] = sorted(pts)
    return out


def summarize_spectra(full_runs: list[dict], s: Settings) -> dict:
    """Energy curves per matrix kind, averaged over layers and seeds, and the same for random matrices."""
    by_kind: dict[str, dict] = {}
    for run in full_runs:
        for entry in run["spectra"].values():
            k = by_kind.setdefault(entry["kind"], {"shape": entry["shape"], "update": [], "random": [], "change": []})
            k["update"].append(entry["update"])
            k["random"].append(entry["random"])
            k["change"].append(entry["relative_change"])

    def mean_rows(rows):
        return [round(sum(col) / len(col), 4) for col in zip(*rows)]

    kinds = {kind: {"shape": v["shape"], "matrices": len(v["update"]), "update": mean_rows(v["update"]),
                    "update_min": [round(min(c), 4) for c in zip(*v["update"])],
                    "update_max": [round(max(c), 4) for c in zip(*v["update"])],
                    "random": mean_rows(v["random"]),
                    "relative_change": round(sum(v["change"]) / len(v["change"]), 4)}
             for kind, v in by_kind.items()}
    order = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return {"ranks": list(s.energy_ranks), "kinds": {k: kinds[k] for k in order if k in kinds},
            "greedy_check": [r["greedy_check"] for r in full_runs]}


def baselines(s: Settings) -> dict:
    """Scores that need no training. Loss: a model that writes the record's format perfectly and guesses both
    facts from their base rates. Exact match: always writing the training set's most common record, and (by the
    generator's odds) always writing the most common group and region."""
    from collections import Counter
    ent = data.fact_entropy_nats()
    _, train, _, test = data.make_datasets(s.data_seed, 0, s.n_task_train, s.n_task_val, s.n_task_test)
    answer, _ = Counter(t for _, t in train).most_common(1)[0]
    return {"format_only": {"loss": (ent["group"] + ent["region"]) / ent["tokens_per_record"],
                            "group_entropy": ent["group"], "region_entropy": ent["region"],
                            "tokens_per_record": ent["tokens_per_record"]},
            "most_common_answer": {"answer": answer, "test_exact_match": sum(t == answer for _, t in test) / len(test),
                                   "expected_exact_match": ent["mode_exact_match"]}}


def library_versions() -> dict:
    import importlib.metadata as md
    import platform
    versions = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return versions


def write_atomically(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(round_floats(obj), indent=1) + "\n")
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a few cells, seed 0, each at the saved run's chosen rate, no sweep (< 2 min idle)")
    parser.add_argument("--out", type=Path, help=f"results JSON (default: {DEFAULT_OUT.relative_to(REPO)}, "
                        f"or {QUICK_OUT.relative_to(REPO)} with --quick)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--lrs-from", type=Path, default=DEFAULT_OUT,
                        help="--quick takes each cell's rate from this results file (the full run's choice), so its "
                             "runs repeat the full run's seed-0 runs; Settings.quick_lr applies where it has none")
    parser.add_argument("--progress", type=Path, help="append each finished run here (JSON lines)")
    parser.add_argument("--resume", action="store_true", help="reuse the runs already in --progress")
    parser.add_argument("--base-dir", type=Path, help="keep the pretrained base here (reused if it is there)")
    parser.add_argument("--deadline", metavar="HH:MM", help="UTC time after which no new run starts")
    parser.add_argument("--earlier", type=Path, metavar="JSON",
                        help="with --resume: a JSON list of the earlier invocations ({command, wall_seconds}) whose "
                             "runs this one reuses; recorded with this one, and their times added to wall_seconds")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers: must be 1 or more")
    if args.resume and not args.progress:
        parser.error("--resume: needs --progress FILE")
    deadline = None
    if args.deadline:
        import datetime as dt
        try:
            hh, mm = (int(x) for x in args.deadline.split(":"))
            now = dt.datetime.now(dt.timezone.utc)
            deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
        except ValueError:
            parser.error("--deadline: a UTC time as HH:MM, e.g. 14:05")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", flush=True)

    set_threads()
    quiet()
    s = Settings()
    import shutil
    import tempfile
    # A private folder by default: a shared scratch folder may be cleaned under us.
    base_dir = args.base_dir or Path(tempfile.mkdtemp(prefix="lora-evidence-base-"))
    base_file = base_dir / "base.json"
    # The base depends on these settings only; a changed cell list or search may reuse it.
    base_keys = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "tie_embeddings", "pretrain_steps",
                 "pretrain_batch", "pretrain_lr", "seq_len", "data_seed")
    made_with = {k: dataclasses.asdict(s)[k] for k in base_keys}
    if args.base_dir and base_file.is_file() and all(
            json.loads(base_file.read_text())["settings"].get(k) == v for k, v in made_with.items()):
        base = json.loads(base_file.read_text())["base"]
        log(f"reusing the base in {base_dir}")
    else:
        log("pretraining the base model")
        base = pretrain_base(s, base_dir, log)
        base_file.write_text(json.dumps({"settings": dataclasses.asdict(s), "base": base}))
    log(f"base: {base['params']:,} parameters, final pretraining loss {base['final_loss']:.3f}")

    import torch
    from transformers import AutoModelForCausalLM
    tok = data.build_tokenizer()
    _, train, val, test = data.make_datasets(s.data_seed, 0, s.n_task_train, s.n_task_val, s.n_task_test)
    length = 2 + max(len(p) + len(t) for p, t in train + val + test)
    heldout = pack_corpus(tok, data.heldout_pretraining(s.data_seed, 40 * s.n_heldout_seqs), s.seq_len)[: s.n_heldout_seqs]
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    base["task_val_loss"], base["task_val_exact_match"] = evaluate(model, *encode_task(tok, val, length))
    base["task_test_loss"], base["task_test_exact_match"] = evaluate(model, *encode_task(tok, test, length))
    base["heldout_pretrain_loss"] = pretraining_loss(model, heldout)
    del model
    log(f"base model on the new task: test loss {base['task_test_loss']:.4f}, exact match "
        f"{base['task_test_exact_match']:.3f}; held-out pretraining loss {base['heldout_pretrain_loss']:.4f}")

    cells = plan_cells(s, args.quick)
    fixed = None
    if args.quick:
        saved = {}
        if args.lrs_from and args.lrs_from.is_file():
            saved = {c["name"]: c["lr"] for c in json.loads(args.lrs_from.read_text()).get("cells", [])}
        fixed = {c["name"]: saved.get(c["name"], s.quick_lr[c["method"]]) for c in cells}
        log(f"rates (from {args.lrs_from.name if saved else 'Settings.quick_lr'}): {fixed}")
    progress = Progress(args.progress, args.resume)
    log(f"{len(cells)} cells: " + ", ".join(c["name"] for c in cells))
    runs = run_search(cells, s, base_dir, args.workers, log, progress, fixed, deadline)
    cut_short = [{"name": c["name"], "rates_tried": c["lr_tried"]} for c in cells if c["lr_tried"] and not c["searched"]]
    cells = [c for c in cells if c["searched"]]  # the deadline never reached these, or cut their first grid

    summary = summarize(cells, runs, base, s)
    chosen_full = [r for r in runs if r["cell"] == "full" and r["lr"] == next(c["lr"] for c in cells if c["name"] == "full")]
    result = {
        "schema": 2,
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["python gpu_labs/evidence/experiment.py", *(sys.argv[1:] if argv is None else argv)]),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(s).items()},
        "library_versions": library_versions(),
        "threads_per_worker": 1, "workers": args.workers,
        "task": {"example_prompt": test[0][0], "example_target": test[0][1], "train_examples": len(train),
                 "val_examples": len(val), "test_examples": len(test), "vocab_size": len(tok),
                 "heldout_pretrain_sequences": len(heldout)},
        "base": base,
        "baselines": baselines(s),
        "cells": summary,
        "lr_by_rank": lr_by_rank(summary),
        "cut_short": cut_short,
        "runs": [{k: r[k] for k in ("cell", "lr", "seed", "val_loss", "val_exact", "test_loss", "test_exact",
                                    "forget_after", "train_seconds")} for r in runs],
        "spectra": summarize_spectra(chosen_full, s) if chosen_full else None,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    this = {"command": result["command"], "wall_seconds": result["wall_seconds"]}
    earlier = json.loads(args.earlier.read_text()) if args.earlier else []
    result["invocations"] = earlier + [this]
    result["wall_seconds"] = round(sum(i["wall_seconds"] for i in result["invocations"]), 1)
    fo = result["baselines"]["format_only"]
    full = next(c for c in summary if c["name"] == "full")
    fo["gain_fraction"] = (base["task_test_loss"] - fo["loss"]) / (base["task_test_loss"] - full["test_loss"]["mean"])
    write_atomically(out, result)
    log(f"wrote {out}")
    for c in summary:
        log(f"  {c['name']:<22} lr {c['lr']:<8g}{' (edge)' if c['at_edge'] else '       '} exact "
            f"{c['exact_match']['mean']:.3f} [{c['exact_match']['ci95'][0]:.3f}, {c['exact_match']['ci95'][1]:.3f}]"
            f"  test loss {c['test_loss']['mean']:.4f}  forgetting {c['forgetting']['mean']:+.4f}")
    if not args.quick:
        log("plots: .venv/bin/python gpu_labs/evidence/plots.py")
    if not args.base_dir:
        shutil.rmtree(base_dir, ignore_errors=True)
    log(f"done in {time.perf_counter() - started:.0f}s")
    return 0


def round_floats(obj, digits: int = 6):
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [round_floats(v, digits) for v in obj]
    return obj


if __name__ == "__main__":
    sys.exit(main())
