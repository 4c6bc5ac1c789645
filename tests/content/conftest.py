"""Fixtures for the content tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def figures_module():
    from loracalc import figures

    figures._collect()
    return figures
