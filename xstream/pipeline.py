"""The conversion, as one list of passes in the order they run."""

from __future__ import annotations

from dataclasses import dataclass

from .analysis import StreamPlan, analyze
from .ir import Model
from .passes.fold_dilated_convs import fold_dilated_convs
from .passes.insert_ring_buffers import insert_ring_buffers
from .passes.lower_ring_buffers import EXTERNAL, VARIABLE, lower_ring_buffers
from .passes.lower_to_circular_buffer import CIRCULAR_BUFFER, lower_to_circular_buffer
from .passes.resolve_shapes import resolve_shapes

RING_BUFFER = "ring-buffer"
STATE_FORMS = (RING_BUFFER, VARIABLE, EXTERNAL, CIRCULAR_BUFFER)


@dataclass
class Conversion:
    model: Model  # the streaming model
    plan: StreamPlan  # what the analysis found; it refers to the objects of `source`
    state: str
    source: Model  # the normalized original the plan was computed on


def normalize(model: Model) -> Model:
    """The original in the form the analysis reads: real shapes, dilations in the conv options.

    Operators keep `source_index`, their index in `model`, so messages name them as the user's file does."""
    model = model.copy()
    for sg in model.subgraphs:
        for i, op in enumerate(sg.operators):
            if op.source_index is None:
                op.source_index = i
    model = resolve_shapes(model).model  # placeholder shapes of an unknown batch -> real shapes at batch 1
    return fold_dilated_convs(model).model  # SPACE_TO_BATCH_ND blocks -> one dilated conv


def convert_with_plan(model: Model, state: str = RING_BUFFER, hop: int | None = None,
                      time_axis: int = 1) -> Conversion:
    source = normalize(model)  # 1. real shapes, dilation back in the conv options
    plan = analyze(source, time_axis=time_axis, hop=hop)  # 2. follow time, plan state (changes nothing)
    if state == CIRCULAR_BUFFER:  # 3'. one frame per invoke, TFLM's CIRCULAR_BUFFER before each slider
        return Conversion(lower_to_circular_buffer(source, plan).model, plan, state, source)
    streaming = insert_ring_buffers(source, plan).model  # 3. one hop in, RING_BUFFER before each slider
    if state != RING_BUFFER:
        streaming = lower_ring_buffers(streaming, state).model  # 4. builtin form of the state, if asked
    return Conversion(streaming, plan, state, source)


def convert(model: Model, state: str = RING_BUFFER, hop: int | None = None, time_axis: int = 1) -> Model:
    """The streaming form of `model` (see ../shared/STREAMING.md for what it promises)."""
    return convert_with_plan(model, state, hop, time_axis).model
