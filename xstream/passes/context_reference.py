"""Build the context reference of a model that pads time (`--same-padding context`): the original with every
padding on time removed and its input window widened, so that each op reads real frames where the original read
padding. A `context` stream equals this model exactly; `verify` proves it and measures the difference from the
original (the edge effect)."""

from __future__ import annotations

from .. import make
from ..analysis import StreamPlan
from ..analysis.context import context_lengths
from ..ir import Model
from . import Pass
from .time_path import absorb_causal_pads, finish, fix_reshape, valid_on_time


def _run(model: Model, plan: StreamPlan) -> bool:
    """`model` is the one `plan` (computed with same_padding="context") was computed on."""
    sg = model.main
    lengths, crops = context_lengths(model, plan.times, plan.context)
    for t, info in plan.times.items():
        t.set_shape(make.with_axis(t.shape, info.axis, lengths[t]))
    for (op, t), (begin, end) in crops.items():  # branches that lost different padding: align their frames
        if (begin, end) == (0, lengths[t]):
            continue
        axis = plan.times[t].axis
        part = make.like(t, f"{t.name}/context_{begin}_{end}", make.with_axis(t.shape, axis, end - begin))
        op.inputs = [part if u is t else u for u in op.inputs]
        sg.operators.insert(sg.index_of(op), make.strided_slice(t, axis, begin, end, part))
    for op in plan.time_reshapes + plan.heads:
        if op.type == "RESHAPE":
            fix_reshape(op)
    absorb_causal_pads(model, sg, plan)
    valid_on_time(sg, plan)
    finish(sg)
    return True


context_reference = Pass("context_reference", _run, requires=("topological",), ensures=("topological", "batch_one"),
                         in_place=True)
