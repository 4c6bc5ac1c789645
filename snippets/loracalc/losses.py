"""The loss's own memory at its peak: full logits, chunked, compiled, fused linear and Cut Cross-Entropy."""
from __future__ import annotations

LOSSES = {
    "full": "full logits, fp32 cross-entropy (transformers)",
    "full_16bit": "full logits, cross-entropy in the logits' 16-bit dtype (no fp32 upcast; torchtune before 0.3)",
    "chunked": "chunked cross-entropy (torchtune CEWithChunkedOutputLoss, eager)",
    "chunked_compiled": "chunked cross-entropy, torch.compile'd (torchtune with compile: True)",
    "fused_linear": "fused linear cross-entropy (Liger)",
    "cce": "Cut Cross-Entropy (Apple; Unsloth)",
}


def fused_rows(tokens: int, vocab: int, hidden: int) -> int:
    """Rows of logits Liger's fused linear cross-entropy computes at once: next_pow2(tokens / ceil(vocab / hidden))."""
    return min(tokens, _next_pow2(-(-tokens // -(-vocab // hidden))))


def largest_loss_block(loss: str, vocab: int, tokens: int, hidden: int, logits_bytes: int,
                       chunks: int = 8) -> tuple[int, str] | None:
    """The largest single tensor the loss allocates and frees in a step (for the caching allocator), and what it is;
    None when the loss makes nothing vocabulary-sized (Cut Cross-Entropy)."""
    V, T = vocab, tokens
    tc = -(-T // chunks)
    if loss == "full":
        return 4 * V * T, f"the loss's fp32 log-softmax, 4 B x {T:,} tokens x {V:,} vocab"
    if loss == "full_16bit":
        return logits_bytes * V * T, f"the loss's log-softmax, {logits_bytes} B x {T:,} tokens x {V:,} vocab"
    if loss == "chunked":
        return 4 * V * tc, f"one loss chunk's fp32 log-softmax, 4 B x {tc:,} tokens x {V:,} vocab"
    if loss == "chunked_compiled":
        return logits_bytes * V * tc, f"one loss chunk, {logits_bytes} B x {tc:,} tokens x {V:,} vocab"
    if loss == "fused_linear":
        rows = fused_rows(T, V, hidden)
        return logits_bytes * rows * V, f"the fused loss's chunk of logits, {logits_bytes} B x {rows:,} rows x {V:,} vocab"
    return None


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# --8<-- [start:losses]
def loss_bytes(loss: str, vocab: int, tokens: int, hidden: int, logits_bytes: int, stream_bytes: int,
               chunks: int = 8, softcap: bool = False, head_trainable: bool = False) -> tuple[int, str]:
    """Bytes the loss holds at its peak beyond the layers' activations, and the formula as text.

    * full (transformers): the logits, their fp32 log-softmax (saved), and in backward the fp32 gradient
      arriving at the log-softmax and the one it returns, all alive at once;
    * full, 16-bit (F.cross_entropy on bf16 logits, no upcast): the logits, their 16-bit log-softmax (saved),
      and in backward the two 16-bit gradients;
    * chunked (torchtune, eager): the output chunks (alive while the loss runs), every chunk's fp32
      log-softmax (saved), one chunk's fp32 upcast in flight;
    * chunked, compiled: the compiled loss saves the 16-bit chunks and an fp32 max and log-sum-exp per token; its
      backward is one fused kernel per chunk that writes the chunk's 16-bit gradient;
    * fused linear (Liger): the input's gradient, computed in forward and saved, plus one chunk of logits
      whose rows are next_pow2(tokens / ceil(vocab / hidden)); the output layer's fp32 weight gradient too
      when it trains;
    * Cut Cross-Entropy: the saved input and, in backward, its gradient, plus an fp32 log-sum-exp per token.
    """
    V, T, h = vocab, tokens, hidden
    if loss == "full":
        cap = logits_bytes if softcap else 0
        return ((logits_bytes + 12 + cap) * V * T,
                f"({logits_bytes} + 4 + 4 + 4{f' + {cap} soft-cap' if cap else ''}) B x {T:,} tokens x {V:,} vocab")
    if loss == "full_16bit":
        cap = logits_bytes if softcap else 0
        return ((4 * logits_bytes + cap) * V * T,
                f"4 x {logits_bytes} B{f' + {cap} B soft-cap' if cap else ''} x {T:,} tokens x {V:,} vocab "
                "(logits, log-softmax, two gradients)")
    tc = -(-T // chunks)
    if loss == "chunked":
        return ((logits_bytes + 4) * V * T + 4 * V * tc,
                f"({logits_bytes} + 4) B x {T:,} tokens x {V:,} vocab + 4 B x {tc:,} tokens x {V:,} (one of {chunks} chunks)")
    if loss == "chunked_compiled":
        return (logits_bytes * V * T + logits_bytes * V * tc + 8 * T,
                f"{logits_bytes} B x {T:,} tokens x {V:,} vocab + {logits_bytes} B x {tc:,} tokens x {V:,} "
                f"(one chunk's gradient) + 8 B x {T:,} (fp32 max and log-sum-exp)")
    if loss == "fused_linear":
        rows = fused_rows(T, V, h)
        w = 4 * V * h if head_trainable else 0
        return (stream_bytes * h * T + logits_bytes * rows * V + w,
                f"{stream_bytes} B x {T:,} tokens x {h:,} (input gradient) + {logits_bytes} B x {rows:,} rows x {V:,} vocab"
                + (f" + 4 B x {V * h:,} (output layer's weight gradient)" if w else ""))
    return (2 * stream_bytes * h * T + 4 * T,
            f"2 x {stream_bytes} B x {T:,} tokens x {h:,} (input and its gradient) + 4 B x {T:,} log-sum-exp")
# --8<-- [end:losses]
