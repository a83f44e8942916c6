"""Graph passes: each is one function in its own module that takes a Model and returns a PassResult."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Model


@dataclass
class PassResult:
    model: Model  # a new model; the input model is never modified
    modified: bool
