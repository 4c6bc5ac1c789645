"""Per-GPU memory under data parallel, FSDP SHARD_GRAD_OP and FULL_SHARD: structure checked against the single-GPU
estimate and against transformers' own model on the meta device. The bytes a real FSDP2 run holds per rank
are checked in tests/gpu_labs/test_fsdp_bytes.py."""
from __future__ import annotations

import pytest

from loracalc.choices import CHOICES

from loracalc import LoraCalcError, estimate_memory, get_model
from loracalc.sharding import (RULES, STRATEGIES, estimate_sharded, gpus_needed, layer_sizes, shard_estimate,
                               smallest_gpu_count)

NO_CTX = dict(cuda_overhead=False)


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_one_gpu_data_parallel_is_the_single_gpu_estimate(method):
    est = estimate_memory("llama-3.1-8b", method=method)
    sh = shard_estimate(est, "llama-3.1-8b", 1, "ddp")
    assert sh.per_gpu_bytes == est.total_bytes
    assert sh.host_bytes_total == 0


def test_every_term_key_of_the_memory_model_has_a_rule():
    # an unknown key is kept whole (safe), but the keys memory.py produces today should all be known
    for method in ("lora", "qlora", "full", "lora_8bit"):
        for options in ({}, {"dora": True}, {"gradient_checkpointing": False}, {"activation_offload": True},
                        {"optimizer_in_backward": True}, {"lora_dropout": 0.1, "old_bitsandbytes": True},
                        {"recipe": "litgpt", "gradient_checkpointing": False},
                        *({"base_format": f} for f in CHOICES["base_format"] if f not in ("bf16", "torchao-int4"))):
            if method == "full" and options.get("dora"):
                continue
            if "base_format" in options and method != "lora":
                continue
            est = estimate_memory("llama-3.1-8b", method=method, **options)
            for t in est.terms + est.off_peak + est.host:
                assert t.key in RULES, (method, options, t.key)


