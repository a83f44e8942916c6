"""Drop ops that copy their input unchanged: a crop on time that the stream opened (every frame of a step passes),
a reshape to the shape it already has, and a reshape of a reshape (Conv1D's squeeze to [1, T, C] and the next
Conv1D's expand back to [1, T, 1, C] become one reshape, which is then often to the same shape). Each costs
TFLite Micro an op, a tensor and its copy (docs/TFLM_COST.md)."""

from __future__ import annotations

import numpy as np

from .. import make, ops
from ..ir import Model, Operator, Subgraph, same_quantization
from . import Pass


def _is_identity(op: Operator) -> bool:
    if op.type not in ("STRIDED_SLICE", "SLICE", "RESHAPE") or not op.inputs or op.inputs[0] is None:
        return False
    x, y = op.inputs[0], op.outputs[0]
    if tuple(x.shape) != tuple(y.shape) or x.dtype != y.dtype or y.is_variable or not same_quantization(x, y):
        return False
    if op.type == "STRIDED_SLICE":
        strides = op.inputs[3].data if len(op.inputs) > 3 and op.inputs[3] is not None else None
        if strides is None or np.any(np.asarray(strides) != 1):
            return False  # same shape with a step of 1 on every axis: every element, in order
        if any(op.options.get(k, 0) for k in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask", "offset")):
            return False
    return True


def _is_reshape(op: Operator) -> bool:
    """RESHAPE, EXPAND_DIMS or SQUEEZE of a static shape: only the shape changes, never a byte."""
    return ops.family(op) == ops.RESHAPE and bool(op.inputs) and op.inputs[0] is not None and \
        all(d >= 0 for d in op.outputs[0].shape)


def _collapse_reshapes(sg: Subgraph) -> bool:
    """reshape(reshape(x)) -> RESHAPE(x) where the inner result has no other reader, and -> x itself where it
    has x's shape (the inner reshape stays for its other readers)."""
    changed = False
    for op in list(sg.operators):
        if not _is_reshape(op):
            continue
        mid = op.inputs[0]
        inner = sg.producer(mid)
        if inner is None or not _is_reshape(inner) or mid in sg.outputs:
            continue
        x, y = inner.inputs[0], op.outputs[0]
        if x.dtype != y.dtype or not same_quantization(x, y):
            continue
        if len(sg.consumers(mid)) != 1:
            if tuple(x.shape) == tuple(y.shape) and not y.is_variable and y not in sg.outputs:
                sg.replace_uses(y, x)
                sg.operators.remove(op)
                changed = True
            continue
        at = sg.operators.index(op)
        sg.operators[at] = make.reshape(x, y)
        sg.operators.remove(inner)
        changed = True
    return changed


def _run(model: Model) -> bool:
    changed = False
    for sg in model.subgraphs:
        changed |= _collapse_reshapes(sg)
        for op in list(sg.operators):
            if _is_identity(op) and op.outputs[0] not in sg.outputs:
                model.replace_uses(sg, op.outputs[0], op.inputs[0], skip=op)
                sg.operators.remove(op)
                changed = True
        if changed:
            sg.cleanup()
    return changed


drop_identity_ops = Pass("drop_identity_ops", _run, requires=("topological",), ensures=("topological",))
