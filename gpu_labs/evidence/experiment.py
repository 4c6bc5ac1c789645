"""Does LoRA get most of full fine-tuning's gain with a tiny fraction of the parameters? Measure it.

A small Llama-shaped model (transformers' LlamaConfig, randomly initialised) is pretrained briefly on
a generated corpus (gpu_labs/evidence/data.py), then fine-tuned on a task it never saw (rewrite a
sentence as a record `group=..;region=..`) with full fine-tuning, LoRA at ranks 1-64 on q,v and on every
linear layer, and QLoRA (NF4 base). Same data and steps for all; each method family gets its learning
rate from a small sweep. Three seeds per configuration. Then the low-rank check: the singular values of
full fine-tuning's weight change, next to a Gaussian matrix of the same shape.

Run (CPU is enough, no download; HF_HUB_OFFLINE=1 is set for you):

    .venv/bin/python gpu_labs/evidence/experiment.py --quick   # ~1-2 min on 2 cores, 4 configs, 1 seed
    .venv/bin/python gpu_labs/evidence/experiment.py           # ~10 min on 2 cores, everything

The full run writes snippets/lora_course/data/evidence.json (the site renders it) and the plots in
docs/assets/evidence/. --quick writes runs/evidence/quick.json unless --out says otherwise; its runs are
exactly the full run's seed-0 runs, so the two must agree (tests/evidence checks that).
Memory: well under 1 GB; each worker process uses one thread.
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
    ft_steps: int = 200              # short on purpose, so methods that learn slower show it
    ft_batch: int = 16               # examples per step
    n_task_train: int = 2000         # distinct training prompts (200 x 16 = 3200 examples: 1.6 epochs)
    n_task_val: int = 256            # held-out prompts for loss and exact match
    warmup_steps: int = 10           # linear warmup, then cosine to zero
    eval_every: int = 25             # validation points on the loss curves (each costs about 5 steps)
    lora_alpha_over_r: float = 2.0   # lora_alpha = 2 r, so alpha / r (the update's scale) is the same at every rank
    qlora_rank: int = 8              # peft's default r
    ranks: tuple = (1, 2, 4, 8, 16, 64)
    seeds: tuple = (0, 1, 2)         # fine-tuning seeds (LoRA init and batch order); the base is shared
    # Learning rates: each family's sweep runs at r=8, seed 0; the best final validation loss wins.
    lr_grid: tuple = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    # Fallbacks: --quick takes the saved sweep's rates from evidence.json; the full run logs its own next to these.
    default_lr: dict = field(default_factory=lambda: {
        "full": 1e-3, "lora_qv": 3e-2, "lora_all": 3e-3, "qlora_qv": 3e-2})
    energy_ranks: tuple = (1, 2, 4, 8, 16, 32, 64, 128)  # r at which the update's energy share is reported
# --8<-- [end:settings]


FAMILY_LABEL = {"full": "full fine-tuning", "lora_qv": "LoRA on q,v", "lora_all": "LoRA on all linear",
                "qlora_qv": "QLoRA (NF4) on q,v"}
TARGETS = {"lora_qv": ["q_proj", "v_proj"], "qlora_qv": ["q_proj", "v_proj"], "lora_all": "all-linear"}


def job_name(family: str, rank: int | None) -> str:
    return "full" if family == "full" else f"{family}_r{rank}"


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

def load_for_method(base_dir: Path, family: str, rank: int | None, s: Settings):
    """The base model, set up for one method. Returns the model to train."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if family == "full":
        return AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if family == "qlora_qv":
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
        r=rank, lora_alpha=s.lora_alpha_over_r * rank,  # same alpha / r at every rank
        target_modules=TARGETS[family],                   # ["q_proj", "v_proj"] or "all-linear"
        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)  # freezes the base; B = 0, so training starts at the base model
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


