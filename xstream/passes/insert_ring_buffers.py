"""Apply a StreamPlan: shrink the time path to one hop and splice a RING_BUFFER before every op needing history."""

from __future__ import annotations

from .. import make
from ..analysis import StreamPlan
from ..forms import ring_buffer
from ..ir import Model, Tensor
from . import Pass
from .time_path import absorb_causal_pads, finish, shrink_time, splice_edges, valid_on_time


def _run(model: Model, plan: StreamPlan) -> bool:
    """`model` is the one `plan` was computed on: input of `plan.hop` frames, RING_BUFFER state, PADs absorbed."""
    sg = model.main
    splice_edges(model, sg, plan)
    shrink_time(plan, lambda info: plan.hop // info.stride)
    for state in plan.states:
        x = state.tensor
        n, frames = state.frames_in, state.frames
        buffered = make.like(x, f"{x.name}/ring_buffer", make.with_axis(x.shape, state.axis, frames))
        # in place: the window is the state, no copy of it in the activation arena (docs/RING_BUFFER.md)
        new_ops = [ring_buffer.make_op(x, buffered, state.axis, frames, in_place=True)]
        views: dict[tuple[int, int], Tensor] = {(0, frames): buffered}
        for r in state.readers:
            window = (r.lag, r.length(n))
            if window not in views:
                lag, length = window
                view = make.like(x, f"{x.name}/frames_{frames - lag - length}_{frames - lag}",
                                 make.with_axis(x.shape, state.axis, length))
                new_ops.append(make.strided_slice(buffered, state.axis, frames - lag - length, frames - lag, view))
                views[window] = view
            r.op.inputs[r.slot] = make.window_as(views[window], r.via, plan.times, r.length(n), new_ops)
        first_reader = min(sg.index_of(r.op) for r in state.readers)
        sg.operators[first_reader:first_reader] = new_ops
    # After the state: a PAD that fed a sliding op directly now feeds its ring buffer, which absorbs it.
    absorb_causal_pads(model, sg, plan)
    valid_on_time(sg, plan)
    finish(sg)
    return True


insert_ring_buffers = Pass("insert_ring_buffers", _run, requires=("topological", "source_indexed"),
                           ensures=("topological", "batch_one"), in_place=True)
