"""Inputs to feed a runner."""

from __future__ import annotations

import numpy as np


def random_frames(shape, dtype, rng: np.random.Generator) -> np.ndarray:
    """Random input: integers over the dtype's whole range, floats standard normal."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, shape, dtype=np.int64).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
