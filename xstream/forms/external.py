"""The `external` form: each state is an extra model input `S` with a matching output `S_next`; the caller feeds
`S_next` back as `S` on the next step (zero point at a reset). Plain model I/O, so any runtime and XMOS xformer
run it. The `S` / `S_next` naming is this module's convention; `state_pairs` is how everyone else reads it."""

from __future__ import annotations

from ..ir import Model, Subgraph, Tensor
from ..passes import Pass
from . import lower_ring_buffers
from .base import StateBuffer, StateForm
from .. import make

NAME = "external"
NEXT = "_next"


class _ModelIO:
    def __init__(self, model: Model):
        self.model = model
        self.pairs: list[tuple[Tensor, Tensor]] = []

    def state(self, x: Tensor, state_shape, name: str):
        s = make.like(x, name, state_shape)

        def write(next_state: Tensor) -> list:
            next_state.name = name + NEXT
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


def state_pairs(model: Model) -> list[tuple[Tensor, Tensor]]:
    """Each extra input S of the main subgraph with its output S_next."""
    outputs = {t.name: t for t in model.main.outputs}
    return [(t, outputs[t.name + NEXT]) for t in model.main.inputs[1:] if t.name + NEXT in outputs]


def _run(model: Model) -> bool:
    return lower_ring_buffers.lower(model, _ModelIO(model), suffixes=("", NEXT))


def _state_buffers(model: Model) -> list[StateBuffer]:
    return [StateBuffer(s.name, NAME, s.nbytes, True) for s, _ in state_pairs(model)]


lower = Pass("lower_to_model_io", _run, requires=("topological",),
             ensures=("no_ring_buffers", "topological", "state_io_paired"))
FORM = StateForm(NAME, "extra inputs S and outputs S_next that the caller feeds back; any runtime, XMOS xformer",
                 detect=lambda m: len(m.main.inputs) > 1, state_buffers=_state_buffers, lower=lower)
