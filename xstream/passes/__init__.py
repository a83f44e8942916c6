"""Graph passes: one transformation per module, each a `Pass` with the conditions it requires and ensures.

A pass edits the model it is given in place and says whether it changed anything (`PassResult`). The pipeline
copies the user's model once and runs every pass on that working copy (`Pass.apply`); called directly
(`Pass.__call__`), a pass that needs no plan works on a copy and leaves its input alone. Passes that apply a
StreamPlan edit the very model the plan was computed on (the plan refers to its objects), so they run in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir import Model, Operator, Subgraph
from .conditions import check


@dataclass
class PassResult:
    model: Model
    modified: bool


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[..., bool]  # edits the model in place; True if it changed anything
    requires: tuple[str, ...] = ()  # conditions (passes/conditions.py) that must hold before
    ensures: tuple[str, ...] = ()  # conditions that hold after
    in_place: bool = False  # True: it applies a plan to the model the plan was computed on

    def apply(self, model: Model, *args) -> PassResult:
        """Run on `model` itself, checking the pass's conditions before and after."""
        check(model, self.requires, f"before {self.name}")
        modified = self.run(model, *args)
        check(model, self.ensures, f"after {self.name}")
        return PassResult(model, bool(modified))

    def __call__(self, model: Model, *args) -> PassResult:
        return self.apply(model if self.in_place else model.copy(), *args)


def rewrite_each(model: Model, op_type: str, rewrite: Callable[[Subgraph, Operator], bool]) -> bool:
    """Call `rewrite(subgraph, op)` on each `op_type` op still in its graph when reached; True if any changed."""
    changed = False
    for sg in model.subgraphs:
        for op in list(sg.operators):
            if op.type == op_type and op in sg.operators:
                changed |= rewrite(sg, op)
    return changed
