"""loracalc: the numbers behind the LoRA & QLoRA module (standard library only)."""
