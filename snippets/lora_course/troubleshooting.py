"""Figures the troubleshooting page quotes: library defaults that decide whether a failure happens.

Each value was read in the library's own source (the version is in the source note) and is checked
against the installed library by ``tests/content/test_troubleshooting.py``, so a release that changes a
default fails a test instead of leaving the page wrong.

Standard library only: this module is imported in Pyodide too.
"""
from __future__ import annotations

from .registry import figure

# (display value, where it was read)
DEFAULTS: dict[str, tuple[str, str]] = {
    # SFTConfig.max_length: longer tokenized examples are cut from the end (truncation_mode "keep_start").
    "trl_sft_default_max_length": ("1,024", "trl 1.16 trl/trainer/sft_config.py: SFTConfig.max_length default"),
}


def _register() -> None:
    for name, (value, _source) in DEFAULTS.items():
        figure(name)(lambda value=value: value)


_register()
