"""examples/tflm builds with CMake and runs a streamed zoo model in TensorFlow Lite Micro, bit-exact with the
original in the same runtime (run_example.py's exit 0) and with `xstream verify --runtime tflm-host`'s run of the
same stream, in every form it supports."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

import xstream
from helpers import REPO
from xstream.runtimes import open_runner

EXAMPLE = REPO / "examples" / "tflm"
FORMS = ("ring-buffer", "variable", "external")

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("g++") is None,
                                reason="examples/tflm needs cmake and g++ (CI installs both)")


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    pytest.importorskip("xmos_ai_tools")
    work = tmp_path_factory.mktemp("tflm_example")
    done = subprocess.run([sys.executable, str(EXAMPLE / "run_example.py"), "--work", str(work)],
                          capture_output=True, text=True, timeout=900)
    return work, done


def test_example_builds_and_every_form_is_bit_exact(example_run):
    work, done = example_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (REPO / "build" / "tflm" / "stream_tflm").exists()
    for form in FORMS:
        assert f"{form:12s} vs original in stream_tflm (same runtime)  : 36 step(s), bit-exact" in done.stdout
        assert f"{form:12s} reset: sequence 3 (sequence 1's frames after a reset) repeats every output" in done.stdout
    assert done.stdout.rstrip().endswith("PASSED")


@pytest.mark.parametrize("form", FORMS)
def test_example_outputs_equal_verify_runtime(example_run, harness, form):
    """Every step's output of stream_tflm (warm-up included) is the output of the same stream in xstream's TFLite
    Micro harness, the runtime of `xstream verify --runtime tflm-host`."""
    work, done = example_run
    assert done.returncode == 0, done.stderr[-3000:]
    frames = np.load(work / "frames.npy")  # [S, 1, L, 10, 1]
    printed = np.load(work / f"out_{form}.npy")  # [S, steps, *output shape]
    path = work / f"ds_cnn_kws_int8_{form}.tflite"
    runner = open_runner(path.read_bytes(), "tflm-host")
    hop = runner.inputs[0]["shape"][1]
    model = xstream.load(path)
    names_in = [t.name for t in model.main.inputs]
    names_out = [t.name for t in model.main.outputs]
    feedback = [names_out.index(n + "_next") for n in names_in[1:]]
    for s, sequence in enumerate(frames):
        runner.reset()
        state = [np.full(d["shape"], d["quantization"][1], dtype=d["dtype"]) for d in runner.inputs[1:]]
        for k in range(printed.shape[1]):
            outs = runner([sequence[:, k * hop:(k + 1) * hop]] + state)
            state = [outs[j] for j in feedback]
            assert np.array_equal(outs[0], printed[s, k]), (form, s, k)