def finetune(job: dict) -> dict:
    """Fine-tune the saved base with one method, learning rate and seed. Runs in a worker process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    set_threads()
    import torch
    quiet()
    s = Settings(**job["settings"])
    family, rank, lr, seed = job["family"], job["rank"], job["lr"], job["seed"]
    tok = data.build_tokenizer()
    _, train, val = data.make_datasets(s.data_seed, 0, s.n_task_train, s.n_task_val)
    length = 2 + max(len(p) + len(t) for p, t in train + val)
    train_ids, train_labels = encode_task(tok, train, length)
    val_ids, val_labels = encode_task(tok, val, length)

    torch.manual_seed(seed)  # LoRA's A init and the batch order
    model = load_for_method(Path(job["base_dir"]), family, rank, s)
    model.train()  # from_pretrained returns eval mode; see the note in the loop on why it stays in train mode
    total = sum(p.numel() for p in model.parameters())
    if family == "qlora_qv":  # a packed parameter holds two 4-bit weights per byte
        total = model.get_nb_trainable_parameters()[1]
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    memory = memory_accounting(model)
    memory["saved_for_backward"] = saved_for_backward_bytes(model, train_ids[: s.ft_batch], train_labels[: s.ft_batch])
    base_weights = None
    if family == "full" and job.get("spectra"):
        base_weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 2}

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

    result = {
        "name": job_name(family, rank), "family": family, "rank": rank, "lr": lr, "seed": seed,
        "trainable_params": n_trainable, "total_params": total,
        "trainable_percent": 100.0 * n_trainable / total,
        "val_loss": curve[-1][1], "exact_match": curve[-1][2], "start_loss": curve[0][1],
        "train_seconds": seconds, "ms_per_step": 1000 * seconds / s.ft_steps, "memory_bytes": memory,
        "val_curve": [[st, round(lo, 4), round(em, 4)] for st, lo, em in curve],
        "train_curve": [[i, round(sum(train_curve[i:i + 5]) / len(train_curve[i:i + 5]), 4)]
                        for i in range(0, len(train_curve), 5)],
    }
    if base_weights is not None:
        result["spectra"] = update_spectra(model, base_weights, s, seed)
        result["greedy_check"] = greedy_check(model, tok, val[:8])
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

def sweep_jobs(s: Settings, families) -> list[dict]:
    rank = {"full": None, "lora_qv": 8, "lora_all": 8, "qlora_qv": s.qlora_rank}
    return [{"family": f, "rank": rank[f], "lr": lr, "seed": 0, "spectra": f == "full"}
            for f in families for lr in s.lr_grid]


def main_jobs(s: Settings, lrs: dict, quick: bool) -> list[dict]:
    if quick:
        configs = [("full", None), ("lora_qv", 1), ("lora_qv", 8), ("lora_all", 8)]
        seeds = (0,)
    else:
        configs = [("full", None)] + [(f, r) for f in ("lora_qv", "lora_all") for r in s.ranks]
        configs.append(("qlora_qv", s.qlora_rank))
        seeds = s.seeds
    return [{"family": f, "rank": r, "lr": lrs[f], "seed": seed, "spectra": f == "full"}
            for f, r in configs for seed in seeds]


def run_jobs(jobs: list[dict], s: Settings, base_dir: Path, workers: int, log) -> list[dict]:
    import multiprocessing as mp
    payload = [dict(job, settings=dataclasses.asdict(s), base_dir=str(base_dir)) for job in jobs]
    results = []
    # Longest first, so the two workers finish together.
    order = sorted(range(len(payload)), key=lambda i: payload[i]["family"] not in ("full", "qlora_qv"))
    with mp.get_context("spawn").Pool(workers) as pool:
        for done, res in enumerate(pool.imap_unordered(finetune, [payload[i] for i in order]), 1):
            log(f"  [{done}/{len(jobs)}] {res['name']:<14} lr {res['lr']:<7g} seed {res['seed']}  "
                f"val loss {res['val_loss']:.4f}  exact {res['exact_match']:.3f}  {res['train_seconds']:.1f}s")
            results.append(res)
    return results


def summarize(runs: list[dict], base_loss: float) -> list[dict]:
    """Mean and spread over seeds per configuration, with the fraction of full fine-tuning's gain."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["name"], []).append(r)
    full_loss = sum(r["val_loss"] for r in groups["full"]) / len(groups["full"])

    def stats(values):
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        return {"mean": mean, "std": sd, "min": min(values), "max": max(values), "values": values}

    out = []
    for name, rs in groups.items():
        rs.sort(key=lambda r: r["seed"])
        first = rs[0]
        steps = [pt[0] for pt in first["val_curve"]]
        mean_curve = [[st, round(sum(r["val_curve"][i][1] for r in rs) / len(rs), 4),
                       round(sum(r["val_curve"][i][2] for r in rs) / len(rs), 4)] for i, st in enumerate(steps)]
        out.append({
            "name": name, "family": first["family"], "rank": first["rank"], "lr": first["lr"],
            "seeds": [r["seed"] for r in rs],
            "trainable_params": first["trainable_params"], "total_params": first["total_params"],
            "trainable_percent": first["trainable_percent"],
            "val_loss": stats([r["val_loss"] for r in rs]),
            "exact_match": stats([r["exact_match"] for r in rs]),
            "gain_fraction": stats([(base_loss - r["val_loss"]) / (base_loss - full_loss) for r in rs]),
            "start_loss": first["start_loss"],
            "train_seconds": stats([r["train_seconds"] for r in rs]),
            "ms_per_step": stats([r["ms_per_step"] for r in rs]),
            "memory_bytes": first["memory_bytes"],
            "val_curve": mean_curve,
            "train_curve": first["train_curve"],
        })
    order = {"full": 0, "lora_qv": 1, "lora_all": 2, "qlora_qv": 3}
    out.sort(key=lambda c: (order[c["family"]], c["rank"] or 0))
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


