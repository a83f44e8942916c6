"""The conversion, as one list of passes in the order they run, and the targets that choose among them.

    normalize   index_operators -> resolve_shapes -> fold_unrolled_frames -> fold_dilated_convs ->
                merge_depthwise_branches
    analyze     follow time, plan state (changes nothing)
    state       insert_ring_buffers (or the form's own insertion) -> drop_identity_ops -> sink_reshapes ->
                drop_identity_ops -> unsqueeze_head_windows -> merge_delay_lines -> share_split_buffers + the form's
                lowering, if any
    target      static_reshapes (xcore), drop_variable_init and pointwise_convs_as_fc (tflm)
    tidy        drop_identity_ops -> drop_flatten_before_fc -> gather_frames -> share_constants (each op and
                tensor costs TFLite Micro arena; a target drops what its toolchain cannot take or gain from) ->
                in_place_windows (ring-buffer form: which buffers keep their state in their window)
    names       unique_names; every pass's `ensures` and the post-conditions below are checked

The user's model is copied once (`normalize`); every pass edits that working copy, and the plan refers to its
objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import forms
from .analysis import StreamPlan, analyze
from .errors import UsageError
from .ir import Model
from .passes import Pass
from .passes.conditions import check
from .passes.context_reference import context_reference as context_reference_pass
from .passes.drop_flatten_before_fc import drop_flatten_before_fc
from .passes.drop_identity_ops import drop_identity_ops
from .passes.drop_variable_init import drop_variable_init
from .passes.esphome_io import esphome_io
from .passes.fold_dilated_convs import fold_dilated_convs
from .passes.fold_unrolled_frames import fold_unrolled_frames
from .passes.gather_frames import gather_frames
from .passes.in_place_windows import in_place_windows
from .passes.index_operators import index_operators
from .passes.insert_ring_buffers import insert_ring_buffers
from .passes.merge_delay_lines import merge_delay_lines
from .passes.merge_depthwise_branches import merge_depthwise_branches
from .passes.pointwise_convs_as_fc import pointwise_convs_as_fc
from .passes.resolve_shapes import resolve_shapes
from .passes.share_constants import share_constants
from .passes.share_split_buffers import share_split_buffers
from .passes.sink_reshapes import sink_reshapes
from .passes.static_reshapes import static_reshapes
from .passes.unique_names import unique_names
from .passes.unsqueeze_head_windows import unsqueeze_head_windows
from .report import stream_info

NORMALIZE: tuple[Pass, ...] = (
    index_operators,  # messages name operators by their index in the user's file
    resolve_shapes,  # placeholder shapes of an unknown batch -> real shapes at batch 1
    fold_unrolled_frames,  # TimeDistributed unrolled per frame -> one chain over all frames
    fold_dilated_convs,  # SPACE_TO_BATCH_ND blocks -> one dilated conv
    merge_depthwise_branches,  # MixConv: split -> depthwise per kernel size -> concat = one depthwise conv
)
POSTCONDITIONS = ("unique_names", "topological", "batch_one")


@dataclass(frozen=True)
class Target:
    """A runtime's preset: the state form it runs best, the forms it can run, and what else it needs."""

    state: str
    allowed: tuple[str, ...]
    why: str
    passes: tuple[Pass, ...] = ()  # what its toolchain needs after the state is in place
    avoid: tuple[Pass, ...] = ()  # passes whose output its toolchain cannot take or does not gain from


TARGETS = {
    "xcore": Target(forms.external.NAME, (forms.external.NAME,),
                    "XMOS xformer stops on unknown custom ops and aborts on resource variables; state is plain model "
                    "I/O, and EXPAND_DIMS (which its planner cannot prepare) becomes RESHAPE",
                    # xformer wants a FULLY_CONNECTED's input flat, and folds reshapes itself (a 2-axis MEAN costs
                    # it 8 bytes more op data than the squeeze it would save)
                    passes=(static_reshapes,), avoid=(drop_flatten_before_fc, unsqueeze_head_windows)),
    "tflm": Target(forms.DEFAULT, forms.NAMES, "TFLite Micro with xstream's RING_BUFFER kernel (kernels/ring_buffer); "
                   "use --state variable or circular-buffer for no custom kernel (variable: no init subgraph, TFLite "
                   "Micro starts resource variables at their zero point itself; LiteRT does not)",
                   # (pointwise convs as FULLY_CONNECTED: per-channel weights need TFLite Micro from 2024-09 on)
                   passes=(drop_variable_init, pointwise_convs_as_fc)),
    "litert": Target(forms.variable.NAME, (forms.variable.NAME, forms.external.NAME),
                     "stock LiteRT has no RING_BUFFER kernel and runs resource variables (a fresh interpreter starts "
                     "a new utterance)",
                     avoid=(gather_frames,)),  # its default XNNPACK delegate takes STRIDED_SLICE, not GATHER
    "esphome": Target(forms.variable.NAME, (forms.variable.NAME,),
                      "ESPHome's micro_wake_word registers 20 builtin ops and no custom op: state in resource "
                      "variables, EXPAND_DIMS as RESHAPE, int8 [1, stride, 40] features in, one uint8 probability "
                      "(value/255) out; OUT.json is its manifest",
                      passes=(static_reshapes, esphome_io), avoid=(gather_frames,)),  # no GATHER registered
}


