"""Parameter counts against cited figures (FACTS.md) and against transformers + peft on the meta device."""
from __future__ import annotations

import pytest

import loracalc
from loracalc import LoraCalcError, count_params

# FACTS.md "Parameter counts" table: counts taken with transformers + peft on the meta device.
FACTS_TABLE = {
    # model: (total, r=8 q,v, r=16 all-linear, r=64 all-linear)
    "llama-2-7b": (6_738_415_616, 4_194_304, 39_976_960, 159_907_840),
    "llama-2-70b": (68_976_648_192, 16_384_000, 207_093_760, 828_375_040),
    "llama-3.1-8b": (8_030_261_248, 3_407_872, 41_943_040, 167_772_160),
    "llama-3.1-70b": (70_553_706_496, 16_384_000, 207_093_760, 828_375_040),
    "llama-3.2-1b": (1_235_814_400, 851_968, 11_272_192, 45_088_768),
}


@pytest.mark.parametrize("name", sorted(FACTS_TABLE))
def test_facts_table(name):
    total, qv8, all16, all64 = FACTS_TABLE[name]
    assert count_params(name, 8, "q,v").total_params == total
    assert count_params(name, 8, "q,v").lora_params == qv8
    assert count_params(name, 16, "all-linear").lora_params == all16
    assert count_params(name, 64, "all-linear").lora_params == all64


def test_square_layer_rank_8():
    # FACTS.md: a 4096 x 4096 layer at r = 8 -> 65,536 vs 16,777,216 (256x).
    assert loracalc.square_lora_params(4096, 8) == 65_536
    assert loracalc.square_full_params(4096) == 16_777_216


def test_gqa_makes_k_v_narrow():
    per = {m.name: m for m in count_params("llama-3.1-8b", 8, "all-linear").per_module}
    assert (per["k_proj"].d_in, per["k_proj"].d_out) == (4096, 8 * 128)   # 8 kv heads x head_dim 128
    assert per["k_proj"].lora_params == 8 * (4096 + 1024)


def test_target_spellings_agree():
    a = count_params("llama-2-7b", 8, "q,v").lora_params
    assert count_params("llama-2-7b", 8, "q_proj v_proj").lora_params == a
    assert count_params("llama-2-7b", 8, ["v_proj", "q"]).lora_params == a
    assert count_params("llama-2-7b", 8, "all-linear").targets == loracalc.models.LINEAR_MODULES


def test_trainable_percent_is_peft_definition():
    c = count_params("llama-3.1-8b", 16, "all-linear")
    assert c.trainable_percent == pytest.approx(100 * 41_943_040 / (8_030_261_248 + 41_943_040))


@pytest.mark.parametrize("rank", [0, -1, 2.5, "x", float("nan"), float("inf"), None, True, 10**9])
def test_bad_rank(rank):
    with pytest.raises(LoraCalcError) as e:
        count_params("llama-3.1-8b", rank, "q,v")
    assert e.value.field == "rank"


def test_rank_larger_than_layer_is_counted_as_peft_builds_it():
    # peft's LoraLayer.update_layer only requires r > 0: a rank above a layer's width still builds A and B
    # (k_proj of Llama-3.2-1B is 2048 -> 512; at r = 513 it gets 513 * (2048 + 512) parameters per layer)
    per = {m.name: m for m in count_params("llama-3.2-1b", 513, "all-linear").per_module}
    assert per["k_proj"].lora_params == 513 * (2048 + 512)


@pytest.mark.parametrize("targets", ["", "x_proj", "q,c_attn", "all-linear,q", 5, None])
def test_bad_targets(targets):
    with pytest.raises(LoraCalcError) as e:
        count_params("llama-3.1-8b", 8, targets)
    assert e.value.field == "targets"


# ---------------------------------------------------------------------- the real libraries
DEPTH_FOR_PEFT = 8    # deeper presets are built again with this many layers for peft's six passes


def _check_against_peft(name):
    from .hf import meta_model, peft_counts, total_params

    arch = loracalc.get_model(name)
    model = meta_model(arch)
    assert total_params(model) == loracalc.total_params(arch)
    if arch.num_hidden_layers > DEPTH_FOR_PEFT:
        # peft wraps every layer six times over below, which takes half a minute for a 126-layer model: the
        # total is compared at full depth above, the LoRA counts on the same preset with 8 layers, which has
        # every kind of layer these presets have (none has a depth-dependent layout)
        assert not arch.family.moe or not arch.config.get("mlp_only_layers")
        arch = loracalc.model_from_config({**arch.raw_config, "num_hidden_layers": DEPTH_FOR_PEFT})
        model = meta_model(arch)
        assert total_params(model) == loracalc.total_params(arch)
    # q,v where the family has them; otherwise its first and last linear module (Phi-3's fused qkv_proj)
    names = arch.linear_names()
    pair = ["q_proj", "v_proj"] if "q_proj" in names else [names[0], names[-1]]
    for rank in (1, 8, 64):
        for targets, peft_targets in ((",".join(pair), pair), ("all-linear", "all-linear")):
            trainable, total = peft_counts(model, rank, peft_targets)
            ours = count_params(arch, rank, targets)
            assert trainable == ours.lora_params, (name, rank, targets)
            assert total == ours.total_params + ours.lora_params


def test_llama_3_2_1b_against_peft():
    """One preset in the fast set (tied embeddings, GQA); every preset in the slow set."""
    _check_against_peft("llama-3.2-1b")


@pytest.mark.slow
@pytest.mark.parametrize("name", loracalc.list_models())
def test_every_preset_against_peft(name):
    _check_against_peft(name)
