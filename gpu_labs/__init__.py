"""The course's GPU labs, as one package whose imports run one way (no module imports one that imports it back):

    core          errors without tracebacks, paths, folders that appear whole (standard library only)
    labdata       datasets -> chat messages -> token ids with answer-only labels
    labmodels     tiny models of every family, 4-bit settings, the names --targets accepts
    labkit        batches, probe loss, devices and memory readings; the tiny-model command
    adapters      the model and its LoRA adapters from one AdapterPlan
    prediction    loracalc's estimate for a run and the measured peak beside it
    trainer       what the course adds to transformers' Trainer (checkpoints, resume check, log, callbacks)
    distributed   what each rank holds under DDP/FSDP, next to loracalc's per-GPU prediction

The scripts (qlora_finetune, trl_sft, serve_adapters, merge_export, memory_probe, ...) import these and run
as `python gpu_labs/<script>.py` or `python -m gpu_labs.<script>`. Every module imports only the standard
library at import time, so `--help` stays instant.
"""
