"""Prove a streaming model equal to its original, step by step in a real interpreter, per docs/CONTRACT.md.

Equal: bit-exact for integer outputs; for float outputs, within a relative tolerance of
max(1e-5, NOISE_FACTOR x the noise floor), the noise floor being how far LiteRT's builtin and reference kernels
disagree on the original itself on the very windows compared (two correct runs of the same graph): a stream may
differ from the original by the rounding of a different summation order, no more. A frame of state missing, an
offset one frame off or a weight 1% off moves outputs by orders of magnitude more."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import forms
from .analysis import CAUSAL, StreamPlan, analyze, find_time_axis, frame_of
from .errors import StreamingRefused, UsageError, XstreamError
from .ir import Model
from .ir import NUMPY_DTYPES
from .pipeline import context_reference, normalize
from .report import stream_info
from .runtimes import KERNELS, REFERENCE_RUNTIME, RUNTIMES, open_runner, random_frames
from .runtimes.isolation import in_child
from .tflite.writer import serialize

FLOAT_RTOL = 1e-5  # the floor of the float tolerance (relative to the largest output magnitude of the step)
NOISE_FACTOR = 4  # the float tolerance is at least this many times the measured noise floor
__all__ = ["verify", "VerifyResult", "FLOAT_RTOL", "NOISE_FACTOR", "KERNELS", "RUNTIMES", "steps_needed"]


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
    # float outputs: {"rel", "abs", "noise_floor_rel", "noise_factor", "floor_rel", "rule"}; None when bit-exact is
    # the rule (integer outputs)
    tolerance: dict | None = None
    against: str = "original"  # what the stream was proven equal to: "original", or "context reference"
    # context streams: how far the stream (= the context reference) is from the original (edge_effect())
    edge_effect: dict | None = None

    def to_dict(self) -> dict:
        """As plain JSON data: non-finite floats (a NaN or an infinite error) become the strings "nan"/"inf"."""
        def clean(v):
            if isinstance(v, float) and not np.isfinite(v):
                return str(v)
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v
        return clean(asdict(self))


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a64 - b64)
    same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
    diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))  # one NaN: as different as can be
    mx = float(diff.max()) if diff.size else 0.0
    finite = np.abs(a64[np.isfinite(a64)])
    scale = float(finite.max()) if finite.size else 0.0
    return mx, (mx / scale if scale > 0 else mx)


def verify(original: Model, streaming: Model, *, time_axis: int | None = None, steps: int | None = None,
           sequences: int = 3, seed: int = 0, frames: np.ndarray | None = None, runtime: str = "litert",
           kernels: str = "builtin", isolate: bool = True, quiet: bool = True,
           against: str | None = None) -> VerifyResult:
    """Run both models on the same frames and compare every step the contract covers.

    A `context` stream (its metadata says so) is proven against the context reference built from `original`,
    and its edge effect against the original is measured; `against="original"` compares it with the original
    itself instead (it then differs where the original's padding touched the window's edges).
    With `isolate` (the default) the interpreters run in a forked child: a runtime that crashes natively on a
    model raises InterpreterError instead of ending the caller. `quiet` silences the runtimes' own logs there."""
    if against not in (None, "original", "reference"):
        raise UsageError(f"--against {against!r}: use original or reference")
    args = dict(time_axis=time_axis, steps=steps, sequences=sequences, seed=seed, frames=frames, runtime=runtime,
                kernels=kernels)
    check_order(original, streaming)
    run = lambda: _verify_any(original, streaming, against, **args)  # noqa: E731
    return run() if not isolate else in_child(run, runtime, quiet=quiet)


