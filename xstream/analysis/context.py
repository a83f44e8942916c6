"""The `context` stream of a model that pads time on both sides (`--same-padding context`), and its reference.

The context stream runs every op VALID on time over real neighbouring frames: no padding and no edge recompute,
the cheapest stream. It is not the original: it equals the **context reference**, the original with every padding
on time removed and its input window widened by the padding before (`Cb`) and after (`Ca`) it, in input frames,
so that each head reads as many frames as in the original. The original window a step stands for ends `Ca`
frames before the reference window's end: that is the offset D reported to the user.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ops
from ..errors import StreamingRefused
from ..ir import Model, Operator, Tensor
from .edges import _ints, _slide_geometry, same_before
from .plan import TimeInfo


@dataclass
class ContextWindow:
    window: int  # T + Cb + Ca: input frames of the context reference
    before: int  # Cb: frames of real context before the original window
    after: int  # Ca: after it
    offset: int  # the reference's own D (frames at its end no output reads)


def _lengths(model: Model, times: dict[Tensor, TimeInfo], x: Tensor, window: int, before: int):
    """Every time tensor when `model` runs VALID on time over `window` frames that start `before` frames ahead of
    the original window: (length, origin: the original frame index of its frame 0, first_end: the input frame its
    frame 0 ends on, crops at merges). None where the frames do not line up with the original's."""
    length: dict[Tensor, int] = {x: window}
    origin: dict[Tensor, int] = {x: -before}
    first_end: dict[Tensor, int] = {x: 0}
    crops: dict[tuple[Operator, Tensor], tuple[int, int]] = {}  # (merge, input) -> frames [begin, end) it uses
    for op in model.main.operators:
        ins = [t for t in op.inputs if t is not None and t in length]
        outs = [t for t in op.outputs if t in times]
        if not ins or not outs:
            continue
        t = ins[0]
        info = times[t]
        fam = ops.family(op)
        if fam == ops.SLIDE:
            rf, s, same = _slide_geometry(op, info.axis)
            p = same_before(info.length, rf, s) if same else 0
            skip = -(origin[t] + p) % s  # a strided op starts where the original's frames do: crop its input
            if skip:
                crops[(op, t)] = (skip, length[t])
            n = (length[t] - skip - rf) // s + 1
            if n < 1:
                return None
            o = outs[0]
            length[o], origin[o] = n, (origin[t] + skip + p) // s
            first_end[o] = first_end[t] + (skip + rf - 1) * info.stride
            continue
        if fam == "pad":
            left = _ints(op.inputs[1])[2 * info.axis]
            length[outs[0]], origin[outs[0]], first_end[outs[0]] = length[t], origin[t] + left, first_end[t]
            continue
        if fam in ("strided_slice", "slice", "gather") and times[outs[0]].length != info.length:
            raise StreamingRefused(f"operator {op.source_index} ({op.kind}): a crop on time in a model that pads "
                                   "time; --same-padding context cannot widen its window (use the default, exact)")
        if len(ins) > 1:  # a merge: the original adds frames of equal index; keep those both branches have
            first = max(origin[u] for u in ins)
            end = min(origin[u] + length[u] for u in ins)
            if end <= first:
                return None
            for u in ins:
                crops[(op, u)] = (first - origin[u], end - origin[u])
            fe = max(first_end[u] + (first - origin[u]) * times[u].stride for u in ins)  # the later branch's end
            for o in outs:
                length[o], origin[o], first_end[o] = end - first, first, fe
            continue
        for o in outs:  # padding on time is gone; per-frame ops keep the frames
            length[o], origin[o], first_end[o] = length[t], origin[t], first_end[t]
    return length, origin, first_end, crops


def plan_context(model: Model, times: dict[Tensor, TimeInfo], read: list[Tensor]) -> ContextWindow:
    """The context window: the smallest widening of the input for which every tensor a head or an output reads
    has exactly the original's frames (all of them real)."""
    x = model.main.inputs[0]
    T = times[x].length
    limit = 2 * T + 64
    # The context before the window fixes where each read tensor starts; the context after, how long it is.
    for before in range(limit):
        got = _lengths(model, times, x, T + before + limit, before)
        if got is None or any(got[1][t] != 0 for t in read):
            continue
        for after in range(limit):
            got = _lengths(model, times, x, T + before + after, before)
            if got is None:
                continue
            length, origin, first_end, _ = got
            if all(length[t] == times[t].length and origin[t] == 0 for t in read):
                t = read[0]
                offset = T + before + after - 1 - first_end[t] - (times[t].length - 1) * times[t].stride
                return ContextWindow(T + before + after, before, after, offset)
        break
    raise StreamingRefused("no widened window gives the model's heads their frames without padding; "
                           "--same-padding context cannot stream it (use the default, exact)")


def context_lengths(model: Model, times: dict[Tensor, TimeInfo], ctx: ContextWindow):
    """(length of every time tensor, {(merge op, input): frames [begin, end) of that input it merges})."""
    length, _, _, crops = _lengths(model, times, model.main.inputs[0], ctx.window, ctx.before)
    return length, crops
