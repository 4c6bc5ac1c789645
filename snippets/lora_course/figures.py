"""Named figures and tables the prose quotes, so no page types a number by hand.

A page writes ``{{ fig.NAME }}`` (an inline figure) or ``{{ table.NAME }}`` (a Markdown table);
the build hook ``hooks/figures.py`` replaces them with what ``render_figure`` / ``render_table``
return, and an unknown name fails the build. The modules imported below register their figures in
``registry.py`` when imported; this is the one list of them.
"""
from __future__ import annotations

# each registers its figures when imported; headline first (prose defers to its names)
from . import headline, prose, practice, measured, evidence, quiz, published, multi_gpu, coverage, versions  # noqa: F401,E501
from . import troubleshooting  # noqa: F401,E402  (the troubleshooting page's library defaults)
from . import published_speed  # noqa: F401,E402  (training time against published throughput)
from . import serving  # noqa: F401,E402  (serving memory against vLLM's own figures)
from . import hardware  # noqa: F401,E402  (Macs and Radeon cards, from the GPU catalog)
from . import preference  # noqa: F401,E402  (DPO, ORPO, KTO, GRPO memory as TRL runs them)
from . import vision  # noqa: F401,E402  (vision-language models counted whole)
from . import allocator_evidence  # noqa: F401,E402  (the caching allocator fitted on published pairs)
from . import quantized_bases  # noqa: F401,E402  (LoRA on GPTQ, AWQ, HQQ and torchao bases)
from . import host_ram  # noqa: F401,E402  (host RAM of loading, saving, merging)
from .registry import FIGURES, TABLES, figure, table  # noqa: F401  (re-exported for the tests and hooks)


def render_figure(name: str) -> str:
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; known: {', '.join(sorted(FIGURES))}")
    return FIGURES[name]()


def render_table(name: str) -> str:
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
    return TABLES[name]()
