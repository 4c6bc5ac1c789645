"""Shared helpers for the labs: batches and the probe loss, device checks, memory readings, and the command
that builds a tiny model for trying the labs (and testing them) without a download. Errors, paths and
atomic folders live in core.py (re-exported here for the labs' convenience), data layouts and the loss mask
in labdata.py, the model families and 4-bit settings in labmodels.py.

Only the standard library is imported at module level, so a lab's `--help` stays instant.
torch, transformers and tokenizers are imported inside the functions that need them.

Build the tiny model once, then point any lab at it:

    python gpu_labs/labkit.py tiny-model runs/tiny-llama
    python gpu_labs/labkit.py tiny-model runs/tiny-gpt2 --family gpt2 --chat-template
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

if not __package__:  # run as `python gpu_labs/labkit.py`: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from gpu_labs import labdata, labmodels
from gpu_labs.core import (COMPLETE_MARKER, DEFAULT_DATASET, LABS_DIR, LabError, atomic_directory,  # noqa: F401
                           dir_size_bytes, human_bytes, is_complete, library_versions, quiet_libraries, run_cli)


# --- data (the formats and the masking live in labdata.py) -------------------------------------------

def load_instruction_jsonl(path: str | os.PathLike, instruction_field: str = "instruction",
                           response_field: str = "response") -> list[dict]:
    """Single-turn rows as {"instruction", "response"}, from any layout labdata reads."""
    rows = []
    for messages in labdata.load_conversations(path, instruction_field, response_field):
        users = [m["content"] for m in messages if m["role"] == "user"]
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        rows.append({"instruction": users[0] if users else "", "response": answers[-1]})
    return rows


def tokenize_pairs(rows: list[dict], tokenizer, seq_len: int) -> list[dict]:
    """Token ids and answer-only labels for instruction/response rows (see labdata.tokenize_conversation)."""
    conversations = [[{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["response"]}]
                     for r in rows]
    return labdata.tokenize_conversations(conversations, tokenizer, seq_len)


def pack_examples(examples: list[dict], seq_len: int) -> list[dict]:
    """Concatenate examples and cut the stream into blocks of exactly seq_len tokens (the last partial
    block is dropped). No padding is wasted, and every batch has the shape memory estimates assume.
    Attention still spans example boundaries inside a block, the usual trade-off of simple packing."""
    ids, labels = [], []
    for ex in examples:
        ids += ex["input_ids"]
        labels += ex["labels"]
    blocks = [{"input_ids": ids[i:i + seq_len], "labels": labels[i:i + seq_len]}
              for i in range(0, len(ids) - seq_len + 1, seq_len)]
    if not blocks:
        raise LabError(f"--pack: the whole dataset is {len(ids)} tokens, less than one --seq-len {seq_len} block. "
                       "Lower --seq-len or drop --pack.")
    return blocks


def pad_collate(pad_token_id: int):
    """Right-pad a batch to its longest example; padding is masked out of attention and loss."""
    import torch

    def collate(batch: list[dict]) -> dict:
        width = max(len(ex["input_ids"]) for ex in batch)
        ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ex in enumerate(batch):
            n = len(ex["input_ids"])
            ids[i, :n] = torch.tensor(ex["input_ids"])
            labels[i, :n] = torch.tensor(ex["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


def probe_loss(model, examples: list[dict], pad_token_id: int, count: int = 16) -> float:
    """Mean loss per response token on the first `count` examples, in eval mode (no dropout): a fixed
    yardstick to compare base vs adapter, and a saved adapter vs the same adapter reloaded."""
    import torch

    batch = pad_collate(pad_token_id)(examples[:count])
    device = next(p for p in model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss = model(**{k: v.to(device) for k, v in batch.items()}).loss.item()
    model.train(was_training)
    return loss


# --- devices and memory --------------------------------------------------------------------------

def resolve_compute_dtype(name: str):
    """Map --compute-dtype to a torch dtype and fail early where the hardware cannot do it."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp32"  # bf16 matmuls on most CPUs are emulated and slow
    if name == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        gpu = torch.cuda.get_device_name(0)
        raise LabError(f"--compute-dtype bf16: {gpu} has no bf16 support (it needs compute capability 8.0+, "
                       "e.g. A100, L4, RTX 30xx or newer). Use --compute-dtype fp16 (watch for loss spikes: "
                       "fp16 overflows more easily) or a newer GPU.")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def require_cuda(option: str, fix: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise LabError(f"{option} needs a CUDA GPU and none is visible (torch {torch.__version__}, "
                       f"CUDA build: {torch.version.cuda or 'no'}). {fix}")


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def memory_now_bytes() -> int:
    """Memory in use now: CUDA tensors on a GPU, else this process's resident set."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.memory_allocated()
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return 0


def peak_memory() -> tuple[int, str]:
    """(bytes, what was measured): CUDA's peak allocation on a GPU, else the process's peak RSS."""
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated"
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak RSS of this process (CPU run)"


def gpu_name() -> str | None:
    """The GPU's name as CUDA (or ROCm) reports it, or None on a CPU run."""
    import torch

    return torch.cuda.get_device_name(torch.cuda.current_device()) if torch.cuda.is_available() else None


def gpu_total_bytes() -> int | None:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    return None




# --- the tiny models (built in labmodels.py) -----------------------------------------------------------

def build_tiny_model(out_dir: str | os.PathLike, vocab_size: int = 512, seed: int = 0,
                     corpus: str | os.PathLike = DEFAULT_DATASET, family: str = "llama",
                     intermediate_size: int | None = None, chat_template: bool = False) -> Path:
    """A random-weight model of `family` and a BPE tokenizer trained on `corpus` (labmodels.build_tiny_model)."""
    return labmodels.build_tiny_model(out_dir, family=family, vocab_size=vocab_size, seed=seed, corpus=corpus,
                                      intermediate_size=intermediate_size, chat_template=chat_template)


# Shapes of real models, copied from their published config.json files (meta-llama/Llama-3.2-1B and
# meta-llama/Llama-3.1-8B on the Hugging Face Hub). Memory depends on shapes, not on weight values, so a
# random-weight model of the same shape measures the same memory without a gated download.
REAL_SHAPES = {
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
                         rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True, head_dim=64),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
                         rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False, head_dim=128),
}


