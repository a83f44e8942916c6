"""What a state form is: where a streaming model keeps its state between invokes, and how to recognise it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..ir import Model

if TYPE_CHECKING:
    from ..passes import Pass


@dataclass
class StateBuffer:
    """One piece of state a streaming model carries from step to step."""

    name: str
    form: str  # ring-buffer, variable, external, circular-buffer
    bytes: int
    in_arena: bool  # external state is model I/O, planned in the arena with the activations
    in_place: bool = False  # a RING_BUFFER whose window is its state: it holds the window's frames


@dataclass(frozen=True)
class StateForm:
    name: str  # what --state calls it
    summary: str  # where the state lives and what runs it (the --help and README line)
    detect: Callable[[Model], bool]  # is a model in this form?
    state_buffers: Callable[[Model], list[StateBuffer]]  # the state a model in this form keeps
    lower: "Pass | None" = None  # turns the RING_BUFFER model into this form (None: it is that form)
    insert: "Pass | None" = None  # inserts this form's state from the plan itself instead of RING_BUFFERs
    custom_code: str | None = None  # the custom op it needs on the target, if any