def _verify_any(original: Model, streaming: Model, against: str | None, **args) -> VerifyResult:
    info = stream_info.read(streaming) or {}
    context = info.get("same_padding") == "context"
    if not context:
        if against == "reference":
            raise UsageError("--against reference: the streaming model is not a context stream (convert "
                             "--same-padding context); it is proven against the original")
        return _verify(original, streaming, **args)
    if against == "original":
        r = _verify(original, streaming, same_padding="context", **args)
        r.notes.append("a context stream compared with the original itself: it differs where the original's padding "
                       "touched the window's edges; without --against it is proven against its context reference")
        return r
    reference, plan = context_reference(original, args["time_axis"])
    if plan.context is None:  # the model given pads no time: it is its own context reference (e.g. REF.tflite)
        return _verify(original, streaming, **args)
    r = _verify(reference, streaming, **{**args, "time_axis": plan.time_axis})
    r.against = "context reference"
    r.contract, r.offset, r.warmup = plan.contract, plan.offset, plan.warmup
    r.edge_effect = edge_effect(original, reference, plan, frames=args["frames"], seed=args["seed"],
                                runtime=REFERENCE_RUNTIME.get(args["runtime"], args["runtime"]), kernels=args["kernels"])
    c = plan.context
    r.notes.append(f"proven against the context reference: the original with its padding on time removed and its "
                   f"window widened to {c.window} frames ({c.before} before, {c.after} after); each step stands for "
                   f"the original window ending D={plan.offset:+d} frames from the newest frame fed")
    return r


def edge_effect(original: Model, reference: Model, plan: StreamPlan, *, frames: np.ndarray | None = None,
                windows: int = 24, seed: int = 0, runtime: str = "litert", kernels: str = "builtin") -> dict:
    """How far a context stream (equal to `reference`) is from `original`: both run on the same frames, the
    original on its window inside the reference's. Mean and max absolute difference of each output, relative
    to how much the original's output moves from one window to the next (one hop later); top-1 agreement for
    outputs with more than one value (class scores). On `frames` (a .npy of the user's) when given, else on
    random frames."""
    c, axis, hop = plan.context, plan.time_axis, plan.hop
    x = reference.main.inputs[0]
    dtype = np.dtype(NUMPY_DTYPES[x.dtype])
    orig = open_runner(serialize(original), runtime, kernels, "original")
    ref = open_runner(serialize(reference), runtime, kernels, "context reference")
    rng = np.random.default_rng(seed)
    if frames is not None:
        xs = np.asarray(frames)
        if xs.ndim == len(x.shape) - 1:
            xs = xs[None]
        xs = xs.astype(dtype)
        starts = list(range(0, xs.shape[axis] - c.window - hop + 1, hop))[:max(windows, 1) * 4]
        source = "the frames given"
    else:
        shape = list(x.shape)
        shape[axis] = c.window + hop * windows
        xs = random_frames(shape, dtype, rng)
        starts = list(range(0, hop * windows, hop))
        source = "random frames"
    diffs, moves, top1, prev = [], [], [], None
    for s0 in starts:
        w_ref = np.take(xs, range(s0, s0 + c.window), axis=axis)
        w_orig = np.take(xs, range(s0 + c.before, s0 + c.before + plan.window), axis=axis)
        a, b = ref([w_ref]), orig([w_orig])
        for j, (u, v) in enumerate(zip(a, b)):
            u64, v64 = u.astype(np.float64), v.astype(np.float64)
            diffs.append(np.abs(u64 - v64).reshape(-1))
            if u.size > 1:
                top1.append(int(np.argmax(u.reshape(-1))) == int(np.argmax(v.reshape(-1))))
            if prev is not None:
                moves.append(np.abs(v64 - prev[j]).reshape(-1))
        prev = [o.astype(np.float64) for o in b]
    if not diffs:
        return {"windows": 0, "source": source, "note": "too few frames for one context window"}
    d = np.concatenate(diffs)
    move = float(np.mean(np.concatenate(moves))) if moves else 0.0
    return {"windows": len(starts), "source": source, "mean_abs": float(d.mean()), "max_abs": float(d.max()),
            "window_to_window_mean_abs": move,
            "mean_relative_to_movement": float(d.mean() / move) if move > 0 else None,
            "top1_agreement": float(np.mean(top1)) if top1 else None}


