"""The shipped DeepSpeed configuration: accelerate reads it, and it holds the settings peft's guide
"Use PEFT QLoRA and DeepSpeed with ZeRO3" gives (zero_stage 3, zero3_init_flag, bf16)."""

from __future__ import annotations

from lab_helpers import LABS

CONFIG = LABS / "accelerate_deepspeed_zero3_qlora.yaml"


def test_accelerate_reads_the_zero3_qlora_config():
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(CONFIG))
    assert config.distributed_type == "DEEPSPEED"
    assert config.deepspeed_config["zero_stage"] == 3
    assert config.deepspeed_config["zero3_init_flag"] is True    # peft's guide: required for QLoRA + ZeRO-3
    assert config.mixed_precision == "bf16"                        # the dtype the 4-bit storage must match


def test_the_page_shows_the_file_itself():
    from pathlib import Path

    page = (Path(LABS).parent / "docs/deep-dives/current-practice.md").read_text(encoding="utf-8")
    assert '--8<-- "gpu_labs/accelerate_deepspeed_zero3_qlora.yaml"' in page
