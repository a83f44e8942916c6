"""The `circular-buffer` form: state in TFLite Micro's own CIRCULAR_BUFFER custom op, whose kernel ships with TFLM.

CIRCULAR_BUFFER (tensorflow/lite/micro/kernels/circular_buffer.cc) takes one frame `[1, 1, 1, depth]` per invoke,
shifts it into its output `[1, N, 1, depth]` (a variable tensor that holds the state, set to the zero point on
reset), and, with the flexbuffer option `cycles_max = s`, ends the invoke (kTfLiteAbort: the rest of the graph is
skipped) on s - 1 of every s invokes. So the model takes ONE input frame per invoke, and a slider with stride s
runs every s-th time its buffer is reached. A plan with hop H then produces its outputs on every H-th invoke,
equal to the ring-buffer form's output at the same frame.

This pass applies a StreamPlan (computed at the smallest hop) to the folded original:
- every tensor on the time path gets 1 frame (the ring-buffer form gives it hop/stride);
- each tensor that needs history gets, per stride of its readers, RESHAPE to `[1,1,1,depth]` + CIRCULAR_BUFFER of
  N frames (N = the longest receptive field + delay of those readers; a head's whole original length) + RESHAPE
  back, and STRIDED_SLICE views for readers that need fewer or older frames;
- ops are ordered by frame rate, the buffer that skips (cycles_max > 1) last at its rate, so an abort skips only
  the ops that run at the slower rate.

Where time is not the outermost non-trivial axis (PyTorch's `[1, C, T]`), one frame per invoke is still contiguous
(`[1, C, 1]` reshapes to `[1,1,1,C]`); the buffer's `[1, N, 1, C]` is reshaped to `[N, 1, C]` and transposed back to
`[1, C, N]` for its readers.

It refuses, naming the tensor or operator: non-int8 state (TFLM's kernel supports int8 only) and two strided
readers at the same frame rate (one abort per rate is all CIRCULAR_BUFFER can express).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flatbuffers import flexbuffers

from .. import make
from ..analysis import StreamPlan
from ..errors import StreamingRefused
from ..ir import Model, Operator, Tensor
from ..passes import Pass
from ..passes.time_path import absorb_causal_pads, finish, shrink_time, valid_on_time
from .base import StateBuffer, StateForm

NAME = "circular-buffer"
CUSTOM_CODE = "CIRCULAR_BUFFER"


def encode_options(cycles_max: int) -> bytes:
    return bytes(flexbuffers.Dumps({"cycles_max": int(cycles_max)}))


def is_circular_buffer(op: Operator) -> bool:
    return op.type == "CUSTOM" and op.custom_code == CUSTOM_CODE


def _refuse(what: str, why: str) -> StreamingRefused:
    return StreamingRefused(f"--state circular-buffer: {what}: {why}; use --state ring-buffer or variable")


def _run(model: Model, plan: StreamPlan) -> bool:
    """Turn `model` (the folded original that `plan` was computed on) into its circular-buffer streaming form."""
    sg = model.main
    if plan.edges or plan.edge_reads:
        raise _refuse("the model pads time on both sides (SAME)", "its edges are recomputed every step from a "
                      "window of the input, which one frame per invoke cannot feed")
    needs = _buffer_needs(plan)

    # Checks that need only the plan, before anything changes.
    for t, (axis, _) in needs.items():
        if t.dtype != "int8":
            raise _refuse(f"tensor {t.name!r} ({t.dtype})", "TFLite Micro's CIRCULAR_BUFFER kernel supports int8 "
                                                           "only")

    # 1 frame per invoke on the whole time path.
    rate: dict[Tensor, int] = {t: info.stride for t, info in plan.times.items()}
    shrink_time(plan, lambda info: 1)

    gates: dict[int, list[Operator]] = {}  # frame rate -> buffers that skip (cycles_max > 1)
    gate_ops: set[Operator] = set()
    for x, (axis, readers) in needs.items():
        depth = int(np.prod(x.shape, dtype=np.int64))  # one frame: every value of the 1-frame tensor
        others = [d for k, d in enumerate(x.shape) if k != axis]
        outer = int(np.prod(x.shape[:axis], dtype=np.int64))
        groups: dict[int, list] = {}
        for r in readers:
            groups.setdefault(r.stride, []).append(r)
        new_ops: list[Operator] = []
        frame = x
        if list(x.shape) != [1, 1, 1, depth]:
            frame = make.like(x, f"{x.name}/frame", (1, 1, 1, depth))
            new_ops.append(make.reshape(x, frame))
            rate[frame] = rate[x]
        for stride, group in sorted(groups.items()):
            frames = max(r.lag + r.length for r in group)
            tag = f"{x.name}/circular_buffer" + (f"_s{stride}" if len(groups) > 1 else "")
            held = make.like(x, tag, (1, frames, 1, depth))
            held.is_variable = True  # the state lives in this tensor: never shared in the arena
            cb = Operator("CUSTOM", [frame], [held], custom_code=CUSTOM_CODE, custom_options=encode_options(stride),
                          custom_options_format=0)
            new_ops.append(cb)
            rate[held] = rate[x]
            if stride > 1:
                gates.setdefault(rate[x], []).append(cb)
                gate_ops.add(cb)
            buffered = held
            if outer != 1:  # time is not outermost ([1, C, T]): frames first, then time back to its axis
                rows = make.like(x, f"{tag}/rows", (frames, *others))
                buffered = make.like(x, f"{tag}/frames", make.with_axis(x.shape, axis, frames))
                perm = [0 if k == axis else 1 + (k if k < axis else k - 1) for k in range(len(x.shape))]
                new_ops += [make.reshape(held, rows), make.transpose(rows, perm, buffered)]
                rate[rows] = rate[buffered] = rate[x]
            elif tuple(make.with_axis(x.shape, axis, frames)) != (1, frames, 1, depth):
                buffered = make.like(x, f"{tag}/frames", make.with_axis(x.shape, axis, frames))
                new_ops.append(make.reshape(held, buffered))
                rate[buffered] = rate[x]
            views: dict[tuple[int, int], Tensor] = {(0, frames): buffered}
            for r in group:
                window = (r.lag, r.length)
                if window not in views:
                    view = make.like(x, f"{tag}/frames_{frames - r.lag - r.length}_{frames - r.lag}",
                                     make.with_axis(x.shape, axis, r.length))
                    new_ops.append(make.strided_slice(buffered, axis, frames - r.lag - r.length, frames - r.lag,
                                                      view))
                    rate[view] = rate[x]
                    views[window] = view
                r.op.inputs[r.slot] = make.window_as(views[window], r.via, plan.times, r.length, new_ops)
        first_reader = min(sg.index_of(r.op) for r in readers)
        sg.operators[first_reader:first_reader] = new_ops

    absorb_causal_pads(model, sg, plan)
    valid_on_time(sg, plan)
    finish(sg)

    for r, cbs in gates.items():
        if len(cbs) > 1:
            names = ", ".join(repr(cb.outputs[0].name) for cb in cbs)
            raise _refuse(f"buffers {names}", f"{len(cbs)} strided readers take frames at the same rate (every "
                                              f"{r} input frame(s)); CIRCULAR_BUFFER can only skip the rest of the "
                                              "graph, so one rate change per frame rate fits")
    _order_by_rate(sg, rate, gate_ops)
    return True


@dataclass
class _Need:
    """One reader of a tensor's history in the circular-buffer form: `length` frames ending `lag` frames before the
    newest, taken every `stride`-th frame."""

    op: Operator
    slot: int
    lag: int
    length: int
    stride: int
    via: Tensor | None = None  # the slot reads this tensor; the buffer is on a per-frame reshape of it


def _buffer_needs(plan: StreamPlan) -> dict[Tensor, tuple[int, list[_Need]]]:
    """Per tensor (of the planned model): its time axis and the readers that need a buffer at one frame per
    invoke. The plan's states cover the readers that need history at its hop; a strided slider whose window fits
    in one hop (e.g. a pool of 2 with stride 2 at hop 2) needs none there but does here, one frame at a time."""
    stride_of = {s.op: s.stride for s in plan.slides}
    needs: dict[Tensor, tuple[int, list[_Need]]] = {}
    seen: set[tuple[Operator, int]] = set()
    for state in plan.states:
        for r in state.readers:
            stride = 1 if r.full_length is not None else stride_of.get(r.op, 1)
            length = r.full_length if r.full_length is not None else r.extra + stride
            needs.setdefault(state.tensor, (state.axis, []))[1].append(_Need(r.op, r.slot, r.lag, length, stride,
                                                                                r.via))
            seen.add((r.op, r.slot))
    for s in plan.slides:
        if (s.op, 0) in seen or (s.receptive_field == 1 and s.stride == 1):
            continue
        x = s.op.inputs[0]
        needs.setdefault(x, (plan.times[x].axis, []))[1].append(_Need(s.op, 0, 0, s.receptive_field, s.stride))
    return needs


def _order_by_rate(sg, rate: dict[Tensor, int], gate_ops: set[Operator]) -> None:
    """Stable-sort the (topologically sorted) ops by (frame rate, after the rate's skipping buffer): ops of a
    faster rate never sit behind a buffer that aborts the invoke. The key never decreases along an edge, so the
    order stays topological."""
    produced_by = {t: op for op in sg.operators for t in op.outputs}
    key: dict[Operator, tuple[int, int]] = {}
    for op in sg.operators:
        base = (0, 0)
        rates = [rate[t] for t in op.outputs if t in rate]
        if op in gate_ops:
            base = (rate[op.inputs[0]], 1)
        elif rates:
            base = (max(rates), 0)
        k = base
        for t in op.inputs:
            p = produced_by.get(t) if t is not None else None
            if p is not None:
                k = max(k, key[p])
        key[op] = k
    sg.operators.sort(key=lambda op: key[op])


def _state_buffers(model: Model) -> list[StateBuffer]:
    # Its output is a variable tensor holding the last N frames: the state itself.
    return [StateBuffer(op.inputs[0].name, NAME, op.outputs[0].nbytes, False) for op in model.main.operators
            if is_circular_buffer(op)]


insert = Pass("insert_circular_buffers", _run, requires=("topological", "source_indexed"),
              ensures=("topological", "batch_one"), in_place=True)
FORM = StateForm(NAME, "TFLite Micro's own CIRCULAR_BUFFER custom op (int8; one frame per invoke); any TFLite Micro, "
                       "no custom kernel",
                 detect=lambda m: any(is_circular_buffer(op) for op in m.main.operators),
                 state_buffers=_state_buffers, insert=insert, custom_code=CUSTOM_CODE)
