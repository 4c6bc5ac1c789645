"""Placeholder: figures registered by this module (see figures.py)."""
from .figures import figure, table  # noqa: F401
