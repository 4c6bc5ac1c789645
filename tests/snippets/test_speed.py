"""The time model: FLOPs against a cited formula and against torch's own count of a real step, the calibration
against the published throughput it was fitted on, the catalog's speed fields, and the `time` command."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

import loracalc
from loracalc.errors import LoraCalcError
from loracalc.gpus import GPUS
from loracalc.speed import EFFICIENCY, estimate_time, run_tokens, step_flops

TINY = dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512, tie_word_embeddings=False)
BATCH, SEQ = 2, 32


# ------------------------------------------------------------------ against cited formulas

def test_full_fine_tuning_is_kaplans_6nd():
    # Kaplan et al. 2020 (arXiv:2001.08361) section 2.1: training costs C ~ 6 N per token, N the non-embedding
    # parameters (the output layer's matmul is one more weight matrix a token passes through); at a short context
    # the attention term (2 n_layer n_ctx d_attn per token forward) is below 1% of it
    arch = loracalc.get_model("llama-3.1-8b")
    n_matmul = loracalc.total_params(arch) - arch.vocab_size * arch.hidden_size * 2 \
        + arch.vocab_size * arch.hidden_size - sum(r.params for r in arch.records if r.kind == "norm")
    fl = step_flops(arch, "full", batch_size=4, seq_len=64, gradient_checkpointing=False)
    assert fl.total == pytest.approx(6 * n_matmul * fl.tokens, rel=0.01)
    assert fl.backward == 2 * fl.forward           # Kaplan: the backward pass costs twice the forward


def test_attention_term_is_chinchillas():
    # Hoffmann et al. 2022 (arXiv:2203.15556) Appendix F: forward attention per layer per sequence is
    # 2 seq^2 key_size heads (logits) + 2 seq^2 key_size heads (the weighted values), eager attention computing
    # the whole score matrix; backward twice the forward (Kaplan et al. 2020); the rest is 6 N per token
    arch = loracalc.get_model("llama-3.2-1b")        # tied embeddings: the output layer is the embedding matrix
    n_matmul = loracalc.total_params(arch) - sum(r.params for r in arch.records if r.kind == "norm")
    b, s = 2, 2048
    fl = step_flops(arch, "full", batch_size=b, seq_len=s, gradient_checkpointing=False, attention="eager")
    attention = 3 * arch.num_hidden_layers * b * (2 + 2) * s * s * arch.head_dim * arch.num_attention_heads
    assert fl.total == 6 * n_matmul * b * s + attention
    causal = step_flops(arch, "full", batch_size=b, seq_len=s, gradient_checkpointing=False, attention="sdpa")
    assert fl.total - causal.total == attention // 2   # a causal fused kernel skips the masked half


def test_lora_skips_frozen_weight_gradients():
    # a frozen weight needs only its input gradient: LoRA's backward is about half of full fine-tuning's
    arch = loracalc.get_model("llama-3.1-8b")
    full = step_flops(arch, "full", batch_size=1, seq_len=512, gradient_checkpointing=False)
    lora = step_flops(arch, "lora", rank=16, batch_size=1, seq_len=512, gradient_checkpointing=False)
    assert 0.48 < lora.backward / full.backward < 0.52
    ckpt = step_flops(arch, "lora", rank=16, batch_size=1, seq_len=512, gradient_checkpointing=True)
    assert ckpt.recompute > 0.9 * (ckpt.forward - 2 * ckpt.tokens * arch.vocab_size * arch.hidden_size)


def test_moe_counts_active_experts_only():
    arch = loracalc.get_model("mixtral-8x7b")     # 2 of 8 experts per token: 12.9B active of 46.7B
    fl = step_flops(arch, "full", seq_len=16, gradient_checkpointing=False)
    per_token = fl.total / fl.tokens / 6
    assert per_token == pytest.approx(12.9e9, rel=0.03)


# ------------------------------------------------------------------ against torch's count of a real step

def _measured_flops(method: str, checkpointing: bool) -> int:
    """torch's own count of one training step's FLOPs (matmuls and attention), tiny Llama on CPU, eager attention;
    checkpointing reentrant, as transformers' default, with peft's enable_input_require_grads."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(**{k: v for k, v in TINY.items()})
    cfg._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(cfg)
    if method == "lora":
        peft = pytest.importorskip("peft")
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=8, target_modules="all-linear"))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    ids = torch.randint(0, TINY["vocab_size"], (BATCH, SEQ))
    with FlopCounterMode(display=False) as fc:
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
    return fc.get_total_flops()


@pytest.mark.slow   # four one-step runs, about 15 s each on two cores
@pytest.mark.parametrize("method, checkpointing", [("full", False), ("lora", False), ("lora", True), ("full", True)])
def test_step_flops_equal_torchs_count(method, checkpointing):
    measured = _measured_flops(method, checkpointing)
    arch = loracalc.model_from_config(dict(TINY))
    fl = step_flops(arch, method, rank=8, targets="all-linear", batch_size=BATCH, seq_len=SEQ,
                    gradient_checkpointing=checkpointing, attention="eager")
    assert fl.total == measured


# ------------------------------------------------------------------ against published throughput

def test_calibration_reproduces_the_engines_efficiency():
    from lora_course import published_speed
    fitted = published_speed.calibrate()
    for stack, eff in EFFICIENCY.items():
        assert fitted[stack] == pytest.approx(eff, abs=0.002), stack


