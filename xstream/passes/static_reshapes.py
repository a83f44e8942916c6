"""Replace EXPAND_DIMS and SQUEEZE with RESHAPE to a constant shape (targets whose planners need static shapes).

xformer's memory planner aborts on EXPAND_DIMS ("IsDynamicTensor ... Disabled function"), which TF emits for every
Keras Conv1D with an unknown batch. After conversion every shape is static, so a RESHAPE says the same thing.
"""

from __future__ import annotations

from .. import ops
from ..ir import Model
from . import PassResult

SHAPE_ONLY = {"EXPAND_DIMS", "SQUEEZE"}


def static_reshapes(model: Model) -> PassResult:
    model = model.copy()
    changed = False
    for sg in model.subgraphs:
        for i, op in enumerate(sg.operators):
            if op.type in SHAPE_ONLY and op.outputs[0].shape and all(d > 0 for d in op.outputs[0].shape):
                sg.operators[i] = ops.reshape(op.inputs[0], op.outputs[0])
                changed = True
    return PassResult(model, changed)
