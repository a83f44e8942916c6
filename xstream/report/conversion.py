"""What a conversion did, as plain data for the CLI summary and --json."""

from __future__ import annotations

from .. import forms
from ..ir import Model
from ..passes.pointwise_convs_as_fc import per_channel_fcs
from ..pipeline import TARGETS, Conversion
from . import stream_info
from .form_choice import ArenaMeter, advice, form_arenas
from .gain import gain
from .measure import measure


def conversion_report(input_path: str, output_path: str, original: Model, result: Conversion,
                      edge_effect: dict | None = None, arena_meter: ArenaMeter | None = None) -> dict:
    """What `convert` prints and --json holds: the stream's own description (the "xstream_stream" metadata it
    carries: the same keys and values as `inspect`'s "stream"), what was streamed, and whether it gains anything."""
    plan = result.plan
    kept = measure(result.model)
    info = stream_info.read(result.model) or {}
    g = gain(measure(original).to_dict(), kept.to_dict())
    return {
        "input": input_path,
        "output": output_path,
        **info,
        "streamed_ops": [{"index": s.index, "op": s.op.kind, "kernel": s.kernel, "stride": s.stride,
                          "dilation": s.dilation, "frames_in": s.frames_in, "frames_out": s.frames_out}
                         for s in plan.slides],
        "heads": _heads(result),
        # What the emitted model keeps (each form keeps the plan's state its own way).
        "states": [{"tensor": b.name, "form": b.form, "bytes": b.bytes, "in_place": b.in_place}
                   for b in kept.states],
        "target_note": _target_note(result, original),
        "minimum_state_bytes": plan.minimum_state_bytes,
        # Planned figures (convert runs no model): RAM = activations + state, MACs per step.
        "no_gain": _point_to_context(g, plan) if g["nothing"] else None,
        "edge_effect": edge_effect,  # context streams: a quick estimate of the difference from the original
        "tflm_arena": _tflm_arena(original, result, arena_meter) if arena_meter is not None else None,
    }


def _heads(result: Conversion) -> list[str]:
    """The ops that read a whole window, as the emitted model has them: where the tidy passes dropped a flatten
    head (passes/drop_flatten_before_fc.py), the FULLY_CONNECTED that now reads the window names it."""
    live = {id(op) for _, op in result.model.operators()}
    names = []
    for op in result.plan.heads:
        window = op.inputs[0] if op.inputs else None
        readers = [] if id(op) in live or window is None else \
            [r.kind for r in result.model.main.consumers(window) if r.type == "FULLY_CONNECTED"]
        names += readers or [op.kind]
    return names


def _tflm_arena(original: Model, result: Conversion, meter: ArenaMeter) -> dict | None:
    """TFLite Micro's measured arena of the stream and the original; where the stream needs more, every form's
    and the words that name the cheapest (report/form_choice.py)."""
    a = meter(result.model, None)
    if a.get("tflm_arena_bytes") is None:
        return None
    runtime = a["tflm_arena_runtime"]
    b = meter(original, runtime).get("tflm_arena_bytes")
    out = {"original": b, "stream": a["tflm_arena_bytes"], "runtime": runtime, "forms": None, "message": None}
    if b is not None and out["stream"] >= b:
        plan = result.plan
        out["forms"] = form_arenas(original, meter, runtime, {result.state: out["stream"]}, plan.hop,
                                   plan.time_axis if plan.frame == 1 else None, plan.same_padding)
        out["message"] = (f"--state {result.state} needs {out['stream']:,} bytes of TFLite Micro arena vs {b:,} for "
                          f"the original ({runtime}, measured)")
        words = advice(result.state, out["forms"], b)
        if words:
            out["message"] += f"; {words}"
    return out


def _target_note(result: Conversion, original: Model) -> str | None:
    """What the target needs, or, when --state overrode the target's own form, what the chosen form runs on."""
    if not result.target:
        return None
    preset = TARGETS[result.target]
    if result.state == preset.state:
        note = preset.why
    elif result.state == forms.variable.NAME and not forms.variable.has_init(result.model):
        note = (f"--state {result.state} instead of the target's default {preset.state}: builtin resource variables "
                "(VAR_HANDLE, READ_VARIABLE, CONCATENATION, GATHER, ASSIGN_VARIABLE) and no init subgraph: "
                "TFLite Micro starts each at its zero point itself (LiteRT does not: for LiteRT convert "
                "without --target tflm)")
    else:
        note = f"--state {result.state} instead of the target's default {preset.state}: " \
               f"{forms.get(result.state).summary}"
    fcs = per_channel_fcs(result.model) - per_channel_fcs(original)
    if fcs:
        note += (f"; {fcs} pointwise conv(s) run as FULLY_CONNECTED with per-channel weights: TFLite Micro from "
                 "2024-09 on (tflite-micro PR 2673; older builds use the first channel's scale, without an error)")
    return note


def _point_to_context(g: dict, plan) -> dict:
    """Exact streaming of a model that pads time recomputes its edges every step; when that costs more than it
    saves, the context stream is the cheaper choice (not the original)."""
    if plan.edges or plan.edge_reads:
        g = dict(g)
        g["message"] += ("; the frames that read SAME padding are recomputed every step: --same-padding context "
                         "streams it cheaper (not the original: it equals a context reference; verify measures "
                         "the difference)")
    return g
