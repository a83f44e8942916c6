"""What a conversion did, as plain data for the CLI summary and --json."""

from __future__ import annotations

from .. import forms
from ..ir import Model
from ..pipeline import TARGETS, Conversion
from . import stream_info
from .gain import gain
from .measure import measure


def conversion_report(input_path: str, output_path: str, original: Model, result: Conversion) -> dict:
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
        "heads": [op.kind for op in plan.heads],
        # What the emitted model keeps (each form keeps the plan's state its own way).
        "states": [{"tensor": b.name, "form": b.form, "bytes": b.bytes} for b in kept.states],
        "target_note": _target_note(result),
        "minimum_state_bytes": plan.minimum_state_bytes,
        # Planned figures (convert runs no model): RAM = activations + state, MACs per step.
        "no_gain": g if g["nothing"] else None,
    }


def _target_note(result: Conversion) -> str | None:
    """What the target needs, or, when --state overrode the target's own form, what the chosen form runs on."""
    if not result.target:
        return None
    preset = TARGETS[result.target]
    if result.state == preset.state:
        return preset.why
    return (f"--state {result.state} instead of the target's default {preset.state}: "
            f"{forms.get(result.state).summary}")
