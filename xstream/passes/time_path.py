"""Shrink the time path of an analysed model to what one invoke sees: shared by every pass that applies a plan.

After the analysis, every tensor on the time path takes `frames` frames per invoke instead of its original
length; crops on time only moved which frames line up (the plan's offsets), so in a stream every frame passes;
reshapes get the static target shape they now have; a causal PAD that fed a sliding op is absorbed by the state
spliced before that op.
"""

from __future__ import annotations

import numpy as np

from .. import make
from ..analysis import StreamPlan
from ..ir import Model, Operator, Subgraph, Tensor


def _ints(t: Tensor) -> list[int]:
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def shrink_time(plan: StreamPlan, frames_of) -> None:
    """Give every time tensor `frames_of(info)` frames, open every crop, and fix reshapes to static shapes."""
    for t, info in plan.times.items():
        t.set_shape(make.with_axis(t.shape, info.axis, frames_of(info)))
    for op, axis in plan.crops:
        _uncrop_time(op, axis, frames_of(plan.times[op.inputs[0]]))
    for op in plan.time_reshapes + plan.heads:
        if op.type == "RESHAPE":
            _fix_reshape(op)


def absorb_causal_pads(model: Model, sg: Subgraph, plan: StreamPlan) -> None:
    """Drop the time padding of each causal PAD (the state before its reader starts at the pad value)."""
    for pad in plan.causal_pads:
        axis = plan.times[pad.outputs[0]].axis  # its input may already read a state view
        rows = _ints(pad.inputs[1])
        rows[2 * axis] = 0
        if any(rows):
            pad.inputs[1] = make.const(f"{pad.outputs[0].name}/paddings", np.reshape(rows, (-1, 2)),
                                       pad.inputs[1].dtype)
            continue
        model.replace_uses(sg, pad.outputs[0], pad.inputs[0])
        sg.operators.remove(pad)


def finish(sg: Subgraph) -> None:
    """One stream at batch 1 with fixed shapes; drop what nothing reads; restore execution order."""
    for t in sg.tensors():
        t.shape_signature = None
    sg.cleanup()
    sg.toposort()


def _uncrop_time(op: Operator, axis: int, frames: int) -> None:
    if op.type == "STRIDED_SLICE":
        op.options["begin_mask"] = op.options.get("begin_mask", 0) | (1 << axis)
        op.options["end_mask"] = op.options.get("end_mask", 0) | (1 << axis)
    else:  # SLICE
        begin, size = _ints(op.inputs[1]), _ints(op.inputs[2])
        begin[axis], size[axis] = 0, frames
        op.inputs[1] = make.const(f"{op.outputs[0].name}/begin", begin, op.inputs[1].dtype)
        op.inputs[2] = make.const(f"{op.outputs[0].name}/size", size, op.inputs[2].dtype)


def _fix_reshape(op: Operator) -> None:
    """Give a reshape the static target shape it now has (a run-time SHAPE/PACK chain becomes dead)."""
    target = list(op.outputs[0].shape)
    if len(op.inputs) > 1 and op.inputs[1] is not None:
        op.inputs[1] = make.const(f"{op.outputs[0].name}/shape", target)
    if op.options_type == "ReshapeOptions" or "new_shape" in op.options:
        op.options["new_shape"] = target