def resolve_target(target: str | None, state: str | None) -> tuple[str, Target | None]:
    """The state form to emit for a --target/--state pair, refusing a form the target cannot run."""
    if target is None:
        return state or forms.DEFAULT, None
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    preset = TARGETS[target]
    if state is not None and state not in preset.allowed:
        raise UsageError(f"--state {state} does not run on --target {target}: {preset.why}; use --state "
                         f"{' or '.join(preset.allowed)}")
    return state or preset.state, preset


def state_passes(form: forms.StateForm, preset: Target | None) -> list[Pass]:
    """The passes after the analysis, in order (the plan-applying one first)."""
    # Reshapes first: the crops drop_identity_ops drops can hide a reshape from sink_reshapes, whose reshapes it
    # then folds; unsqueeze_head_windows then finds a head's squeeze right before its buffer.
    passes = [form.insert or insert_ring_buffers, drop_identity_ops, sink_reshapes, drop_identity_ops,
              unsqueeze_head_windows, merge_delay_lines]
    if form.lower is not None:  # a builtin state costs more than the frames a shared buffer adds
        passes += [share_split_buffers, form.lower]
    if preset is not None:
        passes += preset.passes
    tidy = [drop_identity_ops, drop_flatten_before_fc, gather_frames, share_constants]
    if form.insert is None and form.lower is None:  # RING_BUFFERs stay: each keeps its state where it costs least
        tidy.append(in_place_windows)
    return [p for p in passes + tidy if preset is None or p not in preset.avoid] + [unique_names]


@dataclass
class Conversion:
    model: Model  # the streaming model
    plan: StreamPlan  # what the analysis found; its objects are those of `model` (time tensors now per step)
    state: str
    target: str | None = None


def normalize(model: Model) -> Model:
    """A working copy of `model` in the form the analysis reads: real shapes, dilations in the conv options."""
    work = model.copy()
    for p in NORMALIZE:
        p.apply(work)
    return work


def prepare(model: Model, hop: int | None = None, time_axis: int | None = None,
            same_padding: str = "exact") -> tuple[Model, StreamPlan]:
    """The normalized working copy and its plan; nothing is rewritten yet. `same_padding`: how a model that pads
    time on both sides streams: "exact" (edge recompute) or "context" (docs/CONTRACT.md)."""
    work = normalize(model)
    return work, analyze(work, time_axis=time_axis, hop=hop, same_padding=same_padding)


def rewrite(work: Model, plan: StreamPlan, state: str | None = None, target: str | None = None) -> Conversion:
    """Apply `plan` to `work` (the model it was computed on) in the chosen state form; `work` becomes the stream."""
    state, preset = resolve_target(target, state)
    form = forms.get(state)
    passes = state_passes(form, preset)
    for p in passes:
        p.apply(work, plan) if p.in_place else p.apply(work)  # in place: it applies (and updates) the plan
    check(work, POSTCONDITIONS, "after the pipeline")

    # The stream describes itself: contract, window, hop, offset, warm-up, state (metadata "xstream_stream").
    stream_info.attach(work, stream_info.stream_info(work, plan, state, target))
    return Conversion(work, plan, state, target)


def convert_with_plan(model: Model, state: str | None = None, hop: int | None = None, time_axis: int | None = None,
                      target: str | None = None, same_padding: str = "exact") -> Conversion:
    resolve_target(target, state)  # refuse option mistakes before any work
    if state is not None:
        forms.get(state)
    work, plan = prepare(model, hop, time_axis, same_padding)
    return rewrite(work, plan, state, target)


def convert(model: Model, state: str | None = None, hop: int | None = None, time_axis: int | None = None,
            target: str | None = None, same_padding: str = "exact") -> Model:
    """The streaming form of `model`; docs/CONTRACT.md says what it promises. `model` is left untouched."""
    return convert_with_plan(model, state, hop, time_axis, target, same_padding).model


def context_reference(model: Model, time_axis: int | None = None) -> tuple[Model, StreamPlan]:
    """The context reference of a model that pads time (what a `--same-padding context` stream equals) and the
    plan of the context stream (plan.context: its window, Cb, Ca). A model without padding on time is its own."""
    work, plan = prepare(model, None, time_axis, "context")
    if plan.context is not None:
        context_reference_pass.apply(work, plan)
    return work, plan
