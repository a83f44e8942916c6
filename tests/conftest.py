"""Shared fixtures; generic helpers live in tests/helpers.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import ZOO
from xstream.runtimes.tflm_host import tflm_host_binary


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def zoo_bytes() -> dict[str, bytes]:
    """The bytes of every zoo model by file stem (read once)."""
    return {p.stem: p.read_bytes() for p in ZOO}


@pytest.fixture(scope="session")
def harness() -> Path:
    """The TFLite Micro host harness (kernels/build.sh, cached in build/kernels); skips without a C++ compiler."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx}) on this machine: the TFLite Micro tests build a C++ harness "
                    "(CI installs g++)")
    return Path(tflm_host_binary())
