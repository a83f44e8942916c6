"""Generic test helpers: the model zoo, running a model in LiteRT, random inputs, structural graph comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from xstream.ir import Buffer, Model, Quantization, Subgraph, Tensor

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
ZOO = sorted(MODELS.glob("*.tflite"))


def zoo_model(name: str) -> Path:
    """A zoo file by stem, e.g. zoo_model("residual_tdnn_float")."""
    path = MODELS / f"{name}.tflite"
    assert path.exists(), path
    return path


def random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    """Random data matching a LiteRT input detail: int8 over the full range, float32 standard normal."""
    shape = tuple(int(d) for d in detail["shape"])
    dtype = np.dtype(detail["dtype"])
    if dtype == np.int8:
        return rng.integers(-128, 128, size=shape, dtype=np.int8)
    if dtype == np.float32:
        return rng.standard_normal(shape).astype(np.float32)
    raise NotImplementedError(f"random_input: dtype {dtype}")


def input_details(model_bytes: bytes) -> list[dict]:
    interp = Interpreter(model_content=bytes(model_bytes))
    return interp.get_input_details()


def run_litert(model_bytes: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run a model once in a fresh LiteRT interpreter; returns copies of all outputs in order."""
    interp = Interpreter(model_content=bytes(model_bytes))
    interp.allocate_tensors()
    details = interp.get_input_details()
    assert len(details) == len(inputs), (len(details), len(inputs))
    for d, x in zip(details, inputs):
        interp.set_tensor(d["index"], x)
    interp.invoke()
    return [np.array(interp.get_tensor(d["index"]), copy=True) for d in interp.get_output_details()]


def random_inputs(model_bytes: bytes, rng: np.random.Generator) -> list[np.ndarray]:
    return [random_input(d, rng) for d in input_details(model_bytes)]


def assert_same_outputs(a: bytes, b: bytes, *, runs: int = 3, seed: int = 0) -> None:
    """Both models give bitwise-equal outputs on `runs` random inputs (drawn from a's input details)."""
    rng = np.random.default_rng(seed)
    for _ in range(runs):
        xs = random_inputs(a, rng)
        ya, yb = run_litert(a, xs), run_litert(b, xs)
        assert len(ya) == len(yb)
        for u, v in zip(ya, yb):
            assert u.dtype == v.dtype and u.shape == v.shape
            assert np.array_equal(u, v), f"max abs diff {np.max(np.abs(u.astype(np.float64) - v))}"


# ---------------------------------------------------------------------------------------------------------
# Structural comparison


def _arr(a) -> tuple | None:
    return None if a is None else tuple(np.asarray(a).tolist())


def _quant(q: Quantization | None):
    if q is None:
        return None
    return (_arr(q.scale), _arr(q.zero_point), int(q.quantized_dimension), _arr(q.min), _arr(q.max))


def _value(v, sg_index: dict[int, int]):
    """Option values, with Subgraph references replaced by their index."""
    if isinstance(v, Subgraph):
        return ("<subgraph>", sg_index[id(v)])
    if isinstance(v, (list, tuple)):
        return tuple(_value(x, sg_index) for x in v)
    if isinstance(v, dict):
        return {k: _value(x, sg_index) for k, x in v.items()}
    return v