def test_full_shard_divides_what_is_sharded_and_keeps_activations_whole():
    est = estimate_memory("llama-3.1-70b", method="lora", **NO_CTX)
    b = est.breakdown
    for n in (2, 8):
        sh = shard_estimate(est, "llama-3.1-70b", n, "full-shard").breakdown
        assert sh["weights"] == -(-b["weights"] // n)
        assert sh["adapter"] == -(-b["adapter"] // n)
        assert sh["optimizer"] == -(-b["optimizer"] // n)
        assert sh["activations"] == b["activations"] and sh["logits"] == b["logits"]


def test_root_group_and_layer_sizes_match_transformers_on_meta():
    pytest.importorskip("transformers")
    from tests.snippets.hf import meta_model

    arch = get_model("llama-3.1-8b")
    model = meta_model(arch)
    layer0 = sum(p.numel() for p in model.model.layers[0].parameters())
    root = sum(p.numel() for n, p in model.named_parameters() if ".layers." not in n)
    sizes = layer_sizes(arch, {"rank": 16, "targets": "all-linear"})
    assert sizes["layer"] == layer0
    assert sizes["root"] == root


def test_shard_grad_op_holds_the_whole_model_gathered():
    est = estimate_memory("llama-3.1-8b", method="lora", **NO_CTX)
    zero2 = shard_estimate(est, "llama-3.1-8b", 8, "shard-grad-op").breakdown
    zero3 = shard_estimate(est, "llama-3.1-8b", 8, "full-shard").breakdown
    # bf16 gathered copy of every base weight plus the adapters cast to bf16
    assert zero2["gathered"] == est.breakdown["weights"] + est.breakdown["adapter"] // 2
    assert zero3["gathered"] < zero2["gathered"]


def test_4bit_statistics_stay_on_every_gpu():
    est = estimate_memory("llama-3.1-70b", method="qlora", **NO_CTX)
    sh = shard_estimate(est, "llama-3.1-70b", 8, "full-shard").breakdown
    # packed codes are half a byte per quantizable weight, the rest of the term is statistics
    # Llama-3.1-70B: 70,553,706,496 params (FACTS.md) less embeddings and lm_head (128,256 x 8,192 each)
    # and 161 norms of 8,192 are the 4-bit linear weights, two per byte
    quantizable = 70_553_706_496 - 2 * 128_256 * 8_192 - 161 * 8_192
    assert sh["weights_4bit"] * 8 == quantizable // 2
    assert sh["weights_4bit"] * 8 + sh["weights_4bit_stats"] == est.breakdown["weights_4bit"]
    assert sh["weights_4bit_stats"] > 0


def test_offload_moves_bytes_to_the_host():
    est = estimate_memory("llama-3.1-70b", method="lora", **NO_CTX)
    on = shard_estimate(est, "llama-3.1-70b", 4, "full-shard")
    opt = shard_estimate(est, "llama-3.1-70b", 4, "full-shard", offload_optimizer=True)
    par = shard_estimate(est, "llama-3.1-70b", 4, "full-shard", offload_params=True)
    assert opt.breakdown["optimizer"] == 0 and opt.host_bytes_per_gpu == on.breakdown["optimizer"]
    assert par.breakdown["weights"] == 0 and par.breakdown["optimizer"] == 0
    assert on.per_gpu_bytes - par.per_gpu_bytes == par.host_bytes_per_gpu
    assert par.host_bytes_total == 4 * par.host_bytes_per_gpu


def test_unknown_term_is_kept_whole_and_named():
    est = estimate_memory("llama-3.1-8b", method="lora", **NO_CTX)
    from dataclasses import replace

    from loracalc.memory import Term
    odd = replace(est, terms=est.terms + (Term("new_buffer", "A new buffer", 1000, "x"),))
    sh = shard_estimate(odd, "llama-3.1-8b", 4, "full-shard")
    assert sh.breakdown["new_buffer"] == 1000
    assert any("new_buffer" in n for n in sh.notes)


def test_per_gpu_memory_never_grows_with_more_gpus():
    est = estimate_memory("llama-3.1-70b", method="qlora")
    for s in ("shard-grad-op", "full-shard"):
        seq = [shard_estimate(est, "llama-3.1-70b", n, s).per_gpu_bytes for n in (1, 2, 3, 4, 8, 16, 64)]
        assert seq == sorted(seq, reverse=True)


def test_smallest_gpu_count_is_the_first_count_that_fits():
    from loracalc.gpus import get_gpu

    cap = get_gpu("rtx-4090").memory_bytes
    n = smallest_gpu_count("llama-3.1-70b", "rtx-4090", "full-shard", method="qlora")
    assert n is not None and n > 1
    assert estimate_sharded("llama-3.1-70b", n, "full-shard", method="qlora").per_gpu_bytes <= cap
    assert estimate_sharded("llama-3.1-70b", n - 1, "full-shard", method="qlora").per_gpu_bytes > cap
    need = gpus_needed("llama-3.1-70b", "rtx-4090", method="qlora")
    assert set(need) == set(STRATEGIES) and need["ddp"] is None and need["full-shard"] == n


@pytest.mark.parametrize("kw, field", [
    (dict(gpus=0), "gpus"), (dict(gpus="two"), "gpus"), (dict(strategy="zero9"), "strategy"),
    (dict(strategy="ddp", offload_params=True), "strategy"), (dict(offload_optimizer="maybe"), "offload_optimizer"),
])
def test_bad_input_names_the_field(kw, field):
    with pytest.raises(LoraCalcError) as err:
        estimate_sharded("llama-3.1-8b", **{"gpus": 2, "strategy": "full-shard", **kw})
    assert err.value.field == field and "\n" not in str(err.value)


def _cli(*args):
    import contextlib
    import io

    from loracalc.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_cli_per_gpu_json_is_the_library_result():
    import json

    code, out, _ = _cli("memory", "--model", "llama-3.1-70b", "--method", "lora", "--gpus", "8",
                        "--strategy", "full-shard", "--gpu", "a100-80gb", "--json")
    assert code == 0
    d = json.loads(out)
    lib = estimate_sharded("llama-3.1-70b", 8, "full-shard", method="lora")
    assert d["per_gpu_bytes"] == lib.per_gpu_bytes and d["gpus"] == 8
    assert d["gpu"]["gpus_needed"]["full-shard"] == smallest_gpu_count("llama-3.1-70b", "a100-80gb", method="lora")


def test_cli_offload_table_shows_host_memory():
    code, out, _ = _cli("memory", "--model", "llama-3.1-70b", "--method", "lora", "--gpus", "4",
                        "--strategy", "full-shard", "--offload-params")
    assert code == 0 and "host memory for all 4 GPUs" in out


@pytest.mark.parametrize("args", [("--gpus", "0"), ("--gpus", "2", "--strategy", "zero3"),
                                  ("--strategy", "full-shard"), ("--gpus", "2", "--offload-optimizer")])
def test_cli_bad_multi_gpu_input_is_one_line_and_status_2(args):
    code, out, err = _cli("memory", *args)
    assert code == 2 and out == "" and err.count("\n") == 1


def test_a_gpu_exactly_the_per_gpu_size_fits():
    # the smallest count is the first whose per-GPU bytes are at most the card's: equal is enough
    from loracalc.gpus import GPU
    from loracalc import sharding

    est = estimate_memory("llama-3.1-70b", method="lora")
    need = shard_estimate(est, "llama-3.1-70b", 4, "full-shard").per_gpu_bytes
    exact = GPU("exact", "exactly 4 GPUs' worth", 80, True, "test", usable_bytes=need)
    assert sharding.smallest_gpu_count("llama-3.1-70b", exact, "full-shard", method="lora") == 4
    smaller = GPU("short", "one byte short", 80, True, "test", usable_bytes=need - 1)
    assert sharding.smallest_gpu_count("llama-3.1-70b", smaller, "full-shard", method="lora") > 4
