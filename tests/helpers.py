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
