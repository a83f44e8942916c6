"""Apply a StreamPlan: shrink the time path to one hop and splice a RING_BUFFER before every op needing history."""

from __future__ import annotations

import numpy as np

from .. import ops, ring_buffer
from ..analysis import StreamPlan
from ..ir import Model, Operator, Subgraph, Tensor
from . import PassResult


def _const_ints(t: Tensor) -> list[int]:
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def _remove_time_padding(model: Model, sg: Subgraph, pad: Operator, axis: int) -> None:
    rows = _const_ints(pad.inputs[1])
    rows[2 * axis] = 0
    if any(rows):
        pad.inputs[1] = ops.const(f"{pad.outputs[0].name}/paddings", np.reshape(rows, (-1, 2)),
                                  pad.inputs[1].dtype)
        return
    model.replace_uses(sg, pad.outputs[0], pad.inputs[0])
    sg.operators.remove(pad)


def _uncrop_time(op: Operator, axis: int, frames: int) -> None:
    """A crop on time only moves which frames line up (the plan's offsets); in a stream every frame passes."""
    if op.type == "STRIDED_SLICE":
        op.options["begin_mask"] = op.options.get("begin_mask", 0) | (1 << axis)
        op.options["end_mask"] = op.options.get("end_mask", 0) | (1 << axis)
    else:  # SLICE
        begin, size = _const_ints(op.inputs[1]), _const_ints(op.inputs[2])
        begin[axis], size[axis] = 0, frames
        op.inputs[1] = ops.const(f"{op.outputs[0].name}/begin", begin, op.inputs[1].dtype)
        op.inputs[2] = ops.const(f"{op.outputs[0].name}/size", size, op.inputs[2].dtype)


def _fix_reshape(op: Operator) -> None:
    """Give a reshape the static target shape it now has (a run-time SHAPE/PACK chain becomes dead)."""
    target = list(op.outputs[0].shape)
    if len(op.inputs) > 1 and op.inputs[1] is not None:
        op.inputs[1] = ops.const(f"{op.outputs[0].name}/shape", target)
    if op.options_type == "ReshapeOptions" or "new_shape" in op.options:
        op.options["new_shape"] = target


def insert_ring_buffers(model: Model, plan: StreamPlan) -> PassResult:
    """Return the streaming model: input of `plan.hop` frames, RING_BUFFER state, causal PADs absorbed."""
    new, copy_of = model.copy_mapped()
    sg = new.main

    for key, info in plan.times.items():
        t = copy_of(plan.tensors[key])
        t.set_shape(ops.with_axis(t.shape, info.axis, plan.hop // info.stride))
    for op, axis in plan.crops:
        _uncrop_time(copy_of(op), axis, plan.frames(op.inputs[0]))
    for op in plan.time_reshapes + plan.heads:
        if op.type == "RESHAPE":
            _fix_reshape(copy_of(op))

    for state in plan.states:
        x = copy_of(state.tensor)
        n, frames = state.frames_in, state.frames
        buffered = ops.like(x, f"{x.name}/ring_buffer", ops.with_axis(x.shape, state.axis, frames))
        new_ops = [ring_buffer.make(x, buffered, state.axis, frames)]
        views: dict[tuple[int, int], Tensor] = {(0, frames): buffered}
        for r in state.readers:
            window = (r.lag, r.length(n))
            if window not in views:
                lag, length = window
                view = ops.like(x, f"{x.name}/frames_{frames - lag - length}_{frames - lag}",
                                ops.with_axis(x.shape, state.axis, length))
                new_ops.append(ops.strided_slice(buffered, state.axis, frames - lag - length, frames - lag, view))
                views[window] = view
            reader = copy_of(r.op)
            reader.inputs[r.slot] = views[window]
        first_reader = min(sg.index_of(copy_of(r.op)) for r in state.readers)
        sg.operators[first_reader:first_reader] = new_ops

    # After the state: a PAD that fed a sliding op directly now feeds its ring buffer, which absorbs it.
    for pad in plan.causal_pads:
        _remove_time_padding(new, sg, copy_of(pad), plan.times[id(pad.inputs[0])].axis)
    for t in sg.tensors():
        t.shape_signature = None  # a streaming model runs one stream: batch 1, fixed shapes
    sg.cleanup()
    sg.toposort()
    return PassResult(new, True)