def graph_signature(model: Model) -> dict:
    """Everything that defines a model's meaning, with object identity replaced by positions.

    Tensors are numbered per subgraph in `Subgraph.tensors()` order (plus signature-only tensors), buffers
    model-wide in order of first use, subgraphs by their index, so two models compare equal exactly when
    they describe the same graph.
    """
    sg_index = {id(sg): i for i, sg in enumerate(model.subgraphs)}
    buffer_index: dict[int, int] = {}

    def buf(b: Buffer | None):
        if b is None:
            return None
        return buffer_index.setdefault(id(b), len(buffer_index))

    subgraphs = []
    tensor_ids: list[dict[int, int]] = []
    for sg in model.subgraphs:
        tensors = sg.tensors()
        for sig in model.signatures:
            if sig.subgraph is sg:
                for _, t in sig.inputs + sig.outputs:
                    if all(t is not x for x in tensors):
                        tensors.append(t)
        ids = {id(t): i for i, t in enumerate(tensors)}
        tensor_ids.append(ids)

        def ref(t: Tensor | None) -> int | None:
            return None if t is None else ids[id(t)]

        tensor_rows = []
        for t in tensors:
            tensor_rows.append({
                "name": t.name,
                "dtype": t.dtype,
                "shape": tuple(int(d) for d in t.shape),
                "shape_signature": None if t.shape_signature is None else tuple(int(d) for d in t.shape_signature),
                "is_variable": bool(t.is_variable),
                "has_rank": bool(t.has_rank),
                "quantization": _quant(t.quantization),
                "data": t.buffer.data if t.is_constant else None,
                "buffer": buf(t.buffer) if t.is_constant else None,
            })
        op_rows = []
        for op in sg.operators:
            op_rows.append({
                "type": op.type,
                "kind": op.kind,
                "custom_code": op.custom_code,
                "version": op.version,
                "options_type": op.options_type,
                "options": _value(op.options, sg_index),
                "options2_type": op.options2_type,
                "options2": _value(op.options2, sg_index),
                "custom_options": op.custom_options,
                "custom_options_format": op.custom_options_format,
                "mutating_variable_inputs": op.mutating_variable_inputs,
                "inputs": tuple(ref(t) for t in op.inputs),
                "outputs": tuple(ref(t) for t in op.outputs),
                "intermediates": tuple(ref(t) for t in op.intermediates),
            })
        subgraphs.append({
            "name": sg.name,
            "inputs": tuple(ref(t) for t in sg.inputs),
            "outputs": tuple(ref(t) for t in sg.outputs),
            "operators": op_rows,
            "tensors": tensor_rows,
        })

    signatures = []
    for sig in model.signatures:
        i = sg_index[id(sig.subgraph)]
        signatures.append({
            "key": sig.key,
            "subgraph": i,
            "inputs": tuple((n, t.name, tensor_ids[i][id(t)]) for n, t in sig.inputs),
            "outputs": tuple((n, t.name, tensor_ids[i][id(t)]) for n, t in sig.outputs),
        })
    return {
        "version": model.version,
        "description": model.description,
        "subgraphs": subgraphs,
        "metadata": [(md.name, md.buffer.data) for md in model.metadata],
        "metadata_buffers": [b.data for b in model.metadata_buffers],
        "signatures": signatures,
    }


# ---------------------------------------------------------------------------------------------------------
# Streaming: running a streaming model step by step, independently of xstream.verify


def _litert_interpreter(data: bytes):
    """LiteRT without XNNPACK (as xstream.verify runs it), so float results do not depend on graph shape."""
    from ai_edge_litert.interpreter import OpResolverType
    it = Interpreter(model_content=bytes(data),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


class Runner:
    """One model in one interpreter ("litert" or "tflm"); call with the list of inputs, get the outputs."""

    def __init__(self, model: Model | bytes, runtime: str = "litert"):
        import xstream
        self.model = model if isinstance(model, Model) else xstream.load(bytes(model))
        self.data = xstream.serialize(self.model) if isinstance(model, Model) else bytes(model)
        self.runtime = runtime
        self.n_in = len(self.model.main.inputs)
        self.n_out = len(self.model.main.outputs)
        self.reset()

    def reset(self) -> None:
        if self.runtime == "litert":
            self.it = _litert_interpreter(self.data)
            self.ins = [d["index"] for d in self.it.get_input_details()]
            self.outs = [d["index"] for d in self.it.get_output_details()]
        else:
            from tflite_micro.python.tflite_micro import runtime
            self.it = runtime.Interpreter.from_bytes(self.data)

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]:
        assert len(values) == self.n_in, (len(values), self.n_in)
        if self.runtime == "litert":
            for i, v in zip(self.ins, values):
                self.it.set_tensor(i, v)
            self.it.invoke()
            return [np.array(self.it.get_tensor(i), copy=True) for i in self.outs]
        for i, v in enumerate(values):
            self.it.set_input(v, i)
        self.it.invoke()
        return [np.array(self.it.get_output(i), copy=True) for i in range(self.n_out)]


