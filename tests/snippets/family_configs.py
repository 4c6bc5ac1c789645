"""Config variants for every supported model_type, as keyword arguments to transformers' config classes.

Each variant is a small sparse dict (what a config.json might hold); keys left out take the config class's
default, which is what the engine must reproduce. Sizes are small so a meta-device build takes milliseconds.
"""
from __future__ import annotations

import itertools
import random

from loracalc.families import FAMILIES
from loracalc.tiny_shapes import TINY

# Shapes shared by most families: (hidden, heads, kv heads, intermediate); odd sizes on purpose
SHAPES = [(64, 4, 4, 160), (96, 6, 2, 200), (128, 8, 1, 352), (120, 5, 5, 100), (64, 8, 2, 96)]

# keys a variant never switches: a structure the engine refuses (cross-attention belongs to encoder-decoder use)
_NEVER_TOGGLED = {"tie_word_embeddings", "add_cross_attention"}


def _default_kv(model_type: str):
    """The config class's num_key_value_heads default (None: as many as the heads), from the family's spec."""
    return FAMILIES[model_type].defaults.get("num_key_value_heads")


def _toggles(model_type: str) -> list[str]:
    """The config's switches (bias and structure flags): every boolean key the spec reads with its default."""
    return [k for k, v in FAMILIES[model_type].defaults.items() if isinstance(v, bool) and k not in _NEVER_TOGGLED]


def variants(model_type: str, n: int = 12, seed: int = 0) -> list[dict]:
    """Up to ``n`` sparse configs for ``model_type``: the class defaults first (scaled down), then varied shapes."""
    rng = random.Random(f"{model_type}-{seed}")
    out: list[dict] = []
    for k in range(n):
        h, heads, kv, inter = SHAPES[k % len(SHAPES)]
        layers = rng.choice([1, 2, 3])
        vocab = rng.choice([100, 257, 512])
        c: dict = {}
        vary = TINY[model_type].vary
        if vary in ("llama_like", "derived_head_dim"):
            c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                     num_hidden_layers=layers, vocab_size=vocab)
            if vary == "derived_head_dim":
                c["num_key_value_heads"] = kv if k % 2 else heads
            if k % 3 == 1 and _default_kv(model_type) is None:
                c.pop("num_key_value_heads")          # the class default: as many as the heads
            if k % 4 == 2 and vary != "derived_head_dim":
                c["head_dim"] = rng.choice([8, 16, 24])
            if k % 4 == 3 and vary != "derived_head_dim":
                c.pop("head_dim", None)
        elif vary == "optional_kv":
            c = dict(hidden_size=h, num_attention_heads=heads, intermediate_size=inter, num_hidden_layers=layers,
                     vocab_size=vocab)
            if k % 2:
                c["num_key_value_heads"] = kv
        elif vary == "gpt_learned_positions":
            c = dict(n_embd=h, n_head=heads, n_layer=layers, vocab_size=vocab, n_positions=rng.choice([32, 64]))
            if k % 2:
                c["n_inner"] = inter
        elif vary == "no_kv":
            c = dict(hidden_size=h, num_attention_heads=heads, intermediate_size=inter, num_hidden_layers=layers,
                     vocab_size=vocab)
        elif vary == "fused_qkv_modes":
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
        elif vary in ("local_experts", "local_experts_head_dim"):
            c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                     num_hidden_layers=layers, vocab_size=vocab, num_local_experts=rng.choice([2, 4, 8]),
                     num_experts_per_tok=rng.choice([1, 2]))
            if vary == "local_experts_head_dim":
                c["head_dim"] = rng.choice([8, 16])
        elif vary in ("sparse_step_shared", "sparse_step_head_dim"):
            c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                     num_hidden_layers=layers + 1, vocab_size=vocab, num_experts=rng.choice([2, 4, 6]),
                     num_experts_per_tok=rng.choice([1, 2]), moe_intermediate_size=rng.choice([32, 48]))
            if vary == "sparse_step_shared":
                c["shared_expert_intermediate_size"] = rng.choice([64, 96])
            if k % 3 == 1:
                c["mlp_only_layers"] = [0]
            if k % 3 == 2:
                c["decoder_sparse_step"] = 2
            if vary == "sparse_step_head_dim" and k % 2:
                c["head_dim"] = 16
        elif vary == "latent_attention_moe":
            c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=inter,
                     num_hidden_layers=layers + 1, vocab_size=vocab, n_routed_experts=rng.choice([2, 4]),
                     n_shared_experts=rng.choice([1, 2]), num_experts_per_tok=2, moe_intermediate_size=32,
                     first_k_dense_replace=rng.choice([0, 1]), q_lora_rank=rng.choice([None, 24]),
                     kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=rng.choice([8, 16]), v_head_dim=8,
                     n_group=1, topk_group=1)
        elif vary in BUILDERS:
            c = BUILDERS[vary](model_type, k, rng, h, heads, kv, inter, layers, vocab)
        if "pad_token_id" in TINY[model_type].shape:
            c["pad_token_id"] = 0             # the class default (32000) must lie inside the vocabulary
        for key in _toggles(model_type):
            if key not in c and rng.random() < 0.5:   # a key the shape sets already keeps its value
                c[key] = rng.random() < 0.5
        if rng.random() < 0.5:
            c.setdefault("tie_word_embeddings", rng.random() < 0.5)   # a builder's own value stands (DBRX: False)
        out.append(c)
    return out


