"""Remember each operator's index in the user's file, so every later message names it as the user sees it."""

from __future__ import annotations

from ..ir import Model
from . import Pass


def _run(model: Model) -> bool:
    changed = False
    for sg in model.subgraphs:
        for i, op in enumerate(sg.operators):
            if op.source_index is None:
                op.source_index = i
                changed = True
    return changed


index_operators = Pass("index_operators", _run, ensures=("source_indexed",))
