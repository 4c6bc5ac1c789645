"""Config variants for every supported model_type, as keyword arguments to transformers' config classes.

Each variant is a small sparse dict (what a config.json might hold); keys left out take the config class's
default, which is what the engine must reproduce. Sizes are small so a meta-device build takes milliseconds.
"""
from __future__ import annotations

import itertools
import random

# Shapes shared by most families: (hidden, heads, kv heads, intermediate); odd sizes on purpose
SHAPES = [(64, 4, 4, 160), (96, 6, 2, 200), (128, 8, 1, 352), (120, 5, 5, 100), (64, 8, 2, 96)]

# config classes whose num_key_value_heads default is None (= heads); the others have a fixed default
DEFAULT_KV = {"mistral": 8, "qwen2": 32, "qwen3": 32, "gemma": 16, "gemma2": 4, "gemma3_text": 4, "stablelm": 32,
              "starcoder2": 2}
_LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "granite",
               "cohere", "starcoder2", "phi3", "stablelm")
_BIAS_KEYS = {"llama": ("attention_bias", "mlp_bias"), "qwen3": ("attention_bias",), "gemma": ("attention_bias",),
              "gemma2": ("attention_bias",), "gemma3_text": ("attention_bias",), "olmo": ("attention_bias",),
              "olmo2": ("attention_bias",), "granite": ("attention_bias", "mlp_bias"), "cohere": ("attention_bias",),
              "starcoder2": ("use_bias",), "stablelm": ("use_qkv_bias",), "qwen2_moe": ("qkv_bias",),
              "qwen3_moe": ("attention_bias",), "gpt_oss": ("attention_bias",), "gpt_neox": ("attention_bias",),
              "falcon": ("bias",), "deepseek_v2": ("attention_bias", "mlp_bias"), "deepseek_v3": ("attention_bias",)}
_SWITCHES = {"cohere": ("use_qk_norm",), "stablelm": ("qk_layernorm", "use_parallel_residual"),
             "phi": ("qk_layernorm",)}


