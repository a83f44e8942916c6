"""Prove a streaming model equal to its original, step by step in a real interpreter, per STREAMING.md."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .analysis import CAUSAL, StreamPlan, analyze
from .errors import InterpreterError, UsageError, XstreamError
from .ir import Model
from .passes.lower_ring_buffers import VARIABLE, lower_ring_buffers
from .passes.lower_to_circular_buffer import is_circular_buffer
from .pipeline import normalize
from .reader import read_bytes
from .ring_buffer import is_ring_buffer
from .writer import serialize

FLOAT_RTOL = 1e-5
RUNTIMES = ("litert", "tflm", "tflm-host", "xcore", "xcore-litert")
# xcore: both models compiled by XMOS xformer and run in the host xcore runtime (xstream/xcore.py). xcore-litert:
# the streaming model so, the original in LiteRT (xcore kernels round differently from LiteRT's: not bit-exact).
REFERENCE_RUNTIME = {"xcore-litert": "litert"}
KERNELS = ("builtin", "reference")


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


class _LiteRT:
    """Builtin LiteRT kernels without the XNNPACK delegate: it picks different algorithms per shape, so two
    graph forms of the same maths are not comparable bit for bit under it."""

    def __init__(self, data: bytes, kernels: str):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
        self._make = lambda: Interpreter(
            model_content=data,
            experimental_op_resolver_type=OpResolverType.BUILTIN_REF if kernels == "reference"
            else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.reset()
        self.inputs = self.it.get_input_details()
        self.outputs = self.it.get_output_details()

    def reset(self) -> None:
        # reset_all_variables() does not reset resource variables; a fresh interpreter does.
        self.it = self._make()
        self.it.allocate_tensors()

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]:
        for d, v in zip(self.inputs, values):
            self.it.set_tensor(d["index"], v)
        self.it.invoke()
        return [self.it.get_tensor(d["index"]).copy() for d in self.outputs]


class _TFLM:
    """The TFLite Micro Python interpreter (`tflite-micro` on PyPI); its reset() resets variables."""

    def __init__(self, data: bytes, kernels: str):
        try:
            from tflite_micro.python.tflite_micro import runtime
        except ImportError:
            raise UsageError("--runtime tflm needs the tflite-micro package (pip install tflite-micro)") from None
        self.it = runtime.Interpreter.from_bytes(data)
        main = read_bytes(data).main  # the counts: probing past the last index makes TFLM print errors
        self.inputs = self._details(self.it.get_input_details, len(main.inputs))
        self.outputs = self._details(self.it.get_output_details, len(main.outputs))

    @staticmethod
    def _details(get, count: int) -> list[dict]:
        """Its details, in LiteRT's layout (shape, dtype, quantization=(scale, zero_point))."""
        out = []
        for i in range(count):
            d = get(i)
            q = d.get("quantization_parameters") or {}
            zps = list(q.get("zero_points", [])) or [0]
            scales = list(q.get("scales", [])) or [0.0]
            out.append({"shape": d["shape"], "dtype": d["dtype"], "quantization": (scales[0], zps[0])})
        return out

    def reset(self) -> None:
        self.it.reset()

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]:
        for i, v in enumerate(values):
            self.it.set_input(v, i)
        self.it.invoke()
        return [np.array(self.it.get_output(i)) for i in range(len(self.outputs))]


_HOST_BINARY: str | None = None


def tflm_host_binary() -> str:
    """The TFLite Micro host harness (kernels/harness): $XSTREAM_TFLM_HOST, or built by kernels/build.sh from a
    source checkout (cached: it rebuilds only when a source changed)."""
    global _HOST_BINARY
    if os.environ.get("XSTREAM_TFLM_HOST"):
        return os.environ["XSTREAM_TFLM_HOST"]
    if _HOST_BINARY is not None and os.path.exists(_HOST_BINARY):
        return _HOST_BINARY
    script = Path(__file__).resolve().parents[1] / "kernels" / "build.sh"
    if not script.exists():
        raise UsageError("--runtime tflm-host needs xstream's TFLM harness: run from a source checkout (it is built "
                         "by kernels/build.sh) or set XSTREAM_TFLM_HOST to a built xstream_tflm_host")
    r = subprocess.run(["bash", str(script)], env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                       text=True)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise UsageError(f"cannot build the TFLM host harness with kernels/build.sh: {why}")
    _HOST_BINARY = r.stdout.strip().splitlines()[-1]
    return _HOST_BINARY


_HOST_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
                "float32": np.float32, "float64": np.float64, "bool": np.bool_}


def _stop_process(proc: subprocess.Popen, log) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.write(b"Q")
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            proc.kill()
            proc.wait()
    for f in (proc.stdout, log):
        try:
            f.close()
        except (OSError, ValueError):
            pass