def test_published_speed_median_within_goal():
    from lora_course import published_speed
    pts = published_speed.points()
    assert len(pts) >= 30
    assert statistics.median(abs(p.error_percent) for p in pts) <= published_speed.GOAL_PERCENT
    held = [abs(p.error_percent) for p in pts if not p.rec.get("calibrate")]
    assert len(held) >= 30 and statistics.median(held) <= published_speed.GOAL_PERCENT


def test_published_speed_records_cite_their_source():
    from lora_course import published_speed
    for r in published_speed.records():
        assert r["citation"] and r["settings_text"] and r["measured"]["tokens_per_second"] > 0
        assert r["expressible"] or r["why_not"]


def test_litgpt_qlora_over_lora_ratio():
    # LitGPT's config hub run times on one A10G: QLoRA's time over LoRA's for the same data and epochs
    from lora_course import published_speed
    rs = published_speed.ratios()
    assert len(rs) >= 10
    assert statistics.median(abs(r.error_percent) for r in rs) <= 10
    assert all(r.predicted > 1 for r in rs)


def test_qlora_is_slower_than_lora_where_the_batch_is_small():
    # LitGPT's config hub (Lightning-AI/litgpt config_hub/finetune/README.md): Llama-3.1-8B on one A10G,
    # micro-batch 1-2 x 512, LoRA 13.36 min vs QLoRA 21.81 min for the same epochs
    kw = dict(rank=32, targets="q,v", seq_len=512, gradient_checkpointing=False)
    lora = estimate_time("llama-3.1-8b", "a10", "lora", batch_size=1, **kw)
    qlora = estimate_time("llama-3.1-8b", "a10", "qlora", batch_size=1, **kw)
    assert qlora.tokens_per_second < lora.tokens_per_second


# ------------------------------------------------------------------ run size, cost, catalog

def test_run_size_and_cost():
    e = estimate_time("llama-3.2-1b", "h100-80gb", "lora", samples=1000, avg_tokens=500, epochs=2,
                      price_per_gpu_hour=2.0)
    assert e.total_tokens == 1_000_000
    assert e.gpu_hours == pytest.approx(e.total_seconds / 3600)
    assert e.cost == pytest.approx(2.0 * e.gpu_hours)
    two = estimate_time("llama-3.2-1b", "h100-80gb", "lora", tokens=10**6, gpus=2, strategy="ddp")
    assert two.tokens_per_second > e.tokens_per_second       # two GPUs together


@pytest.mark.parametrize("kw", [dict(tokens=0), dict(tokens=5, samples=3, avg_tokens=2), dict(samples=10),
                                dict(samples=10, avg_tokens=10, epochs="x"), dict(tokens=10, price_per_gpu_hour="x"),
                                dict(tokens=10, gpus=2, strategy="single"), dict(tokens=10, stack="jax")])
def test_bad_input_is_one_clear_error(kw):
    with pytest.raises(LoraCalcError):
        estimate_time("llama-3.2-1b", "a10", "lora", **kw)


def test_every_gpu_has_cited_speed_figures():
    """Every data-center and NVIDIA card has cited speed figures; the Radeon cards and Macs (added for their memory
    and what they cannot run) have none yet, and the time estimate refuses them in one line instead of guessing."""
    for g in GPUS.values():
        if g.platform in ("rocm-rdna", "mps"):
            assert not g.peak_bf16_tflops and not g.speed_source, g.name
            with pytest.raises(LoraCalcError, match="no cited peak throughput"):
                estimate_time("llama-3.2-1b", g.name, "lora", tokens=10)
            continue
        assert g.peak_bf16_tflops > 0 and g.memory_bandwidth_gbs > 0 and g.link_gbs > 0 and g.pcie_gbs > 0, g.name
        assert g.speed_source, g.name
        assert not g.price_per_hour or g.price_source, g.name
    # datasheet figures (NVIDIA A100 and H100 SXM datasheets: 312 and 989 dense bf16 TFLOPS)
    assert GPUS["a100-80gb"].peak_bf16_tflops == 312 and GPUS["h100-80gb"].peak_bf16_tflops == 989


def test_run_tokens_from_samples():
    assert run_tokens(samples=2000, avg_tokens=300, epochs=2) == 1_200_000
    assert run_tokens(tokens="1e6") == 1_000_000


# ------------------------------------------------------------------ the command

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "loracalc", *args], capture_output=True, text=True, timeout=60)


def test_time_json_contract():
    p = _cli("time", "--model", "llama-3.1-8b", "--method", "qlora", "--gpu", "a10", "--samples", "2000",
             "--avg-tokens", "300", "--epochs", "2", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    for key in ("tokens_per_second", "seconds_per_step", "total_seconds", "gpu_hours", "cost"):
        assert out[key] > 0, key
    assert out["total_tokens"] == 1_200_000
    assert out["price_per_gpu_hour"] == GPUS["a10"].price_per_hour


def test_time_several_gpus_and_price():
    p = _cli("time", "--model", "llama-3.1-8b", "--method", "lora", "--gpu", "h100-80gb", "--gpus", "4",
             "--strategy", "full-shard", "--tokens", "1e8", "--price-per-gpu-hour", "3", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["gpus"] == 4 and out["cost"] == pytest.approx(3 * out["gpu_hours"])
    assert "communication" in out["seconds_by_term"]


@pytest.mark.parametrize("args", [("time",), ("time", "--gpu", "a10", "--tokens", "-5"),
                                  ("time", "--gpu", "a10", "--price-per-gpu-hour", "abc"),
                                  ("time", "--gpu", "nope"), ("time", "--gpu", "a10", "--samples", "10")])
def test_time_bad_input_exits_2(args):
    p = _cli(*args)
    assert p.returncode == 2
    assert p.stderr.startswith("loracalc: error:") and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
