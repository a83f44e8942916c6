"""What a conversion did, as plain data for the CLI summary and --json."""

from __future__ import annotations

from ..ir import Model
from ..pipeline import TARGETS, Conversion
from .measure import measure


def conversion_report(input_path: str, output_path: str, original: Model, result: Conversion) -> dict:
    plan = result.plan
    kept = measure(result.model)
    return {
        "input": input_path,
        "output": output_path,
        "contract": plan.contract,
        "window": plan.window,
        "hop": plan.hop,
        "offset": plan.offset,
        "warmup": plan.warmup,
        "compare_step": plan.compare_step,
        "input_delay": plan.input_delay,
        "time_axis": plan.time_axis,
        "state_form": result.state,
        "streamed_ops": [{"index": s.index, "op": s.op.kind, "kernel": s.kernel, "stride": s.stride,
                          "dilation": s.dilation, "frames_in": s.frames_in, "frames_out": s.frames_out}
                         for s in plan.slides],
        "heads": [op.kind for op in plan.heads],
        # What the emitted model keeps (each form keeps the plan's state its own way).
        "states": [{"tensor": b.name, "form": b.form, "bytes": b.bytes} for b in kept.states],
        "state_bytes": kept.state_bytes,
        "frames_per_invoke": result.model.main.inputs[0].shape[plan.time_axis],
        "target": result.target,
        "target_note": TARGETS[result.target].why if result.target else None,
        "minimum_state_bytes": plan.minimum_state_bytes,
    }