def variants(model_type: str, n: int = 12, seed: int = 0) -> list[dict]:
    """Up to ``n`` sparse configs for ``model_type``: the class defaults first (scaled down), then varied shapes."""
    rng = random.Random(f"{model_type}-{seed}")
    out: list[dict] = []
    for k in range(n):
        h, heads, kv, inter = SHAPES[k % len(SHAPES)]
        layers = rng.choice([1, 2, 3])
        vocab = rng.choice([100, 257, 512])
        c: dict = {}
        if model_type in _LLAMA_LIKE:
            c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                     num_hidden_layers=layers, vocab_size=vocab)
            if model_type == "stablelm":
                c["num_key_value_heads"] = kv if k % 2 else heads
            if k % 3 == 1 and DEFAULT_KV.get(model_type) is None:
                c.pop("num_key_value_heads")          # the class default: as many as the heads
            if k % 4 == 2 and model_type != "stablelm":
                c["head_dim"] = rng.choice([8, 16, 24])
            if k % 4 == 3 and model_type not in ("stablelm",):
                c.pop("head_dim", None)
        elif model_type == "phi":
            c = dict(hidden_size=h, num_attention_heads=heads, intermediate_size=inter, num_hidden_layers=layers,
                     vocab_size=vocab)
            if k % 2:
                c["num_key_value_heads"] = kv
        elif model_type == "gpt2":
            c = dict(n_embd=h, n_head=heads, n_layer=layers, vocab_size=vocab, n_positions=rng.choice([32, 64]))
            if k % 2:
                c["n_inner"] = inter
        elif model_type == "gpt_neox":
            c = dict(hidden_size=h, num_attention_heads=heads, intermediate_size=inter, num_hidden_layers=layers,
                     vocab_size=vocab)
        elif model_type == "falcon":
            c = dict(hidden_size=h, num_attention_heads=heads, num_hidden_layers=layers, vocab_size=vocab)
            mode = k % 4
            c["new_decoder_architecture"] = mode == 1
            c["multi_query"] = mode in (0, 3)
            if mode == 1:
                c["num_kv_heads"] = kv
            if mode == 2:
                c["parallel_attn"] = False
            if k % 3 == 0:
                c["ffn_hidden_size"] = inter
        elif model_type in ("mixtral", "gpt_oss"):
            c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                     num_hidden_layers=layers, vocab_size=vocab, num_local_experts=rng.choice([2, 4, 8]),
                     num_experts_per_tok=rng.choice([1, 2]))
            if model_type == "gpt_oss":
                c["head_dim"] = rng.choice([8, 16])
        elif model_type in ("qwen2_moe", "qwen3_moe"):
            c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                     num_hidden_layers=layers + 1, vocab_size=vocab, num_experts=rng.choice([2, 4, 6]),
                     num_experts_per_tok=rng.choice([1, 2]), moe_intermediate_size=rng.choice([32, 48]))
            if model_type == "qwen2_moe":
                c["shared_expert_intermediate_size"] = rng.choice([64, 96])
            if k % 3 == 1:
                c["mlp_only_layers"] = [0]
            if k % 3 == 2:
                c["decoder_sparse_step"] = 2
            if model_type == "qwen3_moe" and k % 2:
                c["head_dim"] = 16
        elif model_type in ("deepseek_v2", "deepseek_v3"):
            c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=inter,
                     num_hidden_layers=layers + 1, vocab_size=vocab, n_routed_experts=rng.choice([2, 4]),
                     n_shared_experts=rng.choice([1, 2]), num_experts_per_tok=2, moe_intermediate_size=32,
                     first_k_dense_replace=rng.choice([0, 1]), q_lora_rank=rng.choice([None, 24]),
                     kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=rng.choice([8, 16]), v_head_dim=8,
                     n_group=1, topk_group=1)
        elif model_type in NEW_VARIANTS:
            c = NEW_VARIANTS[model_type](k, rng, h, heads, kv, inter, layers, vocab)
        if model_type == "phi3" or model_type in NEW_VARIANTS:
            c["pad_token_id"] = 0             # the class default (32000) must lie inside the vocabulary
        for key in {**_BIAS_KEYS, **NEW_BIAS_KEYS}.get(model_type, ()):
            if rng.random() < 0.5:
                c[key] = rng.random() < 0.5
        for key in {**_SWITCHES, **NEW_SWITCHES}.get(model_type, ()):
            if rng.random() < 0.5:
                c[key] = rng.random() < 0.5
        if rng.random() < 0.5:
            c["tie_word_embeddings"] = rng.random() < 0.5
        out.append(c)
    return out


TARGET_SETS = {
    "llama_like": ["all-linear", ["q_proj", "v_proj"], ["o_proj", "down_proj"], ["lm_head", "embed_tokens"]],
}


# ------------------------------------------------------------------ families added for issue 26 (late 2026)
# Kept apart so the lead can fold them into the shapes derived from the specs when merging.
NEW_DEFAULT_KV = {"helium": 20, "glm": 2, "vaultgemma": 4, "smollm3": 4, "glm4": 2, "exaone4": 32, "ernie4_5": 2, "seed_oss": 8, "phimoe": 8, "glm4_moe": 8,
                  "ernie4_5_moe": 4}
NEW_BIAS_KEYS = {"smollm3": ("attention_bias", "mlp_bias"), "olmo3": ("attention_bias",), "glm4": ("attention_bias",),
                 "ernie4_5": ("use_bias",), "seed_oss": ("attention_bias", "attention_out_bias", "mlp_bias"),
                 "apertus": ("attention_bias",), "hunyuan_v1_dense": ("attention_bias",), "olmoe": ("attention_bias",),
                 "glm4_moe": ("attention_bias",), "granitemoe": ("attention_bias",),
                 "phimoe": ("attention_bias", "lm_head_bias"), "ernie4_5_moe": ("use_bias",)}
