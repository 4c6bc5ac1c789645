"""Training stacks (recipes): where the tensors of a LoRA / QLoRA run live, one row of facts per stack."""
from __future__ import annotations

from dataclasses import dataclass


# --8<-- [start:recipes]
@dataclass(frozen=True)
class Recipe:
    label: str
    adapter_bytes: int        # bytes per adapter value: peft's get_peft_model(autocast_adapter_dtype=True) makes fp32
    # which non-quantized parameters prepare_model_for_kbit_training leaves in fp32 after the recipe is done
    kbit_upcast: str          # "all", "norms" or "none"
    quantize_lm_head: bool    # LitGPT's bnb precision plugin also quantizes the output layer
    # whether the recipe trains under torch.autocast (bf16): qlora.py runs HF Trainer with --bf16; the course's
    # labs, torchtune and LitGPT (bf16-true) do not. HF Trainer / TRL users with bf16=True should set autocast
    autocast: bool
    # LitGPT's own attention expands k and v to every query head before SDPA ("training: flash attention requires
    # it", litgpt/model.py CausalSelfAttention.forward, 2024), so grouped-query models keep full-width k and v
    kv_expanded: bool
    # LitGPT's fit() keeps each step's `logits` in a local until the next step's forward returns, and with them
    # that step's autograd graph: backward frees what autograd saved, but not what bitsandbytes keeps on ctx. So
    # while the next forward runs, the last step's kept inputs and logits are still alive. HF Trainer's
    # training_step returns loss.detach() and drops the outputs; torchtune deletes them
    holds_last_step: bool
    # LitGPT builds every model from plain nn.Linear and Lightning's plugin replaces them all, so families whose
    # transformers layers bitsandbytes leaves in 16 bit (Falcon's FalconLinear) are quantized there
    quantizes_every_linear: bool
    # Copies a quantized weight makes when its backward dequantizes it (bitsandbytes' MatMul4Bit.backward and
    # MatMul8bitLt.backward; torchao's linear_nf4): one in the quant state's dtype, plus a cast copy when that
    # differs from the compute dtype. Lightning's BitsandbytesPrecision (LitGPT) quantizes from fp16
    # (`_quantize_weight`: weight.to(dtype=torch.half)) and computes in bf16, so it makes two.
    dequant_copies: int
    fused_adamw: bool         # torchtune's configs use AdamW(fused=True): no foreach step temporaries


# The bytes come from each stack's code: peft's get_peft_model(autocast_adapter_dtype=True) makes adapters fp32
# and prepare_model_for_kbit_training casts every non-quantized parameter to fp32; the QLoRA paper's qlora.py
# runs that function, then casts LoRA layers, embed_tokens and lm_head back to bf16 (norms stay fp32); torchtune
# and LitGPT keep everything in bf16 and never call it, and LitGPT's bnb precision plugin also quantizes the
# output layer.
RECIPE_FACTS = {
    "peft": Recipe("Hugging Face peft (fp32 adapters; 8/4-bit: fp32 upcast of the rest)", adapter_bytes=4,
                   kbit_upcast="all", quantize_lm_head=False, autocast=False, kv_expanded=False,
                   holds_last_step=False, quantizes_every_linear=False, dequant_copies=1, fused_adamw=False),
    "qlora-paper": Recipe("QLoRA paper's qlora.py (bf16 adapters, embeddings and lm_head)", adapter_bytes=2,
                          kbit_upcast="norms", quantize_lm_head=False, autocast=True, kv_expanded=False,
                          holds_last_step=False, quantizes_every_linear=False, dequant_copies=1, fused_adamw=False),
    "torchtune": Recipe("torchtune (all bf16, no upcast)", adapter_bytes=2, kbit_upcast="none",
                        quantize_lm_head=False, autocast=False, kv_expanded=False, holds_last_step=False,
                        quantizes_every_linear=False, dequant_copies=1, fused_adamw=True),
    "litgpt": Recipe("LitGPT (all bf16, no upcast, output layer quantized too)", adapter_bytes=2,
                     kbit_upcast="none", quantize_lm_head=True, autocast=False, kv_expanded=True,
                     holds_last_step=True, quantizes_every_linear=True, dequant_copies=2, fused_adamw=False),
}
# --8<-- [end:recipes]
RECIPES = {k: r.label for k, r in RECIPE_FACTS.items()}
# the columns by name, as other modules (and older code) read them
ADAPTER_BYTES = {k: r.adapter_bytes for k, r in RECIPE_FACTS.items()}
KBIT_UPCAST = {k: r.kbit_upcast for k, r in RECIPE_FACTS.items()}
QUANTIZE_LM_HEAD = {k: r.quantize_lm_head for k, r in RECIPE_FACTS.items()}
AUTOCAST = {k: r.autocast for k, r in RECIPE_FACTS.items()}
KV_EXPANDED = {k: r.kv_expanded for k, r in RECIPE_FACTS.items()}
HOLDS_LAST_STEP = {k: r.holds_last_step for k, r in RECIPE_FACTS.items()}
QUANTIZES_EVERY_LINEAR = {k: r.quantizes_every_linear for k, r in RECIPE_FACTS.items()}
DEQUANT_COPIES = {k: r.dequant_copies for k, r in RECIPE_FACTS.items()}
