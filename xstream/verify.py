"""Prove a streaming model equal to its original, step by step in a real interpreter, per STREAMING.md."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import forms
from .analysis import CAUSAL, StreamPlan, analyze
from .errors import UsageError, XstreamError
from .ir import Model
from .pipeline import normalize
from .runtimes import KERNELS, REFERENCE_RUNTIME, RUNTIMES, open_runner, random_frames
from .runtimes.isolation import in_child
from .tflite.writer import serialize

FLOAT_RTOL = 1e-5
__all__ = ["verify", "VerifyResult", "FLOAT_RTOL", "KERNELS", "RUNTIMES"]


@dataclass
class VerifyResult:
    contract: str
    hop: int
    offset: int
    warmup: int
    form: str
    runtime: str
    sequences: int
    steps: int
    steps_compared: int
    max_abs_error: float
    max_rel_error: float
    bit_exact: bool
    equal: bool
    integer: bool
    first_mismatch: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    mx = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(a.astype(np.float64)).max()) if a.size else 0.0
    return mx, (mx / scale if scale > 0 else mx)


def verify(original: Model, streaming: Model, *, time_axis: int = 1, steps: int | None = None,
           sequences: int = 3, seed: int = 0, frames: np.ndarray | None = None, runtime: str = "litert",
           kernels: str = "builtin", isolate: bool = True, quiet: bool = True) -> VerifyResult:
    """Run both models on the same frames and compare every step the contract covers.

    With `isolate` (the default) the interpreters run in a forked child: a runtime that crashes natively on a
    model raises InterpreterError instead of ending the caller. `quiet` silences the runtimes' own logs there."""
    args = dict(time_axis=time_axis, steps=steps, sequences=sequences, seed=seed, frames=frames, runtime=runtime,
                kernels=kernels)
    if not isolate:
        return _verify(original, streaming, **args)
    return in_child(lambda: _verify(original, streaming, **args), runtime, quiet=quiet)


