"""What a conversion did, as plain data for the CLI summary and --json."""

from __future__ import annotations

from .pipeline import Conversion
from .ir import Model


def conversion_report(input_path: str, output_path: str, original: Model, result: Conversion) -> dict:
    plan = result.plan
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
        "states": [{"tensor": s.tensor.name, "axis": s.axis, "frames": s.frames, "state_frames": s.state_frames,
                    "bytes": s.state_bytes, "dtype": s.tensor.dtype} for s in plan.states],
        "state_bytes": plan.state_bytes,
        "minimum_state_bytes": plan.minimum_state_bytes,
    }