def annotate(result: dict) -> dict:
    """Figures derived from the task's definition alone (no training): the loss of a model that writes the
    record's format perfectly and guesses both facts from their base rates, and the fraction of full
    fine-tuning's loss gain that such a model would already score."""
    ent = data.fact_entropy_nats()
    loss = (ent["group"] + ent["region"]) / ent["tokens_per_record"]
    base = result["base"]["task_val_loss"]
    full = next(c for c in result["configs"] if c["name"] == "full")["val_loss"]["mean"]
    result["format_only"] = {"val_loss": loss, "gain_fraction": (base - loss) / (base - full),
                             "group_entropy": ent["group"], "region_entropy": ent["region"],
                             "tokens_per_record": ent["tokens_per_record"],
                             # always writing the most common group and region: exact match by luck alone
                             "mode_exact_match": ent["mode_exact_match"]}
    return result


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="4 configurations, seed 0, default learning rates, no sweep (~1-2 min)")
    parser.add_argument("--out", type=Path, help=f"results JSON (default: {DEFAULT_OUT.relative_to(REPO)}, "
                        f"or {QUICK_OUT.relative_to(REPO)} with --quick)")
    parser.add_argument("--annotate", type=Path, metavar="RESULTS",
                        help="only recompute the derived (training-free) figures of an existing results file")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--lrs-from", type=Path, default=DEFAULT_OUT,
                        help="--quick takes each family's learning rate from this results file (the full run's "
                             "sweep), so its runs repeat the full run's seed-0 runs; defaults apply if it is missing")
    args = parser.parse_args(argv)
    if args.annotate:
        args.annotate.write_text(json.dumps(round_floats(annotate(json.loads(args.annotate.read_text()))),
                                            indent=1) + "\n")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", flush=True)

    set_threads()
    quiet()
    s = Settings()
    import tempfile
    # A private folder: the base is rebuilt every run, and a shared scratch folder may be cleaned under us.
    base_dir = Path(tempfile.mkdtemp(prefix="lora-evidence-base-"))
    log("pretraining the base model")
    base = pretrain_base(s, base_dir, log)
    log(f"base: {base['params']:,} parameters, final pretraining loss {base['final_loss']:.3f}")

    import torch
    from transformers import AutoModelForCausalLM
    tok = data.build_tokenizer()
    _, train, val = data.make_datasets(s.data_seed, 0, s.n_task_train, s.n_task_val)
    length = 2 + max(len(p) + len(t) for p, t in train + val)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    base_loss, base_exact = evaluate(model, *encode_task(tok, val, length))
    del model
    log(f"base model on the new task: val loss {base_loss:.4f}, exact match {base_exact:.3f}")

    sweep = []
    lrs = dict(s.default_lr)
    if args.quick and args.lrs_from and args.lrs_from.is_file():
        lrs.update(json.loads(args.lrs_from.read_text())["learning_rates"])
        log(f"learning rates from {args.lrs_from.name}: {lrs}")
    if not args.quick:
        log(f"learning-rate sweep at r=8, seed 0: {len(s.lr_grid) * 4} runs")
        sweep = run_jobs(sweep_jobs(s, list(FAMILY_LABEL)), s, base_dir, args.workers, log)
        for family in FAMILY_LABEL:
            best = min((r for r in sweep if r["family"] == family), key=lambda r: r["val_loss"])
            lrs[family] = best["lr"]
        log(f"chosen learning rates: {lrs} (defaults in Settings: {s.default_lr})")

    jobs = main_jobs(s, lrs, args.quick)
    # The sweep already ran r=8 (and full FT) with seed 0 at the chosen rates: reuse those runs.
    reuse = {(r["family"], r["rank"], r["lr"], r["seed"]): r for r in sweep}
    todo = [j for j in jobs if (j["family"], j["rank"], j["lr"], j["seed"]) not in reuse]
    log(f"main grid: {len(jobs)} runs ({len(jobs) - len(todo)} reused from the sweep)")
    runs = run_jobs(todo, s, base_dir, args.workers, log)
    runs += [reuse[(j["family"], j["rank"], j["lr"], j["seed"])] for j in jobs if j not in todo]

    configs = summarize(runs, base_loss)
    spectra = summarize_spectra([r for r in runs if r["family"] == "full"], s)
    result = {
        "schema": 1,
        "mode": "quick" if args.quick else "full",
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(s).items()},
        "library_versions": library_versions(),
        "threads_per_worker": 1, "workers": args.workers,
        "task": {"example_prompt": val[0][0], "example_target": val[0][1], "train_examples": len(train),
                 "val_examples": len(val), "vocab_size": len(tok)},
        "base": dict(base, task_val_loss=base_loss, task_exact_match=base_exact),
        "learning_rates": lrs,
        "lr_sweep": [{"family": r["family"], "rank": r["rank"], "lr": r["lr"], "val_loss": r["val_loss"],
                      "exact_match": r["exact_match"]} for r in sorted(sweep, key=lambda r: (r["family"], r["lr"]))],
        "configs": configs,
        "spectra": spectra,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    annotate(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(round_floats(result), indent=1) + "\n")
    tmp.replace(out)
    log(f"wrote {out}")
    for c in configs:
        log(f"  {c['name']:<14} {c['trainable_percent']:8.3f}% trainable  val loss {c['val_loss']['mean']:.4f}"
            f" ± {c['val_loss']['std']:.4f}  exact {c['exact_match']['mean']:.3f}  "
            f"gain {c['gain_fraction']['mean']:.3f}")
    if not args.quick:
        log("plots: .venv/bin/python gpu_labs/evidence/plots.py")
    import shutil
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
