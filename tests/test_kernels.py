"""The RING_BUFFER kernel for TFLite Micro (kernels/) in a real TFLM build: unit vectors shared with the numpy
reference, every zoo model in ring-buffer and variable form in the host harness, the harness as an example
(run, reset between utterances), and `xstream verify --runtime tflm-host`.

The harness is built once per session by kernels/build.sh (g++ and the TFLM runtime of xmos-ai-tools) into
build/kernels, and reused while its sources are unchanged. The tests skip only where no C++ compiler exists."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from flatbuffers import flexbuffers

import xstream
from xstream.cli import main
from xstream.errors import XstreamError
from xstream.ir import Operator
from xstream.pipeline import convert_with_plan, normalize
from xstream.forms.ring_buffer import RingBufferReference, decode_options, encode_options, is_ring_buffer
from xstream.runtimes import open_runner as _runner
from xstream.verify import verify

REPO = Path(__file__).resolve().parents[1]
KERNELS = REPO / "kernels"
VECTORS = KERNELS / "tests" / "vectors.txt"
ZOO = sorted(p.stem for p in (REPO / "models").glob("*.tflite"))
STREAMABLE = [n for n in ZOO if not n.startswith("same_padding")]
# TFLM has no dynamic shapes: in these originals SPACE_TO_BATCH_ND grows the batch at run time, which TFLM (the
# Python package and this build alike) cannot do, so the original gives wrong numbers in any TFLM. They are
# compared against the normalized original (dilation folded into the conv, pipeline.normalize) in TFLM instead;
# tests/test_convert_zoo.py shows the folding is the same maths.
ATROUS = {"tdnn_dilated_dynbatch_float", "tdnn_dilated_dynbatch_int8", "causal_mean_dynbatch_float",
          "causal_mean_dynbatch_int8"}


def _load(name: str) -> xstream.Model:
    return xstream.load(REPO / "models" / f"{name}.tflite")


def _reference(name: str) -> xstream.Model:
    model = _load(name)
    return normalize(model) if name in ATROUS else model


# ---------------------------------------------------------------------------------------------------------
# Unit vectors: one file, two implementations


def _parse_vectors(text: str) -> list[dict]:
    vectors, cur = [], None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, rest = line.partition(" ")
        if head == "vector":
            name, *pairs = rest.split()
            cur = {"name": name, **dict(p.split("=") for p in pairs), "events": []}
            cur["shape"] = tuple(int(d) for d in cur["shape"].split(","))
            vectors.append(cur)
        elif head in ("x", "y"):
            values = np.array([float(v) for v in rest.split()], dtype=np.float64).astype(cur["dtype"])
            cur["events"].append((head, values))
        elif head == "reset":
            cur["events"].append(("reset", None))
    return vectors


def test_vectors_are_generated_from_the_reference():
    sys.path.insert(0, str(KERNELS / "tests"))
    try:
        import make_vectors
    finally:
        sys.path.pop(0)
    assert make_vectors.render() == VECTORS.read_text(), "run kernels/tests/make_vectors.py and commit vectors.txt"


def test_vectors_replay_in_the_python_reference():
    vectors = _parse_vectors(VECTORS.read_text())
    assert len(vectors) >= 10
    kinds = {(v["dtype"], int(v["axis"])) for v in vectors}
    assert {"int8", "int16", "float32"} <= {d for d, _ in kinds} and len({a for _, a in kinds}) >= 3
    for v in vectors:
        axis, frames, shape = int(v["axis"]), int(v["frames"]), v["shape"]
        ref = RingBufferReference(axis, frames, shape[axis], shape, np.dtype(v["dtype"]), int(v["zero_point"]))
        invokes = 0
        for kind, values in v["events"]:
            if kind == "reset":
                ref.reset()
            elif kind == "x":
                y = ref(values.reshape(shape))
                invokes += 1
            else:
                assert np.array_equal(y.reshape(-1), values), (v["name"], invokes)
        assert invokes >= 3, v["name"]


def test_kernel_unit_vectors_in_tflm(harness):
    """The C++ test builds a one-op model per vector (options encoded by flexbuffers), runs it in a
    MicroInterpreter, checks every output byte, resets (ResetRingBuffers and MicroInterpreter::Reset), and runs
    two interpreters side by side; all of it twice: the state in the kernel's buffer, and in place (y a variable
    tensor that is the state)."""
    r = subprocess.run([str(harness.parent / "ring_buffer_test"), str(VECTORS)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    n = len(_parse_vectors(VECTORS.read_text()))
    assert r.stdout.strip().splitlines()[-1] == f"{2 * (n + 1) + 1} passed, 0 failed"
    assert "(in place)" not in r.stdout  # no in-place vector failed (failures are printed by name)


def test_kernel_also_compiles_for_xcore(harness):
    """build.sh compiles the kernel in the configuration of libhost_xtflitemicro.a and of xcore targets
    (TF_LITE_STATIC_MEMORY, NO_INTERPRETER, stripped error strings)."""
    obj = harness.parent / "ring_buffer_xcore.o"
    assert obj.stat().st_size > 0
    nm = shutil.which("nm")
    if nm:
        symbols = subprocess.run([nm, "-C", str(obj)], capture_output=True, text=True).stdout
        assert "xstream::Register_RING_BUFFER()" in symbols


# ---------------------------------------------------------------------------------------------------------
# The zoo in the real TFLM build


@pytest.mark.parametrize("name", STREAMABLE)
def test_zoo_ring_buffer_form_in_tflm_host(harness, name):
    c = convert_with_plan(_load(name))
    assert any(is_ring_buffer(op) for op in c.model.main.operators)
    r = verify(_reference(name), c.model, runtime="tflm-host", sequences=2, seed=3)
    assert r.form == "ring-buffer" and r.runtime == "tflm-host"
    assert any("kernels/ring_buffer" in note for note in r.notes)  # the custom op ran; nothing was lowered
    assert r.equal and r.steps_compared > 0, r.first_mismatch
    if name.endswith("int8"):
        assert r.bit_exact
    else:
        assert r.max_rel_error <= 1e-5


@pytest.mark.parametrize("name", STREAMABLE)
def test_zoo_variable_form_in_tflm_host(harness, name):
    """Resource variables (MicroResourceVariables set up by the harness) with a CALL_ONCE init; reset between
    sequences is MicroInterpreter::Reset."""
    c = convert_with_plan(_load(name), state="variable")
    r = verify(_reference(name), c.model, runtime="tflm-host", sequences=2, seed=4)
    assert r.form == "variable" and r.equal and r.steps_compared > 0, r.first_mismatch
    if name.endswith("int8"):
        assert r.bit_exact


@pytest.mark.parametrize("name", ["ds_cnn_kws_int8", "causal_mean_float"])
def test_zoo_external_form_in_tflm_host(harness, name):
    c = convert_with_plan(_load(name), state="external")
    r = verify(_reference(name), c.model, runtime="tflm-host", sequences=2)
    assert r.form == "external" and r.equal, r.first_mismatch


def test_ring_buffer_form_equals_its_builtin_lowering_in_tflm(harness):
    """The kernel against the builtin lowering of the same op (variable form), both in the TFLM build, step by
    step on one long stream: the RING_BUFFER state is exactly the resource variables'."""
    model = _load("tdnn_dilated_int8")
    rb = _runner(xstream.serialize(convert_with_plan(model).model), "tflm-host", "builtin")
    var = _runner(xstream.serialize(convert_with_plan(model, state="variable").model), "tflm-host", "builtin")
    rng = np.random.default_rng(7)
    for _ in range(60):
        x = rng.integers(-128, 128, tuple(rb.inputs[0]["shape"]), dtype=np.int8)
        (a,), (b,) = rb([x]), var([x])
        assert np.array_equal(a, b)


