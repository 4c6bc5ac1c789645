"""Rebuild snippets/lora_course/data/published_speed.json from the published tables it records.

    python scripts/published_speed_records.py PATH/TO/fms-acceleration   # a git clone at the commit cited

fms-acceleration's rows are read from its CSV in that clone; torchtune's README figures are typed below with
their commit (pytorch/torchtune README.md, sections 'Optimization flags' and 'Memory and training speed').
The loracalc settings of the torchtune 3B rows mirror those of published_memory.json for the same runs.
"""
import sys
import csv, io, json, subprocess
FMS = sys.argv[1] if len(sys.argv) > 1 else "fms-acceleration"
csvtext = subprocess.run(["git", "-C", FMS, "show", "HEAD:scripts/benchmarks/refs/a100_80gb.csv"], capture_output=True, text=True).stdout
mem = {r["id"]: r for r in json.load(open("snippets/lora_course/data/published_memory.json"))["records"]}
FMS_CIT = ("foundation-model-stack/fms-acceleration scripts/benchmarks/refs/a100_80gb.csv (last changed 24bdadb, 2025-02-07; "
           "snapshot HEAD 876e2ed6fc4e966785e3f4315f5ee3cdf8e3d097), column train_tokens_per_second (HF Trainer's speed_metrics: "
           "tokens one device processed / train_runtime); settings from scripts/benchmarks/scenarios.yaml, defaults.yaml "
           "(use_flash_attn, gradient_checkpointing, max_steps 100, packing to 4096 tokens) and accelerate.yaml (FSDP FULL_SHARD "
           "for 2 GPUs); env refs/requirements.txt (torch 2.4.1, transformers 4.48.1, peft 0.13.2, bitsandbytes 0.43.3, flash-attn 2.7.3)")
MODELS = {"Mistral-7B-v0.1": "mistral-7b", "Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b", "Llama-2-70b-hf": "llama-2-70b"}
recs = []
for row in csv.DictReader(io.StringIO(csvtext)):
    tps = row["train_tokens_per_second"]
    if not tps:
        continue
    fw, model, n, bs = row["framework_config"], row["model_name_or_path"].split("/")[-1], int(row["num_gpus"]), int(row["per_device_train_batch_size"])
    peft = row["peft_method"]
    kind = "full" if not peft else ("lora" if fw in ("none", "foak-fast-kernels") else ("gptq" if "gptq" in fw else "qlora"))
    rid = f"fms:{fw}:{model}:{n}gpu:bs{bs}:{kind}"
    seq = 2048 if "santacoder" in model else 4096
    settings = {"method": kind, "batch_size": bs, "seq_len": seq, "gradient_checkpointing": True,
                "attention": "flash_attention_2", "gpus": n, "strategy": "full-shard" if n > 1 else None,
                "stack": "fused" if "foak" in fw else "eager", "gpu": "a100-80gb"}
    if kind == "full":
        settings["precision"] = "bf16"
    else:
        settings.update(rank=16, targets="q,k,v,o")
    text = (f"{model}, {kind}{' r16 q,k,v,o' if kind != 'full' else ''}, framework {fw or 'none'}, {n} GPU(s) x batch {bs} x {seq} packed, "
            f"checkpointing, FlashAttention-2, bf16, {'FSDP full shard' if n > 1 else 'one GPU'}, 100 steps")
    rec = {"id": rid, "source": "fms-acceleration", "citation": FMS_CIT, "gpu": "NVIDIA A100-SXM4-80GB",
           "gpus": n, "measured": {"tokens_per_second_per_gpu": float(tps), "train_runtime_s": float(row["train_runtime"]),
                                   "tokens_per_second": float(tps) * n},
           "settings_text": text}
    if model not in MODELS or kind == "gptq":
        rec["expressible"] = False
        rec["why_not"] = ("a GPTQ-quantized base: loracalc has no GPTQ method" if kind == "gptq"
                          else "gpt_bigcode (SantaCoder, multi-query attention) is not a loracalc family")
    else:
        rec["expressible"] = True
        rec["loracalc"] = {"model": MODELS[model], "settings": {k: v for k, v in settings.items() if v is not None}}
        # calibrate on one GPU at batch 4; the batch-8 and 2-GPU rows are held out
        rec["calibrate"] = n == 1 and bs == 4
    recs.append(rec)

