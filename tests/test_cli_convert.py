"""`xstream convert` and `xstream verify` on the command line, and the `xstream.convert` Python API."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import xstream
from xstream.cli import main
from xstream.ir import Buffer
from xstream.forms.ring_buffer import decode_options, encode_options
from helpers import REPO, zoo_model


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _forms(model: xstream.Model) -> str:
    if any(op.kind == "RING_BUFFER" for op in model.main.operators):
        return "ring-buffer"
    if any(op.type == "VAR_HANDLE" for _, op in model.operators()):
        return "variable"
    return "external" if len(model.main.inputs) > 1 else "none"


# ---------------------------------------------------------------------------------------------------------
# convert


def test_convert_prints_summary(tmp_path):
    out = tmp_path / "kws.tflite"
    r = _invoke("convert", zoo_model("ds_cnn_kws_int8"), out)
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == f"{zoo_model('ds_cnn_kws_int8')} -> {out}"
    text = r.stdout
    assert re.search(r"^contract\s+window-exact: from step 11 on, .*\b1 frame\(s\)", text, re.M), text
    assert re.search(r"^hop\s+4 frame\(s\) per step, window 49 frames, offset D=\+1, warm-up 11 step\(s\)$", text,
                     re.M), text
    assert re.search(r"^streamed\s+6 op\(s\): #0 CONV_2D k10 s2, #1 DEPTHWISE_CONV_2D k3, ", text, re.M), text
    # No window in place: ds_cnn's planning scratch exceeds its activations (passes/in_place_windows.py).
    assert re.search(r"^state\s+1520 bytes in 4 buffer\(s\) \(minimum by the contract 1520\), form ring-buffer$",
                     text, re.M), text
    model = xstream.load(out)
    assert _forms(model) == "ring-buffer"
    assert model.main.inputs[0].shape == (1, 4, 10, 1)
    r = _invoke("convert", zoo_model("tdnn_dilated_int8"), tmp_path / "t.tflite")
    assert re.search(r"^state\s+1604 bytes in 4 buffer\(s\) \(minimum by the contract 1488; 4 in place: window "
                     r"and state are one buffer, outside the activations\), form ring-buffer$", r.stdout, re.M), r.stdout


def test_convert_prints_causal_contract(tmp_path):
    r = _invoke("convert", zoo_model("causal_mean_float"), tmp_path / "c.tflite", "--state", "variable")
    assert r.exit_code == 0, r.output
    assert re.search(r"^contract\s+causal: after a reset, step 39 \(the one completing the first window\) equals "
                     r"the original", r.stdout, re.M), r.stdout
    assert re.search(r"^hop\s+1 frame\(s\) per step, window 40 frames, offset D=\+0", r.stdout, re.M)
    assert re.search(r"^state\s+6400 bytes in 4 buffer\(s\) .* form variable$", r.stdout, re.M), r.stdout


@pytest.mark.parametrize("state", ["ring-buffer", "variable", "external"])
def test_convert_json(tmp_path, state):
    out = tmp_path / "s.tflite"
    r = _invoke("convert", zoo_model("separable_maxpool_float"), out, "--json", "--state", state, "--hop", "8")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    for key in ("contract", "hop", "offset", "warmup", "state_bytes", "minimum_state_bytes", "states",
                "streamed_ops"):
        assert key in rep, key
    assert (rep["contract"], rep["hop"], rep["offset"], rep["state_form"]) == ("window-exact", 8, 2, state)
    assert rep["warmup"] == -(-(48 - 2) // 8) - 1
    assert rep["state_bytes"] == sum(s["bytes"] for s in rep["states"])
    in_place = [s for s in rep["states"] if s["in_place"]]  # a window that is its state holds n frames more
    assert not in_place or state == "ring-buffer"  # only a RING_BUFFER keeps its state in its window
    assert rep["state_bytes"] > rep["minimum_state_bytes"] if in_place else \
        rep["state_bytes"] == rep["minimum_state_bytes"]
    assert [(s["op"], s["kernel"], s["stride"]) for s in rep["streamed_ops"]] == [
        ("DEPTHWISE_CONV_2D", 5, 1), ("CONV_2D", 1, 1), ("MAX_POOL_2D", 2, 2), ("CONV_2D", 3, 2)]
    model = xstream.load(out)
    assert _forms(model) == state
    assert model.main.inputs[0].shape == (1, 8, 16)
    if state == "external":
        assert sum(t.nbytes for t in model.main.inputs[1:]) == rep["state_bytes"]


def test_convert_default_hop_is_minimum(tmp_path):
    r = _invoke("convert", zoo_model("tdnn_dilated_dynbatch_int8"), tmp_path / "t.tflite", "--json")
    rep = json.loads(r.stdout)
    assert rep["hop"] == 1 and rep["window"] == 49 and rep["warmup"] == 48
    # the atrous blocks are folded: 3 dilated convs streamed, dilations 1, 2, 3
    assert [s["dilation"] for s in rep["streamed_ops"]] == [1, 2, 3]


def test_convert_output_equal_to_input_refused(tmp_path):
    src = tmp_path / "m.tflite"
    shutil.copy(zoo_model("tdnn_dilated_float"), src)
    before = src.read_bytes()
    r = _invoke("convert", src, src)
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.startswith("xstream: error: ") and "OUT is the input file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert src.read_bytes() == before
    # the same file under another spelling
    r = _invoke("convert", src, tmp_path / "." / "m.tflite")
    assert r.exit_code == 2 and src.read_bytes() == before
    r = _invoke("convert", src, src, "--force", "--state", "external")
    assert r.exit_code == 0, r.output
    assert _forms(xstream.load(src)) == "external"
    r = _invoke("verify", zoo_model("tdnn_dilated_float"), src)
    assert r.exit_code == 0, r.output


def test_convert_refusal_exit_codes(tmp_path):
    out = tmp_path / "o.tflite"
    r = _invoke("convert", zoo_model("ds_cnn_kws_int8").parent / "holdout" / "squeeze_excite_int8.tflite", out)
    assert r.exit_code == 1
    assert r.stderr.startswith("xstream: error: operator 11 (MUL): combines a value computed from the whole window")
    r = _invoke("convert", zoo_model("ds_cnn_kws_int8"), out, "--hop", "3")
    assert r.exit_code == 2 and "--hop 3 is not a multiple of 4" in r.stderr
    r = _invoke("convert", zoo_model("ds_cnn_kws_int8"), out, "--time-axis", "0")
    assert r.exit_code == 2 and "--time-axis 0 is out of range" in r.stderr
    r = _invoke("convert", tmp_path / "missing.tflite", out)
    assert r.exit_code == 2
    assert not out.exists()


def test_console_script(tmp_path):
    """The installed `xstream` entry point (not just the click object) converts and verifies."""
    exe = shutil.which("xstream", path=str(REPO / ".venv" / "bin")) or shutil.which("xstream")
    cmd = [exe] if exe else [sys.executable, "-m", "xstream"]
    out = tmp_path / "r.tflite"
    r = subprocess.run(cmd + ["convert", str(zoo_model("residual_tdnn_int8")), str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cmd + ["verify", str(zoo_model("residual_tdnn_int8")), str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("EQUAL")


# ---------------------------------------------------------------------------------------------------------
# verify


@pytest.mark.parametrize("state", ["ring-buffer", "variable", "external"])
def test_verify_equal(tmp_path, state):
    out = tmp_path / "s.tflite"
    assert _invoke("convert", zoo_model("ds_cnn_kws_int8"), out, "--state", state).exit_code == 0
    r = _invoke("verify", zoo_model("ds_cnn_kws_int8"), out)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("EQUAL: ")
    assert "bit-exact" in r.stdout.splitlines()[0]
    assert f"form {state}, runtime litert" in r.stdout
    r = _invoke("verify", zoo_model("ds_cnn_kws_int8"), out, "--json", "--sequences", "2", "--steps", "20")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["equal"] is True and res["bit_exact"] is True
    assert (res["contract"], res["hop"], res["offset"], res["warmup"], res["form"]) == (
        "window-exact", 4, 1, 11, state)
    assert res["steps_compared"] == 2 * (20 - 11)


def test_verify_float_and_tflm(tmp_path):
    out = tmp_path / "s.tflite"
    assert _invoke("convert", zoo_model("separable_maxpool_float"), out, "--state", "variable").exit_code == 0
    r = _invoke("verify", zoo_model("separable_maxpool_float"), out, "--json")
    res = json.loads(r.stdout)
    assert r.exit_code == 0 and res["equal"] and res["max_rel_error"] <= 1e-5
    r = _invoke("verify", zoo_model("separable_maxpool_float"), out, "--runtime", "tflm", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout[r.stdout.index("{"):])  # tflite-micro may print its own lines first
    assert res["equal"] and res["runtime"] == "tflm"


def test_verify_with_input_frames(tmp_path):
    out = tmp_path / "s.tflite"
    assert _invoke("convert", zoo_model("tdnn_dilated_float"), out, "--state", "external").exit_code == 0
    frames = np.random.default_rng(0).standard_normal((1, 60, 20)).astype(np.float32)
    npy = tmp_path / "f.npy"
    np.save(npy, frames)
    r = _invoke("verify", zoo_model("tdnn_dilated_float"), out, "--input", npy, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["equal"] and res["sequences"] == 1 and res["steps_compared"] == 60 - 48


def test_verify_detects_a_changed_weight(tmp_path):
    """One byte of one conv weight changed in the streaming (external) model: verify must say DIFFERENT."""
    out = tmp_path / "s.tflite"
    assert _invoke("convert", zoo_model("tdnn_dilated_int8"), out, "--state", "external").exit_code == 0
    assert _invoke("verify", zoo_model("tdnn_dilated_int8"), out).exit_code == 0
    model = xstream.load(out)
    conv = [op for op in model.main.operators if op.type == "CONV_2D"][1]
    w = conv.inputs[1]
    data = bytearray(w.buffer.data)
    data[5] = (data[5] + 64) % 256
    w.buffer = Buffer(bytes(data))
    bad = tmp_path / "bad.tflite"
    xstream.save(model, bad)
    r = _invoke("verify", zoo_model("tdnn_dilated_int8"), bad)
    assert r.exit_code == 1, r.output
    assert r.stdout.startswith("DIFFERENT: ")
    assert re.search(r"^first mismatch: sequence 0, step \d+, output 0, abs error ", r.stdout, re.M), r.stdout
    r = _invoke("verify", zoo_model("tdnn_dilated_int8"), bad, "--json")
    assert r.exit_code == 1
    res = json.loads(r.stdout)
    assert res["equal"] is False and res["bit_exact"] is False and res["first_mismatch"]["abs_error"] > 0


def test_verify_detects_a_ring_buffer_one_frame_short(tmp_path):
    """The MEAN head's RING_BUFFER keeps one frame too few (frames - 1, output shape fixed to match)."""
    out = tmp_path / "s.tflite"
    assert _invoke("convert", zoo_model("residual_tdnn_int8"), out).exit_code == 0
    model = xstream.load(out)
    sg = model.main
    rb = next(op for op in sg.operators
              if op.kind == "RING_BUFFER" and any(c.type == "MEAN" for c in sg.consumers(op.outputs[0])))
    axis, frames = decode_options(rb)
    assert frames == 36  # the MEAN reads the whole 36 frames of the ADD
    rb.custom_options = encode_options(axis, frames - 1)
    y = rb.outputs[0]
    shape = list(y.shape)
    shape[axis] = frames - 1
    y.shape = tuple(shape)
    bad = tmp_path / "short.tflite"
    xstream.save(model, bad)
    r = _invoke("verify", zoo_model("residual_tdnn_int8"), bad)
    assert r.exit_code == 1, r.output
    assert r.stdout.startswith("DIFFERENT: ")
    # and the untouched file still verifies
    assert _invoke("verify", zoo_model("residual_tdnn_int8"), out).exit_code == 0