NEW_BIAS_KEYS.update({"arcee": ("attention_bias", "mlp_bias"), "helium": ("attention_bias", "mlp_bias"),
                      "glm": ("attention_bias",), "cohere2": ("attention_bias",), "vaultgemma": ("attention_bias",), "flex_olmo": ("attention_bias",)})
NEW_SWITCHES = {"glm4_moe": ("use_qk_norm",)}


def _dense(model_type):
    def make(k, rng, h, heads, kv, inter, layers, vocab):
        c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                 num_hidden_layers=layers, vocab_size=vocab)
        if k % 3 == 1 and NEW_DEFAULT_KV.get(model_type) is None:
            c.pop("num_key_value_heads")
        if k % 4 == 2 or model_type == "hunyuan_v1_dense":
            c["head_dim"] = rng.choice([8, 16, 24])
        return c
    return make


def _gpt(model_type):
    def make(k, rng, h, heads, kv, inter, layers, vocab):
        c = dict(n_embd=h, n_head=heads, n_layer=layers, vocab_size=vocab)
        if model_type == "gpt_bigcode":
            c["n_positions"] = rng.choice([32, 64])
            c["multi_query"] = k % 2 == 0
        else:
            c["rotary_dim"] = h // heads
        if k % 2:
            c["n_inner"] = inter
        return c
    return make


def _moe(model_type):
    def make(k, rng, h, heads, kv, inter, layers, vocab):
        c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                 num_hidden_layers=layers + 1, vocab_size=vocab)
        e, top = rng.choice([2, 4, 6]), rng.choice([1, 2])
        if model_type in ("olmoe", "flex_olmo"):
            c.update(num_experts=e, num_experts_per_tok=top)
        elif model_type in ("granitemoe", "phimoe"):
            c.update(num_local_experts=e, num_experts_per_tok=top)
        elif model_type == "glm4_moe":
            c.update(n_routed_experts=e, num_experts_per_tok=top, moe_intermediate_size=rng.choice([32, 48]),
                     n_shared_experts=rng.choice([0, 1, 2]), first_k_dense_replace=rng.choice([0, 1]),
                     n_group=1, topk_group=1)
            if k % 2:
                c["head_dim"] = 16
        elif model_type == "ernie4_5_moe":
            c.update(moe_num_experts=e, moe_k=top, moe_intermediate_size=rng.choice([32, 48]),
                     moe_num_shared_experts=rng.choice([0, 1, 2]), moe_layer_start_index=rng.choice([0, 1]),
                     moe_layer_interval=rng.choice([1, 2]))
            if k % 3 == 2:
                c["moe_layer_end_index"] = 1
        return c
    return make


NEW_VARIANTS = {
    **{mt: _dense(mt) for mt in ("smollm3", "olmo3", "glm4", "exaone4", "ernie4_5", "seed_oss", "apertus",
                                 "hunyuan_v1_dense")},
    **{mt: _gpt(mt) for mt in ("gptj", "gpt_bigcode")},
    **{mt: _dense(mt) for mt in ("arcee", "helium", "glm", "cohere2", "vaultgemma")},
    **{mt: _moe(mt) for mt in ("flex_olmo", "olmoe", "glm4_moe", "granitemoe", "phimoe", "ernie4_5_moe")},
}