TT = "pytorch/torchtune"
FLAGS_CIT = (TT + " README.md, section 'Optimization flags', column 'Tokens Per Second' (added in commit 1814feb17 'add flags to readme' "
             "#2003, 2024-11-18; still present at HEAD bd2a0fc7c31430972728494fa01aaeeb0ebf1ba1): Llama-3.2-3B, batch 2, max "
             "sequence length 4096, bf16, A100; each technique added on top of the previous; configs llama3_2/3B_full_single_device.yaml, "
             "3B_lora_single_device.yaml, 3B_qlora_single_device.yaml @1814feb17")
flags = [("+packed", 7075, "full", False, "eager", {}),
         ("+compile", 8998, "full", False, "compiled", {}),
         ("+chunked_ce", 9174, "full", False, "compiled", {}),
         ("+activation_checkpointing", 7210, "full", True, "compiled", {}),
         ("+optimizer_in_bwd", 7309, "full", True, "compiled", {}),
         ("+activation_offloading", 7301, "full", True, "compiled", {}),
         ("+8bit_adamw", 6960, "full", True, "compiled", {"optimizer": "adamw_8bit"}),
         ("lora", 8210, "lora", True, "compiled", {"rank": 64, "targets": "q,v,o,gate,up,down"}),
         ("qlora", 8035, "qlora", True, "compiled", {"rank": 64, "targets": "q,v,o,gate,up,down"})]
for i, (name, tps, method, ckpt, stack, extra) in enumerate(flags):
    s = {"method": method, "batch_size": 2, "seq_len": 4096, "gradient_checkpointing": ckpt, "attention": "sdpa",
         "stack": stack, "gpu": "a100-80gb", "gpus": 1, **extra}
    if method == "full":
        s["precision"] = "bf16"
    recs.append({"id": f"torchtune_flags:{name}", "source": "torchtune", "citation": FLAGS_CIT,
                 "gpu": "NVIDIA A100 (80GB implied: 60 GiB measured in the same table)", "gpus": 1,
                 "measured": {"tokens_per_second": float(tps)},
                 "settings_text": mem.get(f"torchtune_flags:{name}", {}).get("settings_text", name) + f"; {stack}",
                 "expressible": True, "loracalc": {"model": "llama-3.2-3b", "settings": s},
                 "calibrate": name in ("+packed", "+compile", "+activation_checkpointing", "lora")})
MEM_CIT = (TT + " README.md, section 'Memory and training speed', column 'Tokens/sec' ('measured over one full training epoch'; "
           "batch size 2, no gradient accumulation, packed to 2048, torch compile on) (added commit 30b8519e8 'Readme Updates' #1664, "
           "2024-09-24; unchanged at HEAD bd2a0fc7); configs llama3_1/8B_full_single_device.yaml, 8B_lora_single_device.yaml, "
           "8B_qlora_single_device.yaml, 70B_full.yaml, 70B_lora.yaml @30b8519e8")
rows = [("8B_full_4090", "llama-3.1-8b", "rtx-4090", 1, 1650, {"method": "full", "precision": "bf16", "optimizer": "paged_adamw_8bit"}),
        ("8B_full_A6000", "llama-3.1-8b", "rtx-a6000", 1, 2579, {"method": "full", "precision": "bf16", "optimizer": "paged_adamw_8bit"}),
        ("8B_lora_4090", "llama-3.1-8b", "rtx-4090", 1, 3083, {"method": "lora", "rank": 8, "targets": "q,v"}),
        ("8B_lora_A6000", "llama-3.1-8b", "rtx-a6000", 1, 4699, {"method": "lora", "rank": 8, "targets": "q,v"}),
        ("8B_qlora_4090", "llama-3.1-8b", "rtx-4090", 1, 2413, {"method": "qlora", "rank": 8, "targets": "q,k,v,o,gate,up,down"}),
        ("70B_full_8xA100", "llama-3.1-70b", "a100-80gb", 8, 1568, {"method": "full", "precision": "bf16", "strategy": "full-shard", "offload_optimizer": True}),
        ("70B_lora_8xA100", "llama-3.1-70b", "a100-80gb", 8, 3497, {"method": "lora", "rank": 16, "targets": "q,k,v", "strategy": "full-shard"}),
        ("405B_qlora_8xA100", "llama-3.1-405b", "a100-80gb", 8, 653, {"method": "qlora", "rank": 16, "targets": "q,k,v", "strategy": "full-shard"})]
