"""Property tests over the whole input space: only LoraCalcError escapes, no output is NaN, infinite or
negative, and memory moves the right way when a setting grows."""
from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings, strategies as st

import loracalc
from loracalc import LoraCalcError, count_params, estimate_memory

MODELS = st.sampled_from(loracalc.list_models())
ANY = st.one_of(st.integers(-10**6, 10**7), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                st.none(), st.booleans())
TARGETS = st.one_of(st.sampled_from(["q,v", "all-linear", "q,k,v,o", "gate,up,down", "k", "o_proj down_proj"]),
                    st.text(max_size=12), st.lists(st.sampled_from(["q", "v_proj", "up", "x"]), max_size=3))
OPTS = st.sampled_from(list(loracalc.OPTIMIZERS))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _clean(est) -> None:
    text = json.dumps(est.to_dict(), allow_nan=False)          # raises on NaN / inf
    assert "NaN" not in text
    for t in est.terms:
        assert isinstance(t.bytes, int) and t.bytes >= 0 and t.label and t.formula
    assert est.total_bytes > 0


@FAST
@given(MODELS, ANY, TARGETS)
def test_count_params_only_raises_loracalc_error(model, rank, targets):
    try:
        c = count_params(model, rank, targets)
    except LoraCalcError as e:
        assert e.field in ("rank", "targets") and "\n" not in str(e)
        return
    assert c.lora_params == sum(m.lora_params for m in c.per_module) * c.num_layers
    assert 0 < c.trainable_percent < 100 and math.isfinite(c.trainable_percent)


@FAST
@given(MODELS, st.sampled_from(["full", "lora", "qlora", "dora", 3]), ANY, ANY, ANY, st.sampled_from([True, False, "x"]),
       st.sampled_from(["adamw", "sgd", "adam"]), st.sampled_from(["sdpa", "eager", "flash"]))
def test_estimate_only_raises_loracalc_error(model, method, rank, batch, seq, gc, opt, att):
    try:
        est = estimate_memory(model, method=method, rank=rank, batch_size=batch, seq_len=seq,
                              gradient_checkpointing=gc, optimizer=opt, attention=att)
    except LoraCalcError as e:
        assert e.field and "\n" not in str(e)
        return
    _clean(est)


SETTINGS = dict(rank=st.integers(1, 64), batch=st.integers(1, 64), seq=st.integers(1, 8192), gc=st.booleans(),
                att=st.sampled_from(["sdpa", "eager"]), opt=OPTS, method=st.sampled_from(["full", "lora", "qlora"]))


@FAST
@given(model=MODELS, **SETTINGS)
def test_memory_grows_with_batch_seq_and_rank(model, rank, batch, seq, gc, att, opt, method):
    kw = dict(method=method, gradient_checkpointing=gc, attention=att, optimizer=opt)
    base = estimate_memory(model, rank=rank, batch_size=batch, seq_len=seq, **kw)
    _clean(base)
    # the peak never falls with more tokens, and what the step allocates at some moment always grows; the peak
    # itself can stay put when it is the end of backward (all gradients of a full fine-tune), which does not
    # depend on the tokens
    def step_bytes(e):
        return e.total_bytes + sum(t.bytes for t in e.off_peak)
    for more in (dict(batch_size=batch + 1, seq_len=seq), dict(batch_size=batch, seq_len=seq + 1)):
        e = estimate_memory(model, rank=rank, **more, **kw)
        assert e.total_bytes >= base.total_bytes and step_bytes(e) > step_bytes(base)
    assert estimate_memory(model, rank=rank + 1, batch_size=batch, seq_len=seq, **kw).total_bytes >= base.total_bytes


BIG = st.sampled_from([m for m in loracalc.list_models() if loracalc.total_params(loracalc.get_model(m)) > 6e9])


@FAST
@given(model=BIG, rank=st.integers(1, 64), batch=st.integers(1, 4), seq=st.integers(1, 1024),
       att=st.sampled_from(["sdpa", "eager"]), opt=OPTS)
def test_qlora_below_lora_below_full(model, rank, batch, seq, att, opt):
    """QLoRA <= LoRA <= full for the same settings, for models above 6B with gradient checkpointing and up
    to 4,096 tokens per step. Outside that the ordering of QLoRA and LoRA can flip, and the engine says so:
    prepare_model_for_kbit_training makes the embeddings, norms and lm_head fp32, so QLoRA's hidden states
    and logits are fp32 (twice LoRA's bf16) while its saving is fixed by the weights. For Qwen2.5-0.5B at
    2,048 tokens the fp32 logits alone (2 B x 151,936 x 2,048 = 0.62 GB) outweigh the 0.26 GB saved."""
    kw = dict(rank=rank, batch_size=batch, seq_len=seq, attention=att, optimizer=opt, gradient_checkpointing=True)
    q, lo, f = (estimate_memory(model, method=m, **kw).total_bytes for m in ("qlora", "lora", "full"))
    assert q <= lo <= f


def test_qlora_can_exceed_lora_on_a_small_model():
    kw = dict(batch_size=1, seq_len=2048, gradient_checkpointing=True)
    assert estimate_memory("qwen2.5-0.5b", method="qlora", **kw).total_bytes > \
        estimate_memory("qwen2.5-0.5b", method="lora", **kw).total_bytes


@FAST
@given(MODELS, st.integers(1, 64), st.sampled_from(["q,v", "all-linear"]))
def test_static_memory_ordering_always(model, rank, targets):
    """Weights, gradients and optimizer state alone: QLoRA < LoRA < full for every model and rank."""
    def static(method):
        b = estimate_memory(model, method=method, rank=rank, targets=targets, batch_size=1, seq_len=1,
                            cuda_overhead=False).breakdown
        return sum(v for k, v in b.items() if k not in ("activations", "logits"))
    assert static("qlora") < static("lora") < static("full")


CONFIG_VALUES = st.one_of(st.none(), st.integers(-5, 10**7), st.floats(allow_nan=True), st.text(max_size=6),
                          st.booleans(), st.sampled_from(["llama", "qwen2", "qwen3", "gemma2", "phi3"]),
                          st.lists(st.integers(), max_size=2))
CONFIG_KEYS = ["model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "attention_bias"]


@FAST
@given(st.dictionaries(st.sampled_from(CONFIG_KEYS), CONFIG_VALUES))
def test_any_config_json_gives_an_architecture_or_loracalc_error(cfg):
    try:
        arch = loracalc.model_from_config(cfg)
    except LoraCalcError as e:
        assert e.field.startswith("config") and "\n" not in str(e)
        return
    _clean(estimate_memory(arch, rank=1, targets="q,v", batch_size=1, seq_len=16))
