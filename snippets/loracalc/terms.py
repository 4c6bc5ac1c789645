"""What a memory estimate is made of: labelled terms (bytes and formula) and the estimate that holds them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .gpus import fits


@dataclass(frozen=True)
class Term:
    key: str
    label: str
    bytes: int
    formula: str
    # "allocated": PyTorch's caching allocator (max_memory_allocated counts it); "managed": CUDA unified
    # memory that bitsandbytes' paged optimizers allocate outside that allocator; "reserve": the CUDA
    # context and the allocator's cached-but-free blocks, which nvidia-smi sees and max_memory_allocated does not
    pool: str = "allocated"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "bytes": self.bytes, "formula": self.formula,
                "pool": self.pool}


def term(key: str, label: str, nbytes: float, formula: str, pool: str = "allocated") -> Term:
    """A term whose bytes are rounded to a whole number (formulas may give fractions of a byte per value)."""
    return Term(key, label, int(round(nbytes)), formula, pool)


@dataclass(frozen=True)
class MemoryEstimate:
    model: str
    settings: dict
    terms: tuple[Term, ...]
    approximate: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    host: tuple[Term, ...] = field(default_factory=tuple)   # what the options moved to CPU memory
    off_peak: tuple[Term, ...] = field(default_factory=tuple)  # allocated during the step, not at its peak

    @property
    def total_bytes(self) -> int:
        """Needed on the card: allocated peak, allocator reserve, CUDA context and paged state (nvidia-smi)."""
        return sum(t.bytes for t in self.terms)

    @property
    def allocated_peak_bytes(self) -> int:
        """Comparable to torch.cuda.max_memory_allocated (and torchtune's peak active bytes)."""
        return sum(t.bytes for t in self.terms if t.pool == "allocated")

    def term(self, key: str) -> Term:
        """A term by key, whether at the peak, off it, or in CPU memory."""
        for t in self.terms + self.off_peak + self.host:
            if t.key == key:
                return t
        raise KeyError(key)

    @property
    def host_bytes(self) -> int:
        return sum(t.bytes for t in self.host)

    @property
    def breakdown(self) -> dict[str, int]:
        return {t.key: t.bytes for t in self.terms}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "approximate": self.approximate, "settings": dict(self.settings),
                "total_bytes": self.total_bytes, "total_gb": round(self.total_bytes / 1e9, 3),
                "total_means": "needed on the card (reserved + CUDA context; compare with nvidia-smi)",
                "allocated_peak_bytes": self.allocated_peak_bytes,
                "allocated_peak_gb": round(self.allocated_peak_bytes / 1e9, 3),
                "allocated_peak_means": "PyTorch allocator peak (compare with torch.cuda.max_memory_allocated)",
                "host_bytes": self.host_bytes, "host": [t.to_dict() for t in self.host],
                "off_peak": [t.to_dict() for t in self.off_peak],
                "breakdown": self.breakdown, "terms": [t.to_dict() for t in self.terms],
                "fits": fits(self.total_bytes), "notes": list(self.notes)}


def gb(n: float) -> str:
    return f"{n / 1e9:,.2f} GB"
