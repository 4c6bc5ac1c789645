"""Property tests over the whole input space: only LoraCalcError escapes, no output is NaN, infinite or
negative, and memory moves the right way when a setting grows."""
from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, example, given, settings, strategies as st

import loracalc
from loracalc import allocator
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
    assert c.lora_params == sum(m.lora_params * m.copies for m in c.per_module)
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
    # a larger rank never needs less in all: card plus host (a paged optimizer's state counts on the host, and
    # bitsandbytes pages only state tensors past its size line, so one more rank can move a tensor off the card)
    # On the card the caching allocator's rounding is not monotone: a tensor that grows past 10 MiB leaves the
    # shared 20 MiB segments for one of its own (CUDACachingAllocator's kMinLargeAlloc), so the total may fall by
    # less than one such segment; the allocated peak never falls
    bigger = estimate_memory(model, rank=rank + 1, batch_size=batch, seq_len=seq, **kw)
    assert bigger.allocated_peak_bytes + bigger.host_bytes >= base.allocated_peak_bytes + base.host_bytes
    assert (bigger.total_bytes + bigger.host_bytes
            >= base.total_bytes + base.host_bytes - allocator.MID_SEGMENT)


# dense models only: bitsandbytes leaves fused expert weights 16-bit and prepare_model_for_kbit_training
# upcasts them to fp32, so QLoRA on an MoE model can need more than LoRA (test_qlora_moe_upcast below)
BIG = st.sampled_from([m for m in loracalc.list_models() if loracalc.total_params(loracalc.get_model(m)) > 6e9
                       and not loracalc.get_model(m).is_moe])


def test_qlora_moe_upcast_is_shown():
    """Qwen3-30B-A3B: 29B of its 30.5B parameters are fused experts that stay 16-bit under load_in_4bit."""
    est = estimate_memory("qwen3-30b-a3b", method="qlora")
    b = est.breakdown
    assert b["weights_16bit"] > b["weights_4bit"]
    assert any("experts" in n for n in est.notes)


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


DENSE = st.sampled_from([m for m in loracalc.list_models() if not loracalc.get_model(m).is_moe])


@FAST
@given(DENSE, st.integers(1, 64), st.sampled_from(["o", "all-linear"]))
def test_static_memory_ordering_always(model, rank, targets):
    """Weights, gradients and optimizer state alone: QLoRA < LoRA < full for every dense model and rank
    (MoE models: see test_qlora_moe_upcast_is_shown)."""
    def static(method):
        b = estimate_memory(model, method=method, rank=rank, targets=targets, batch_size=1, seq_len=1,
                            cuda_overhead=False).breakdown
        return sum(v for k, v in b.items() if k not in ("activations", "logits"))
    assert static("qlora") < static("lora") < static("full")


FAMILY_TYPES = sorted(loracalc.families.FAMILIES) + ["llava", "gemma3", "mistral3", "paligemma", "t5", ""]
CONFIG_VALUES = st.one_of(st.none(), st.integers(-5, 10**7), st.floats(allow_nan=True), st.text(max_size=6),
                          st.booleans(), st.sampled_from(FAMILY_TYPES), st.lists(st.integers(), max_size=2),
                          st.dictionaries(st.sampled_from(["model_type", "hidden_size"]), st.integers(0, 64)))
# every key some family spec reads, plus wrapper keys
CONFIG_KEYS = sorted({k for f in loracalc.families.FAMILIES.values() for k in (*f.defaults, *f.aliases.values())}
                     | {"model_type", "text_config", "vision_config"})
SMALL = st.integers(1, 96)


@FAST
@given(st.dictionaries(st.sampled_from(CONFIG_KEYS), CONFIG_VALUES))
@example({"model_type": [], "text_config": {}})  # once a TypeError: a list is no family name, nor hashable
def test_any_config_json_gives_an_architecture_or_loracalc_error(cfg):
    try:
        arch = loracalc.model_from_config(cfg)
    except LoraCalcError as e:
        assert e.field.startswith("config") and "\n" not in str(e)
        return
    _clean(estimate_memory(arch, rank=1, targets="all-linear", batch_size=1, seq_len=16))


@FAST
@given(st.sampled_from(sorted(loracalc.families.FAMILIES)),
       st.dictionaries(st.sampled_from(CONFIG_KEYS), st.one_of(SMALL, CONFIG_VALUES), max_size=8))
def test_each_family_with_random_fields_counts_or_refuses_in_one_line(model_type, extra):
    """A sized config of each family with random other fields: an architecture, or one LoraCalcError line."""
    cfg = {"model_type": model_type, "hidden_size": 64, "n_embd": 64, "num_hidden_layers": 2, "n_layer": 2,
           "num_attention_heads": 4, "n_head": 4, "vocab_size": 100, "intermediate_size": 96, **extra,
           "model_type": model_type}
    try:
        arch = loracalc.model_from_config(cfg)
        c = count_params(arch, 2, "all-linear")
    except LoraCalcError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert c.total_params > 0 and c.lora_params >= 0
    _clean(estimate_memory(arch, rank=2, targets="all-linear", batch_size=1, seq_len=8))


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.text(max_size=40), st.dictionaries(st.sampled_from(CONFIG_KEYS), CONFIG_VALUES, max_size=6)))
def test_cli_config_exits_2_with_one_line(tmp_path_factory, content):
    """`loracalc params --config FILE` with any file: output, or exit 2 and one line on stderr."""
    import contextlib
    import io

    from loracalc.cli import main

    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(["params", "--config", str(path)])
    if rc:
        assert rc == 2 and err.getvalue().count("\n") == 1 and err.getvalue().startswith("loracalc: error:")
    else:
        assert "total parameters" in out.getvalue()
