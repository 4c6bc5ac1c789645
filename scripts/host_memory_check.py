"""Measure host (CPU) memory of loading, merging and saving a model with the real libraries, on a CPU.

    PYTHONPATH=snippets .venv/bin/python scripts/host_memory_check.py            # every case (about 2 minutes)
    PYTHONPATH=snippets .venv/bin/python scripts/host_memory_check.py load_safetensors merge_save

Builds a random Llama of a few hundred MB (``MODEL_CONFIG``), saves it as sharded safetensors and as one
``pytorch_model.bin``, then runs each case in a fresh Python process and reads the kernel's peak resident set
(``VmHWM`` in ``/proc/self/status``) there. Each case resets the peak (``/proc/self/clear_refs``) after its
imports and setup, so a row is the peak *above* what the process held just before the step: the libraries'
own ~0.5 GB of code and the setup (a loaded model, for the save case) are left out. Resident pages of a
memory-mapped checkpoint count in that peak as the kernel counts them; the load cases read every weight once
after loading (as any use does), except ``load_untouched``, which measures what loading holds besides the
weights (the libraries' bookkeeping: the tests' tolerance).

Each case runs twice: with glibc's allocator as it comes, and with ``MALLOC_MMAP_THRESHOLD_`` fixed, which stops
glibc from keeping freed temporaries in its heap (the tests compare the second).

Writes ``snippets/lora_course/data/host_memory_check.json`` (rows replaced by case, each with its library
versions and date); ``tests/snippets/test_host_memory.py`` compares ``loracalc.host_memory`` with it.
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "snippets", "lora_course", "data", "host_memory_check.json")
# a Llama of 0.22B parameters: 0.44 GB in bf16, large enough that the libraries' own allocations are noise
MODEL_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 1024,
                "intermediate_size": 2816, "num_hidden_layers": 12, "num_attention_heads": 16,
                "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 2048,
                "tie_word_embeddings": False, "rms_norm_eps": 1e-5, "dtype": "bfloat16"}
SHARD_SIZE = "100MB"          # several shards, as a large checkpoint has
LORA = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}
# the case -> what the engine is asked (loracalc.host_memory.host_memory's arguments)
CASES = {
    "load_safetensors": {"stage": "load", "checkpoint": "safetensors", "load_to": "cpu", "method": "lora"},
    "load_safetensors_fp32": {"stage": "load", "checkpoint": "safetensors", "load_to": "cpu", "load_dtype": "fp32",
                              "method": "lora"},
    "load_bin": {"stage": "load", "checkpoint": "bin", "load_to": "cpu", "method": "lora"},
    "load_untouched": {"stage": "load", "checkpoint": "safetensors", "load_to": "cpu", "method": "lora"},
    "load_full_copy": {"stage": "load", "checkpoint": "full-copy", "load_to": "cpu", "method": "lora"},
    "load_4bit": {"stage": "load", "checkpoint": "safetensors", "load_to": "cpu", "method": "qlora"},
    "merge_4bit_dequantized": {"stage": "merge", "method": "qlora", "merge_base": "4bit", "rank": LORA["r"]},
    # FSDP2 over two gloo processes, FULL_STATE_DICT gathered to rank 0's host memory (rank 0's peak is the row)
    "save_fsdp_full_state_dict": {"stage": "save", "method": "full", "gpus": 2, "strategy": "full-shard",
                                  "state_dict": "full"},
    # the engine's machine-wide count for two processes: the mapped checkpoint once
    "load_shared": {"stage": "load", "checkpoint": "safetensors", "load_to": "cpu", "method": "lora", "gpus": 2},
    "merge_save": {"stage": "merge", "method": "lora", "checkpoint": "safetensors", "rank": LORA["r"],
                   "max_shard_size": SHARD_SIZE},
    "save_full_checkpoint": {"stage": "save", "method": "full", "training_on": "cpu"},
}


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


def _rollup() -> dict[str, int]:
    """This process's resident pages, with those it shares with other processes (/proc/self/smaps_rollup)."""
    keys = {"Rss": "rss_bytes", "Pss": "pss_bytes", "Shared_Clean": "shared_clean_bytes"}
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[keys[k]] = int(v.split()[0]) * 1024
    return out


def _reset_peak() -> int:
    """Reset VmHWM to the current RSS (Linux >= 4.0) and return that RSS."""
    import gc
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status()["VmRSS"]


