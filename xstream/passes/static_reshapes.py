"""Replace EXPAND_DIMS and SQUEEZE with RESHAPE to a constant shape (targets whose planners need static shapes).

xformer's memory planner aborts on EXPAND_DIMS ("IsDynamicTensor ... Disabled function"), which TF emits for every
Keras Conv1D with an unknown batch. After conversion every shape is static, so a RESHAPE says the same thing.
"""

from __future__ import annotations

from .. import make, ops
from ..ir import Model
from . import Pass


def _static(t) -> bool:
    """A shape that holds at run time: no dynamic dimension (an unknown batch's placeholder is not one)."""
    return bool(t.shape) and all(d > 0 for d in t.shape) and \
        (t.shape_signature is None or all(d >= 0 for d in t.shape_signature))


def _run(model: Model) -> bool:
    changed = False
    for sg in model.subgraphs:
        for i, op in enumerate(sg.operators):
            if ops.family(op) == ops.RESHAPE and op.type != "RESHAPE" and _static(op.inputs[0]) \
                    and _static(op.outputs[0]):
                sg.operators[i] = make.reshape(op.inputs[0], op.outputs[0])
                changed = True
    return changed


static_reshapes = Pass("static_reshapes", _run, ensures=("static_shapes",))
