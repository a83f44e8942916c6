"""Graph passes: each is one function in its own module that takes a Model and returns a PassResult."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir import Model, Operator, Subgraph


@dataclass
class PassResult:
    model: Model  # a new model; the input model is never modified
    modified: bool


def rewrite_each(model: Model, op_type: str, rewrite: Callable[[Subgraph, Operator], bool]) -> PassResult:
    """Copy `model` and call `rewrite(subgraph, op)` on each `op_type` op still in its graph when reached."""
    model = model.copy()
    changed = False
    for sg in model.subgraphs:
        for op in list(sg.operators):
            if op.type == op_type and op in sg.operators:
                changed |= rewrite(sg, op)
    return PassResult(model, changed)
