"""Replace each RING_BUFFER with builtin ops around a state that a builtin form provides.

Every builtin form computes exactly what docs/RING_BUFFER.md specifies:
    y = CONCATENATION(state, x) along axis; state' = STRIDED_SLICE(y, last frames - n)
(the tidy pass gather_frames makes that slice a GATHER where the target takes one) and differs only in where the state lives between invokes (a `Keeper`: resource variables, model I/O, ...).
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from .. import make
from ..errors import StreamingRefused
from ..ir import NUMPY_DTYPES, Model, Operator, Subgraph, Tensor
from . import ring_buffer


class Keeper(Protocol):
    def state(self, x: Tensor, state_shape, name: str) -> tuple[list[Operator], Tensor, Callable]:
        """Ops that make the state readable, the state tensor, and write(next_state) -> ops that keep it."""

    def finish(self, sg: Subgraph) -> None:
        """Whatever the form adds once every state is in place."""


def zeros(x: Tensor, shape, name: str) -> Tensor:
    """A constant state initialiser: the zero point, with x's dtype and quantization."""
    if x.dtype not in NUMPY_DTYPES:
        raise StreamingRefused(f"tensor {x.name!r} needs state but has dtype {x.dtype}, which has no zero value")
    t = make.const(name, np.full(shape, x.zero_point, dtype=NUMPY_DTYPES[x.dtype]), x.dtype)
    t.quantization = make.like(x, name, shape).quantization
    return t


def lower(model: Model, keeper: Keeper, *, suffixes: tuple[str, ...] = ("",)) -> bool:
    """Replace every RING_BUFFER of `model` (in place); state names are `state_K` made unique in the model
    together with each of `suffixes` (e.g. "_next" for a name the caller will also use)."""
    sg = model.main
    changed = False
    taken: set[str] = set()
    count = 0
    for op in list(sg.operators):
        if not ring_buffer.is_ring_buffer(op):
            continue
        changed = True
        axis, frames = ring_buffer.decode_options(op)
        x, y = op.inputs[0], op.outputs[0]
        y.is_variable = False  # an in-place window: a builtin op writes it now
        n = x.shape[axis]
        keep = frames - n
        at = sg.index_of(op)
        if keep <= 0:
            # No history: the buffer only keeps the newest `frames` frames of x.
            sg.operators[at:at + 1] = [make.strided_slice(x, axis, n - frames, n, y)]
            continue
        name = sg.unique_name(f"state_{count}", taken=taken,
                              suffixes=suffixes + ("/read", "/next", "/handle", "/init"))
        count += 1
        taken.update(name + s for s in suffixes)
        before, state, write = keeper.state(x, make.with_axis(x.shape, axis, keep), name)
        next_state = make.like(x, f"{name}/next", make.with_axis(x.shape, axis, keep))
        new_ops = before + [make.concatenation([state, x], axis, y),
                            make.strided_slice(y, axis, frames - keep, frames, next_state)]
        new_ops += write(next_state)
        sg.operators[at:at + 1] = new_ops
    keeper.finish(sg)
    return changed