TARGET_SETS = {
    "llama_like": ["all-linear", ["q_proj", "v_proj"], ["o_proj", "down_proj"], ["lm_head", "embed_tokens"]],
}


# ------------------------------------------------------------------ more kinds of structure (issue 26)
# Each builder makes one variant of a kind of structure (TINY[model_type].vary); config key names come from the
# family's spec where they differ between families.

def _dense(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
             num_hidden_layers=layers, vocab_size=vocab)
    if k % 3 == 1 and _default_kv(model_type) is None:
        c.pop("num_key_value_heads")
    if k % 4 == 2 or TINY[model_type].vary == "dense_head_dim":
        c["head_dim"] = rng.choice([8, 16, 24])
    return c


def _gpt(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    c = dict(n_embd=h, n_head=heads, n_layer=layers, vocab_size=vocab)
    if TINY[model_type].vary == "gpt_multi_query":
        c["n_positions"] = rng.choice([32, 64])
        c["multi_query"] = k % 2 == 0
    else:
        c["rotary_dim"] = h // heads
    if k % 2:
        c["n_inner"] = inter
    return c


def _moe(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
             num_hidden_layers=layers + 1, vocab_size=vocab)
    e, top = rng.choice([2, 4, 6]), rng.choice([1, 2])
    vary, moe = TINY[model_type].vary, FAMILIES[model_type].moe
    if vary in ("moe_num_experts", "moe_local_experts", "moe_num_experts_head_dim"):
        c.update({moe.experts: e, moe.top_k: top})
        if vary == "moe_num_experts_head_dim":          # a family transformers builds only with head_dim
            c["head_dim"] = rng.choice([8, 16])
    elif vary == "moe_shared_dense_first":
        c.update(n_routed_experts=e, num_experts_per_tok=top, moe_intermediate_size=rng.choice([32, 48]),
                 n_shared_experts=rng.choice([0, 1, 2]), first_k_dense_replace=rng.choice([0, 1]),
                 n_group=1, topk_group=1)
        if k % 2:
            c["head_dim"] = 16
    elif vary == "moe_interleaved":            # Llama 4: dense layers of another width between sparse ones
        c.update(num_local_experts=e, num_experts_per_tok=top, intermediate_size_mlp=rng.choice([64, 96]),
                 head_dim=rng.choice([8, 16]))
        if k % 3 == 1:
            c["interleave_moe_layer_step"] = 2
        if k % 3 == 2:
            c["moe_layers"] = [c["num_hidden_layers"] - 1]
    elif vary == "moe_interval":
        c.update(moe_num_experts=e, moe_k=top, moe_intermediate_size=rng.choice([32, 48]),
                 moe_num_shared_experts=rng.choice([0, 1, 2]), moe_layer_start_index=rng.choice([0, 1]),
                 moe_layer_interval=rng.choice([1, 2]))
        if k % 3 == 2:
            c["moe_layer_end_index"] = 1
    return c


def _hybrid(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
             num_hidden_layers=layers + 3, vocab_size=vocab)
    if TINY[model_type].vary == "linear_attention_hybrid":
        c.update(num_experts=rng.choice([2, 4]), num_experts_per_tok=rng.choice([1, 2]),
                 moe_intermediate_size=rng.choice([32, 48]), shared_expert_intermediate_size=rng.choice([0, 64]),
                 linear_num_key_heads=2, linear_num_value_heads=rng.choice([2, 4]), linear_key_head_dim=8,
                 linear_value_head_dim=rng.choice([8, 16]), head_dim=rng.choice([8, 16]))
        if k % 3 == 1:
            c["mlp_only_layers"] = [0]
        if k % 3 == 2:
            c["layer_types"] = ["full_attention", "linear_attention"] * (c["num_hidden_layers"] // 2) + \
                ["linear_attention"] * (c["num_hidden_layers"] % 2)
    else:                                     # short convolutions (LFM2)
        if k % 2:
            c["full_attn_idxs"] = [1, 2]
        c["block_multiple_of"] = rng.choice([16, 32])
        if k % 3 == 2:
            c["block_auto_adjust_ff_dim"] = False
        if k % 4 == 1:
            c["block_ffn_dim_multiplier"] = 1.5
    return c


def _mamba_hybrid(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    n = layers + 2
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
             num_hidden_layers=n, vocab_size=vocab, mamba_n_heads=rng.choice([4, 8]) if h % 8 == 0 else 4,
             mamba_n_groups=rng.choice([1, 2]), mamba_d_state=rng.choice([8, 16]), mamba_expand=2)
    c["mamba_d_head"] = 2 * h // c["mamba_n_heads"]
    if TINY[model_type].vary == "mamba_dense":
        c["attn_layer_indices"] = [1] if k % 2 else [0, n - 1]
    else:
        c.update(num_local_experts=rng.choice([2, 4]), num_experts_per_tok=rng.choice([1, 2]),
                 shared_intermediate_size=rng.choice([32, 48]))
        if k % 3:
            c["layer_types"] = ["mamba"] * (n - 1) + ["attention"]
    return c


def _mamba_pattern(model_type, k, rng, h, heads, kv, inter, layers, vocab):
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


def _lightning_moe(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    n = layers + 2
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
             num_hidden_layers=n, vocab_size=vocab, num_local_experts=rng.choice([2, 4]),
             num_experts_per_tok=rng.choice([1, 2]))
    if k % 2:
        c["head_dim"] = rng.choice([8, 16])
    if k % 3 == 2:
        c["layer_types"] = ["linear_attention"] * (n - 1) + ["full_attention"]
    return c


def _delta_hybrid(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    """Qwen3.5: Gated DeltaNet layers and gated full attention, a dense MLP or routed experts (no dense layers)."""
    n = layers + 3
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, num_hidden_layers=n, vocab_size=vocab,
             linear_num_key_heads=2, linear_num_value_heads=rng.choice([2, 4]), linear_key_head_dim=8,
             linear_value_head_dim=rng.choice([8, 16]), head_dim=rng.choice([8, 16]))
    if FAMILIES[model_type].moe:
        c.update(num_experts=rng.choice([2, 4]), num_experts_per_tok=rng.choice([1, 2]),
                 moe_intermediate_size=rng.choice([32, 48]), shared_expert_intermediate_size=rng.choice([0, 64]))
    else:
        c["intermediate_size"] = inter
    if k % 3 == 1:
        c["full_attention_interval"] = 2
    if k % 3 == 2:
        c["layer_types"] = ["full_attention", "linear_attention"] * (n // 2) + ["linear_attention"] * (n % 2)
    return c


def _cross_attention(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    """Mllama's language model: cross-attention layers among the self-attention ones."""
    c = _dense(model_type, k, rng, h, heads, kv, inter, layers + 2, vocab)
    c.pop("head_dim", None)
    c["cross_attention_layers"] = [[1], [0, 2], []][k % 3]
    return c


def _per_layer_attention(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    """Gemma 4: sliding and full layers of other head_dims, k/v shared by the last layers, per-layer inputs, MoE."""
    n = layers + 3
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
             num_hidden_layers=n, vocab_size=vocab, head_dim=rng.choice([8, 16]), global_head_dim=rng.choice([16, 32]),
             vocab_size_per_layer_input=rng.choice([50, 100]), hidden_size_per_layer_input=rng.choice([0, 8]))
    if k % 2:
        c["layer_types"] = ["sliding_attention", "full_attention"] * (n // 2) + ["full_attention"] * (n % 2)
        c["num_kv_shared_layers"] = 2
    if k % 3 == 1:
        c["num_global_key_value_heads"] = 1
    c["enable_moe_block"] = k % 4 == 2          # set, so that the random switches leave it alone
    if k % 4 == 2:
        c.update(num_experts=rng.choice([2, 4]), top_k_experts=rng.choice([1, 2]),
                 moe_intermediate_size=rng.choice([32, 48]))
    return c


def _mamba1_moe(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    """Jamba: Mamba(-1) layers, attention every attn_layer_period-th layer, experts every expert_layer_period-th."""
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
             num_hidden_layers=layers + 3, vocab_size=vocab, num_experts=rng.choice([1, 2, 4]),
             num_experts_per_tok=1, attn_layer_period=rng.choice([2, 3]), attn_layer_offset=1,
             expert_layer_period=rng.choice([1, 2]), expert_layer_offset=0, mamba_d_state=rng.choice([8, 16]),
             use_mamba_kernels=False)
    if k % 2:
        c["mamba_dt_rank"] = rng.choice([4, 8])
    return c


def _mamba_parallel(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    """Falcon-H1: attention and a Mamba-2 mixer side by side in each layer."""
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
             num_hidden_layers=layers, vocab_size=vocab, mamba_n_heads=rng.choice([2, 4]), mamba_n_groups=1,
             mamba_d_state=rng.choice([8, 16]), mamba_chunk_size=64)
    c["mamba_d_ssm"] = [None, 64, 128][k % 3]
    if k % 4 == 2:
        c["head_dim"] = 16
    return c


def _indexed_latent_moe(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    """DeepSeek-V3.2: DeepSeek-V3's latent attention and experts, with an indexer in each layer."""
    c = dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=inter,
             num_hidden_layers=layers + 1, vocab_size=vocab, n_routed_experts=rng.choice([2, 4]),
             n_shared_experts=rng.choice([1, 2]), num_experts_per_tok=2, moe_intermediate_size=32,
             first_k_dense_replace=rng.choice([0, 1]), q_lora_rank=24, kv_lora_rank=16, qk_rope_head_dim=8,
             qk_nope_head_dim=rng.choice([8, 16]), v_head_dim=8, n_group=1, topk_group=1,
             index_n_heads=rng.choice([2, 4]), index_head_dim=rng.choice([16, 32]))
    if k % 3 == 2:
        c["mlp_layer_types"] = ["sparse"] * c["num_hidden_layers"]
    return c


def _nested_moe(model_type, k, rng, h, heads, kv, inter, layers, vocab):
    # DBRX: k/v heads in attn_config, experts in ffn_config; transformers refuses a tied lm_head, and its attention
    # reads attn_config's rope_theta, which the published files hold and DbrxAttentionConfig does not default
    c = dict(d_model=h, n_heads=heads, n_layers=layers, vocab_size=vocab, tie_word_embeddings=False,
             attn_config={"kv_n_heads": kv if k % 2 else heads, "rope_theta": 10000},
             ffn_config={"ffn_hidden_size": inter, "moe_num_experts": rng.choice([2, 4, 6]),
                         "moe_top_k": rng.choice([1, 2])})
    if k % 3 == 2:
        del c["attn_config"]["kv_n_heads"]        # the class default: one k/v head
    return c


BUILDERS = {
    "dense": _dense, "dense_head_dim": _dense, "gpt_rotary": _gpt, "gpt_multi_query": _gpt,
    "moe_num_experts": _moe, "moe_local_experts": _moe, "moe_shared_dense_first": _moe, "moe_interval": _moe,
    "moe_interleaved": _moe, "moe_num_experts_head_dim": _moe,
    "linear_attention_hybrid": _hybrid, "short_conv_hybrid": _hybrid, "mamba_dense": _mamba_hybrid,
    "mamba_moe": _mamba_hybrid, "mamba_pattern": _mamba_pattern, "lightning_moe": _lightning_moe,
    "delta_hybrid": _delta_hybrid, "cross_attention": _cross_attention,
    "per_layer_attention": _per_layer_attention, "mamba1_moe": _mamba1_moe, "mamba_parallel": _mamba_parallel,
    "indexed_latent_moe": _indexed_latent_moe, "nested_moe": _nested_moe,
}
