"""A head that reduces a squeezed tensor over time buffers the tensor before the squeeze.

Keras' GlobalAveragePooling1D / GlobalMaxPooling1D after a Conv1D reads the conv's output squeezed from
[1, 1, T, C] to [1, T, C]: the stream then squeezes one frame per step and buffers the squeezed frames for the
head. Buffering the conv's output itself and reducing over its time axis and the unit axis the squeeze removed
gives the same values (a unit axis adds nothing to a mean, sum or max, nor to the element count) without the
squeeze: an op, a tensor and a copy less in TFLite Micro (docs/TFLM_COST.md). Made where the squeeze only drops
unit axes around time, every reader of the window is a reduction over time alone without keep_dims, and the
squeezed frames have no other reader. Runs after insert_ring_buffers and sink_reshapes (a residual ADD's squeeze
moves after it there), before any lowering, so every form gets it.
"""

from __future__ import annotations

import numpy as np

from .. import make, ops
from ..analysis import StreamPlan
from ..analysis.time_axis import same_frames
from ..forms import ring_buffer
from ..ir import Model, Operator, Subgraph, names_an_axis
from . import Pass

REDUCTIONS = ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN")


def _time_only(op: Operator, axis: int, rank: int) -> bool:
    """Is `op` a reduction of its input 0 over `axis` alone, without keep_dims?"""
    if op.type not in REDUCTIONS or len(op.inputs) < 2 or op.inputs[1] is None or not op.inputs[1].is_constant:
        return False
    axes = {int(a) % rank for a in np.asarray(op.inputs[1].data).reshape(-1)}
    return axes == {axis} and not op.options.get("keep_dims", False)


def _rewrite(sg: Subgraph, plan: StreamPlan, rb: Operator) -> bool:
    x3, y3 = rb.inputs[0], rb.outputs[0]
    squeeze = sg.producer(x3)
    if squeeze is None or ops.family(squeeze) != ops.RESHAPE or not squeeze.inputs or squeeze.inputs[0] is None:
        return False
    x4 = squeeze.inputs[0]
    if names_an_axis(x3):
        return False  # the rank change would move the axis its quantization names
    if x3 in sg.outputs or y3 in sg.outputs or sg.consumers(x3) != [rb] or x4.dtype != x3.dtype:
        return False
    t3, frames = ring_buffer.decode_options(rb)
    s3, s4 = tuple(x3.shape), tuple(x4.shape)
    if any(d < 0 for d in s4) or sorted(d for d in s4 if d != 1) != sorted(d for d in s3 if d != 1):
        return False  # not a squeeze
    # Time on x4: the axis with the same frames laid out the same way (the analysis' axis where it knows x4; with
    # one frame per step any such unit axis holds the same bytes, the last one is Keras' [1, 1, T, C]).
    fits = [t for t in range(len(s4)) if same_frames(s4, t, s3, t3)]
    info = plan.times.get(x4)
    t4 = info.axis if info is not None and info.axis in fits else fits[-1] if fits else None
    if t4 is None:
        return False
    readers = sg.consumers(y3)
    if not readers or any(c.inputs[0] is not y3 or y3 in c.inputs[1:] or not _time_only(c, t3, len(s3))
                          for c in readers):
        return False
    out_shapes = {tuple(c.outputs[0].shape) for c in readers}
    if len(out_shapes) != 1:
        return False
    out = out_shapes.pop()
    window = make.with_axis(s4, t4, frames)
    extra = len(s4) - 1 - len(out)  # unit axes to reduce too (never the batch axis)
    units = [k for k in range(1, len(s4)) if k != t4 and s4[k] == 1]
    if extra < 0 or extra > len(units):
        return False
    axes = sorted([t4] + (units[len(units) - extra:] if extra else []))
    if tuple(d for k, d in enumerate(window) if k not in axes) != out:
        return False
    y4 = make.like(y3, sg.unique_name(f"{x4.name}/ring_buffer"), window)
    y4.is_variable = y3.is_variable
    sg.operators[sg.operators.index(rb)] = ring_buffer.make_op(x4, y4, t4, frames, in_place=ring_buffer.in_place(rb))
    for c in readers:
        c.inputs[0] = y4
        c.inputs[1] = make.const(f"{c.outputs[0].name}/axes", axes)
    sg.operators.remove(squeeze)
    for st in plan.states:
        if st.tensor is x3:
            st.tensor, st.axis = x4, t4
    return True


def _run(model: Model, plan: StreamPlan) -> bool:
    sg = model.main
    changed = False
    for rb in [op for op in sg.operators if ring_buffer.is_ring_buffer(op)]:
        changed |= _rewrite(sg, plan, rb)
    return changed


unsqueeze_head_windows = Pass("unsqueeze_head_windows", _run, requires=("topological",), ensures=("topological",),
                              in_place=True)