def build_random_model(shape: str, out_dir: str | os.PathLike, tokenizer_from: str | os.PathLike | None = None,
                       seed: int = 0) -> Path:
    """Save a random-weight model of a real shape (bf16, built on the GPU if there is one) with the tiny
    BPE tokenizer, whose ids all fall inside the real vocabulary. For memory and speed checks only."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    if shape not in REAL_SHAPES:
        raise LabError(f"unknown shape {shape!r}; known: {', '.join(REAL_SHAPES)}")
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = Path(tokenizer_from) if tokenizer_from else build_tiny_model(Path(tmp) / "tiny")
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **REAL_SHAPES[shape])
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # built directly in bf16: no fp32 copy on the way
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with atomic_directory(out_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return out_dir


def _cli() -> None:
    parser = argparse.ArgumentParser(description="Helpers for the labs.")
    sub = parser.add_subparsers(dest="command", required=True)
    tiny = sub.add_parser("tiny-model", help="write a tiny random-weight Llama + tokenizer to a folder")
    tiny.add_argument("out_dir", help="folder to create (replaced if it exists)")
    tiny.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size of the tokenizer")
    tiny.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    tiny.add_argument("--family", default="llama", help="model family: llama, qwen3, gemma3_text, phi3, qwen3_moe, gpt2, olmo2")
    tiny.add_argument("--intermediate-size", type=int, default=None, help="MLP width (default 128; 160 reproduces the CPU 4-bit shape limit)")
    tiny.add_argument("--chat-template", action="store_true", help="give the tokenizer a chat template (role tokens + Jinja)")
    shaped = sub.add_parser("random-model", help="write a random-weight model of a real shape (bf16) + tiny tokenizer")
    shaped.add_argument("shape", choices=sorted(REAL_SHAPES), help="which published config to copy")
    shaped.add_argument("out_dir", help="folder to create (replaced if it exists)")
    args = parser.parse_args()
    quiet_libraries()
    if args.command == "tiny-model":
        path = build_tiny_model(args.out_dir, vocab_size=args.vocab_size, seed=args.seed, family=args.family,
                                intermediate_size=args.intermediate_size, chat_template=args.chat_template)
        print(f"tiny {args.family} model and tokenizer written to {path}")
    else:
        path = build_random_model(args.shape, args.out_dir)
        print(f"random-weight {args.shape}-shaped model written to {path} ({human_bytes(dir_size_bytes(path))})")


if __name__ == "__main__":
    run_cli(_cli)
