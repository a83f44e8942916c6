"""`--state circular-buffer`: TFLite Micro's own CIRCULAR_BUFFER op, one frame per invoke, cycles_max for strided
ops. Proven bit-exact against the original on every int8 zoo model in the tflite-micro Python interpreter and in
xstream's TFLM host build (kernels/); float models and layouts the op cannot hold are refused with the reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from flatbuffers import flexbuffers

import xstream
from xstream.analysis import CAUSAL
from xstream.errors import StreamingRefused
from xstream.ir import Model, Operator, Quantization, Subgraph, Tensor
from xstream.make import const
from xstream.forms.circular_buffer import is_circular_buffer
from xstream.forms import NAMES as STATE_FORMS
from xstream.pipeline import Conversion, convert_with_plan, normalize
from xstream.forms.ring_buffer import is_ring_buffer
from xstream.runtimes import open_runner as _runner

REPO = Path(__file__).resolve().parents[1]
ZOO = sorted(p.stem for p in (REPO / "models").glob("*.tflite"))
INT8 = [n for n in ZOO if n.endswith("int8") and not n.startswith("same_padding")]
FLOAT = [n for n in ZOO if n.endswith("float") and not n.startswith("same_padding")]
# In these originals SPACE_TO_BATCH_ND changes the batch at run time, which no TFLM can (no dynamic shapes): they
# are compared against the normalized original (one dilated conv), as in tests/test_kernels.py.
ATROUS = {"tdnn_dilated_dynbatch_int8", "causal_mean_dynbatch_int8"}
STRIDED = {"ds_cnn_kws_int8", "ds_cnn_kws_dynbatch_int8", "separable_maxpool_int8", "separable_maxpool_dynbatch_int8"}


def _load(name: str) -> Model:
    return xstream.load(REPO / "models" / f"{name}.tflite")


def _convert(name: str) -> Conversion:
    return convert_with_plan(_load(name), state="circular-buffer")


def check_circular(original: Model, c: Conversion, runtime: str, *, sequences: int = 2, seed: int = 0) -> dict:
    """Feed the circular-buffer model one frame per invoke; after the H-th invoke of each step (H = the plan's
    hop) compare its outputs with the original on the window the contract names, as `xstream verify` does for
    the other forms. Returns the max abs error, steps compared and the invoke statuses seen (tflm-host)."""
    plan = c.plan
    H, T, D = plan.hop, plan.window, plan.offset
    causal = plan.contract == CAUSAL
    steps = plan.compare_step + 1 if causal else plan.warmup + max(8, 2 * -(-T // H))
    orig = _runner(xstream.serialize(original), runtime, "builtin")
    strm = _runner(xstream.serialize(c.model), runtime, "builtin")
    assert int(strm.inputs[0]["shape"][1]) == 1
    rng = np.random.default_rng(seed)
    shape = list(original.main.inputs[0].shape)
    max_abs, compared, statuses = 0.0, 0, []
    for _ in range(sequences):
        shape[1] = steps * H + max(D, 0)
        xs = rng.integers(-128, 128, shape, dtype=np.int8)
        strm.reset()
        for k in range(steps):
            for i in range(H):
                outs = strm([xs[:, k * H + i:k * H + i + 1]])
                statuses.append(getattr(strm, "last_status", None))
            last = (k + 1) * H - 1 + D
            if not (k == plan.compare_step if causal else k >= plan.warmup) or last - T + 1 < 0:
                continue
            want = orig([xs[:, last - T + 1:last + 1]])
            for a, b in zip(want, outs):
                assert a.shape == b.shape
                max_abs = max(max_abs, float(np.abs(a.astype(np.int64) - b).max()))
            compared += 1
    return {"max_abs": max_abs, "compared": compared, "statuses": statuses}


def _reference(name: str, c: Conversion) -> Model:
    return normalize(_load(name)) if name in ATROUS else _load(name)


# ---------------------------------------------------------------------------------------------------------
# Equality on the zoo


def test_circular_buffer_is_a_state_form():
    assert "circular-buffer" in STATE_FORMS


@pytest.mark.parametrize("name", INT8)
def test_zoo_in_tflite_micro_python(name):
    c = _convert(name)
    r = check_circular(_reference(name, c), c, "tflm")
    assert r["compared"] > 0 and r["max_abs"] == 0.0


@pytest.mark.parametrize("name", INT8)
def test_zoo_in_tflm_host(harness, name):
    c = _convert(name)
    r = check_circular(_reference(name, c), c, "tflm-host")
    assert r["compared"] > 0 and r["max_abs"] == 0.0
    aborted = r["statuses"].count("abort")
    if name in STRIDED:  # cycles_max > 1: CIRCULAR_BUFFER ends the invoke until its stride of frames arrived
        assert 0 < aborted < len(r["statuses"])
        assert r["statuses"][c.plan.hop - 1::c.plan.hop].count("abort") == 0  # every step's last invoke runs
    else:
        assert aborted == 0


@pytest.mark.parametrize("name", ["ds_cnn_kws_int8", "tdnn_dilated_int8"])
def test_harness_run_resets_the_circular_buffers(harness, tmp_path, name):
    c = _convert(name)
    path = tmp_path / "cb.tflite"
    path.write_bytes(xstream.serialize(c.model))
    frames = np.random.default_rng(2).integers(-128, 128, (1, 60) + tuple(c.model.main.inputs[0].shape[2:]),
                                               dtype=np.int8)
    np.save(tmp_path / "frames.npy", frames)
    r = subprocess.run([str(harness), "run", str(path), str(tmp_path / "frames.npy"), str(tmp_path / "o.npy"),
                        "--utterances", "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "utterance 2 after reset: identical to utterance 1" in r.stdout
    skipped = int(r.stdout.split(" skipped")[0].split(", ")[-1])
    assert (skipped > 0) == (name in STRIDED)


# ---------------------------------------------------------------------------------------------------------
# What the form looks like


@pytest.mark.parametrize("name", INT8)
def test_structure(name):
    c = _convert(name)
    sg = c.model.main
    assert not any(is_ring_buffer(op) for op in sg.operators)
    assert sg.inputs[0].shape[1] == 1  # one frame per invoke
    buffers = [op for op in sg.operators if is_circular_buffer(op)]
    assert buffers
    gates = 0
    for op in buffers:
        (x,), (y,) = op.inputs, op.outputs
        assert x.shape[:3] == (1, 1, 1) and y.shape[0] == 1 and y.shape[2] == 1 and y.shape[3] == x.shape[3]
        assert y.is_variable and x.dtype == y.dtype == "int8"
        assert x.quantization.same_as(y.quantization)
        cycles = flexbuffers.Loads(op.custom_options)["cycles_max"]
        assert cycles >= 1
        gates += cycles > 1
    expected = {"ds_cnn_kws": 2, "separable_maxpool": 2}.get(name.replace("_dynbatch", "").rsplit("_", 1)[0], 0)
    assert gates == expected
    # The state is the same as the ring-buffer form's or larger: N = receptive field, not rf - stride + n.
    assert sum(op.outputs[0].nbytes for op in buffers) >= c.plan.minimum_state_bytes


# ---------------------------------------------------------------------------------------------------------
# Refusals, with the reason


@pytest.mark.parametrize("name", FLOAT)
def test_float_models_are_refused(name):
    with pytest.raises(StreamingRefused, match="CIRCULAR_BUFFER kernel supports int8 only"):
        _convert(name)


def _q(scale: float = 0.05, zp: int = 0) -> Quantization:
    return Quantization(scale=np.array([scale], np.float32), zero_point=np.array([zp], np.int64))


def _act(name: str, shape) -> Tensor:
    return Tensor(name, "int8", tuple(shape), quantization=_q())


def _conv(x: Tensor, out: Tensor, kh: int, kw: int, stride_h: int = 1, seed: int = 0) -> Operator:
    rng = np.random.default_rng(seed)
    cin, cout = x.shape[3], out.shape[3]
    w = const(f"{out.name}/w", rng.integers(-5, 6, (cout, kh, kw, cin)), "int8")
    w.quantization = _q(0.02)
    b = const(f"{out.name}/b", np.zeros(cout, np.int32), "int32")
    b.quantization = _q(0.001)
    return Operator("CONV_2D", [x, w, b], [out], options={
        "padding": 1, "stride_w": 1, "stride_h": stride_h, "fused_activation_function": 0,
        "dilation_w_factor": 1, "dilation_h_factor": 1}, options_type="Conv2DOptions", version=3)


def _mean(x: Tensor, axes: list[int], out: Tensor) -> Operator:
    return Operator("MEAN", [x, const(f"{out.name}/axes", axes, "int32")], [out], options={"keep_dims": False},
                    options_type="ReducerOptions")


def _model(inputs, outputs, operators) -> Model:
    return Model(subgraphs=[Subgraph("main", list(inputs), list(outputs), list(operators))])


def test_holds_a_frame_that_is_not_outermost():
    """Time on axis 2 of [1, 3, T, C]: one frame per invoke is [1, 3, 1, C], contiguous; the buffer's
    [1, N, 1, 3*C] is transposed back to [1, 3, N, C] for its reader."""
    x = _act("x", (1, 3, 16, 2))
    y = _act("y", (1, 3, 14, 4))
    z = _act("z", (1, 4))
    model = _model([x], [z], [_conv(x, y, 1, 3), _mean(y, [1, 2], z)])
    c = convert_with_plan(model, state="circular-buffer", time_axis=2)
    assert "TRANSPOSE" in [op.type for op in c.model.main.operators]
    r = xstream.verify(model, c.model, time_axis=2, runtime="tflm", sequences=2)
    assert r.equal and r.bit_exact and r.steps_compared > 0


def test_refuses_two_strided_readers_at_one_frame_rate():
    """Two branches each downsampled by their own strided conv: two buffers would have to skip the rest of the
    graph independently, which CIRCULAR_BUFFER's abort cannot express."""
    x = _act("x", (1, 16, 1, 2))
    a, b = _act("a", (1, 14, 1, 4)), _act("b", (1, 14, 1, 4))
    a2, b2 = _act("a2", (1, 7, 1, 4)), _act("b2", (1, 7, 1, 4))
    s, z = _act("s", (1, 7, 1, 4)), _act("z", (1, 1, 4))
    add = Operator("ADD", [a2, b2], [s], options={"fused_activation_function": 0}, options_type="AddOptions")
    model = _model([x], [z], [_conv(x, a, 3, 1, seed=1), _conv(x, b, 3, 1, seed=2),
                              _conv(a, a2, 2, 1, stride_h=2, seed=3), _conv(b, b2, 2, 1, stride_h=2, seed=4),
                              add, _mean(s, [1], z)])
    assert convert_with_plan(model).model
    with pytest.raises(StreamingRefused, match="strided readers take frames at the same rate"):
        convert_with_plan(model, state="circular-buffer")


def test_one_strided_reader_per_rate_is_accepted():
    """The same graph with one downsampling branch converts, with exactly one skipping buffer."""
    x = _act("x", (1, 16, 1, 2))
    a, a2, z = _act("a", (1, 14, 1, 4)), _act("a2", (1, 7, 1, 4)), _act("z", (1, 1, 4))
    model = _model([x], [z], [_conv(x, a, 3, 1), _conv(a, a2, 2, 1, stride_h=2), _mean(a2, [1], z)])
    c = convert_with_plan(model, state="circular-buffer")
    cycles = [flexbuffers.Loads(op.custom_options)["cycles_max"] for op in c.model.main.operators
              if is_circular_buffer(op)]
    assert sorted(cycles) == [1, 1, 2]
    assert normalize(model)  # unchanged input model