def _hybrid(model_type):
    def make(k, rng, h, heads, kv, inter, layers, vocab):
        c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                 num_hidden_layers=layers + 3, vocab_size=vocab)
        if model_type == "qwen3_next":
            c.update(num_experts=rng.choice([2, 4]), num_experts_per_tok=rng.choice([1, 2]),
                     moe_intermediate_size=rng.choice([32, 48]), shared_expert_intermediate_size=rng.choice([0, 64]),
                     linear_num_key_heads=2, linear_num_value_heads=rng.choice([2, 4]), linear_key_head_dim=8,
                     linear_value_head_dim=rng.choice([8, 16]), head_dim=rng.choice([8, 16]))
            if k % 3 == 1:
                c["mlp_only_layers"] = [0]
            if k % 3 == 2:
                c["layer_types"] = ["full_attention", "linear_attention"] * (c["num_hidden_layers"] // 2) + \
                    ["linear_attention"] * (c["num_hidden_layers"] % 2)
        elif model_type == "lfm2":
            if k % 2:
                c["full_attn_idxs"] = [1, 2]
            c["block_multiple_of"] = rng.choice([16, 32])
            if k % 3 == 2:
                c["block_auto_adjust_ff_dim"] = False
            if k % 4 == 1:
                c["block_ffn_dim_multiplier"] = 1.5
        return c
    return make


NEW_VARIANTS.update({mt: _hybrid(mt) for mt in ("qwen3_next", "lfm2")})
NEW_BIAS_KEYS.update({"qwen3_next": ("attention_bias",), "lfm2": ("conv_bias",)})


def _mamba_hybrid(model_type):
    def make(k, rng, h, heads, kv, inter, layers, vocab):
        n = layers + 2
        c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                 num_hidden_layers=n, vocab_size=vocab, mamba_n_heads=rng.choice([4, 8]) if h % 8 == 0 else 4,
                 mamba_n_groups=rng.choice([1, 2]), mamba_d_state=rng.choice([8, 16]), mamba_expand=2)
        c["mamba_d_head"] = 2 * h // c["mamba_n_heads"]
        if model_type == "bamba":
            c["attn_layer_indices"] = [1] if k % 2 else [0, n - 1]
        else:
            c.update(num_local_experts=rng.choice([2, 4]), num_experts_per_tok=rng.choice([1, 2]),
                     shared_intermediate_size=rng.choice([32, 48]))
            if k % 3:
                c["layer_types"] = ["mamba"] * (n - 1) + ["attention"]
        return c
    return make


NEW_VARIANTS.update({mt: _mamba_hybrid(mt) for mt in ("bamba", "granitemoehybrid")})
NEW_BIAS_KEYS.update({"bamba": ("attention_bias", "mlp_bias", "mamba_conv_bias", "mamba_proj_bias"),
                      "granitemoehybrid": ("attention_bias", "mamba_conv_bias", "mamba_proj_bias")})


def _nemotron(k, rng, h, heads, kv, inter, layers, vocab):
    pattern = ["M*-E", "M-M*E", "*EM-ME", "MM*-", "E*M"][k % 5]
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
             vocab_size=vocab, mamba_num_heads=rng.choice([2, 4]), mamba_head_dim=rng.choice([16, 32]),
             n_groups=rng.choice([1, 2]), ssm_state_size=rng.choice([8, 16]), n_routed_experts=rng.choice([2, 4]),
             num_experts_per_tok=rng.choice([1, 2]), moe_intermediate_size=rng.choice([32, 48]),
             moe_shared_expert_intermediate_size=rng.choice([32, 64]), head_dim=rng.choice([8, 16]))
    if k % 2:
        c["hybrid_override_pattern"] = pattern
        c["num_hidden_layers"] = len(pattern)
    else:
        names = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}
        c["layers_block_type"] = [names[x] for x in pattern]
    return c


NEW_VARIANTS["nemotron_h"] = _nemotron
NEW_BIAS_KEYS["nemotron_h"] = ("attention_bias", "mlp_bias", "use_conv_bias", "use_bias")


def _minimax(k, rng, h, heads, kv, inter, layers, vocab):
    n = layers + 2
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
             num_hidden_layers=n, vocab_size=vocab, num_local_experts=rng.choice([2, 4]),
             num_experts_per_tok=rng.choice([1, 2]))
    if k % 2:
        c["head_dim"] = rng.choice([8, 16])
    if k % 3 == 2:
        c["layer_types"] = ["linear_attention"] * (n - 1) + ["full_attention"]
    return c


NEW_VARIANTS["minimax"] = _minimax
NEW_DEFAULT_KV["minimax"] = 8
