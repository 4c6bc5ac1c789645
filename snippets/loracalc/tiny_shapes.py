"""One tiny shape per family: the one table the tests and scripts read to build real (random) models of a family.

A new family adds one line here next to its spec in ``families.py``. A line says:

* ``vary``: how ``tests/snippets/family_configs.py`` varies the shape over many configs (a kind of structure,
  never a family's name: ``dense`` for a Llama-shaped family);
* the overrides of ``BASE`` (or ``GPT``) that make a small model of the family build and train on a CPU
  (hidden 128: bitsandbytes' CPU path needs inputs in multiples of 64); ``None`` drops a key;
* ``structures``: config switches beyond the class defaults whose activations are measured again (slow tests),
  for the families whose activation term is checked;
* ``remeasured``: a family whose estimate was more than 10% off before its structure was described
  (2026-11-29), measured again in the slow tests;
* ``positions=False``: the config class names its position limit otherwise (no ``max_position_embeddings``).

Nothing here is read by the calculator itself.
"""
from __future__ import annotations

from dataclasses import dataclass

BASE = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512)
GPT = dict(n_embd=128, n_head=4, n_layer=2, vocab_size=512)
_MLA = dict(num_key_value_heads=4, n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2,
            moe_intermediate_size=64, first_k_dense_replace=1, q_lora_rank=64, kv_lora_rank=64, qk_rope_head_dim=16,
            qk_nope_head_dim=16, v_head_dim=32, n_group=1, topk_group=1)
_MAMBA = dict(num_hidden_layers=4, mamba_n_heads=4, mamba_d_head=64, mamba_n_groups=1, mamba_d_state=16,
              mamba_chunk_size=64, pad_token_id=0)
_E4 = dict(num_experts_per_tok=2)
_DELTA = dict(head_dim=32, num_hidden_layers=4, linear_num_key_heads=2, linear_num_value_heads=4,
              linear_key_head_dim=32, linear_value_head_dim=32)


@dataclass(frozen=True)
class Tiny:
    vary: str
    shape: dict
    structures: tuple[dict, ...] = ()
    remeasured: bool = False
    positions: bool = True


def _t(vary: str, base: dict = BASE, structures: tuple[dict, ...] = (), remeasured: bool = False,
       positions: bool = True, **over) -> Tiny:
    return Tiny(vary, {**base, **over}, structures, remeasured, positions)


