"""Fold a per-frame loop the converter unrolled back into one chain of ops over all frames.

Keras 3 `TimeDistributed(Dense)` reaches TFLite as: frames on the leading axis, one STRIDED_SLICE per frame
(shrinking that axis), the same ops on every slice (FULLY_CONNECTED with the same weights, SOFTMAX, QUANTIZE...),
and a PACK of the results in frame order. Run on all frames at once (FULLY_CONNECTED with keep_num_dims), the
chain computes the same values row by row, and the analysis can follow time through it.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import ops
from ..ir import Model, Operator, Subgraph, Tensor
from . import Pass, rewrite_each


def _const_key(t: Tensor | None):
    if t is None:
        return None
    if not t.is_constant:
        return "activation"
    return (t.dtype, t.shape, t.buffer.data)


def _quant_key(t: Tensor):
    q = t.quantization
    if q is None:
        return None
    return tuple(None if a is None else np.asarray(a).tobytes() for a in (q.scale, q.zero_point))


def _chain(sg: Subgraph, end: Tensor) -> tuple[list[Operator], Operator] | None:
    """The single-input per-frame ops producing `end`, back to the STRIDED_SLICE that selects its frame."""
    chain: list[Operator] = []
    t = end
    while True:
        op = sg.producer(t)
        if op is None or len(sg.consumers(t)) != 1 or any(o is t for o in sg.outputs):
            return None
        if op.type == "STRIDED_SLICE":
            return list(reversed(chain)), op
        if not ops.info(op).per_row or any(x is not None and not x.is_constant for x in op.inputs[1:]):
            return None
        chain.append(op)
        t = op.inputs[0]


def _frame_of(slice_op: Operator, src_rank: int) -> int | None:
    """The frame a slice selects on axis 0 (shrunk), taking every other axis whole; None otherwise."""
    o = slice_op.options
    if o.get("shrink_axis_mask", 0) != 1 or o.get("ellipsis_mask", 0) or o.get("new_axis_mask", 0):
        return None
    full = (1 << src_rank) - 2  # every axis but 0 masked
    if o.get("begin_mask", 0) & full != full or o.get("end_mask", 0) & full != full:
        return None
    begin, end, strides = (np.asarray(t.data).reshape(-1) if t is not None and t.is_constant else None
                           for t in slice_op.inputs[1:4])
    if begin is None or end is None or strides is None or strides[0] != 1 or end[0] != begin[0] + 1:
        return None
    return int(begin[0])


def _signature(chain: list[Operator]) -> list:
    return [(op.type, sorted(op.options.items(), key=lambda kv: kv[0]), [_const_key(t) for t in op.inputs[1:]],
             _quant_key(op.outputs[0]), op.outputs[0].shape) for op in chain]


def _fold_pack(sg: Subgraph, pack: Operator) -> bool:
    if pack.options.get("axis", 0) != 0 or len(pack.inputs) < 2:
        return False
    found = [_chain(sg, t) for t in pack.inputs]
    if any(f is None for f in found):
        return False
    src = found[0][1].inputs[0]
    if any(f[1].inputs[0] is not src for f in found) or src.shape[0] != len(found):
        return False
    if [_frame_of(f[1], len(src.shape)) for f in found] != list(range(len(found))):
        return False
    first = _signature(found[0][0])
    if any(_signature(f[0]) != first for f in found[1:]):
        return False

    # One chain over all frames: src [T, ...] -> ... -> PACK's output [T, ...].
    rows = src.shape[0]
    new_ops: list[Operator] = []
    cur = src
    for k, op in enumerate(found[0][0]):
        new = copy.copy(op)
        new.options = dict(op.options)
        if op.type == "FULLY_CONNECTED":
            new.options["keep_num_dims"] = True
        if k == len(found[0][0]) - 1:
            out = pack.outputs[0]
        else:
            out = copy.copy(op.outputs[0])
            out.shape = (rows,) + tuple(op.outputs[0].shape)
            out.shape_signature = None
        new.inputs = [cur] + list(op.inputs[1:])
        new.outputs = [out]
        new_ops.append(new)
        cur = out
    if not new_ops:
        return False
    dead = {op for f in found for op in f[0] + [f[1]]} | {pack}
    at = sg.index_of(pack)
    sg.operators[at:at + 1] = new_ops
    sg.operators = [op for op in sg.operators if op not in dead]
    return True


def _run(model: Model) -> bool:
    """Fold every unrolled per-frame loop (slices, same ops, PACK) of `model` into one chain."""
    return rewrite_each(model, "PACK", _fold_pack)


fold_unrolled_frames = Pass("fold_unrolled_frames", _run, requires=("topological",), ensures=("topological",))
