"""The LoRA & QLoRA module's own layer on top of the ``loracalc`` engine (standard library only).

What is here belongs to this course and nowhere else: the figures and tables its pages quote
(``figures``, from ``headline``, ``prose``, ``measured``, ``evidence``, ``quiz``), the quiz, the
evidence experiment's and the memory probe's recorded results (``data/``), and one function per
interactive widget (``widgets``). It imports ``loracalc``; ``loracalc`` never imports it.

Importing the package loads ``figures`` so the figure registry is complete before anything reads it.
"""
from __future__ import annotations

from . import figures  # noqa: F401