# ---------------------------------------------------------------------------------------------------------
# The harness as the example to copy: `run`, reset between utterances


def _frames(model: xstream.Model, length: int, seed: int) -> np.ndarray:
    x = model.main.inputs[0]
    shape = list(x.shape)
    shape[1] = length
    rng = np.random.default_rng(seed)
    if x.dtype == "int8":
        return rng.integers(-128, 128, shape, dtype=np.int8)
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("form", ["ring-buffer", "variable"])
@pytest.mark.parametrize("name", ["causal_mean_int8", "ds_cnn_kws_float"])
def test_harness_run_resets_between_utterances(harness, tmp_path, name, form):
    model = _load(name)
    c = convert_with_plan(model, state=form)
    path = tmp_path / "stream.tflite"
    path.write_bytes(xstream.serialize(c.model))
    frames = _frames(model, 3 * model.main.inputs[0].shape[1], seed=5)
    np.save(tmp_path / "frames.npy", frames)
    r = subprocess.run([str(harness), "run", str(path), str(tmp_path / "frames.npy"), str(tmp_path / "out.npy"),
                        "--utterances", "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "utterance 2 after reset: identical to utterance 1" in r.stdout
    out = np.load(tmp_path / "out.npy")
    steps = frames.shape[1] // c.plan.hop
    assert out.shape[0] == 2 * steps and np.array_equal(out[:steps], out[steps:])
    # The same frames through the serve protocol (what verify uses) give the same outputs.
    runner = _runner(path.read_bytes(), "tflm-host", "builtin")
    hop = c.plan.hop
    for k in range(steps):
        (y,) = runner([frames[:, k * hop:(k + 1) * hop]])
        assert np.array_equal(y, out[k])


def test_harness_time_reports_each_model(harness, tmp_path):
    """`time` (bench/bench.py's TFLite Micro latency): one line per model, taking turns in one loop; the stream's
    step is cheaper than the original's window."""
    original = tmp_path / "original.tflite"
    stream = tmp_path / "stream.tflite"
    original.write_bytes((REPO / "models" / "ds_cnn_kws_int8.tflite").read_bytes())
    stream.write_bytes(xstream.serialize(convert_with_plan(_load("ds_cnn_kws_int8")).model))
    r = subprocess.run([str(harness), "time", str(original), str(stream), "--runs", "40"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line.split() for line in r.stdout.splitlines() if line.startswith("time ")]
    assert [line[1] for line in lines] == [str(original), str(stream)]
    (median_o, mean_o, low_o, n_o, aborted_o), (median_s, _, low_s, n_s, aborted_s) = \
        [[int(v) for v in line[2:]] for line in lines]
    assert n_o == n_s == 40 and aborted_o == aborted_s == 0
    assert 0 < low_o <= median_o and 0 < low_s <= median_s
    assert median_s < median_o  # 7.68x fewer MACs per step


def test_harness_run_rejects_frames_of_the_wrong_shape(harness, tmp_path):
    path = tmp_path / "stream.tflite"
    path.write_bytes(xstream.serialize(convert_with_plan(_load("residual_tdnn_int8")).model))
    np.save(tmp_path / "frames.npy", np.zeros((1, 10, 3), np.int8))
    r = subprocess.run([str(harness), "run", str(path), str(tmp_path / "frames.npy"), str(tmp_path / "o.npy")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "shaped like input 0" in r.stderr


# ---------------------------------------------------------------------------------------------------------
# Errors the kernel and the harness report


def _with_options(model: xstream.Model, **changes) -> xstream.Model:
    m = model.copy()
    op = next(op for op in m.main.operators if is_ring_buffer(op))
    axis, frames = decode_options(op)
    op.custom_options = encode_options(changes.get("axis", axis), changes.get("frames", frames))
    return m


def test_kernel_refuses_an_output_shape_that_does_not_match_frames(harness):
    rb = convert_with_plan(_load("residual_tdnn_int8")).model
    with pytest.raises(XstreamError, match="tflm-host cannot load the model: .*AllocateTensors failed"):
        _runner(xstream.serialize(_with_options(rb, frames=7)), "tflm-host", "builtin")


def test_kernel_refuses_options_that_are_not_a_map(harness):
    rb = convert_with_plan(_load("residual_tdnn_int8")).model
    op: Operator = next(op for op in rb.main.operators if is_ring_buffer(op))
    op.custom_options = bytes(flexbuffers.Dumps([1, 4]))  # a vector, not the map {axis, frames}
    with pytest.raises(XstreamError, match="AllocateTensors failed"):
        _runner(xstream.serialize(rb), "tflm-host", "builtin")


# ---------------------------------------------------------------------------------------------------------
# xstream verify --runtime tflm-host


def test_verify_cli_runs_the_custom_op_in_tflm(harness, tmp_path):
    out = tmp_path / "s.tflite"
    runner = CliRunner()
    r = runner.invoke(main, ["convert", str(REPO / "models" / "separable_maxpool_int8.tflite"), str(out)],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["verify", str(REPO / "models" / "separable_maxpool_int8.tflite"), str(out),
                             "--runtime", "tflm-host", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["runtime"] == "tflm-host" and result["form"] == "ring-buffer"
    assert result["equal"] and result["bit_exact"] and result["steps_compared"] > 0