TINY: dict[str, Tiny] = {
    "llama": _t("llama_like", structures=({"attention_dropout": 0.1},)),     # SDPA's math path on a CPU
    "mistral": _t("llama_like"),
    "qwen2": _t("llama_like"),
    "granite": _t("llama_like"),
    "olmo": _t("llama_like"),
    "olmo2": _t("llama_like", remeasured=True),
    "cohere": _t("llama_like", remeasured=True, structures=({"use_qk_norm": True},)),   # centred twice, per head
    "starcoder2": _t("llama_like", remeasured=True,
                     structures=({"residual_dropout": 0.1, "embedding_dropout": 0.1, "attention_dropout": 0.1},)),
    "phi3": _t("llama_like", remeasured=True, pad_token_id=0),
    "qwen3": _t("llama_like", head_dim=32),
    "gemma": _t("llama_like", head_dim=32),
    "gemma3_text": _t("llama_like", head_dim=32),
    "gemma2": _t("llama_like", head_dim=32),
    "stablelm": _t("derived_head_dim", num_key_value_heads=4,
                   structures=({"use_parallel_residual": True}, {"qk_layernorm": True})),   # a LayerNorm per head
    "phi": _t("optional_kv", num_key_value_heads=4, structures=({"qk_layernorm": True}, {"resid_pdrop": 0.1})),
    "gpt2": _t("gpt_learned_positions", GPT, remeasured=True, positions=False, n_positions=128),
    "gpt_neox": _t("no_kv", num_key_value_heads=None, structures=({"use_parallel_residual": False},)),
    "falcon": _t("fused_qkv_modes", remeasured=True, positions=False, intermediate_size=None,
                 num_key_value_heads=None,
                 structures=({"new_decoder_architecture": True, "num_kv_heads": 2},   # k, v expanded; SDPA's mask
                             {"multi_query": False},                                 # fused qkv views, fused kernel
                             {"multi_query": False, "parallel_attn": False})),
    "mixtral": _t("local_experts", num_local_experts=4, **_E4),
    "qwen2_moe": _t("sparse_step_shared", remeasured=True, num_experts=4, moe_intermediate_size=64,
                    shared_expert_intermediate_size=128, **_E4),
    "qwen3_moe": _t("sparse_step_head_dim", num_experts=4, moe_intermediate_size=64, **_E4),
    "gpt_oss": _t("local_experts_head_dim", remeasured=True, head_dim=32, num_local_experts=4, **_E4),
    "deepseek_v2": _t("latent_attention_moe", remeasured=True, **_MLA),
    "deepseek_v3": _t("latent_attention_moe", remeasured=True, structures=({"q_lora_rank": None},), **_MLA),
    # ---- issue 26 (late 2026)
    "smollm3": _t("dense", pad_token_id=0),
    "olmo3": _t("dense", pad_token_id=0),
    "glm4": _t("dense", head_dim=32, pad_token_id=0),
    "exaone4": _t("dense", pad_token_id=0),
    "ernie4_5": _t("dense", head_dim=32, pad_token_id=0),
    "seed_oss": _t("dense", head_dim=32, pad_token_id=0),
    "apertus": _t("dense", pad_token_id=0),
    "hunyuan_v1_dense": _t("dense_head_dim", head_dim=32, pad_token_id=0),
    "gptj": _t("gpt_rotary", GPT, positions=False, rotary_dim=32, pad_token_id=0),
    "gpt_bigcode": _t("gpt_multi_query", GPT, positions=False, n_positions=128, pad_token_id=0),
    "olmoe": _t("moe_num_experts", num_experts=4, pad_token_id=0, **_E4),
    "glm4_moe": _t("moe_shared_dense_first", n_routed_experts=4, moe_intermediate_size=64, n_shared_experts=1,
                   first_k_dense_replace=1, n_group=1, topk_group=1, pad_token_id=0, **_E4),
    "granitemoe": _t("moe_local_experts", num_local_experts=4, pad_token_id=0, **_E4),
    "phimoe": _t("moe_local_experts", num_local_experts=4, pad_token_id=0, **_E4),
    "arcee": _t("dense", pad_token_id=0),
    "helium": _t("dense", head_dim=32, pad_token_id=0),
    "glm": _t("dense", head_dim=32, pad_token_id=0),
    "cohere2": _t("dense", pad_token_id=0),
    "vaultgemma": _t("dense", head_dim=32, pad_token_id=0),
    "flex_olmo": _t("moe_num_experts", num_experts=4, pad_token_id=0, **_E4),
    "qwen3_next": _t("linear_attention_hybrid", head_dim=32, num_hidden_layers=4, num_experts=4,
                     moe_intermediate_size=64, shared_expert_intermediate_size=64, linear_num_key_heads=2,
                     linear_num_value_heads=4, linear_key_head_dim=32, linear_value_head_dim=32, pad_token_id=0,
                     **_E4),
    "lfm2": _t("short_conv_hybrid", num_hidden_layers=4, full_attn_idxs=[1, 3], block_multiple_of=64,
               pad_token_id=0),
    "bamba": _t("mamba_dense", attn_layer_indices=[1], **_MAMBA),
    "granitemoehybrid": _t("mamba_moe", layer_types=["mamba", "attention", "mamba", "mamba"], num_local_experts=4,
                           shared_intermediate_size=64, **_MAMBA, **_E4),
    "nemotron_h": _t("mamba_pattern", head_dim=32, hybrid_override_pattern="M*-E", num_hidden_layers=4,
                     mamba_num_heads=4, mamba_head_dim=64, n_groups=1, ssm_state_size=16, chunk_size=64,
                     n_routed_experts=4, moe_intermediate_size=64, moe_shared_expert_intermediate_size=64,
                     pad_token_id=0, **_E4),
    "minimax": _t("lightning_moe", num_local_experts=4, pad_token_id=0, **_E4),
    "ernie4_5_moe": _t("moe_interval", moe_num_experts=4, moe_k=2, moe_intermediate_size=64,
                       moe_num_shared_experts=1, pad_token_id=0),
    "ministral": _t("dense_head_dim", head_dim=32, pad_token_id=0),
    # ---- text towers of vision-language models (issue 26, 2026-12-07)
    "qwen2_5_vl_text": _t("dense"),
    "qwen3_vl_text": _t("dense", head_dim=32),
    "qwen3_vl_moe_text": _t("sparse_step_head_dim", num_experts=4, moe_intermediate_size=64, **_E4),
    "qwen3_5_text": _t("delta_hybrid", **_DELTA),
    "qwen3_5_moe_text": _t("delta_hybrid", intermediate_size=None, num_experts=4, moe_intermediate_size=64,
                           shared_expert_intermediate_size=64, **_DELTA, **_E4),
    "llama4_text": _t("moe_interleaved", head_dim=32, num_local_experts=4, intermediate_size_mlp=192,
                      interleave_moe_layer_step=2, pad_token_id=0, **_E4),
    "mllama_text_model": _t("cross_attention", cross_attention_layers=[1], pad_token_id=0),
    "gemma4_text": _t("per_layer_attention", head_dim=32, global_head_dim=64, num_hidden_layers=4,
                      layer_types=["sliding_attention", "full_attention"] * 2, vocab_size_per_layer_input=512,
                      hidden_size_per_layer_input=16, pad_token_id=0),
    # ---- more text families (issue 26, 2026-12-07)
    "dbrx": _t("nested_moe", base=dict(d_model=128, n_heads=4, n_layers=2, vocab_size=512,
                                       attn_config={"kv_n_heads": 2, "rope_theta": 10000, "clip_qkv": 8},
                                       ffn_config={"ffn_hidden_size": 256, "moe_num_experts": 4, "moe_top_k": 2})),
    "jamba": _t("mamba1_moe", num_hidden_layers=4, num_experts=4, attn_layer_period=2, attn_layer_offset=1,
                mamba_d_state=8, use_mamba_kernels=False, pad_token_id=0, **_E4),
    "falcon_h1": _t("mamba_parallel", mamba_d_ssm=128, mamba_n_heads=4, mamba_d_head=32, mamba_n_groups=1,
                    mamba_d_state=16, mamba_chunk_size=64, pad_token_id=0),
    "deepseek_v32": _t("indexed_latent_moe", index_n_heads=4, index_head_dim=32, pad_token_id=0, **_MLA),
    "dots1": _t("moe_shared_dense_first", n_routed_experts=4, moe_intermediate_size=64, n_shared_experts=1,
                first_k_dense_replace=1, pad_token_id=0, **_E4),
    "hunyuan_v1_moe": _t("moe_num_experts_head_dim", head_dim=32, num_experts=4, moe_topk=2, pad_token_id=0),
}


def tiny_config(model_type: str) -> dict:
    """The family's tiny config.json (keys set to None dropped), as the activation check builds it."""
    line = TINY[model_type]
    return {"model_type": model_type, **({"max_position_embeddings": 256} if line.positions else {}),
            **{k: v for k, v in line.shape.items() if v is not None}}
