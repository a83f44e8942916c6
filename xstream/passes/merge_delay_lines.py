"""A delay line that feeds a window becomes part of that window's buffer.

A stream delays a tensor by L frames (a causal model's input aligned to its first window, TC-ResNet's odd-phase
shortcut) with a RING_BUFFER whose only reader takes one step's frames L frames back. Where those frames go, only
reshaped, into another RING_BUFFER, one buffer of L more frames holds both: its window's oldest frames are the old
window. A sliding op that reads the window on its time axis takes the longer window as is where its stride leaves
the last L frames unread (the same output frames: VALID, (F - receptive field) % stride + L < stride); other
readers take the old window as a view. The state is the same, a RING_BUFFER and a view less (docs/TFLM_COST.md).
Runs on the plan's RING_BUFFERs before any lowering, so every form gets it.
"""

from __future__ import annotations

from .. import make, ops
from ..analysis import StreamPlan
from ..analysis.time_axis import same_frames
from ..forms import ring_buffer
from ..ir import PADDING_SAME, Model, Operator, Subgraph
from . import Pass
from .gather_frames import copied_frames

MAX_RESHAPES = 4


def _takes_longer_window(plan: StreamPlan, op: Operator, slot: int, axis: int, frames: int, extra: int) -> bool:
    """Does sliding op `op` give the same outputs from `frames + extra` frames on `axis` as from `frames`?"""
    slide = next((s for s in plan.slides if s.op is op), None)
    if slide is None or slot != 0 or axis not in (1, 2) or len(op.inputs[0].shape) != 4:
        return False
    if op.options.get("padding") == PADDING_SAME or slide.pad_before or slide.pad_after:
        return False
    time_axis = {1: "h", 2: "w"}[axis]
    if op.options.get(f"stride_{time_axis}", 1) != slide.stride:
        return False  # the plan's slide is along another axis
    rf = slide.receptive_field
    return frames >= rf and (frames - rf) % slide.stride + extra < slide.stride


def _rewrite(sg: Subgraph, plan: StreamPlan, rb1: Operator) -> bool:
    x, w1 = rb1.inputs[0], rb1.outputs[0]
    a1, f1 = ring_buffer.decode_options(rb1)
    n = x.shape[a1]
    views = sg.consumers(w1)
    if w1 in sg.outputs or len(views) != 1 or views[0].inputs[0] is not w1:
        return False
    run = copied_frames(views[0])
    if run is None or run[0] != a1 or run[2] - run[1] != n or run[2] >= f1:
        return False
    lag = f1 - run[2]
    # The delayed frames, reshaped only, into another RING_BUFFER.
    chain: list[Operator] = []
    t = views[0].outputs[0]
    while True:
        readers = sg.consumers(t)
        if t in sg.outputs or len(readers) != 1 or readers[0].inputs[0] is not t:
            return False
        c = readers[0]
        if ring_buffer.is_ring_buffer(c):
            rb2 = c
            break
        if ops.family(c) != ops.RESHAPE or len(chain) >= MAX_RESHAPES or any(d < 0 for d in c.outputs[0].shape):
            return False
        chain.append(c)
        t = c.outputs[0]
    a2, f2 = ring_buffer.decode_options(rb2)
    w2 = rb2.outputs[0]
    if not same_frames(x.shape, a1, t.shape, a2) or w2 in sg.outputs or x.dtype != t.dtype:
        return False
    longer = [(c, k) for c in sg.consumers(w2) for k, u in enumerate(c.inputs) if u is w2]
    direct = [(c, k) for c, k in longer if _takes_longer_window(plan, c, k, a2, f2, lag)]
    # Rewire: the chain reads x itself, one buffer of f2 + lag frames, the old window a view where needed.
    if chain:
        chain[0].inputs[0] = x
        head = t
    else:
        head = x
    window = make.like(w2, sg.unique_name(f"{head.name}/ring_buffer"), make.with_axis(w2.shape, a2, f2 + lag))
    new_ops = [ring_buffer.make_op(head, window, a2, f2 + lag, in_place=ring_buffer.in_place(rb2))]
    for c, k in direct:
        c.inputs[k] = window
    if len(direct) < len(longer):
        w2.is_variable = False
        new_ops.append(make.gather_frames(window, a2, 0, f2, w2))
    at = sg.operators.index(rb2)
    sg.operators[at:at + 1] = new_ops
    sg.operators.remove(views[0])
    sg.operators.remove(rb1)
    delayed = [s for s in plan.states if s.tensor is x]
    grown = [s for s in plan.states if s.tensor is t]
    if len(delayed) == 1 and len(grown) == 1:
        grown[0].frames += lag
        if not chain:
            grown[0].tensor = head
        plan.states.remove(delayed[0])
    return True


def _run(model: Model, plan: StreamPlan) -> bool:
    sg = model.main
    changed = False
    for rb in [op for op in sg.operators if ring_buffer.is_ring_buffer(op)]:
        if rb in sg.operators:
            changed |= _rewrite(sg, plan, rb)
    if changed:
        sg.toposort()
    return changed


merge_delay_lines = Pass("merge_delay_lines", _run, requires=("topological",), ensures=("topological",),
                         in_place=True)