class _TFLMHost:
    """xstream's TFLite Micro host harness: the TFLM runtime of xmos-ai-tools with the RING_BUFFER kernel
    (kernels/ring_buffer) and TFLM's CIRCULAR_BUFFER registered, driven over a pipe (`xstream_tflm_host serve`).
    reset() starts a new utterance (MicroInterpreter::Reset, or ResetRingBuffers for the ring-buffer form)."""

    def __init__(self, data: bytes, kernels: str):
        binary = tflm_host_binary()
        self._log = tempfile.TemporaryFile()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.tflite")
            with open(path, "wb") as f:
                f.write(data)
            self.proc = subprocess.Popen([binary, "serve", path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log)
            self._finalizer = weakref.finalize(self, _stop_process, self.proc, self._log)
            lines = []
            while not lines or lines[-1] != "ready":
                line = self.proc.stdout.readline()
                if not line:
                    raise XstreamError(f"tflm-host cannot load the model: {self._error()}")
                lines.append(line.decode().strip())
        self.inputs, self.outputs = self._parse(lines)
        self.last_status = "ok"

    def _error(self) -> str:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip().splitlines()
        return text[-1] if text else f"exit status {self.proc.returncode}"

    @staticmethod
    def _parse(lines: list[str]) -> tuple[list[dict], list[dict]]:
        sections: dict[str, list[dict]] = {}
        current = None
        for line in lines:
            words = line.split()
            if words[0] in ("inputs", "outputs"):
                current = sections.setdefault(words[0], [])
            elif words[0] in _HOST_DTYPES and current is not None:
                rank = int(words[3])
                shape = np.array([int(w) for w in words[4:4 + rank]], dtype=np.int32)
                current.append({"index": len(current), "shape": shape, "dtype": _HOST_DTYPES[words[0]],
                                "quantization": (float(words[1]), int(words[2]))})
        return sections.get("inputs", []), sections.get("outputs", [])

    def _status(self) -> bytes:
        s = self.proc.stdout.read(1)
        if s not in (b"0", b"A"):
            raise XstreamError(f"tflm-host failed: {self._error() if not s else 'the interpreter returned an error'}")
        return s

    def reset(self) -> None:
        self.proc.stdin.write(b"R")
        self.proc.stdin.flush()
        self._status()

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]:
        payload = [b"I"]
        for d, v in zip(self.inputs, values):
            payload.append(np.ascontiguousarray(v, dtype=d["dtype"]).reshape(tuple(d["shape"])).tobytes())
        self.proc.stdin.write(b"".join(payload))
        self.proc.stdin.flush()
        self.last_status = "abort" if self._status() == b"A" else "ok"
        outs = []
        for d in self.outputs:
            shape = tuple(int(x) for x in d["shape"])
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(d["dtype"]).itemsize
            outs.append(np.frombuffer(self.proc.stdout.read(n), dtype=d["dtype"]).reshape(shape).copy())
        return outs

    def close(self) -> None:
        self._finalizer()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class _Guarded:
    """A runner whose interpreter errors (at allocate, set, invoke, reset) become one InterpreterError."""

    def __init__(self, runner, runtime: str, which: str):
        self.runner, self.runtime, self.which = runner, runtime, which
        self.inputs, self.outputs = runner.inputs, runner.outputs

    def __getattr__(self, name: str):  # anything else a runner offers (e.g. tflm-host's last_status)
        return getattr(self.runner, name)

    def _fail(self, e: Exception) -> InterpreterError:
        return InterpreterError(f"{self.runtime} failed running the {self.which} model: {_first_line(e)}")

    def reset(self) -> None:
        try:
            self.runner.reset()
        except XstreamError:
            raise
        except Exception as e:
            raise self._fail(e) from None

    def __call__(self, values):
        try:
            return self.runner(values)
        except XstreamError:
            raise
        except Exception as e:
            raise self._fail(e) from None


def _runner(data: bytes, runtime: str, kernels: str, which: str = "model"):
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if kernels not in KERNELS:
        raise UsageError(f"unknown kernels {kernels!r}; use one of {', '.join(KERNELS)}")
    try:
        if runtime in ("xcore", "xcore-litert"):
            from .xcore import host_runner
            return _Guarded(host_runner(data, kernels), runtime, which)
        return _Guarded({"litert": _LiteRT, "tflm": _TFLM, "tflm-host": _TFLMHost}[runtime](data, kernels),
                        runtime, which)
    except XstreamError:
        raise
    except Exception as e:
        raise InterpreterError(f"{runtime} cannot load the {which} model: {_first_line(e)}") from None


def _detect_form(model: Model) -> str:
    if any(is_ring_buffer(op) for op in model.main.operators):
        return "ring-buffer"
    if any(op.type == "VAR_HANDLE" for _, op in model.operators()):
        return "variable"
    if any(is_circular_buffer(op) for op in model.main.operators):
        return "circular-buffer"
    if len(model.main.inputs) > 1:
        return "external"
    return "stateless"  # a stream that needs no history (e.g. stride = kernel), or not a converted model


def _random_frames(shape, dtype, rng: np.random.Generator) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, shape, dtype=np.int64).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    mx = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(a.astype(np.float64)).max()) if a.size else 0.0
    return mx, (mx / scale if scale > 0 else mx)


def verify(original: Model, streaming: Model, *, time_axis: int = 1, steps: int | None = None,
           sequences: int = 3, seed: int = 0, frames: np.ndarray | None = None, runtime: str = "litert",
           kernels: str = "builtin") -> VerifyResult:
    """Run both models on the same frames and compare every step the contract covers."""
    form = _detect_form(streaming)
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
        streaming = lower_ring_buffers(streaming, VARIABLE).model
        notes.append("RING_BUFFER ops lowered to resource variables to run without the custom kernel")
    orig = _runner(serialize(reference), REFERENCE_RUNTIME.get(runtime, runtime), kernels, "original")
    strm = _runner(serialize(streaming), runtime, kernels, "streaming")

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
        xs = frames.astype(in_dtype) if frames is not None else _random_frames(shape, in_dtype, rng)
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
                info = plan.times.get(id(t_out))
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