def _zero_state(t: Tensor) -> np.ndarray:
    from xstream.ir import NUMPY_DTYPES
    return np.full(t.shape, t.zero_point, dtype=NUMPY_DTYPES[t.dtype])


class StreamRunner:
    """A streaming model in "variable" or "external" form: feeds S_next back as S (matched by name)."""

    def __init__(self, model: Model, runtime: str = "litert"):
        self.model = model
        self.run = Runner(model, runtime)
        sg = model.main
        out_names = [t.name for t in sg.outputs]
        self.states = sg.inputs[1:]
        self.feedback = [out_names.index(t.name + "_next") for t in self.states]
        self.n_outputs = len(sg.outputs) - len(self.states)
        self.reset()

    def reset(self) -> None:
        self.run.reset()
        self.values = [_zero_state(t) for t in self.states]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self.run([x] + self.values)
        self.values = [outs[i] for i in self.feedback]
        return outs[:self.n_outputs]


class RingBufferEmulator:
    """A streaming model in "ring-buffer" form, run in LiteRT with each RING_BUFFER computed in numpy.

    Every RING_BUFFER (x -> y) is cut out: x becomes a model output, y a model input. Each step invokes the
    model (number of ring buffers + 1) times, computing y = last `frames` of concat(state, x) from the newest
    x until every y is consistent, then commits state = last (frames - n) frames of y (docs/RING_BUFFER.md).
    It shares no code with xstream's lowering, so it checks the RING_BUFFER form on its own.
    """

    def __init__(self, model: Model):
        from flatbuffers import flexbuffers
        m = model.copy()
        sg = m.main
        self.n_outputs = len(sg.outputs)
        self.buffers = []
        for op in [o for o in sg.operators if o.type == "CUSTOM" and o.custom_code == "RING_BUFFER"]:
            opts = flexbuffers.Loads(op.custom_options)
            x, y = op.inputs[0], op.outputs[0]
            axis, frames = int(opts["axis"]), int(opts["frames"])
            n = x.shape[axis]
            self.buffers.append((axis, frames, max(frames - n, 0), x, y))
            sg.operators.remove(op)
            sg.inputs.append(y)
            sg.outputs.append(x)
        assert self.buffers, "no RING_BUFFER op"
        self.run = Runner(m)
        self.reset()

    def reset(self) -> None:
        self.run.reset()
        self.state = []
        for axis, frames, keep, x, y in self.buffers:
            shape = list(x.shape)
            shape[axis] = keep
            t = Tensor("s", x.dtype, tuple(shape), quantization=x.quantization)
            self.state.append(_zero_state(t))

    def __call__(self, xin: np.ndarray) -> list[np.ndarray]:
        ys = []
        for (axis, frames, keep, x, y), s in zip(self.buffers, self.state):
            ys.append(np.take(np.concatenate([s, _zero_state(x)], axis=axis),
                              range(keep + x.shape[axis] - frames, keep + x.shape[axis]), axis=axis))
        for _ in range(len(self.buffers) + 1):
            outs = self.run([xin] + ys)
            xs = outs[self.n_outputs:]
            new_ys = []
            for (axis, frames, keep, x, y), s, xv in zip(self.buffers, self.state, xs):
                full = np.concatenate([s, xv], axis=axis)
                total = full.shape[axis]
                new_ys.append(np.take(full, range(total - frames, total), axis=axis))
            if all(np.array_equal(a, b) for a, b in zip(ys, new_ys)):
                break
            ys = new_ys
        outs = self.run([xin] + ys)
        self.state = [np.take(yv, range(frames - keep, frames), axis=axis).copy()
                      for (axis, frames, keep, x, y), yv in zip(self.buffers, ys)]
        return outs[:self.n_outputs]


