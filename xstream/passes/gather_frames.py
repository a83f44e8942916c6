"""A STRIDED_SLICE that copies a run of whole frames along one axis becomes a GATHER of those frame indices.

The state plumbing copies frames a lot: each builtin state's next value is the newest frames of its window, and
a shared buffer's readers take views of it. TFLite Micro's STRIDED_SLICE walks element by element and keeps ~80
bytes of StridedSliceParams per op; its GATHER copies a frame per memcpy and keeps only its output's dims
(docs/TFLM_COST.md; measured on microWakeWord's MixedNet, variable form: 640 bytes of arena and 2% of the step less).
TFLite Micro's GATHER takes int8 and float32 only; other dtypes keep the STRIDED_SLICE, as does a target whose op
resolver has no GATHER (ESPHome's)."""

from __future__ import annotations

import numpy as np

from .. import make
from ..ir import Model, Operator, Subgraph, same_quantization
from . import Pass, rewrite_each

DTYPES = ("int8", "float32")  # what TFLite Micro's GATHER copies (int32 indices)
_MASKS = ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask", "offset")


def frame_run(op: Operator) -> tuple[int, int, int] | None:
    """(axis, begin, end) when `op` is a STRIDED_SLICE of x[..., begin:end, ...] on one axis, every other axis
    whole, step 1; else None."""
    if op.type != "STRIDED_SLICE" or len(op.inputs) < 4 or any(t is None for t in op.inputs[:4]):
        return None
    x, y = op.inputs[0], op.outputs[0]
    if not all(t.is_constant for t in op.inputs[1:4]) or any(op.options.get(k, 0) for k in _MASKS):
        return None
    rank = len(x.shape)
    if len(y.shape) != rank or any(d < 0 for d in x.shape):
        return None
    begin, end, strides = (np.asarray(t.data).reshape(-1).astype(int) for t in op.inputs[1:4])
    if not len(begin) == len(end) == len(strides) == rank or np.any(strides != 1):
        return None
    begin_mask, end_mask = op.options.get("begin_mask", 0), op.options.get("end_mask", 0)
    lo = [0 if begin_mask >> k & 1 else int(b) + (x.shape[k] if b < 0 else 0) for k, b in enumerate(begin)]
    hi = [x.shape[k] if end_mask >> k & 1 else int(e) + (x.shape[k] if e < 0 else 0) for k, e in enumerate(end)]
    hi = [min(h, x.shape[k]) for k, h in enumerate(hi)]
    cut = [k for k in range(rank) if (lo[k], hi[k]) != (0, x.shape[k])]
    if len(cut) != 1:
        return None
    axis = cut[0]
    if not 0 <= lo[axis] < hi[axis] or y.shape[axis] != hi[axis] - lo[axis]:
        return None
    return axis, lo[axis], hi[axis]


def copied_frames(op: Operator) -> tuple[int, int, int] | None:
    """(axis, begin, end) of a STRIDED_SLICE (frame_run) or GATHER that copies consecutive frames, else None."""
    if op.type == "STRIDED_SLICE":
        return frame_run(op)
    if op.type != "GATHER" or len(op.inputs) < 2 or op.inputs[1] is None or not op.inputs[1].is_constant:
        return None
    idx = [int(v) for v in op.inputs[1].data.reshape(-1)]
    axis = op.options.get("axis", 0) % len(op.inputs[0].shape)
    if not idx or idx != list(range(idx[0], idx[0] + len(idx))) or op.options.get("batch_dims", 0) \
            or len(op.inputs[1].shape) != 1:
        return None
    return axis, idx[0], idx[-1] + 1


def _rewrite(sg: Subgraph, op: Operator) -> bool:
    run = frame_run(op)
    x, y = op.inputs[0], op.outputs[0]
    if run is None or x.dtype not in DTYPES or y.dtype != x.dtype or not same_quantization(x, y) or y.is_variable:
        return False
    axis, begin, end = run
    sg.operators[sg.operators.index(op)] = make.gather_frames(x, axis, begin, end, y)
    return True


def _run(model: Model) -> bool:
    return rewrite_each(model, "STRIDED_SLICE", _rewrite)


gather_frames = Pass("gather_frames", _run, requires=("topological",), ensures=("topological",))
