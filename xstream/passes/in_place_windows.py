"""Which RING_BUFFERs keep their state in their window (option "in_place", docs/RING_BUFFER.md).

In place, a RING_BUFFER's output is a variable tensor that is its state: TFLite Micro keeps it outside the
activation plan, so the window costs no activation memory, but it holds `n` more frames than the state alone.
That wins where the window is live when the plan peaks (a head reading the whole window, a long dilated kernel)
and loses where the window overlaps nothing (the plan reuses its bytes anyway). Each buffer is set the way that
gives the smaller planned activations + state (TFLite Micro's greedy plan, report/measure.py; where the
planning scratch is larger than the activations, it sets the arena's head instead and in place only adds state),
one at a time until nothing improves, from three starts (as inserted, none, all): the estimate is the harness's
measured arena less a constant on ds_cnn_kws float over all 16 choices. Measured in the harness on the zoo and
holdout int8 models (docs/TFLM_COST.md).
"""

from __future__ import annotations

from ..forms import ring_buffer
from ..ir import Model, Operator
from ..report.measure import align, plan_arena
from . import Pass

MAX_ROUNDS = 3


def _set(op: Operator, in_place: bool) -> None:
    axis, frames = ring_buffer.decode_options(op)
    op.custom_options = ring_buffer.encode_options(axis, frames, in_place)
    op.outputs[0].is_variable = in_place


def planning_scratch(model: Model) -> int:
    """TFLite Micro's temporary bookkeeping while it plans (docs/TFLM_COST.md, fitted on the harness): a
    record per tensor of every subgraph and a planner entry per planned (non-constant, non-variable) one."""
    tensors = {t for sg in model.subgraphs for t in sg.tensors()}
    planned = sum(1 for t in tensors if not t.is_constant and not t.is_variable)
    return int(259 + 31.7 * len(tensors) + 40.2 * planned)


def _cost(model: Model, buffers: list[Operator]) -> int:
    """The arena beyond what no choice changes: the activations or, where larger, the planning scratch that
    shares their room (arena ~ tail + max(head, scratch)), plus every buffer's state."""
    return max(plan_arena(model).peak, planning_scratch(model)) + \
        sum(align(ring_buffer.held_bytes(op)) for op in buffers)


def _descend(model: Model, buffers: list[Operator], candidates: list[Operator], start: list[bool]) -> int:
    """Flip one buffer at a time from `start` while the cost falls; leaves the buffers set, returns the cost."""
    for op, flag in zip(candidates, start):
        _set(op, flag)
    best = _cost(model, buffers)
    for _ in range(MAX_ROUNDS):
        improved = False
        for op in candidates:
            _set(op, not ring_buffer.in_place(op))
            cost = _cost(model, buffers)
            if cost < best:
                best, improved = cost, True
            else:
                _set(op, not ring_buffer.in_place(op))
        if not improved:
            break
    return best


def _run(model: Model) -> bool:
    buffers = [op for op in model.main.operators if ring_buffer.is_ring_buffer(op)]
    for op in buffers:  # a window that is also a model output stays an activation
        if op.outputs[0] in model.main.outputs and ring_buffer.in_place(op):
            _set(op, False)
    candidates = [op for op in buffers if op.outputs[0] not in model.main.outputs]
    if not candidates:
        return False
    before = [ring_buffer.in_place(op) for op in candidates]
    # One descent can stop in a local minimum (ds_cnn_kws float: from all in place it ends 640 bytes above none
    # in place), so descend from each of: as inserted, none, all; keep the cheapest.
    results = []
    for start in (before, [False] * len(candidates), [True] * len(candidates)):
        cost = _descend(model, buffers, candidates, start)
        results.append((cost, [ring_buffer.in_place(op) for op in candidates]))
    _, flags = min(results, key=lambda r: r[0])  # the first of equals: as inserted, then none
    for op, flag in zip(candidates, flags):
        _set(op, flag)
    return flags != before


in_place_windows = Pass("in_place_windows", _run, requires=("topological",), ensures=("topological",))
