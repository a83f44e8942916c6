"""Reshapes around a per-frame op cancel: f(reshape(a), reshape(b)) becomes reshape(f(a, b)).

Keras lowers Conv1D as EXPAND_DIMS + CONV_2D + a squeeze back, so every per-frame op between two Conv1Ds (a
residual ADD, a channel CONCATENATION, an activation) sits between a squeeze of each input and an expand of its
output. Here the op runs on the unsqueezed tensors and one reshape follows it, which drop_identity_ops then
folds into the expand (usually to an identity, which goes): each squeeze and expand is an op, a tensor and a copy
in TFLite Micro (docs/TFLM_COST.md). Made only where it removes ops, for element-wise ops (every tensor input
reshaped from the same shape, constants broadcasting over the trailing axes both shapes share) and a
CONCATENATION on the last axis (which the reshapes keep)."""

from __future__ import annotations

import copy

from .. import make, ops
from ..ir import Model, Operator, Subgraph, Tensor, names_an_axis
from . import Pass

MAX_RANK = 4  # what TFLite Micro's broadcasting element-wise kernels take


def _static_reshape(sg: Subgraph, t: Tensor) -> Operator | None:
    p = sg.producer(t)
    if p is None or ops.family(p) != ops.RESHAPE or not p.inputs or p.inputs[0] is None:
        return None
    src = p.inputs[0]
    if any(d < 0 for d in src.shape) or any(d < 0 for d in t.shape) or src.dtype != t.dtype:
        return None
    return p


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _trailing_common(a, b) -> int:
    """How many trailing axes two shapes share."""
    k = 0
    while k < min(len(a), len(b)) and a[-1 - k] == b[-1 - k]:
        k += 1
    return k


def _plan(sg: Subgraph, op: Operator):
    """(reshape of each tensor input or None for a constant, the new shape of the output) or None."""
    y = op.outputs[0] if len(op.outputs) == 1 else None
    if y is None or y.is_variable or names_an_axis(y):
        return None  # (a per-axis quantization names an axis, which the rank change would move)
    concat = op.type == "CONCATENATION"
    if not concat and ops.family(op) not in (ops.UNARY, ops.BINARY):
        return None
    if concat and op.options.get("axis", 0) not in (-1, len(y.shape) - 1):
        return None
    producers: list[Operator | None] = []
    src_shape = None
    for t in op.inputs:
        if t is None:
            return None
        if t.is_constant:
            producers.append(None)
            continue
        p = _static_reshape(sg, t)
        if p is None:
            return None
        s, r = tuple(p.inputs[0].shape), tuple(t.shape)
        if _squeezed(s) != _squeezed(r) or len(s) > MAX_RANK or s[-1] != r[-1]:
            return None  # not unit axes only, or the last axis moved
        key = s[:-1] if concat else s
        if src_shape is not None and key != src_shape[1]:
            return None
        src_shape = (s, key, r)
        producers.append(p)
    if src_shape is None:
        return None
    s, _, r = src_shape
    shared = _trailing_common(s, r)
    for t, p in zip(op.inputs, producers):
        if p is None and len(t.shape) > shared and any(d != 1 for d in t.shape[:len(t.shape) - shared]):
            return None  # a constant that would broadcast against other axes once the rank changes
    out_shape = s[:-1] + (y.shape[-1],)
    return producers, out_shape


def _goes(sg: Subgraph, p: Operator, op: Operator) -> bool:
    """Will reshape `p` be dead once `op` reads its input: its other readers are reshapes back to that input's
    shape (drop_identity_ops then reads the input itself)?"""
    src = p.inputs[0]
    return p.outputs[0] not in sg.outputs and all(
        c is op or (ops.family(c) == ops.RESHAPE and c.inputs[0] is p.outputs[0]
                    and tuple(c.outputs[0].shape) == tuple(src.shape) and c.outputs[0] not in sg.outputs)
        for c in sg.consumers(p.outputs[0]))


def _gain(sg: Subgraph, op: Operator, producers) -> int:
    removed = len({p for p in producers if p is not None and _goes(sg, p, op)})
    y = op.outputs[0]
    readers = sg.consumers(y)
    folds = y not in sg.outputs and len(readers) == 1 and all(ops.family(c) == ops.RESHAPE and c.inputs[0] is y
                                                          for c in readers)
    return removed + (1 if folds else 0) - 1


def _rewrite(sg: Subgraph, op: Operator) -> bool:
    found = _plan(sg, op)
    if found is None:
        return False
    producers, out_shape = found
    if _gain(sg, op, producers) <= 0:
        return False
    y = op.outputs[0]
    for k, p in enumerate(producers):
        if p is not None:
            op.inputs[k] = p.inputs[0]
    wide = make.like(y, sg.unique_name(f"{y.name}/unsqueezed"), out_shape)
    wide.quantization = copy.deepcopy(y.quantization)
    op.outputs[0] = wide
    if op.type == "CONCATENATION":
        op.options = dict(op.options, axis=len(out_shape) - 1)
    sg.operators.insert(sg.operators.index(op) + 1, make.reshape(wide, y))
    for p in {p for p in producers if p is not None}:
        if not sg.consumers(p.outputs[0]) and p.outputs[0] not in sg.outputs:
            sg.operators.remove(p)
    return True


def _run(model: Model) -> bool:
    changed = False
    for sg in model.subgraphs:
        again = True
        while again:  # a chain of per-frame ops sinks one op per round
            again = False
            for op in list(sg.operators):
                if op in sg.operators and _rewrite(sg, op):
                    again = changed = True
        if changed:
            sg.cleanup()
    return changed


sink_reshapes = Pass("sink_reshapes", _run, requires=("topological",), ensures=("topological",))