def test_verify_detects_a_wrong_initial_state(tmp_path):
    """A variable-form state initialised to 1 instead of the zero point: the causal first window differs."""
    out = tmp_path / "s.tflite"
    assert _invoke("convert", zoo_model("causal_mean_int8"), out, "--state", "variable").exit_code == 0
    model = xstream.load(out)
    init = model.subgraphs[1]
    zeros = next(op.inputs[1] for op in init.operators if op.type == "ASSIGN_VARIABLE")
    zeros.buffer = Buffer((zeros.data.astype(np.int8) + 1).tobytes())
    bad = tmp_path / "init.tflite"
    xstream.save(model, bad)
    r = _invoke("verify", zoo_model("causal_mean_int8"), bad)
    assert r.exit_code == 1, r.output


def test_verify_usage_errors(tmp_path):
    r = _invoke("verify", zoo_model("tdnn_dilated_float"), zoo_model("tdnn_dilated_float"))
    assert r.exit_code == 2 and "keeps no state and takes the whole window" in r.stderr
    out = tmp_path / "s.tflite"
    assert _invoke("convert", zoo_model("tdnn_dilated_float"), out).exit_code == 0
    r = _invoke("verify", zoo_model("tdnn_dilated_float"), out, "--sequences", "0")
    assert r.exit_code == 2


# ---------------------------------------------------------------------------------------------------------
# Python API


@pytest.mark.parametrize("state", ["ring-buffer", "variable", "external"])
def test_python_api_convert(state):
    model = xstream.load(zoo_model("separable_maxpool_int8"))
    before = xstream.serialize(model)
    s = xstream.convert(model, state=state, hop=8)
    assert isinstance(s, xstream.Model)
    assert _forms(s) == state
    assert s.main.inputs[0].shape == (1, 8, 16)
    assert xstream.serialize(model) == before  # the original is not modified
    from xstream.verify import verify
    assert verify(model, s).equal
    with pytest.raises(xstream.XstreamError):
        xstream.convert(model, state="bogus")
