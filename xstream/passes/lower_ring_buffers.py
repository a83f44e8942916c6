"""Replace each RING_BUFFER with builtin ops: resource variables (`variable`) or extra model I/O (`external`).

Both forms compute exactly what docs/RING_BUFFER.md specifies:
    y = CONCATENATION(state, x) along axis; state' = STRIDED_SLICE(y, last frames - n)
and differ only in where the state lives between invokes.
"""

from __future__ import annotations

import numpy as np

from .. import ops, ring_buffer
from ..errors import StreamingRefused, XstreamError
from ..ir import NUMPY_DTYPES, Model, Operator, Subgraph, Tensor
from . import PassResult

VARIABLE = "variable"
EXTERNAL = "external"


def _zeros(x: Tensor, shape, name: str) -> Tensor:
    """A constant state initialiser: the zero point, with x's dtype and quantization."""
    if x.dtype not in NUMPY_DTYPES:
        raise StreamingRefused(f"tensor {x.name!r} needs state but has dtype {x.dtype}, which has no zero value")
    t = ops.const(name, np.full(shape, x.zero_point, dtype=NUMPY_DTYPES[x.dtype]), x.dtype)
    t.quantization = ops.like(x, name, shape).quantization
    return t


class _VariableStates:
    """Resource variables: VAR_HANDLE + READ_VARIABLE before, ASSIGN_VARIABLE after; zeroed by a CALL_ONCE."""

    def __init__(self, model: Model):
        self.model = model
        self.init = Subgraph(name="xstream_init_states")
        self.used = False

    def _handle(self, name: str) -> tuple[Operator, Tensor]:
        h = Tensor(f"{name}/handle", "resource", ())
        return Operator("VAR_HANDLE", [], [h], options={"container": "", "shared_name": name},
                        options_type="VarHandleOptions"), h

    def state(self, x: Tensor, state_shape, name: str) -> tuple[list[Operator], Tensor, callable]:
        self.used = True
        var_op, handle = self._handle(name)
        read = ops.like(x, f"{name}/read", state_shape)
        before = [var_op, Operator("READ_VARIABLE", [handle], [read], options_type="ReadVariableOptions")]
        init_op, init_handle = self._handle(name)
        self.init.operators += [init_op, Operator("ASSIGN_VARIABLE", [init_handle, _zeros(x, state_shape,
                                                                                         f"{name}/init")], [],
                                                  options_type="AssignVariableOptions")]

        def write(next_state: Tensor) -> list[Operator]:
            return [Operator("ASSIGN_VARIABLE", [handle, next_state], [], options_type="AssignVariableOptions")]

        return before, read, write

    def finish(self, sg: Subgraph) -> None:
        if not self.used:
            return
        self.model.subgraphs.append(self.init)
        sg.operators.insert(0, Operator("CALL_ONCE", [], [], options={"init_subgraph_index": self.init},
                                        options_type="CallOnceOptions"))


class _ExternalStates:
    """State as model I/O: input `S` and output `S_next` that the caller feeds back on the next step."""

    def __init__(self, model: Model):
        self.model = model
        self.pairs: list[tuple[Tensor, Tensor]] = []

    def state(self, x: Tensor, state_shape, name: str):
        s = ops.like(x, name, state_shape)

        def write(next_state: Tensor) -> list[Operator]:
            next_state.name = f"{name}_next"
            self.pairs.append((s, next_state))
            return []

        return [], s, write

    def finish(self, sg: Subgraph) -> None:
        for s, s_next in self.pairs:
            sg.inputs.append(s)
            sg.outputs.append(s_next)
        for sig in self.model.signatures:
            if sig.subgraph is sg:
                sig.inputs += [(s.name, s) for s, _ in self.pairs]
                sig.outputs += [(n.name, n) for _, n in self.pairs]


def lower_ring_buffers(model: Model, form: str) -> PassResult:
    """Return a copy of `model` with every RING_BUFFER op replaced by the builtin ops of `form`."""
    if form not in (VARIABLE, EXTERNAL):
        raise XstreamError(f"unknown state form {form!r}; use {VARIABLE!r} or {EXTERNAL!r}")
    model = model.copy()
    sg = model.main
    states = _VariableStates(model) if form == VARIABLE else _ExternalStates(model)
    changed = False
    count = 0
    for op in list(sg.operators):
        if not ring_buffer.is_ring_buffer(op):
            continue
        changed = True
        axis, frames = ring_buffer.decode_options(op)
        x, y = op.inputs[0], op.outputs[0]
        n = x.shape[axis]
        keep = frames - n
        at = sg.index_of(op)
        if keep <= 0:
            # No history: the buffer only keeps the newest `frames` frames of x.
            sg.operators[at:at + 1] = [ops.strided_slice(x, axis, n - frames, n, y)]
            continue
        name = f"state_{count}"
        count += 1
        before, state, write = states.state(x, ops.with_axis(x.shape, axis, keep), name)
        next_state = ops.like(x, f"{name}/next", ops.with_axis(x.shape, axis, keep))
        new_ops = before + [ops.concatenation([state, x], axis, y),
                            ops.strided_slice(y, axis, frames - keep, frames, next_state)]
        new_ops += write(next_state)
        sg.operators[at:at + 1] = new_ops
    states.finish(sg)
    return PassResult(model, changed)