def _verify(original: Model, streaming: Model, *, time_axis: int, steps: int | None, sequences: int, seed: int,
            frames: np.ndarray | None, runtime: str, kernels: str) -> VerifyResult:
    form = forms.detect(streaming)
    s_in = streaming.main.inputs[0]
    o_in = original.main.inputs[0]
    if not 0 < time_axis < len(o_in.shape) or len(s_in.shape) != len(o_in.shape):
        raise UsageError(f"--time-axis {time_axis} does not fit inputs {list(o_in.shape)} and {list(s_in.shape)}")
    per_invoke = s_in.shape[time_axis]
    source = normalize(original)
    # A circular-buffer model takes one frame per invoke and keeps the plan of the smallest hop.
    plan: StreamPlan = analyze(source, time_axis=time_axis,
                               hop=None if form == "circular-buffer" else per_invoke)
    notes = []
    if form == "stateless":
        if per_invoke == o_in.shape[time_axis]:
            raise UsageError("the second model keeps no state and takes the whole window of "
                             f"{per_invoke} frames: is it the output of `xstream convert`?")
        notes.append("the streaming model keeps no state between steps")
    reference = original
    if REFERENCE_RUNTIME.get(runtime, runtime) != "litert" and any(op.type == "SPACE_TO_BATCH_ND"
                                                                   for op in original.main.operators):
        # TFLite Micro computes TF's atrous blocks wrongly; the folded original is the same maths as one conv.
        reference = source
        notes.append("reference: the original with its SPACE_TO_BATCH_ND blocks folded into dilated convs "
                     "(TFLite Micro computes the blocks wrongly)")
    if form == "ring-buffer" and runtime == "tflm-host":
        notes.append("RING_BUFFER ops ran in xstream's TFLite Micro kernel (kernels/ring_buffer)")
    elif form == "ring-buffer":
        streaming = forms.variable.lower(streaming).model
        notes.append("RING_BUFFER ops lowered to resource variables to run without the custom kernel")
    orig = open_runner(serialize(reference), REFERENCE_RUNTIME.get(runtime, runtime), kernels, "original")
    strm = open_runner(serialize(streaming), runtime, kernels, "streaming")

    # External state: each extra input S is fed the output named S_next of the previous step.
    ext_inputs = streaming.main.inputs[1:]
    out_names = [t.name for t in streaming.main.outputs]
    feedback = [out_names.index(t.name + "_next") if t.name + "_next" in out_names else None for t in ext_inputs]
    if any(f is None for f in feedback):
        raise UsageError("an extra input of the streaming model has no matching <name>_next output")
    n_outputs = len(original.main.outputs)
    if n_outputs == 0:
        raise UsageError("the original model has no outputs; there is nothing to compare")
    if len(streaming.main.outputs) - len(ext_inputs) != n_outputs:
        raise UsageError(f"the streaming model has {len(streaming.main.outputs) - len(ext_inputs)} output(s) besides "
                         f"its state, the original {n_outputs}: is it a conversion of this model?")

    T, H, D = plan.window, plan.hop, plan.offset
    causal = plan.contract == CAUSAL
    if steps is None:
        steps = (plan.compare_step + 1) if causal else plan.warmup + max(8, 2 * -(-T // H))
    if frames is not None:
        frames = np.asarray(frames)
        if frames.ndim == len(o_in.shape) - 1:
            frames = frames[None]
        if frames.shape[:time_axis] + frames.shape[time_axis + 1:] != \
                tuple(o_in.shape[:time_axis]) + tuple(o_in.shape[time_axis + 1:]):
            raise UsageError(f"--input frames of shape {list(frames.shape)} do not fit the model input "
                             f"{list(o_in.shape)} (any length on axis {time_axis})")
        sequences = 1
        steps = min(steps, (frames.shape[time_axis] - max(D, 0)) // H)
    rng = np.random.default_rng(seed)
    in_dtype = np.dtype(orig.inputs[0]["dtype"])
    integer = np.issubdtype(np.dtype(orig.outputs[0]["dtype"]), np.integer)

    max_abs = max_rel = 0.0
    compared = 0
    first_bad = None
    for seq in range(sequences):
        total = steps * H + max(D, 0)
        shape = list(o_in.shape)
        shape[time_axis] = total
        xs = frames.astype(in_dtype) if frames is not None else random_frames(shape, in_dtype, rng)
        strm.reset()
        state = [np.full(d["shape"], d["quantization"][1] if np.issubdtype(np.dtype(d["dtype"]), np.integer)
                         else 0, dtype=d["dtype"]) for d in strm.inputs[1:]]
        for k in range(steps):
            for i in range(k * H, (k + 1) * H, per_invoke):  # one invoke per step, or one per frame
                x = np.take(xs, range(i, i + per_invoke), axis=time_axis).astype(in_dtype)
                outs = strm([x] + state)
                state = [outs[f] for f in feedback]
            last = (k + 1) * H - 1 + D
            covered = k == plan.compare_step if causal else k >= plan.warmup
            if not covered or last - T + 1 < 0:
                continue
            window = np.take(xs, range(last - T + 1, last + 1), axis=time_axis)
            expect = orig([window.astype(in_dtype)])
            for j in range(n_outputs):
                got = outs[j]
                want = expect[j]
                t_out = source.main.outputs[j]
                info = plan.times.get(t_out)
                if info is not None:  # a per-frame output: the newest frames of the original's window
                    n = H // info.stride
                    want = np.take(want, range(want.shape[info.axis] - n, want.shape[info.axis]), axis=info.axis)
                if got.shape != want.shape:
                    raise XstreamError(f"output {j} has shape {list(got.shape)} in the streaming model but "
                                       f"{list(want.shape)} in the original")
                a, r = _compare(want, got)
                max_abs, max_rel = max(max_abs, a), max(max_rel, r)
                bad = a > 0 if integer else r > FLOAT_RTOL
                if bad and first_bad is None:
                    first_bad = {"sequence": seq, "step": k, "output": j, "abs_error": a}
            compared += 1
    bit_exact = max_abs == 0.0
    equal = first_bad is None and compared > 0
    if compared == 0:
        notes.append("no step was compared: feed more frames (--steps or a longer --input)")
    return VerifyResult(plan.contract, H, D, plan.warmup, form, runtime, sequences, steps, compared, max_abs,
                        max_rel, bit_exact, equal, integer, first_bad, notes)
