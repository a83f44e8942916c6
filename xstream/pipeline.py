"""The conversion, as one list of passes in the order they run."""

from __future__ import annotations

from dataclasses import dataclass

from .analysis import StreamPlan, analyze
from .ir import Model
from .passes.fold_dilated_convs import fold_dilated_convs
from .passes.insert_ring_buffers import insert_ring_buffers
from .passes.lower_ring_buffers import EXTERNAL, VARIABLE, lower_ring_buffers

RING_BUFFER = "ring-buffer"
STATE_FORMS = (RING_BUFFER, VARIABLE, EXTERNAL)


@dataclass
class Conversion:
    model: Model  # the streaming model
    plan: StreamPlan  # what the analysis found, on the folded original
    state: str


def convert_with_plan(model: Model, state: str = RING_BUFFER, hop: int | None = None,
                      time_axis: int = 1) -> Conversion:
    folded = fold_dilated_convs(model).model  # 1. dilation back into the conv options
    plan = analyze(folded, time_axis=time_axis, hop=hop)  # 2. follow time, plan state (changes nothing)
    streaming = insert_ring_buffers(folded, plan).model  # 3. one hop in, RING_BUFFER before each slider
    if state != RING_BUFFER:
        streaming = lower_ring_buffers(streaming, state).model  # 4. builtin form of the state, if asked
    return Conversion(streaming, plan, state)


def convert(model: Model, state: str = RING_BUFFER, hop: int | None = None, time_axis: int = 1) -> Model:
    """The streaming form of `model` (see ../shared/STREAMING.md for what it promises)."""
    return convert_with_plan(model, state, hop, time_axis).model