def check_order(original: Model, streaming: Model) -> None:
    """A usage error when the first model is a stream: the arguments swapped, or two streams."""
    first, second = forms.detect(original), forms.detect(streaming)
    if first == forms.STATELESS:
        return
    if second == forms.STATELESS:
        raise UsageError(f"the arguments are swapped: the first model keeps state ({first} form) and the second "
                         "does not; run `xstream verify ORIGINAL STREAMING` with the non-streaming model first")
    raise UsageError(f"both models keep state ({first} and {second} forms); the first must be the original "
                     "non-streaming model the second was converted from")


def steps_needed(plan: StreamPlan) -> int:
    """Steps to feed (counted from 1) before the first step the contract covers has been compared."""
    base = plan.compare_step if plan.contract == CAUSAL else plan.warmup
    first = max(base, -(-(plan.window - plan.offset) // plan.hop) - 1)  # its window must start at frame >= 0
    return first + 1


def _noise_runner(reference: Model, kernels: str):
    """The original in LiteRT with the other kernels than the comparison's (builtin <-> reference): how far two
    correct runs of the same graph disagree is the float noise floor. None (and the floor rule alone) if LiteRT
    cannot run it."""
    try:
        return open_runner(serialize(reference), "litert", "reference" if kernels == "builtin" else "builtin",
                           "original")
    except XstreamError:
        return None


def _verify(original: Model, streaming: Model, *, time_axis: int | None, steps: int | None, sequences: int,
            seed: int, frames: np.ndarray | None, runtime: str, kernels: str,
            same_padding: str = "exact") -> VerifyResult:
    form = forms.detect(streaming)
    if form == forms.variable.NAME and not forms.variable.has_init(streaming) and not runtime.startswith("tflm"):
        raise UsageError(f"the streaming model was converted for TFLite Micro (--target tflm): its resource variables "
                         f"have no init subgraph, and {runtime} does not start them at their zero point; "
                         "verify with --runtime tflm (or tflm-host), or convert without --target tflm for LiteRT")
    s_in = streaming.main.inputs[0]
    o_in = original.main.inputs[0]
    source = normalize(original)
    if time_axis is None:  # found as `convert` finds it
        try:
            found = find_time_axis(source) if len(o_in.shape) > 1 and len(source.main.inputs) == 1 else None
        except StreamingRefused as e:
            raise UsageError(str(e)) from None
        time_axis = found.axis if found else 1
    if not 0 < time_axis < len(o_in.shape) or len(s_in.shape) != len(o_in.shape):
        raise UsageError(f"--time-axis {time_axis} does not fit inputs {list(o_in.shape)} and {list(s_in.shape)}")
    per_invoke = s_in.shape[time_axis]
    # A circular-buffer model takes one frame per invoke and keeps the plan of the smallest hop.
    try:
        frame = frame_of(source, time_axis)  # a flat input: `frame` values per frame on its time axis
        plan: StreamPlan = analyze(source, time_axis=time_axis,
                                   hop=None if form == "circular-buffer" else per_invoke // frame,
                                   same_padding=same_padding)
    except StreamingRefused as e:  # for verify, not a verdict: nothing can be compared
        raise UsageError(f"the original cannot be streamed, so there is nothing to verify: {e}") from None
    notes = []
    if original.external_buffers:
        notes.append(f"the original stores {original.external_buffers} buffer(s) after the flatbuffer (Buffer.offset, "
                     "as ai-edge-quantizer writes large models); verify ran an inline copy of it, and the streaming "
                     "model stores its weights inline too. TFLite Micro's Python interpreter misreads the offset "
                     "form: deploy the streaming model, not the original file")
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
    need = steps_needed(plan)
    if steps is not None and steps < need:
        raise UsageError(f"--steps {steps} compares nothing: the first step the contract covers is step {need - 1} "
                         f"(steps count from 0); use --steps {need} or more")
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
        n_frames = frames.shape[time_axis] // frame
        steps = min(steps, (n_frames - max(D, 0)) // H)
        if steps < need:
            raise UsageError(f"--input has {n_frames} frame(s) on axis {time_axis}, too few to compare any step: "
                             f"the first step the contract covers, step {need - 1} (from 0), needs "
                             f"{need * H + max(D, 0)} frames ({need} steps of {H}"
                             + (f" + D={D}" if D > 0 else "") + ")")
    rng = np.random.default_rng(seed)
    in_dtype = np.dtype(orig.inputs[0]["dtype"])
    integer = np.issubdtype(np.dtype(orig.outputs[0]["dtype"]), np.integer)
    noise = None if integer else _noise_runner(reference, kernels)

    max_abs = max_rel = max_scale = noise_rel = 0.0
    compared = 0
    first_bad = None
    errors: list[tuple[float, dict]] = []  # float outputs: (relative error, where) of every compared output
    for seq in range(sequences):
        total = steps * H + max(D, 0)
        shape = list(o_in.shape)
        shape[time_axis] = total * frame
        xs = frames.astype(in_dtype) if frames is not None else random_frames(shape, in_dtype, rng)
        strm.reset()
        state = [np.full(d["shape"], d["quantization"][1] if np.issubdtype(np.dtype(d["dtype"]), np.integer)
                         else 0, dtype=d["dtype"]) for d in strm.inputs[1:]]
        for k in range(steps):
            for i in range(k * H, (k + 1) * H, per_invoke // frame):  # one invoke per step, or one per frame
                x = np.take(xs, range(i * frame, i * frame + per_invoke), axis=time_axis).astype(in_dtype)
                outs = strm([x] + state)
                state = [outs[f] for f in feedback]
            last = (k + 1) * H - 1 + D
            covered = k == plan.compare_step if causal else k >= plan.warmup
            if not covered or last - T + 1 < 0:
                continue
            window = np.take(xs, range((last - T + 1) * frame, (last + 1) * frame), axis=time_axis)
            expect = orig([window.astype(in_dtype)])
            other = noise([window.astype(in_dtype)]) if noise is not None else None
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
                where = {"sequence": seq, "step": k, "output": j, "abs_error": a}
                if integer:
                    if a > 0 and first_bad is None:
                        first_bad = where
                    continue
                finite = np.abs(want[np.isfinite(want)].astype(np.float64))
                max_scale = max(max_scale, float(finite.max()) if finite.size else 0.0)
                errors.append((r, where))
                if other is not None:
                    alt = other[j]
                    if info is not None:
                        alt = np.take(alt, range(alt.shape[info.axis] - n, alt.shape[info.axis]), axis=info.axis)
                    noise_rel = max(noise_rel, _compare(want, alt)[1])
            compared += 1
    tolerance = None
    if not integer:
        rel = max(FLOAT_RTOL, NOISE_FACTOR * noise_rel)
        first_bad = next((where for r, where in errors if r > rel), None)
        tolerance = {"rel": rel, "abs": rel * max_scale, "noise_floor_rel": noise_rel if noise else None,
                     "noise_factor": NOISE_FACTOR, "floor_rel": FLOAT_RTOL,
                     "rule": (f"max({FLOAT_RTOL:g} relative, {NOISE_FACTOR} x the noise floor: LiteRT builtin vs "
                              "reference kernels on the original, on the same windows)") if noise else
                             f"{FLOAT_RTOL:g} relative (LiteRT could not measure a noise floor)"}
    bit_exact = max_abs == 0.0
    equal = first_bad is None and compared > 0
    return VerifyResult(plan.contract, H, D, plan.warmup, form, runtime, sequences, steps, compared, max_abs,
                        max_rel, bit_exact, equal, integer, first_bad, notes, tolerance)
