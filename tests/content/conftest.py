"""Fixtures for the content tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def figures_module():
    from lora_course import figures

    return figures
