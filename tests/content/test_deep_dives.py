"""The deep dives' computed figures against peft and transformers themselves (models on the meta device,
or tiny ones): DoRA's extra parameters, the cost of training the embeddings, and what all-linear matches in a
mixture-of-experts model."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _plain(text: str) -> int:
    return int(text.replace(",", ""))


def test_dora_adds_one_magnitude_per_output_feature():
    from peft import LoraConfig, get_peft_model

    from lora_course import figures, practice
    from tests.snippets.hf import meta_model

    import loracalc
    model = meta_model(loracalc.get_model(practice.MODEL))
    peft_model = get_peft_model(model, LoraConfig(r=practice.RANK, target_modules="all-linear", use_dora=True))
    magnitudes = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_magnitude_vector" in n)
    assert magnitudes == _plain(figures.render_figure("dora_extra_params"))


def test_modules_to_save_trains_both_embedding_matrices():
    from peft import LoraConfig, get_peft_model

    from lora_course import figures, practice
    from tests.snippets.hf import meta_model

    import loracalc
    arch = loracalc.get_model(practice.MODEL)
    model = meta_model(arch)
    peft_model = get_peft_model(model, LoraConfig(r=practice.RANK, target_modules="all-linear",
                                                  modules_to_save=["embed_tokens", "lm_head"]))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    row = next(line for line in figures.render_table("new_tokens_cost").splitlines() if "modules_to_save" in line)
    assert _plain(row.split("|")[2].strip()) == trainable


def test_trainable_tokens_row_counts_what_the_dict_form_trains_and_the_list_form_misses_lm_head():
    # peft 0.21 utils/other.py: a list targets only the input embedding; a dict names each matrix
    from peft import LoraConfig, get_peft_model

    import loracalc
    from lora_course import figures, practice
    from tests.snippets.hf import meta_model

    arch = loracalc.get_model(practice.MODEL)
    assert not arch.tie_word_embeddings      # the page's point only holds for an untied model
    new_ids = list(range(arch.vocab_size - 8, arch.vocab_size))
    row = next(line for line in figures.render_table("new_tokens_cost").splitlines() if "trainable_token_indices" in line)
    assert f"{len(new_ids)} new rows" in row

    def trained(indices):
        pm = get_peft_model(meta_model(arch), LoraConfig(r=practice.RANK, target_modules="all-linear",
                                                         trainable_token_indices=indices))
        names = [n for n, p in pm.named_parameters() if p.requires_grad and "token_adapter" in n]
        return sum(p.numel() for p in pm.parameters() if p.requires_grad), names

    total, names = trained({"embed_tokens": new_ids, "lm_head": new_ids})
    assert _plain(row.split("|")[2].strip()) == total
    assert any("lm_head" in n for n in names) and any("embed_tokens" in n for n in names)
    _, list_names = trained(new_ids)
    assert not any("lm_head" in n for n in list_names)   # the list form leaves the output rows untrained


def test_all_linear_on_a_fused_moe_matches_experts_and_router_and_refuses_dropout():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen3MoeConfig

    cfg = Qwen3MoeConfig(vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1, mlp_only_layers=[])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    experts = dict(model.named_parameters())["model.layers.0.mlp.experts.gate_up_proj"]
    assert experts.dim() == 3  # fused: one tensor for all experts
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    adapted = {n.split(".lora_")[0] for n, _ in peft_model.named_parameters() if ".lora_" in n}
    assert any(n.endswith("mlp.gate") for n in adapted)       # the router
    assert any("mlp.experts" in n for n in adapted)           # the fused experts
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(ValueError, match="lora_dropout"):
        get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.1))


def test_the_loss_mask_label_is_cross_entropys_ignore_index():
    import torch

    assert torch.nn.CrossEntropyLoss().ignore_index == -100


def test_constant_schedule_ignores_warmup():
    # transformers' get_scheduler: "constant" returns get_constant_schedule and never reads the warmup
    import torch
    from transformers import get_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler("constant", opt, num_warmup_steps=10, num_training_steps=100)
    assert sched.get_last_lr() == [1.0]
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    warm = get_scheduler("constant_with_warmup", opt2, num_warmup_steps=10, num_training_steps=100)
    assert warm.get_last_lr() == [0.0]


def test_bitsandbytes_defaults_to_fp4():
    from transformers import BitsAndBytesConfig

    assert BitsAndBytesConfig(load_in_4bit=True).bnb_4bit_quant_type == "fp4"
