"""Shared fixtures; generic helpers live in tests/helpers.py."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import ZOO


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def zoo_bytes() -> dict[str, bytes]:
    """The bytes of every zoo model by file stem (read once)."""
    return {p.stem: p.read_bytes() for p in ZOO}
