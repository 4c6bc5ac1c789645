"""Pre-flight from a trainer's config (loracalc.preflight): the three tools' published example configs are read
as PyYAML reads them, every setting that changes memory is taken from its key (or the tool's stated default), and
the estimate is the one the same settings give estimate_memory / preference_memory."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

import loracalc
from loracalc.preference import preference_memory
from loracalc.preflight import preflight, read_trainer_config, read_yaml

# axolotl's examples/llama-3/qlora.yml (axolotl-ai-cloud/axolotl, main, 2025), as published
AXOLOTL = """\
base_model: NousResearch/Meta-Llama-3-8B
# optionally might have model_type or tokenizer_type
model_type: LlamaForCausalLM
tokenizer_type: AutoTokenizer

load_in_8bit: false
load_in_4bit: true

datasets:
  - path: aaditya/alpaca_subset_1
    type: alpaca
dataset_prepared_path:
val_set_size: 0
output_dir: ./outputs/qlora-out

adapter: qlora
lora_model_dir:

sequence_len: 4096
sample_packing: true
eval_sample_packing: false

lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_modules:
lora_target_linear: true

gradient_accumulation_steps: 4
micro_batch_size: 2
num_epochs: 4
optimizer: paged_adamw_32bit
lr_scheduler: cosine
learning_rate: 0.0002

bf16: auto
tf32: false

gradient_checkpointing: true
resume_from_checkpoint:
logging_steps: 1
flash_attention: true

warmup_ratio: 0.1
evals_per_epoch: 4
saves_per_epoch: 1
weight_decay: 0.0
special_tokens:
  pad_token: "<|end_of_text|>"
"""

# torchtune's recipes/configs/llama3_1/8B_qlora_single_device.yaml (pytorch/torchtune, v0.6), the parts that
# matter here, as published
TORCHTUNE = """\
output_dir: /tmp/torchtune/llama3_1_8B/qlora_single_device # /tmp may be deleted by your system. Change it to your preference.

# Model Arguments
model:
  _component_: torchtune.models.llama3_1.qlora_llama3_1_8b
  lora_attn_modules: ['q_proj', 'v_proj', 'output_proj']
  apply_lora_to_mlp: True
  apply_lora_to_output: False
  lora_rank: 8  # higher increases accuracy and memory
  lora_alpha: 16  # usually alpha=2*rank
  lora_dropout: 0.0

# Tokenizer
tokenizer:
  _component_: torchtune.models.llama3.llama3_tokenizer
  path: /tmp/Meta-Llama-3.1-8B-Instruct/original/tokenizer.model
  max_seq_len: null

seed: null
shuffle: True
batch_size: 2

# Optimizer and Scheduler
optimizer:
  _component_: torch.optim.AdamW
  fused: True
  weight_decay: 0.01
  lr: 3e-4
lr_scheduler:
  _component_: torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup
  num_warmup_steps: 100

loss:
  _component_: torchtune.modules.loss.CEWithChunkedOutputLoss

# Training
epochs: 1
max_steps_per_epoch: null
gradient_accumulation_steps: 8  # Use to increase effective batch size
compile: False  # torch.compile the model + loss, True increases speed + decreases memory

# Environment
device: cuda
dtype: bf16

# Activations Memory
enable_activation_checkpointing: True  # True reduces memory
enable_activation_offloading: False  # True reduces memory
"""

# a TRL CLI config (`trl sft --config sft.yaml`): ModelConfig and SFTConfig fields
TRL = """\
model_name_or_path: Qwen/Qwen2.5-7B
dataset_name: trl-lib/Capybara
use_peft: true
load_in_4bit: true
lora_r: 16
lora_target_modules: all-linear
per_device_train_batch_size: 4
gradient_accumulation_steps: 2
max_length: 2048
learning_rate: 2.0e-4
bf16: true
optim: paged_adamw_8bit
output_dir: Qwen2.5-7B-SFT
"""


@pytest.mark.parametrize("text", [AXOLOTL, TORCHTUNE, TRL], ids=["axolotl", "torchtune", "trl"])
def test_the_yaml_reader_reads_what_pyyaml_reads(text):
    assert read_yaml(text) == yaml.safe_load(text)


def test_axolotl_settings_come_from_their_keys():
    read = read_trainer_config(AXOLOTL)
    data = yaml.safe_load(AXOLOTL)
    s = read["settings"]
    assert read["tool"] == "axolotl" and read["model_id"] == data["base_model"]
    assert s["method"] == "qlora" and s["rank"] == data["lora_r"] and s["targets"] == "all-linear"
    assert s["batch_size"] == data["micro_batch_size"] and s["seq_len"] == data["sequence_len"]
    assert s["gradient_accumulation"] == data["gradient_accumulation_steps"]
    assert s["optimizer"] == "paged_adamw" and s["attention"] == "flash_attention_2" and s["gradient_checkpointing"]
    assert s["loss"] == "full" and "default" in read["origin"]["loss"]
    assert "learning_rate" in read["ignored"] and "datasets" in read["ignored"]


def test_torchtune_settings_come_from_the_recipe():
    read = read_trainer_config(TORCHTUNE)
    s = read["settings"]
    assert read["tool"] == "torchtune" and read["model_id"] == "llama-3.1-8b"
    assert s["method"] == "qlora" and s["rank"] == 8 and s["recipe"] == "torchtune"
    # torchtune's names mapped to transformers' (output_proj -> o_proj; the MLP's w1, w2, w3)
    assert set(s["targets"].split(",")) == {"q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert s["batch_size"] == 2 and s["gradient_accumulation"] == 8 and s["gradient_checkpointing"]
    assert s["loss"] == "chunked" and s["optimizer"] == "adamw"


def test_torchtune_plain_cross_entropy_is_the_16bit_loss():
    """torchtune's recipes hand the model's bf16 logits to a plain torch.nn.CrossEntropyLoss as they are
    (recipes/lora_finetune_single_device.py, _loss_step): no fp32 upcast, unlike transformers' loss."""
    text = TORCHTUNE.replace("torchtune.modules.loss.CEWithChunkedOutputLoss", "torch.nn.CrossEntropyLoss")
    assert text != TORCHTUNE
    assert read_trainer_config(text)["settings"]["loss"] == "full_16bit"