for name, model, gpu, n, tps, extra in rows:
    s = {"batch_size": 2, "seq_len": 2048, "gradient_checkpointing": True, "attention": "sdpa", "stack": "compiled",
         "gpu": gpu, "gpus": n, **extra}
    recs.append({"id": f"torchtune_speed:{name}", "source": "torchtune", "citation": MEM_CIT, "gpu": f"{n}x {gpu}", "gpus": n,
                 "measured": {"tokens_per_second": float(tps)},
                 "settings_text": f"{model} {extra['method']}, batch 2 x 2048 packed, compile, checkpointing, {n} GPU(s)",
                 "expressible": True, "loracalc": {"model": model, "settings": s}, "calibrate": False,
                 "note": ("the README does not say whether Tokens/sec is per GPU or for all GPUs; taken for all 8 together, since per GPU it "
                          "would need about 3x an A100's peak bf16 throughput. The 405B config is not in the commit read; its "
                          "settings are assumed like 70B_lora"
                          if n > 1 else "the README names no attention kernel; SDPA taken")})
LITGPT_CIT = ("Lightning-AI/litgpt config_hub/finetune/README.md, column 'Training runtime' (HEAD "
              "26857050fe3ff627cd714fe92f5838f51a3d5efa): Alpaca2k, bf16, one A10G; the README does not give the tokens "
              "trained, so only the QLoRA / LoRA ratio of one model's rows (same data, same epochs) is compared")
LITGPT = [("falcon-7b", 24.84, 50.85), ("gemma-2b", 9.41, 12.91), ("gemma2-2b", 11.96, 16.06), ("llama-2-7b", 32.82, 45.67),
          ("llama-3.1-8b", 13.36, 21.81), ("llama-3.2-1B", 4.17, 6.20),
          ("llama-3.2-3B", 8.31, 14.89), ("mistral-7b-v0.2", 31.00, 44.75), ("phi-2", 3.78, 4.51), ("phi-3", 6.46, 7.47),
          ("stablelm-base-alpha-3b", 13.07, 25.86), ("tiny-llama", 8.09, 8.70)]
pairs = []
for name, lora_min, qlora_min in LITGPT:
    a, b = mem[f"litgpt:{name}/lora.yaml"], mem[f"litgpt:{name}/qlora.yaml"]
    pairs.append({"id": f"litgpt:{name}", "source": "LitGPT", "citation": LITGPT_CIT, "gpu": "NVIDIA A10G (24 GB, AWS g5)",
                  "measured": {"lora_minutes": lora_min, "qlora_minutes": qlora_min},
                  "lora": {"settings_text": a["settings_text"], "loracalc": a["loracalc"]},
                  "qlora": {"settings_text": b["settings_text"], "loracalc": b["loracalc"]}})

out = {"what": "Published, measured training throughput of LoRA / QLoRA / full fine-tuning runs, with the settings each source "
               "states and the loracalc.speed settings that express them.",
       "quantities": {"tokens_per_second": "tokens trained per second by all GPUs together",
                      "tokens_per_second_per_gpu": "as the source prints it, one device's share"},
       "collected": "2026-12-06, each record's citation names the file and commit read",
       "calibration": "points with calibrate: true set loracalc.speed.EFFICIENCY (one value per stack); the rest are held out",
       "records": recs, "litgpt_pairs": pairs}
json.dump(out, open("snippets/lora_course/data/published_speed.json", "w"), indent=1)
print(len(recs), sum(r["expressible"] for r in recs), sum(r.get("calibrate", False) for r in recs))
