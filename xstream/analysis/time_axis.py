"""Find the model input's time axis by itself (docs/CONTRACT.md, "time axis"); `--time-axis` overrides it.

Time is the input axis that reaches the spatial axis (H or W) of an op that slides along it (ops.SLIDE: a conv or
a pool with a window or stride above 1 there), through reshapes, transposes and per-frame ops. PyTorch keeps time
last (`[1, C, T]`, a Conv1d lowered with a TRANSPOSE), Keras keeps it on axis 1; both are found the same way. A
flat input that the model reshapes into frames (`[1, T*F] -> [1, T, F, 1]`) has time on its flat axis with frames
of `F` elements. Where two input axes slide in one 2-D op (time and frequency), the outermost is time; where they
slide in different ops, the caller must say which (`--time-axis`). Models with no sliding op (an unrolled RNN, a
per-frame MLP with a pooling head) take the one input axis that no per-frame op contracts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import ops
from ..errors import StreamingRefused
from ..ir import Model, Operator, Tensor


@dataclass(frozen=True)
class TimeAxis:
    axis: int
    frame: int = 1  # elements of that input axis per frame (> 1: a flat input reshaped into frames in the model)


def split_axis(in_shape, axis: int, out_shape) -> tuple[int, int] | None:
    """Where a reshape puts axis `axis`: (out axis, entries of `axis` per entry of it). The out axis is the
    outermost non-trivial one the input axis is split into (1 entry each when it stays whole); None when it is
    merged with other axes."""
    in_shape, out_shape = [int(d) for d in in_shape], [int(d) for d in out_shape]
    prefix = int(np.prod(in_shape[:axis], dtype=np.int64))
    size = in_shape[axis]
    acc = 1
    for k, d in enumerate(out_shape):  # the axis kept whole (a 1-frame axis too)
        if acc == prefix and d == size:
            return k, 1
        acc *= d
        if acc > prefix and prefix != 0:
            break
    acc = 1
    for k, d in enumerate(out_shape):
        if acc == prefix and d != 1:
            if size % d:
                return None
            inner = size // d
            rest = 1
            for d2 in out_shape[k + 1:]:
                if rest == inner:
                    break
                rest *= d2
            return (k, inner) if rest == inner else None
        acc *= d
        if acc > prefix:
            return None
    return None


def same_frames(a_shape, a_axis: int, b_shape, b_axis: int) -> bool:
    """Do two shapes hold the same frames in the same layout along their axes (one a reshape of the other that
    keeps time: as many entries before the axis, on it and after it)?"""
    a, b = [int(d) for d in a_shape], [int(d) for d in b_shape]
    return a[a_axis] == b[b_axis] and int(np.prod(a[:a_axis], dtype=np.int64)) == \
        int(np.prod(b[:b_axis], dtype=np.int64)) and int(np.prod(a[a_axis + 1:], dtype=np.int64)) == \
        int(np.prod(b[b_axis + 1:], dtype=np.int64))


def batch_matmul_axis(op: Operator, slot: int, axis: int) -> int | None:
    """Where BATCH_MATMUL puts axis `axis` of its input `slot`: the output axis, or None when it is contracted."""
    x, out = op.inputs[slot], op.outputs[0]
    rank, out_rank = len(x.shape), len(out.shape)
    adj = bool(op.options.get("adj_x" if slot == 0 else "adj_y", False))
    if axis < rank - 2:  # a batch axis: per batch entry
        return axis + out_rank - rank
    # lhs [..., M, K] (adj_x: [..., K, M]); rhs [..., K, N] (adj_y: [..., N, K]); out [..., M, N].
    rows = axis == rank - 2
    if slot == 0:
        kept = rows != adj
        return out_rank - 2 if kept else None
    kept = rows == adj
    return out_rank - 1 if kept else None


def _ints(t: Tensor | None) -> list[int] | None:
    data = None if t is None else t.data
    if data is None or not np.issubdtype(data.dtype, np.integer):
        return None
    return [int(v) for v in data.reshape(-1)]


@dataclass
class _Walk:
    """Where one input axis goes: the sliding ops it reaches, and whether a per-frame op contracts it."""

    axis: int
    hits: list[tuple[Operator, int, int]] = field(default_factory=list)  # (op, spatial axis 1|2, frame)
    contracted: bool = False


def _slides(op: Operator, axis: int) -> bool:
    """Whether `op` (an ops.SLIDE op) has a window or a stride above 1 on spatial axis `axis` (1: H, 2: W)."""
    o = op.options
    hw = "h" if axis == 1 else "w"
    if ops.is_pool(op):
        kernel = o.get("filter_height" if axis == 1 else "filter_width", 1)
    elif len(op.inputs) > 1 and op.inputs[1] is not None and len(op.inputs[1].shape) == 4:
        kernel = op.inputs[1].shape[axis]
    else:
        return False
    return kernel > 1 or o.get(f"stride_{hw}", 1) > 1


def _step(op: Operator, slot: int, axis: int, walk: _Walk) -> int | None:
    """The output axis that input `slot`'s axis `axis` becomes, or None where the walk stops."""
    fam = ops.family(op)
    x = op.inputs[slot]
    out = op.outputs[0] if op.outputs else None
    if out is None:
        return None
    rank, out_rank = len(x.shape), len(out.shape)
    if fam in (ops.UNARY, ops.BINARY):
        return axis + out_rank - rank
    if fam == ops.LAST_AXIS:
        if axis == rank - 1:
            walk.contracted = True
            return None
        return axis
    if fam == ops.SLIDE:
        if rank != 4 or slot != 0:
            return None
        if axis == 3 and op.type == "CONV_2D":
            walk.contracted = True
            return None
        return axis
    if fam == "fully_connected":
        if slot != 0:
            return None
        if axis == rank - 1:
            walk.contracted = True
            return None
        if op.options.get("keep_num_dims", False):
            return axis
        return 0 if int(np.prod(x.shape[:axis])) == 1 and axis == rank - 2 else None
    if fam == "batch_matmul":
        out_axis = batch_matmul_axis(op, slot, axis)
        walk.contracted |= out_axis is None
        return out_axis
    if fam == "transpose":
        perm = _ints(op.inputs[1]) if len(op.inputs) > 1 else None
        return perm.index(axis) if perm and sorted(perm) == list(range(rank)) else None
    if fam == "pad" or op.type == "SLICE":
        return axis if slot == 0 else None
    if op.type == "STRIDED_SLICE":
        shrink = op.options.get("shrink_axis_mask", 0)
        return None if slot or shrink >> axis & 1 else axis - sum(1 for k in range(axis) if shrink >> k & 1)
    if fam == "gather":
        g = op.options.get("axis", 0) % rank
        if slot or g == axis:
            return None
        return axis if axis < g else axis + len(op.inputs[1].shape) - 1
    if fam == ops.REDUCE:
        axes = _ints(op.inputs[1]) if len(op.inputs) > 1 else None
        if slot or axes is None:
            return None
        axes = {a % rank for a in axes}
        if axis in axes:
            return None
        return axis if op.options.get("keep_dims", False) else axis - sum(1 for a in axes if a < axis)
    if fam == "split":
        data = 1 if op.type == "SPLIT" else 0
        if slot != data:
            return None
        if op.type == "UNPACK":
            u = op.options.get("axis", 0) % rank
            return None if u == axis else axis - (1 if u < axis else 0)
        along = _ints(op.inputs[0] if op.type == "SPLIT" else op.inputs[2]) if len(op.inputs) > 2 or \
            op.type == "SPLIT" else None
        return None if not along or along[0] % rank == axis else axis
    if fam in ("concatenation", "pack"):
        if fam == "pack":
            return axis + (1 if op.options.get("axis", 0) % out_rank <= axis else 0)
        return axis if op.options.get("axis", 0) % rank != axis else None
    return None


