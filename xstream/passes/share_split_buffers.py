"""One buffer before a channel split instead of one per branch (MixConv): fewer states, fewer ops.

A SPLIT/SPLIT_V on a non-time axis whose outputs are read only through RING_BUFFERs gets one RING_BUFFER on its
input, of the largest window any branch reads; the split then runs on that window and each branch that reads
fewer frames takes a STRIDED_SLICE of its newest frames. The state grows (the shorter branches keep the longer
branch's frames, as microWakeWord's own streaming export does) but each builtin form saves a whole state: in the
variable form 7 ops and 6 tensors, which costs TFLite Micro more arena than the frames kept (docs/TFLM_COST.md).
The ring-buffer form keeps a buffer per branch: there a RING_BUFFER costs less than the frames it saves.
"""

from __future__ import annotations

import numpy as np

from .. import make, ops
from ..analysis import StreamPlan
from ..analysis.plan import Reader, State
from ..forms import ring_buffer
from ..ir import Model, Operator, Subgraph
from . import Pass


def _split_axis(op: Operator) -> int | None:
    data, at = ops.split_slots(op)
    axis = op.inputs[at]
    if axis.data is None or axis.data.size != 1:
        return None
    rank = len(op.inputs[data].shape)
    return int(np.asarray(axis.data).reshape(-1)[0]) % rank


def _buffers(sg: Subgraph, split: Operator) -> list[tuple[Operator, int, int]] | None:
    """The (RING_BUFFER, axis, frames) that read the split's outputs, if they are its only readers; else None."""
    found = []
    for t in split.outputs:
        if t in sg.outputs:
            return None
        for op in sg.consumers(t):
            if not ring_buffer.is_ring_buffer(op):
                return None
            axis, frames = ring_buffer.decode_options(op)
            found.append((op, axis, frames))
    return found


def _share(model: Model, sg: Subgraph, split: Operator, plan: StreamPlan) -> bool:
    axis_split = _split_axis(split)
    u = split.inputs[ops.split_slots(split)[0]]
    found = _buffers(sg, split)
    if axis_split is None or u is None or not found or len(found) < 2:
        return False
    axes = {axis for _, axis, _ in found}
    if len(axes) != 1 or axis_split in axes:
        return False
    axis = axes.pop()
    n = u.shape[axis]
    if any(rb.inputs[0].shape[axis] != n or rb.inputs[0].dtype != u.dtype or rb.inputs[0].zero_point != u.zero_point
           for rb, _, _ in found):
        return False  # the shared state must start at every branch's zero point
    frames = max(f for _, _, f in found)
    buffered = make.like(u, f"{u.name}/ring_buffer", make.with_axis(u.shape, axis, frames))
    sg.operators.insert(sg.index_of(split), ring_buffer.make_op(u, buffered, axis, frames))
    split.inputs[ops.split_slots(split)[0]] = buffered
    for t in split.outputs:
        t.set_shape(make.with_axis(t.shape, axis, frames))
    for rb, _, f in found:
        x, y = rb.inputs[0], rb.outputs[0]
        if f == frames:
            model.replace_uses(sg, y, x, skip=rb)
            sg.operators.remove(rb)
        else:
            sg.operators[sg.index_of(rb)] = make.strided_slice(x, axis, frames - f, frames, y)

    # The plan: one state on the split's input replaces the branches' (the contract's minimum keeps theirs).
    merged = [s for s in plan.states if s.tensor in split.outputs]
    if merged:
        state = State(u, axis, n, frames, [Reader(split, ops.split_slots(split)[0], frames - n)],
                      frame_bytes=u.nbytes // n if n else 0)
        at = plan.states.index(merged[0])
        plan.states[at:at] = [state]
        for s in merged:
            plan.states.remove(s)
        plan.shared_states.append((state, merged))
    return True


def _run(model: Model, plan: StreamPlan) -> bool:
    sg = model.main
    changed = False
    for op in list(sg.operators):
        if op in sg.operators and ops.split_slots(op) is not None:
            changed |= _share(model, sg, op, plan)
    if changed:
        sg.toposort()
    return changed


share_split_buffers = Pass("share_split_buffers", _run, requires=("topological",), ensures=("topological",),
                           in_place=True)