def random_frames(shape, dtype, rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == np.int8:
        return rng.integers(-128, 128, size=shape, dtype=np.int8)
    return rng.standard_normal(shape).astype(dtype)


def _rel_error(want: np.ndarray, got: np.ndarray) -> float:
    d = float(np.abs(want.astype(np.float64) - got.astype(np.float64)).max()) if want.size else 0.0
    s = float(np.abs(want.astype(np.float64)).max()) if want.size else 0.0
    return d / s if s > 0 else d


def check_stream(original: Model, streaming, *, hop: int, offset: int, contract: str = "window-exact",
                 time_axis: int = 1, out_time: dict[int, tuple[int, int]] | None = None, steps: int | None = None,
                 sequences: int = 2, seed: int = 0, runtime: str = "litert",
                 reference_runtime: str = "litert", one_window: bool = False) -> dict:
    """Check a streaming runner (StreamRunner / RingBufferEmulator, or a Model: external/variable form) against
    `original` run on whole windows (in `reference_runtime`), with the offset D and contract given by the test.

    window-exact: every step whose window [newest + D - T + 1, newest + D] lies in the fed frames is compared;
    causal: only the step whose window is frames 0..T-1. `out_time` maps a per-frame output's index to
    (time axis, frames-per-output-frame S): its streamed frame j of n is compared with the original's last frame
    on the window ending (n - 1 - j) * S frames earlier (causal, and `one_window` for models whose windows have
    padded edges, where frames of one window differ from the last frames of earlier windows: with the original's
    newest n frames of the window ending at the step).
    Returns {"compared": steps compared, "first": first compared step, "max_rel": float error, "exact": bool}.
    """
    out_time = out_time or {}
    if isinstance(streaming, Model):
        streaming = StreamRunner(streaming, runtime)
    o_in = original.main.inputs[0]
    T = o_in.shape[time_axis]
    orig = Runner(original, reference_runtime)
    if steps is None:
        steps = (T - offset) // hop if contract == "causal" else -(-(T - offset) // hop) + 4
    rng = np.random.default_rng(seed)
    compared, first, max_rel, exact = 0, None, 0.0, True
    from xstream.ir import NUMPY_DTYPES
    dtype = NUMPY_DTYPES[o_in.dtype]
    for _ in range(sequences):
        shape = list(o_in.shape)
        shape[time_axis] = steps * hop + max(offset, 0)
        xs = random_frames(shape, dtype, rng)
        streaming.reset()
        cache: dict[int, list[np.ndarray]] = {}

        def window(last: int):
            if last not in cache:
                cache[last] = orig([np.take(xs, range(last - T + 1, last + 1), axis=time_axis)])
            return cache[last]

        for k in range(steps):
            outs = streaming(np.take(xs, range(k * hop, (k + 1) * hop), axis=time_axis))
            last = (k + 1) * hop - 1 + offset
            if contract == "causal":
                if last != T - 1:
                    continue
            elif last - T + 1 < 0:
                continue
            for j, got in enumerate(outs):
                if j in out_time:
                    axis, S = out_time[j]
                    n = got.shape[axis]
                    if contract == "causal" or one_window:
                        want = window(last)[j]
                        want = np.take(want, range(want.shape[axis] - n, want.shape[axis]), axis=axis)
                    else:
                        parts = []
                        for f in range(n):
                            end = last - (n - 1 - f) * S
                            if end - T + 1 < 0:
                                parts.append(None)
                                continue
                            w = window(end)[j]
                            parts.append(np.take(w, [w.shape[axis] - 1], axis=axis))
                        keep = [f for f, p in enumerate(parts) if p is not None]
                        got = np.take(got, keep, axis=axis)
                        want = np.concatenate([parts[f] for f in keep], axis=axis)
                else:
                    want = window(last)[j]
                assert got.shape == want.shape and got.dtype == want.dtype, (j, got.shape, want.shape)
                exact &= bool(np.array_equal(got, want))
                max_rel = max(max_rel, _rel_error(want, got))
            compared += 1
            first = k if first is None else min(first, k)
    return {"compared": compared, "first": first, "max_rel": max_rel, "exact": exact}