def _walk(model: Model, axis: int) -> _Walk:
    sg = model.main
    walk = _Walk(axis)
    where: dict[Tensor, tuple[int, int]] = {sg.inputs[0]: (axis, 1)}  # tensor -> (its axis, input entries per step)
    for op in sg.operators:
        tracked = [(i, t) for i, t in enumerate(op.inputs) if t is not None and t in where]
        if not tracked or not op.outputs:
            continue
        slot, t = tracked[0]
        a, frame = where[t]
        try:
            if ops.family(op) == ops.RESHAPE:
                split = split_axis(t.shape, a, op.outputs[0].shape)
                if split is None:
                    continue
                out_axis, inner = split
                frame *= inner
            else:
                out_axis = _step(op, slot, a, walk)
                if ops.family(op) == ops.SLIDE and out_axis in (1, 2) and _slides(op, out_axis):
                    walk.hits.append((op, out_axis, frame))
        except (AttributeError, IndexError, TypeError, ValueError, ZeroDivisionError):
            continue  # a malformed op: the analysis names it; here it only ends this walk
        if out_axis is None:
            continue
        for o in op.outputs:
            if 0 <= out_axis < len(o.shape):
                where[o] = (out_axis, frame)
    return walk


def _where(sg, op: Operator, spatial: int) -> str:
    index = op.source_index if op.source_index is not None else sg.index_of(op)
    return f"operator {index} ({op.kind})'s {'height' if spatial == 1 else 'width'}"


def frame_of(model: Model, axis: int) -> int:
    """Elements per frame on input axis `axis` (the user's --time-axis): > 1 for a flat input split into frames."""
    hits = _walk(model, axis).hits
    return hits[0][2] if hits else 1


def find_time_axis(model: Model) -> TimeAxis | None:
    """The input's time axis (module doc), or None when no axis stands out (the caller falls back to axis 1 and
    its own messages). Refuses, naming both, when two axes slide in different ops."""
    sg = model.main
    x = sg.inputs[0]
    walks = [_walk(model, a) for a in range(1, len(x.shape)) if x.shape[a] > 1]
    sliding = [w for w in walks if w.hits]
    if len(sliding) == 1:
        w = sliding[0]
        return TimeAxis(w.axis, w.hits[0][2])
    if sliding:
        shared = set.intersection(*({op for op, _, _ in w.hits} for w in sliding))
        if shared:  # one 2-D op slides over all of them (time and frequency): the outermost is time
            w = sliding[0]
            return TimeAxis(w.axis, w.hits[0][2])
        a, b = sliding[0], sliding[1]
        raise StreamingRefused(
            f"input {x.name!r} of shape {list(x.shape)}: axes {a.axis} and {b.axis} could both be time (axis "
            f"{a.axis} reaches {_where(sg, a.hits[0][0], a.hits[0][1])}, axis {b.axis} reaches "
            f"{_where(sg, b.hits[0][0], b.hits[0][1])}); say which with --time-axis {a.axis} or --time-axis {b.axis}")
    kept = [w for w in walks if not w.contracted]
    if len(kept) == 1:
        return TimeAxis(kept[0].axis)
    return None