def _child(case: str, work: str) -> dict:
    """Run one case in this (fresh) process; return the peak above the reset point."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.set_num_threads(1)
    st_dir, bin_dir = os.path.join(work, "st"), os.path.join(work, "bin")
    if case in ("load_safetensors", "load_bin", "load_untouched", "load_safetensors_fp32"):
        base = _reset_peak()
        model = AutoModelForCausalLM.from_pretrained(bin_dir if case == "load_bin" else st_dir,
                                                     dtype=torch.float32 if case.endswith("fp32") else torch.bfloat16)
        if case != "load_untouched":   # any use reads every page of the weights (here: a sum of each)
            with torch.no_grad():
                for p in model.parameters():
                    p.sum()
    elif case == "load_full_copy":
        # transformers 4.x with low_cpu_mem_usage=False: a model built (and initialized) in memory, then the
        # whole checkpoint read into a second copy with torch.load, then copied into the model
        base = _reset_peak()
        config = AutoConfig.from_pretrained(bin_dir)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        sd = torch.load(os.path.join(bin_dir, "pytorch_model.bin"), map_location="cpu", weights_only=True, mmap=False)
        model.load_state_dict(sd, strict=False)
        del sd
    elif case == "merge_save":
        from peft import LoraConfig, get_peft_model
        base = _reset_peak()
        model = AutoModelForCausalLM.from_pretrained(st_dir, dtype=torch.bfloat16)
        model = get_peft_model(model, LoraConfig(init_lora_weights=False, **LORA))
        merged = model.merge_and_unload()
        merged.save_pretrained(os.path.join(work, "merged"), max_shard_size=SHARD_SIZE)
    elif case == "load_shared":
        # a second process loading the same files while the first holds them: the weights' pages are shared
        base = _reset_peak()
        model = AutoModelForCausalLM.from_pretrained(st_dir, dtype=torch.bfloat16)
        with torch.no_grad():
            for p in model.parameters():
                p.sum()
        if os.environ.get("HOLD"):
            print("ready", flush=True)
            sys.stdin.readline()
            return {}
        out = _rollup()
    elif case in ("load_4bit", "merge_4bit_dequantized"):
        # bitsandbytes quantizes while loading (on the CPU here); the merge dequantizes the whole base to bf16
        # first (transformers' dequantize), then merges as into a 16-bit base
        from transformers import BitsAndBytesConfig
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        base = _reset_peak()
        model = AutoModelForCausalLM.from_pretrained(st_dir, dtype=torch.bfloat16, quantization_config=q,
                                                     device_map="cpu")
        if case == "merge_4bit_dequantized":
            from peft import LoraConfig, get_peft_model
            model = model.dequantize()
            model = get_peft_model(model, LoraConfig(init_lora_weights=False, **LORA))
            model.merge_and_unload().save_pretrained(os.path.join(work, "merged4"), max_shard_size=SHARD_SIZE)
        else:   # read the weights left in bf16 (views of the mapped file); the 4-bit ones are new tensors
            with torch.no_grad():
                for p in model.parameters():
                    if p.dtype != torch.uint8:
                        p.sum()
    elif case == "save_full_checkpoint":
        # Trainer's _save_checkpoint for a full fine-tune: the model's safetensors, then torch.save of the
        # optimizer's state dict, with AdamW's two moments already made by one step (fp32 training on a CPU)
        model = AutoModelForCausalLM.from_pretrained(st_dir, dtype=torch.float32)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        model.zero_grad(set_to_none=True)
        base = _reset_peak()
        ck = os.path.join(work, "checkpoint-1")
        model.save_pretrained(ck)
        torch.save(opt.state_dict(), os.path.join(ck, "optimizer.pt"))
    else:
        raise SystemExit(f"unknown case {case!r}; choose from {', '.join(CASES)}")
    s = _status()
    extra = out if case == "load_shared" else {}
    versions = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                "safetensors": md.version("safetensors")}
    if case.startswith("merge"):
        versions["peft"] = md.version("peft")
    if "4bit" in case:
        versions["bitsandbytes"] = md.version("bitsandbytes")
    return {"case": case, "peak_above_start_bytes": s["VmHWM"] - base, "rss_at_start_bytes": base,
            "rss_after_bytes": s["VmRSS"], **extra, "versions": versions, "date": dt.date.today().isoformat()}


def _prepare(work: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig
    torch.manual_seed(0)
    cfg = LlamaConfig(**{k: v for k, v in MODEL_CONFIG.items() if k not in ("model_type", "architectures")})
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(os.path.join(work, "st"), max_shard_size=SHARD_SIZE)
    os.makedirs(os.path.join(work, "bin"), exist_ok=True)
    model.config.save_pretrained(os.path.join(work, "bin"))
    torch.save(model.state_dict(), os.path.join(work, "bin", "pytorch_model.bin"))
    # written back to disk, as a downloaded checkpoint is: two processes mapping pages still dirty in the page
    # cache were measured to share none of them (151 MB shared, the libraries' code, against 565 MB after sync)
    os.sync()


# glibc raises its mmap threshold each time a large block is freed, so later temporaries come from the heap, which
# keeps freed memory; fixing the threshold at its starting value (128 KiB) measures the tensors without that
FIXED_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def _run(case: str, work: str, extra_env: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "snippets"), "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra_env}
    r = subprocess.run([sys.executable, __file__, "--child", case, work], capture_output=True, text=True, env=env,
                       check=False)
    if r.returncode:
        raise SystemExit(f"{case} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _fsdp_rank(rank: int, work: str, port: int, out: str) -> None:
    """One of two gloo processes: a full fine-tune's model and AdamW state sharded with FSDP2, then the whole
    state dict and optimizer state gathered into rank 0's host memory (cpu_offload, as FULL_STATE_DICT with
    rank0_only does)."""
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    model = AutoModelForCausalLM.from_pretrained(os.path.join(work, "st"), dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    model.zero_grad(set_to_none=True)
    dist.barrier()
    base = _reset_peak()
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=options)
    osd = get_optimizer_state_dict(model, opt, options=options)
    dist.barrier()
    s = _status()
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"peak_above_start_bytes": s["VmHWM"] - base, "rss_at_start_bytes": base,
                       "rss_after_bytes": s["VmRSS"], "gathered_tensors": len(msd) + len(osd.get("state", {}))}, f)
    dist.destroy_process_group()


def _fsdp(work: str, extra_env: dict) -> dict:
    """save_fsdp_full_state_dict: two processes, rank 0's peak while the full state dicts are gathered."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = os.path.join(work, "fsdp.json")
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "snippets"), "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra_env}
    procs = [subprocess.Popen([sys.executable, __file__, "--fsdp-rank", str(r), work, str(port), out], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("save_fsdp_full_state_dict failed:\n" + "\n".join(e[-1500:] for e in errs))
    import importlib.metadata as meta
    import torch
    row = json.load(open(out))
    row.update(case="save_fsdp_full_state_dict", versions={"torch": torch.__version__.split("+")[0],
               "transformers": meta.version("transformers")}, date=dt.date.today().isoformat())
    return row


def _shared(work: str, extra_env: dict) -> dict:
    """load_shared: a first process loads and holds the model, a second loads it too and reads its own pages."""
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "snippets"), "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra_env}
    holder = subprocess.Popen([sys.executable, __file__, "--child", "load_shared", work], env={**env, "HOLD": "1"},
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        while holder.stdout.readline().strip() != "ready":
            if holder.poll() is not None:
                raise SystemExit("load_shared: the first process failed")
        return _run("load_shared", work, extra_env)
    finally:
        holder.communicate("go\n", timeout=60)


def measure(cases: list[str], work: str) -> list[dict]:
    """Each case twice, in fresh processes: with glibc's default allocator settings, then with its mmap threshold
    fixed (``peak_fixed_threshold_bytes``, what the tests compare)."""
    rows = []
    for case in cases:
        run = {"load_shared": _shared, "save_fsdp_full_state_dict": _fsdp}.get(case) or (
            lambda w, e, c=case: _run(c, w, e))
        row = run(work, {})
        row["peak_fixed_threshold_bytes"] = run(work, FIXED_THRESHOLD)["peak_above_start_bytes"]
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    if argv[:1] == ["--fsdp-rank"]:
        _fsdp_rank(int(argv[1]), argv[2], int(argv[3]), argv[4])
        return 0
    if argv[:1] == ["--child"]:
        print(json.dumps(_child(argv[1], argv[2])))
        return 0
    cases = argv or list(CASES)
    with tempfile.TemporaryDirectory(prefix="host-mem-") as work:
        _prepare(work)
        rows = measure(cases, work)
    old = json.load(open(OUT)) if os.path.exists(OUT) else {"rows": []}
    keep = [r for r in old["rows"] if r["case"] not in cases]
    for r in rows:
        r["engine"] = CASES[r["case"]]
    out = {"what": "peak resident memory above the step's start, in a fresh process on a CPU "
                   "(scripts/host_memory_check.py)", "model_config": MODEL_CONFIG, "shard_size": SHARD_SIZE,
           "rows": sorted(keep + rows, key=lambda r: r["case"])}
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    for r in rows:
        print(f"{r['case']:<24} peak above start {r['peak_above_start_bytes'] / 1e6:8.1f} MB, "
              f"{r['peak_fixed_threshold_bytes'] / 1e6:8.1f} MB with the mmap threshold fixed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