def test_trl_settings_and_its_fused_head():
    read = read_trainer_config(TRL)
    s = read["settings"]
    assert read["tool"] == "trl" and s["method"] == "qlora" and s["targets"] == "all-linear"
    assert s["batch_size"] == 4 and s["seq_len"] == 2048 and s["optimizer"] == "paged_adamw_8bit"
    # trl/trainer/sft_trainer.py: add_fused_lm_head, so no full logits
    assert s["loss"] == "cce" and s["gradient_checkpointing"] and "default" in read["origin"]["gradient_checkpointing"]


@pytest.mark.parametrize("text,model", [(AXOLOTL, "llama-3-8b"), (TORCHTUNE, None), (TRL, "qwen2.5-7b")])
def test_the_estimate_is_the_engines_for_those_settings(text, model):
    presets = loracalc.list_models()
    model = model if model in presets else None if model is None else presets[0]
    est, read = preflight(text, model)
    arch = loracalc.get_model(model or "llama-3.1-8b")
    assert est.to_dict() == loracalc.estimate_memory(arch, **read["settings"]).to_dict()


def test_grpo_and_dpo_configs_go_through_preference_memory():
    grpo = json.dumps({"model_name_or_path": "meta-llama/Llama-3.1-8B", "use_peft": True, "load_in_4bit": True,
                       "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4, "num_generations": 8,
                       "max_length": 1024})
    est, read = preflight(grpo)
    s = dict(read["settings"])
    s.pop("objective")
    assert read["objective"] == "grpo"
    assert est.to_dict() == preference_memory("llama-3.1-8b", "grpo", **s).to_dict()
    dpo = AXOLOTL.replace("adapter: qlora", "adapter: qlora\nrl: dpo").replace("NousResearch/Meta-Llama-3-8B",
                                                                               "meta-llama/Llama-3.1-8B")
    est, read = preflight(dpo)
    assert read["objective"] == "dpo" and est.settings["rows_per_forward"] == 2 * read["settings"]["batch_size"]
    # axolotl's rl: dpo is trl's DPOTrainer (axolotl src/axolotl/core/trainers/dpo/trainer.py: AxolotlDPOTrainer
    # subclasses it), so the loss is TRL's fused head, as for a TRL config, not transformers' full logits
    assert read["settings"]["loss"] == "cce" and "TRL" in read["origin"]["loss"]


@pytest.mark.parametrize("text,field", [
    ("- a\n- b\n", "config"), ("foo: 1\n", "config"), ("base_model: x\nmicro_batch_size: 1\n", "model"),
    ("anchor: &a 1\n", "config"), ("{bad json", "config"),
    ("base_model: meta-llama/Llama-3.1-8B\noptimizer: lion\n", "config"),
])
def test_bad_files_get_one_line(text, field):
    with pytest.raises(loracalc.LoraCalcError) as err:
        preflight(text)
    assert err.value.field == field and "\n" not in str(err.value)


def test_cli_preflight(tmp_path):
    f = tmp_path / "qlora.yml"
    f.write_text(AXOLOTL.replace("NousResearch/Meta-Llama-3-8B", "meta-llama/Llama-3.1-8B"))
    out = subprocess.run([sys.executable, "-m", "loracalc", "preflight", str(f), "--gpu", "rtx-4090", "--json"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["tool"] == "axolotl" and data["read"]["seq_len"] == "sequence_len: 4096"
    assert data["gpu"]["fits"] == (data["estimate"]["total_bytes"] <= data["gpu"]["memory_bytes"])
    bad = subprocess.run([sys.executable, "-m", "loracalc", "preflight", str(tmp_path / "none.yml")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "cannot read" in bad.stderr
