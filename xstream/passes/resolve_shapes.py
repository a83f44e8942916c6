"""Give every tensor its real shape at batch 1, where the converter wrote a placeholder for a dynamic dimension.

A model exported with an unknown batch carries `shape_signature` -1 and a static `shape` that is only a
placeholder there: right for the batch axis (1), wrong where the batch was merged with another axis (Keras 3
`Dense` on [T, F] reshapes to [B*T, F] with shapes computed at run time by SHAPE/GATHER/PACK...). This pass
evaluates those small integer shape computations and recomputes the shapes that depend on them, so the analysis
can follow time through them.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..ir import Model, Operator, Tensor
from . import Pass
MAX_VALUE_ELEMENTS = 64  # shape computations are tiny; never evaluate anything larger


def _dynamic(t: Tensor) -> bool:
    return t.shape_signature is not None and any(d < 0 for d in t.shape_signature)


class _Values:
    """Known values of small integer tensors: constants and what SHAPE computations give at batch 1."""

    def __init__(self):
        self.known: dict[Tensor, np.ndarray] = {}

    def get(self, t: Tensor | None) -> np.ndarray | None:
        if t is None:
            return None
        if t in self.known:
            return self.known[t]
        if t.is_constant and t.dtype in ("int32", "int64") and int(np.prod(t.shape)) <= MAX_VALUE_ELEMENTS:
            return np.asarray(t.data)
        return None

    def evaluate(self, op: Operator) -> None:
        ins = [self.get(t) for t in op.inputs]
        out = None
        try:
            if op.type == "SHAPE":
                out = np.asarray(op.inputs[0].shape, dtype=np.int64)
            elif any(v is None for v in ins[:1]):
                return
            elif op.type in ("STRIDED_SLICE",) and ins[0].ndim == 1 and all(v is not None for v in ins[1:4]):
                b, e, s = int(ins[1][0]), int(ins[2][0]), int(ins[3][0])
                o = op.options
                b = None if o.get("begin_mask", 0) & 1 else b
                e = None if o.get("end_mask", 0) & 1 else e
                out = ins[0][slice(b, e, s)]
                if o.get("shrink_axis_mask", 0) & 1:
                    out = out[0]
            elif op.type == "GATHER" and ins[1] is not None:
                out = np.take(ins[0], ins[1], axis=op.options.get("axis", 0))
            elif op.type == "PACK" and all(v is not None for v in ins):
                out = np.stack(ins, axis=op.options.get("axis", 0))
            elif op.type == "CONCATENATION" and all(v is not None for v in ins):
                out = np.concatenate([np.atleast_1d(v) for v in ins], axis=op.options.get("axis", 0))
            elif op.type == "REDUCE_PROD" and ins[1] is not None:
                out = np.prod(ins[0], axis=tuple(np.atleast_1d(ins[1])), keepdims=op.options.get("keep_dims", False))
            elif op.type in ("MUL", "ADD", "SUB", "FLOOR_DIV") and ins[1] is not None:
                fn = {"MUL": np.multiply, "ADD": np.add, "SUB": np.subtract, "FLOOR_DIV": np.floor_divide}
                out = fn[op.type](ins[0], ins[1])
            elif op.type in ("CAST", "SQUEEZE", "EXPAND_DIMS", "RESHAPE", "IDENTITY"):
                out = ins[0] if op.type == "CAST" else np.reshape(ins[0], op.outputs[0].shape)
        except (ValueError, IndexError, TypeError, AttributeError):
            return  # a malformed op: its value stays unknown
        if out is not None and op.outputs:
            self.known[op.outputs[0]] = np.asarray(out)


def _reshape_target(op: Operator, values: _Values) -> list[int] | None:
    shape = values.get(op.inputs[1]) if len(op.inputs) > 1 else None
    if shape is None:
        shape = op.options.get("new_shape")
    if shape is None:
        return None
    target = [int(d) for d in np.atleast_1d(shape)]
    total = int(np.prod(op.inputs[0].shape))
    if target.count(-1) == 1:
        rest = int(np.prod([d for d in target if d != -1]))
        if rest == 0 or total % rest:
            return None
        target[target.index(-1)] = total // rest
    return target if int(np.prod(target)) == total else None


def _infer(op: Operator, values: _Values) -> list[int] | None:
    x = op.inputs[0] if op.inputs else None
    if op.type == "RESHAPE":
        return _reshape_target(op, values)
    rule = ops.info(op).shape
    if rule == "same" and x is not None:
        return list(x.shape)
    if rule == "broadcast":
        try:
            return list(np.broadcast_shapes(*(t.shape for t in op.inputs if t is not None)))
        except ValueError:
            return None
    if op.type == "FULLY_CONNECTED" and x is not None:
        units = op.inputs[1].shape[0]
        if op.options.get("keep_num_dims", False):
            return list(x.shape[:-1]) + [units]
        return [int(np.prod(x.shape)) // op.inputs[1].shape[1], units]
    return None


def _run(model: Model) -> bool:
    changed = False
    for sg in model.subgraphs:
        values = _Values()
        for op in sg.operators:
            values.evaluate(op)
            if len(op.outputs) != 1 or not _dynamic(op.outputs[0]):
                continue
            out = op.outputs[0]
            try:
                shape = _infer(op, values)
            except (IndexError, AttributeError, TypeError, ValueError):
                shape = None  # a malformed op: leave its shape; the analysis names it if it matters
            if shape is not None and tuple(shape) != out.shape:
                out.shape = tuple(shape)
                changed = True
    return changed


resolve_shapes = Pass("resolve_shapes", _run, requires=("topological",), ensures=("topological",))
