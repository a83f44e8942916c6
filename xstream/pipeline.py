"""The conversion, as one list of passes in the order they run."""

from __future__ import annotations

from dataclasses import dataclass

from .analysis import StreamPlan, analyze
from .ir import Model
from .passes.fold_dilated_convs import fold_dilated_convs
from .passes.fold_unrolled_frames import fold_unrolled_frames
from .passes.insert_ring_buffers import insert_ring_buffers
from .passes.lower_ring_buffers import EXTERNAL, VARIABLE, lower_ring_buffers
from .passes.lower_to_circular_buffer import CIRCULAR_BUFFER, lower_to_circular_buffer
from .passes.resolve_shapes import resolve_shapes
from .passes.static_reshapes import static_reshapes
from .errors import UsageError

RING_BUFFER = "ring-buffer"
STATE_FORMS = (RING_BUFFER, VARIABLE, EXTERNAL, CIRCULAR_BUFFER)


@dataclass(frozen=True)
class Target:
    """A runtime's preset: the state form it runs best, the forms it can run, and what else it needs."""

    state: str
    allowed: tuple[str, ...]
    why: str
    static_shapes: bool = False  # EXPAND_DIMS/SQUEEZE -> RESHAPE


TARGETS = {
    "xcore": Target(EXTERNAL, (EXTERNAL,), "XMOS xformer stops on unknown custom ops and aborts on resource "
                    "variables; state is plain model I/O, and EXPAND_DIMS (which its planner cannot prepare) "
                    "becomes RESHAPE", static_shapes=True),
    "tflm": Target(RING_BUFFER, STATE_FORMS, "TFLite Micro with xstream's RING_BUFFER kernel "
                   "(kernels/ring_buffer); use --state variable or circular-buffer for no custom kernel"),
    "litert": Target(VARIABLE, (VARIABLE, EXTERNAL), "stock LiteRT has no RING_BUFFER kernel and runs "
                     "resource variables (a fresh interpreter starts a new utterance)"),
}


def resolve_target(target: str | None, state: str | None) -> tuple[str, Target | None]:
    """The state form to emit for a --target/--state pair, refusing a form the target cannot run."""
    if target is None:
        return state or RING_BUFFER, None
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    preset = TARGETS[target]
    if state is not None and state not in preset.allowed:
        raise UsageError(f"--state {state} does not run on --target {target}: {preset.why}; use --state "
                         f"{' or '.join(preset.allowed)}")
    return state or preset.state, preset


@dataclass
class Conversion:
    model: Model  # the streaming model
    plan: StreamPlan  # what the analysis found; it refers to the objects of `source`
    state: str
    source: Model  # the normalized original the plan was computed on
    target: str | None = None


def normalize(model: Model) -> Model:
    """The original in the form the analysis reads: real shapes, dilations in the conv options.

    Operators keep `source_index`, their index in `model`, so messages name them as the user's file does."""
    model = model.copy()
    for sg in model.subgraphs:
        for i, op in enumerate(sg.operators):
            if op.source_index is None:
                op.source_index = i
    model = resolve_shapes(model).model  # placeholder shapes of an unknown batch -> real shapes at batch 1
    model = fold_unrolled_frames(model).model  # TimeDistributed unrolled per frame -> one chain over all frames
    return fold_dilated_convs(model).model  # SPACE_TO_BATCH_ND blocks -> one dilated conv


def convert_with_plan(model: Model, state: str | None = None, hop: int | None = None, time_axis: int = 1,
                      target: str | None = None) -> Conversion:
    state, preset = resolve_target(target, state)
    if state not in STATE_FORMS:
        raise UsageError(f"unknown state form {state!r}; use one of {', '.join(STATE_FORMS)}")
    source = normalize(model)  # 1. real shapes, dilation back in the conv options
    plan = analyze(source, time_axis=time_axis, hop=hop)  # 2. follow time, plan state (changes nothing)
    if state == CIRCULAR_BUFFER:  # 3'. one frame per invoke, TFLM's CIRCULAR_BUFFER before each slider
        streaming = lower_to_circular_buffer(source, plan).model
    else:
        streaming = insert_ring_buffers(source, plan).model  # 3. one hop in, RING_BUFFER before each slider
        if state != RING_BUFFER:
            streaming = lower_ring_buffers(streaming, state).model  # 4. builtin form of the state, if asked
    if preset is not None and preset.static_shapes:
        streaming = static_reshapes(streaming).model  # 5. what the target's planner needs
    return Conversion(streaming, plan, state, source, target)


def convert(model: Model, state: str | None = None, hop: int | None = None, time_axis: int = 1,
            target: str | None = None) -> Model:
    """The streaming form of `model` (see ../shared/STREAMING.md for what it promises)."""
    return convert_with_plan(model, state, hop, time_axis, target).model
