"""What a model costs to run: activation arena, state, weights and MACs, per op and per step of a stream.

Pure functions over the IR (and a StreamPlan); nothing here runs a model or changes one.

Arena. The activation arena is planned the way TFLite Micro's `GreedyMemoryPlanner` plans it (the default planner
of `MicroAllocator`), so the figure is the arena's non-persistent "head" (arena_used_bytes() adds the tail):
- planned tensors: every tensor of a subgraph the main subgraph reaches (itself, and the subgraphs of CALL_ONCE,
  IF and WHILE) that is not a constant, not an `is_variable` tensor and not empty; model inputs and outputs
  included. Resource handles are not planned (TFLM keeps them out of the arena);
- sizes rounded up to 16 bytes (`MicroArenaBufferAlignment()`);
- lifetimes in TFLM's allocation scopes: each op is one scope (op i of the main subgraph is scope i + 1 when no
  control flow comes before it), a called subgraph's ops get scopes inside the calling op's; a subgraph's inputs
  live from its start, every tensor from the last op that writes it to the last op that reads it, outputs to
  the end;
- placement: largest first (ties: the tensor added later first, as TFLM's reverse-then-stable sort does), each
  at the lowest offset where it overlaps no placed tensor whose lifetime overlaps its own; peak = highest end.
Checked against tflite-micro's recording allocator ("Arena allocation head"): equal on every zoo model and its
variable form. Not modelled: kernels' scratch buffers (e.g. CMSIS-NN im2col, or MEAN's: tflite-micro reports
160 bytes more than this plan for the external form of causal_mean_int8) and the persistent tail (tensor structs,
quantization params, kernel op data). TFLM does no in-place sharing (a RESHAPE copies), nor does this plan.

State. Persistent memory outside the arena that a streaming model carries from step to step:
RING_BUFFER ops keep `frames - n` frames in their kernel (persistent memory); resource variables (`variable`
form) keep one copy each in TFLM's persistent tail. The `external` form's state is model I/O, so it lives inside
the arena already and is not added again.

Cost. Per invoke, from each op's own shapes, by the cost rules of the op table (xstream/ops.py, COST_NOTES).

Theoretical minimum per step of a stream (`minimum_step_cost`). For each op of the analysed original model:
- an op whose output carries time (every op before the head) computes each of its output frames exactly once:
  its cost with every time tensor cut to the frames it gains per step (hop / stride), i.e. per-frame cost times
  output frames per step;
- the head and every op after it (one value per window), and ops off the time path, run once per step in both
  the original and the stream: their full cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import forms, ops
from ..analysis import StreamPlan
from ..forms import StateBuffer, ring_buffer
from ..ir import Model, Operator, Subgraph, Tensor

ALIGNMENT = 16
PLANNER = ("TFLite Micro GreedyMemoryPlanner: largest tensor first at the lowest free offset, lifetimes from "
           "the op order, sizes aligned to 16 bytes; no scratch buffers")



# -- cost ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    macs: int = 0
    other: int = 0  # pool window reads, reduction reads, element-wise outputs

    def __add__(self, o: "Cost") -> "Cost":
        return Cost(self.macs + o.macs, self.other + o.other)


def _elems(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def op_cost(op: Operator, in_shapes: list | None = None, out_shapes: list | None = None) -> Cost:
    """The cost of one invoke of `op`, on its own shapes or on the given ones (None entries: the op's own)."""
    ins = [None if t is None else tuple(t.shape) for t in op.inputs]
    outs = [tuple(t.shape) for t in op.outputs]
    for shapes, given in ((ins, in_shapes), (outs, out_shapes)):
        for i, s in enumerate(given or []):
            if s is not None and i < len(shapes):
                shapes[i] = tuple(s)
    return Cost(*ops.cost(op, ins, outs))


def subgraph_cost(sg: Subgraph) -> Cost:
    total = Cost()
    for op in sg.operators:
        total = total + op_cost(op)
    return total


# -- arena -------------------------------------------------------------------------------------------------


@dataclass
class ArenaBuffer:
    name: str
    subgraph: int
    bytes: int  # unaligned
    size: int  # aligned, what the planner places
    first: int  # allocation scope of first write (0: subgraph input)
    last: int  # allocation scope of last read
    offset: int = -1


@dataclass
class ArenaPlan:
    buffers: list[ArenaBuffer]
    peak: int  # the arena's planned bytes (highest end offset)
    live_peak: int  # max over scopes of the bytes live at once: a lower bound for any plan
    alignment: int = ALIGNMENT
    planner: str = PLANNER


def align(n: int, alignment: int = ALIGNMENT) -> int:
    return -(-n // alignment) * alignment


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return not (a[0] > b[1] or b[0] > a[1])


def greedy_offsets(requests: list[tuple[int, int, int]]) -> list[int]:
    """TFLM GreedyMemoryPlanner on (size, first, last) requests in the order they are added: their offsets."""
    n = len(requests)
    # TFLM fills its sort array from the tail and bubble-sorts it stably by decreasing size.
    order = sorted(reversed(range(n)), key=lambda i: -requests[i][0])
    offsets = [-1] * n
    placed: list[int] = []  # request ids by increasing offset (equal offsets: in placement order)
    for i in order:
        size, first, last = requests[i]
        candidate = 0
        for j in placed:
            if not _overlap((first, last), requests[j][1:]):
                continue
            if offsets[j] - candidate >= size:
                break
            candidate = max(candidate, offsets[j] + requests[j][0])
        offsets[i] = candidate
        at = len(placed)
        for k, j in enumerate(placed):
            if offsets[j] > candidate:
                at = k
                break
        placed.insert(at, i)
    return offsets


def arena_peak(requests: list[tuple[int, int, int]], offsets: list[int]) -> int:
    return max((o + r[0] for r, o in zip(requests, offsets)), default=0)


def live_peak(requests: list[tuple[int, int, int]]) -> int:
    """The most bytes live in one scope: no placement can use less."""
    if not requests:
        return 0
    scopes = range(min(r[1] for r in requests), max(r[2] for r in requests) + 1)
    return max(sum(r[0] for r in requests if r[1] <= s <= r[2]) for s in scopes)


def tensor_bytes(t: Tensor) -> int:
    if t.dtype in ("resource", "variant"):
        return 0
    return t.nbytes


def _called(op: Operator) -> list[Subgraph]:
    keys = ops.info(op).calls
    return [op.options[k] for k in keys if isinstance(op.options.get(k), Subgraph)]


def arena_lifetimes(model: Model) -> list[ArenaBuffer]:
    """The tensors TFLM plans into its arena, in the order it adds them, with their lifetimes (no offsets)."""
    sg_index = {sg: i for i, sg in enumerate(model.subgraphs)}
    life: dict[tuple[int, Tensor], list[int]] = {}  # (subgraph, tensor) -> [first, last]
    scope = 0

    def created(s: int, t: Tensor) -> None:
        life[(s, t)] = [scope, scope]

    def used(s: int, t: Tensor) -> None:
        life.setdefault((s, t), [scope, scope])[1] = scope

    def mark(sg: Subgraph) -> None:
        nonlocal scope
        s = sg_index[sg]
        for t in sg.inputs + sg.outputs:
            created(s, t)
        for op in sg.operators:
            scope += 1
            for t in op.outputs:
                created(s, t)
            for sub in _called(op):
                scope += 1
                mark(sub)
            for t in op.inputs:
                if t is not None:
                    used(s, t)
            for t in op.outputs:
                used(s, t)
        for t in sg.outputs:
            used(s, t)

    mark(model.main)
    buffers = []
    for s, sg in enumerate(model.subgraphs):
        for t in _planned_tensors(sg):
            span = life.get((s, t))
            if span is None:
                continue  # a subgraph nothing calls, or a tensor no op touches
            b = tensor_bytes(t)
            buffers.append(ArenaBuffer(t.name, s, b, align(b), span[0], span[1]))
    return buffers


def _planned_tensors(sg: Subgraph) -> list[Tensor]:
    return [t for t in sg.tensors() if not t.is_constant and not t.is_variable and tensor_bytes(t) > 0]


def plan_arena(model: Model) -> ArenaPlan:
    buffers = arena_lifetimes(model)
    requests = [(b.size, b.first, b.last) for b in buffers]
    offsets = greedy_offsets(requests)
    for b, o in zip(buffers, offsets):
        b.offset = o
    return ArenaPlan(buffers, arena_peak(requests, offsets), live_peak(requests))


# -- state and weights ---------------------------------------------------------------------------------------


def model_state(model: Model) -> list[StateBuffer]:
    """The state a (streaming) model keeps between invokes (each form says what it keeps); [] for a plain model."""
    return forms.state_buffers(model)


def weight_bytes(model: Model) -> tuple[int, int]:
    """(parameters, bytes) of the constants of every subgraph, each shared buffer once."""
    params = total = 0
    seen: set = set()
    for sg in model.subgraphs:
        for t in sg.tensors():
            if t.is_constant and t.buffer not in seen:
                seen.add(t.buffer)
                params += _elems(t.shape)
                total += len(t.buffer.data)
    return params, total


@dataclass
class ModelMeasure:
    arena: ArenaPlan
    states: list[StateBuffer]
    weight_bytes: int
    cost: Cost  # per invoke of the main subgraph

    @property
    def state_bytes(self) -> int:
        return sum(s.bytes for s in self.states)

    @property
    def persistent_state_bytes(self) -> int:
        return sum(s.bytes for s in self.states if not s.in_arena)

    @property
    def ram(self) -> int:
        """Arena plus the state that lives outside it."""
        return self.arena.peak + self.persistent_state_bytes

    @property
    def state_form(self) -> str | None:
        forms = sorted({s.form for s in self.states})
        return "+".join(forms) if forms else None

    def to_dict(self) -> dict:
        return {"arena_bytes": self.arena.peak, "arena_lower_bound_bytes": self.arena.live_peak,
                "state_bytes": self.state_bytes, "state_in_arena": self.state_bytes - self.persistent_state_bytes,
                "ram_bytes": self.ram, "weight_bytes": self.weight_bytes, "macs": self.cost.macs,
                "other_ops": self.cost.other, "state_form": self.state_form,
                "states": [vars(s) for s in self.states]}


def measure(model: Model) -> ModelMeasure:
    return ModelMeasure(plan_arena(model), model_state(model), weight_bytes(model)[1], subgraph_cost(model.main))


# -- per op of a stream ------------------------------------------------------------------------------------


def _time_shapes(op: Operator, plan: StreamPlan) -> tuple[list, list]:
    """The op's input and output shapes with every time tensor cut to the frames it gains per step."""
    def cut(t: Tensor | None):
        info = plan.time_info(t)
        if info is None:
            return None
        s = list(t.shape)
        s[info.axis] = plan.frames(t) * info.frame
        return s
    return [cut(t) for t in op.inputs], [cut(t) for t in op.outputs]


def minimum_op_cost(op: Operator, plan: StreamPlan) -> Cost:
    """Per step: output frames computed once before the head, a full run from the head on (module doc)."""
    if not op.outputs or plan.time_info(op.outputs[0]) is None:
        return op_cost(op)
    ins, outs = _time_shapes(op, plan)
    return op_cost(op, ins, outs)


def _check_plan(model: Model, plan: StreamPlan) -> None:
    if not any(plan.time_info(t) is not None for t in model.main.inputs):
        raise ValueError("the plan is not the model's: pass the model that was analysed (after folding)")


def minimum_step_cost(model: Model, plan: StreamPlan) -> Cost:
    """The theoretical minimum cost per step of streaming `model` (the analysed original) with `plan`."""
    _check_plan(model, plan)
    total = Cost()
    for op in model.main.operators:
        total = total + minimum_op_cost(op, plan)
    return total


@dataclass
class StreamRow:
    index: int
    op: str
    time_axis: int | None  # of the op's first time input (of its output for ops without one)
    frames_in: int | None  # original frames on the first time input
    frames_out: int | None  # original frames of the output (None: no time axis, e.g. a head)
    step_in: int | None  # frames the op reads per step (a ring buffer's window for ops with history)
    step_out: int | None  # frames it writes per step
    state_frames: int  # frames of history kept for this op's input (shared state: on its first reader)
    state_bytes: int
    state_shared_with: list[int] = field(default_factory=list)  # other readers of the same state
    macs: int = 0  # original, per invoke
    step_macs: int | None = None  # streaming model, per step (None: the op is gone after conversion)
    min_macs: int = 0  # theoretical minimum per step
    other: int = 0
    step_other: int | None = None
    min_other: int = 0
    head: bool = False


def stream_rows(model: Model, plan: StreamPlan) -> list[StreamRow]:
    """One row per op of `model` (the analysed original, before the plan is applied); the step costs are the
    minimum until `fill_step_costs` reads them from the stream."""
    _check_plan(model, plan)
    sg = model.main
    state_of: dict[Operator, tuple] = {}  # op -> (state, reader)
    for st in plan.states:
        for r in st.readers:
            state_of[r.op] = (st, r)
    heads = set(plan.heads)
    rows = []
    for i, op in enumerate(sg.operators):
        time_in = [t for t in op.inputs if plan.time_info(t) is not None]
        out = op.outputs[0] if op.outputs else None
        out_info = plan.time_info(out)
        first = time_in[0] if time_in else None
        in_info = plan.time_info(first)
        axis = in_info.axis if in_info else (out_info.axis if out_info else None)
        step_in = None
        if first is not None:
            step_in = plan.frames(first)
            if op in state_of:
                st, r = state_of[op]
                step_in = r.length(st.frames_in)
        state_frames = state_bytes = 0
        shared: list[int] = []
        if op in state_of:
            st, _ = state_of[op]
            in_graph = set(sg.operators)  # (edge recompute's readers are not in the analysed graph)
            readers = sorted(sg.index_of(r.op) for r in st.readers if r.op in in_graph)
            if readers[0] == i:
                state_frames, state_bytes = st.state_frames, st.state_bytes
            shared = [k for k in readers if k != i]
        orig = op_cost(op)
        low = minimum_op_cost(op, plan)
        rows.append(StreamRow(
            index=i, op=op.kind, time_axis=axis,
            frames_in=in_info.length if in_info else None, frames_out=out_info.length if out_info else None,
            step_in=step_in, step_out=plan.frames(out) if out_info else None,
            state_frames=state_frames, state_bytes=state_bytes, state_shared_with=shared,
            macs=orig.macs, step_macs=low.macs, min_macs=low.macs,
            other=orig.other, step_other=low.other, min_other=low.other,
            head=op in heads))
    return rows


def fill_step_costs(rows: list[StreamRow], analysed_ops: list[Operator], streaming: Model,
                    plan: StreamPlan | None = None) -> None:
    """Each row's cost per step in `streaming`, the model the plan was applied to in place (its surviving ops are
    the analysed ops themselves); None for an op the conversion removed. With `plan`, a state whose RING_BUFFER
    keeps it in its window (in place) counts the window's frames, as the stream holds them."""
    kept = set(streaming.main.operators)
    for row, op in zip(rows, analysed_ops):
        step = op_cost(op) if op in kept else None
        row.step_macs = None if step is None else step.macs
        row.step_other = None if step is None else step.other
    if plan is None:
        return
    where = {op: i for i, op in enumerate(analysed_ops)}
    sg = streaming.main

    def buffer_of(t: Tensor | None) -> Operator | None:  # the RING_BUFFER a reader's window comes from
        for _ in range(8):
            op = sg.producer(t) if t is not None else None
            if op is None or ring_buffer.is_ring_buffer(op):
                return op
            if op.type not in ("STRIDED_SLICE", "GATHER") and ops.family(op) != ops.RESHAPE:
                return None
            t = op.inputs[0]
        return None

    for st in plan.states:
        readers = [where[r.op] for r in st.readers if r.op in where]
        rb = next((b for b in (buffer_of(r.op.inputs[r.slot]) for r in st.readers) if b), None)
        if rb is None or not ring_buffer.in_place(rb) or not readers:
            continue
        row = rows[min(readers)]
        row.state_frames = ring_buffer.decode_options(rb)[1]
        row.state_bytes = ring_buffer.held_bytes(rb)


def ratio(a: float, b: float) -> float | None:
    """a / b, or None when b is 0 (1.0 when both are)."""
    if b == 0:
        return 1.0 if a == 0 else None
    return a / b

