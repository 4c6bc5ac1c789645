#!/usr/bin/env bash
# Every GPU check of the labs, on one CUDA GPU (plus FSDP stages when two or more are visible); results as JSON.
#
#   bash gpu_labs/check_gpu.sh [RESULTS_DIR]      (default: gpu_labs/results/<UTC date>)
#
# Writes RESULTS_DIR/summary.json (each stage: exit status, seconds, log file), labs_gpu.json (figures from
# `pytest -m gpu tests/gpu_labs`: trainable params, predicted and measured memory, tokens/s on a random-weight
# Llama-3.2-1B-shaped model), memory_probe.json (the engine's memory probe on a random-weight
# Llama-3.1-8B-shaped config), environment.json (GPU, driver, library versions) and, with 2+ GPUs,
# fsdp_bytes.json (per-rank bytes under real FSDP2 vs loracalc.sharding) and the FSDP lab's log.
# Stages have their own time limits (30 + 240 + 200 s) so the whole run stays under 8 minutes.
# Set GPU_LABS_HUB_MODEL=HuggingFaceTB/SmolLM2-135M (with Hub access) to fine-tune a real small model too.
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
OUT=${1:-gpu_labs/results/$(date -u +%Y-%m-%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export GPU_LABS_RESULTS="$OUT" TOKENIZERS_PARALLELISM=false
[ -n "${GPU_LABS_HUB_MODEL:-}" ] || export HF_HUB_OFFLINE=1

STAGES="$OUT/stages.jsonl"
: > "$STAGES"
stage() {  # stage NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 3 "$OUT/$name.log"
  printf '{"stage": "%s", "exit_status": %d, "seconds": %d, "timed_out": %s, "log": "%s.log"}\n' \
    "$name" "$rc" $((SECONDS - start)) "$([ $rc -eq 124 ] && echo true || echo false)" "$name" >> "$STAGES"
  return $rc
}

NO_GPU=0
stage environment 30 "$PYTHON" - "$OUT/environment.json" <<'PY'
import json, platform, subprocess, sys, time, importlib.metadata as md
import torch
info = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
        "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
for pkg in ("torch", "transformers", "peft", "bitsandbytes", "accelerate"):
    info[pkg] = md.version(pkg)
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=torch.cuda.get_device_name(0), gpu_memory_bytes=props.total_memory,
                compute_capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
    try:
        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(json.dumps(info))
sys.exit(0 if torch.cuda.is_available() else 3)
PY
[ $? -eq 3 ] && NO_GPU=1

if [ $NO_GPU -eq 1 ]; then
  echo "no CUDA GPU visible: nothing measured (the CPU tests are: pytest -m slow tests/gpu_labs)"
else

stage pytest_gpu 240 "$PYTHON" -m pytest -m gpu tests/gpu_labs -q -p no:cacheprovider \
  --junitxml "$OUT/pytest_gpu.xml" -o addopts=""

if [ -f gpu_labs/memory_probe.py ]; then
  # The engine's probe: random weights of Llama-3.1-8B's shape (memory does not depend on their values).
  stage memory_probe 200 "$PYTHON" gpu_labs/memory_probe.py --model llama-3.1-8b --methods lora,qlora \
    --batch-sizes 1 --seq-lens 512,2048 --checkpointing on --output "$OUT/memory_probe.json"
else
  echo '{"stage": "memory_probe", "exit_status": -1, "seconds": 0, "timed_out": false, "log": "gpu_labs/memory_probe.py not found"}' >> "$STAGES"
fi

GPU_COUNT=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPU_COUNT" -ge 2 ]; then
  # Several GPUs: real FSDP2 (NCCL) on a tiny model, each rank's bytes against loracalc.sharding, then the
  # QLoRA lab itself under the shipped FSDP config on 2 GPUs (per-GPU prediction printed before, measured after).
  stage fsdp_bytes 200 "$PYTHON" gpu_labs/fsdp_memory_check.py --world-size 2 --method lora qlora \
    --strategy full-shard shard-grad-op ddp --out "$OUT/fsdp_bytes.json"
  "$PYTHON" gpu_labs/labkit.py tiny-model "$OUT/tiny-llama" > /dev/null 2>&1
  stage fsdp_lab 240 "$PYTHON" -m accelerate.commands.launch --config_file gpu_labs/accelerate_fsdp_qlora.yaml \
    --num_processes 2 --main_process_port 0 gpu_labs/qlora_finetune.py --model "$OUT/tiny-llama" \
    --method qlora --quant-storage bf16 --max-steps 20 --output-dir "$OUT/fsdp_lab"
else
  echo "one GPU: the FSDP stages need two (they run as CPU tests: pytest -m slow tests/gpu_labs/test_fsdp_*.py)"
fi
fi

"$PYTHON" - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
stages = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()]
summary = {"ok": all(s["exit_status"] == 0 for s in stages), "stages": stages,
           "files": sorted(p.name for p in out.iterdir())}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
sys.exit(0 if summary["ok"] else 1)
PY
