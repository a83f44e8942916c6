"""Verdicts a CI step can trust (issue 14): one exit code per outcome on every command, one JSON object with
--json whatever happens, verify's float tolerance from a measured noise floor, and the CLI's small promises
(file modes, broken pipes, option handling, messages)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import xstream
from xstream import ops
from xstream.analysis.time_walk import _Analyzer
from xstream.cli import main
from xstream.errors import EXIT_CODES
from xstream.ir import Buffer, Operator
from xstream import make
from builders import GraphBuilder
from helpers import REPO, zoo_model


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _convert(name: str, out, *extra) -> None:
    r = _invoke("convert", zoo_model(name), out, *extra)
    assert r.exit_code == 0, r.output


def _append_unary(src, kind: str, out) -> None:
    """The model at `src` with a per-frame `kind` op (e.g. GELU) after its first output."""
    m = xstream.load(src)
    y = m.main.outputs[0]
    z = make.like(y, y.name + "/" + kind.lower(), y.shape)
    m.main.operators.append(Operator(kind, [y], [z]))
    m.main.outputs[0] = z
    xstream.save(m, out)


def _error(r) -> dict:
    return json.loads(r.stdout)["error"]


# ---------------------------------------------------------------------------------------------------------
# One exit code per outcome, and one JSON object with --json


def test_exit_codes_are_documented_in_every_help():
    for cmd in ("inspect", "convert", "verify"):
        r = _invoke(cmd, "--help")
        assert r.exit_code == 0
        for code, what in EXIT_CODES.items():
            assert f"{code}  {what}" in r.stdout, (cmd, code)
    readme = (REPO / "README.md").read_text()
    assert all(f"| {code} |" in readme for code in EXIT_CODES)


def test_refused_is_1_with_json(tmp_path):
    r = _invoke("convert", REPO / "models/holdout/squeeze_excite_int8.tflite", tmp_path / "o.tflite", "--json")
    assert r.exit_code == 1
    err = _error(r)
    assert err["code"] == 1 and err["kind"] == "refused" and err["message"].startswith("operator ")
    assert r.stderr.strip() == "xstream: error: " + err["message"]
    assert not (tmp_path / "o.tflite").exists()


def test_usage_error_from_click_parsing_is_2_with_json(tmp_path):
    r = _invoke("convert", "a.tflite", tmp_path / "b.tflite", "--state", "bogus", "--json")
    assert r.exit_code == 2 and _error(r)["kind"] == "usage" and "bogus" in _error(r)["message"]


def test_could_not_run_is_3_and_names_the_missing_kernel(tmp_path):
    original, stream = tmp_path / "gelu.tflite", tmp_path / "s.tflite"
    _append_unary(zoo_model("causal_mean_float"), "GELU", original)  # TFLite Micro has no GELU kernel
    assert _invoke("convert", original, stream, "--state", "variable").exit_code == 0
    r = _invoke("verify", original, stream, "--runtime", "tflm", "--json")
    assert r.exit_code == 3, r.output
    err = _error(r)
    assert err["kind"] == "could-not-run" and "no kernel for the builtin op GELU" in err["message"]


def test_could_not_run_in_the_harness_names_the_missing_kernel(tmp_path, harness):
    original, stream = tmp_path / "gelu.tflite", tmp_path / "s.tflite"
    _append_unary(zoo_model("causal_mean_float"), "GELU", original)
    assert _invoke("convert", original, stream, "--state", "variable").exit_code == 0
    r = _invoke("verify", original, stream, "--runtime", "tflm-host")
    assert r.exit_code == 3
    assert "no kernel for the builtin op GELU in xstream's TFLite Micro harness" in r.stderr


def test_harness_runs_rsqrt_now(tmp_path, harness):
    """Real models normalise with RSQRT; the harness registers it (and NEG, SQRT, DIV, ...)."""
    original, stream = tmp_path / "rsqrt.tflite", tmp_path / "s.tflite"
    m = xstream.load(zoo_model("causal_mean_float"))
    y = m.main.outputs[0]
    a = make.like(y, "abs", y.shape)
    z = make.like(y, "rsqrt", y.shape)
    m.main.operators += [Operator("ABS", [y], [a]), Operator("RSQRT", [a], [z])]
    m.main.outputs[0] = z
    xstream.save(m, original)
    assert _invoke("convert", original, stream, "--state", "variable").exit_code == 0
    r = _invoke("verify", original, stream, "--runtime", "tflm-host")
    assert r.exit_code == 0, r.output


def test_tflm_host_computes_per_channel_fully_connected_as_tflite_micro(tmp_path, harness):
    """The harness's library predates per-channel FULLY_CONNECTED (kernels/harness/xmos_host_fixes.cc wraps it):
    ds_cnn's per-channel head gives tflite-micro's values, and a --target tflm ring-buffer stream, whose 1x1 convs
    are per-channel FULLY_CONNECTEDs, equals its original there."""
    from xstream.passes.pointwise_convs_as_fc import per_channel_fcs
    from xstream.runtimes import open_runner
    m = xstream.load(zoo_model("ds_cnn_kws_int8"))
    assert per_channel_fcs(m) == 1
    data = xstream.serialize(m)
    host, micro = open_runner(data, "tflm-host"), open_runner(data, "tflm")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = [rng.integers(-128, 128, t.shape).astype(np.int8) for t in m.main.inputs]
        assert np.array_equal(host(x)[0], micro(x)[0])  # 1 LSB apart in 2 of 3 windows before the fix
    stream = tmp_path / "tflm.tflite"
    _convert("ds_cnn_kws_int8", stream, "--target", "tflm")
    assert per_channel_fcs(xstream.load(stream)) == 3
    r = _invoke("verify", zoo_model("ds_cnn_kws_int8"), stream, "--runtime", "tflm-host")
    assert r.exit_code == 0 and "bit-exact" in r.output, r.output


def test_internal_error_is_4_with_json(monkeypatch):
    def broken(self, op, time_in):
        raise ValueError("oops")

    monkeypatch.setitem(_Analyzer.HANDLERS, ops.SLIDE, broken)
    r = _invoke("inspect", zoo_model("ds_cnn_kws_float"), "--stream", "--json")
    assert r.exit_code == 4
    err = _error(r)
    assert err["kind"] == "internal" and "oops" in err["message"] and "report it" in err["message"]


def test_missing_runtime_package_is_3_and_names_the_pip_command(monkeypatch):
    import builtins
    from xstream.runtimes.litert import LiteRT
    from xstream.errors import InterpreterError

    real = builtins.__import__

    def no_litert(name, *a, **kw):
        if name.startswith("ai_edge_litert"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_litert)
    with pytest.raises(InterpreterError, match="pip install ai-edge-litert") as e:
        LiteRT(b"", "builtin")
    assert e.value.exit_code == 3


def test_litert_is_a_default_dependency():
    text = (REPO / "pyproject.toml").read_text()
    deps = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert "ai-edge-litert" in deps


# ---------------------------------------------------------------------------------------------------------
# verify: nothing compared, swapped arguments, the float tolerance


def test_nothing_compared_is_a_usage_error(tmp_path):
    out = tmp_path / "s.tflite"
    _convert("ds_cnn_kws_int8", out)  # warm-up 11, hop 4, D=+1
    r = _invoke("verify", zoo_model("ds_cnn_kws_int8"), out, "--steps", "5", "--json")
    assert r.exit_code == 2
    assert "--steps 5 compares nothing" in _error(r)["message"] and "--steps 12 or more" in _error(r)["message"]
    assert _invoke("verify", zoo_model("ds_cnn_kws_int8"), out, "--steps", "12").exit_code == 0
    frames = np.zeros((1, 30, 10, 1), np.int8)
    np.save(tmp_path / "short.npy", frames)
    r = _invoke("verify", zoo_model("ds_cnn_kws_int8"), out, "--input", tmp_path / "short.npy")
    assert r.exit_code == 2 and "--input has 30 frame(s)" in r.stderr and "needs 49 frames" in r.stderr
    assert "DIFFERENT" not in r.stdout and "EQUAL" not in r.stdout


def test_swapped_arguments_said_as_such(tmp_path):
    out = tmp_path / "s.tflite"
    _convert("tdnn_dilated_int8", out, "--state", "external")
    r = _invoke("verify", out, zoo_model("tdnn_dilated_int8"))
    assert r.exit_code == 2 and "the arguments are swapped" in r.stderr
    r = _invoke("verify", out, out)
    assert r.exit_code == 2 and "both models keep state" in r.stderr


def test_verify_input_that_is_not_npy(tmp_path):
    out = tmp_path / "s.tflite"
    _convert("tdnn_dilated_float", out)
    bad = tmp_path / "frames.csv"
    bad.write_text("1,2,3\n")
    r = _invoke("verify", zoo_model("tdnn_dilated_float"), out, "--input", bad)
    assert r.exit_code == 2
    assert r.stderr.strip() == f"xstream: error: {bad}: not a .npy file; save the frames with numpy.save(path, array)"


def test_float_tolerance_is_measured_and_printed(tmp_path):
    out = tmp_path / "s.tflite"
    _convert("tdnn_dilated_float", out, "--state", "variable")
    r = _invoke("verify", zoo_model("tdnn_dilated_float"), out, "--json")
    assert r.exit_code == 0, r.output
    t = json.loads(r.stdout)["tolerance"]
    assert t["floor_rel"] == 1e-5 and t["noise_factor"] == 4
    assert 0 < t["noise_floor_rel"] < 1e-4  # LiteRT builtin vs reference kernels do disagree a little
    assert t["rel"] == max(1e-5, 4 * t["noise_floor_rel"]) and t["abs"] > 0
    text = _invoke("verify", zoo_model("tdnn_dilated_float"), out).stdout
    assert re.search(r"^tolerance \S+ rel = \S+ abs at the largest output \(", text, re.M), text
    # integer outputs: bit-exact is the rule, no tolerance
    out8 = tmp_path / "s8.tflite"
    _convert("tdnn_dilated_int8", out8)
    assert json.loads(_invoke("verify", zoo_model("tdnn_dilated_int8"), out8, "--json").stdout)["tolerance"] is None


def test_float_tolerance_comes_from_the_noise_floor(monkeypatch):
    """Where the kernels' own noise is above 1e-5, the tolerance follows it (4x), and no further."""
    v = sys.modules["xstream.verify"]  # the module (xstream.verify is also the function)
    model = xstream.load(zoo_model("tdnn_dilated_float"))
    stream = xstream.convert(model, state="variable")
    base = v.verify(model, stream, sequences=1, isolate=False)
    real = v._noise_runner

    def noisy(reference, kernels):  # a runner whose outputs are off by 1e-3 relative: a noisy runtime
        r = real(reference, kernels)
        return lambda xs: [y * np.float32(1 + 1e-3) for y in r(xs)]

    monkeypatch.setattr(v, "_noise_runner", noisy)
    res = v.verify(model, stream, sequences=1, isolate=False)
    assert res.equal and res.max_abs_error == base.max_abs_error
    assert res.tolerance["noise_floor_rel"] == pytest.approx(1e-3, rel=0.05)
    assert res.tolerance["rel"] == pytest.approx(4e-3, rel=0.05)


def _float_tamper(tmp_path, what: str):
    """A float stream tampered with: one frame of state short, offset one frame off, or a weight 1% off."""
    from xstream.forms.ring_buffer import decode_options, encode_options
    name = "residual_tdnn_float"
    out = tmp_path / "s.tflite"
    _convert(name, out)
    model = xstream.load(out)
    sg = model.main
    if what == "state one frame short":
        rb = next(op for op in sg.operators
                  if op.kind == "RING_BUFFER" and any(c.type == "MEAN" for c in sg.consumers(op.outputs[0])))
        axis, frames = decode_options(rb)
        rb.custom_options = encode_options(axis, frames - 1)
        shape = list(rb.outputs[0].shape)
        shape[axis] = frames - 1
        rb.outputs[0].shape = tuple(shape)
    elif what == "offset one frame off":
        # the input's ring buffer keeps one frame more than the first conv reads: every window is one frame late
        rb = next(op for op in sg.operators if op.kind == "RING_BUFFER")  # the input's, before the first conv
        axis, frames = decode_options(rb)
        rb.custom_options = encode_options(axis, frames + 1)
        conv = sg.consumers(rb.outputs[0])[0]
        cut = make.like(rb.outputs[0], "late", rb.outputs[0].shape)
        wide = make.like(rb.outputs[0], "wide", make.with_axis(rb.outputs[0].shape, axis, frames + 1))
        rb.outputs[0], old = wide, rb.outputs[0]
        sg.operators.insert(sg.operators.index(conv), make.strided_slice(wide, axis, 0, frames, cut))
        sg.replace_uses(old, cut)
    else:
        conv = [op for op in sg.operators if op.type == "CONV_2D"][1]
        w = conv.inputs[1]
        data = w.data.copy()
        data.flat[0] *= 1.01
        w.buffer = Buffer(data.tobytes())
    bad = tmp_path / "bad.tflite"
    xstream.save(model, bad)
    return zoo_model(name), bad


@pytest.mark.parametrize("what", ["state one frame short", "offset one frame off", "weight 1% off"])
def test_float_tolerance_still_fails_a_broken_stream(what, tmp_path):
    original, bad = _float_tamper(tmp_path, what)
    r = _invoke("verify", original, bad, "--json")
    assert r.exit_code == 1, (what, r.output)
    res = json.loads(r.stdout)
    assert res["equal"] is False and res["max_rel_error"] > res["tolerance"]["rel"]


# ---------------------------------------------------------------------------------------------------------
# CLI hygiene


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_output_mode_follows_the_umask(tmp_path):
    for umask, want in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            out = tmp_path / f"o{umask:o}.tflite"
            _convert("ds_cnn_kws_int8", out)
        finally:
            os.umask(old)
        assert _mode(out) == want, (oct(umask), oct(_mode(out)))


def test_force_keeps_the_mode_and_the_symlink(tmp_path):
    src = tmp_path / "in.tflite"
    src.write_bytes(zoo_model("ds_cnn_kws_int8").read_bytes())
    os.chmod(src, 0o640)
    assert _invoke("convert", src, src, "--force").exit_code == 0
    assert _mode(src) == 0o640 and xstream.stream_info(xstream.load(src))["hop"] == 4
    target = tmp_path / "target.tflite"
    target.write_bytes(b"old")
    os.chmod(target, 0o604)
    link = tmp_path / "link.tflite"
    link.symlink_to(target.name)
    _convert("ds_cnn_kws_int8", link)
    assert link.is_symlink() and os.readlink(link) == target.name
    assert _mode(target) == 0o604 and xstream.stream_info(xstream.load(target))["contract"] == "window-exact"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".xstream-")] == []


def test_broken_pipe_ends_quietly():
    cmd = f"set -o pipefail; {sys.executable} -m xstream inspect {zoo_model('ds_cnn_kws_int8')} --stream | head -1"
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.stdout.count("\n") == 1
    assert p.stderr == "", p.stderr
    assert p.returncode in (0, 141)


def test_debug_after_the_command():
    r = _invoke("inspect", zoo_model("ds_cnn_kws_int8"), "--debug")
    assert r.exit_code == 0, r.output
    r = _invoke("inspect", "missing.tflite", "--debug")
    assert r.exit_code == 2 and "Traceback" in r.stderr and "xstream: error: missing.tflite" in r.stderr


@pytest.mark.parametrize("hop", ["0", "-4"])
def test_hop_must_be_positive(hop, tmp_path):
    r = _invoke("convert", zoo_model("ds_cnn_kws_int8"), tmp_path / "o.tflite", "--hop", hop)
    assert r.exit_code == 2 and r.stderr.strip() == f"xstream: error: --hop {hop}: the hop must be positive " \
                                                    "(input frames per step)"


def test_target_note_when_state_overrides(tmp_path):
    r = _invoke("convert", zoo_model("ds_cnn_kws_int8"), tmp_path / "o.tflite", "--target", "tflm", "--state",
                "variable", "--json")
    note = json.loads(r.stdout)["target_note"]
    assert note.startswith("--state variable instead of the target's default ring-buffer") and "RING_BUFFER" not in note
    r = _invoke("convert", zoo_model("ds_cnn_kws_int8"), tmp_path / "o.tflite", "--target", "tflm", "--json")
    assert "RING_BUFFER kernel" in json.loads(r.stdout)["target_note"]


def _head_only_model():
    """[1,10,3] -> MEAN over time -> FULLY_CONNECTED: nothing slides, the head reads the whole window. (With a
    flatten before the FULLY_CONNECTED instead, the stream does save RAM: it drops the flatten's copy.)"""
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    return g.model(g.fc(g.reduce("MEAN", x, [1]), 4))


def test_streamed_none_is_said_in_words(tmp_path):
    src = tmp_path / "head.tflite"
    xstream.save(_head_only_model(), src)
    r = _invoke("convert", src, tmp_path / "o.tflite")
    assert r.exit_code == 0, r.output
    assert "streamed  none (" in r.stdout and "op(s): \n" not in r.stdout


def test_no_gain_is_a_note_on_stderr_and_in_json(tmp_path):
    src = tmp_path / "head.tflite"
    xstream.save(_head_only_model(), src)
    r = _invoke("convert", src, tmp_path / "o.tflite", "--json")
    g = json.loads(r.stdout)["no_gain"]
    assert g is not None and set(g["nothing"]) == {"ram", "macs"}
    assert r.stderr.startswith("xstream: note: streaming gains nothing here: RAM ") and r.stderr.count("\n") == 1
    r = _invoke("convert", zoo_model("ds_cnn_kws_int8"), tmp_path / "o2.tflite", "--json")
    assert json.loads(r.stdout)["no_gain"] is None and r.stderr == ""
    r = _invoke("inspect", src, "--stream")
    assert "note: streaming gains nothing here:" in r.stdout


def test_inspect_lists_every_subgraph(tmp_path):
    out = tmp_path / "v.tflite"
    _convert("ds_cnn_kws_int8", out, "--state", "variable")
    d = json.loads(_invoke("inspect", out, "--json").stdout)
    (sub,) = d["subgraph_operators"]
    assert sub["index"] == 1 and {o["type"] for o in sub["operators"]} == {"VAR_HANDLE", "ASSIGN_VARIABLE"}
    text = _invoke("inspect", out).stdout
    assert f"subgraph 1 {sub['name']!r}:" in text and text.count("ASSIGN_VARIABLE") >= 8


def test_inspect_warns_on_placeholder_shapes(tmp_path):
    g = GraphBuilder()
    x = g.input((1, 1, 3), signature=(1, -1, 3))  # a dynamic time dimension, stored as 1
    src = tmp_path / "dyn.tflite"
    xstream.save(g.model(g.op("RELU", [x], (1, 1, 3))), src)
    r = _invoke("inspect", src)
    assert r.exit_code == 0
    assert "warning: input 'frames' has dynamic dimension(s) (shape_signature [1, -1, 3])" in r.stdout
    assert json.loads(_invoke("inspect", src, "--json").stdout)["warnings"]
    # a dynamic batch alone is no placeholder problem
    assert json.loads(_invoke("inspect", zoo_model("ds_cnn_kws_dynbatch_int8"), "--json").stdout)["warnings"] == []


def _external_buffers_file(model, monkeypatch) -> bytes:
    """`model` serialized with every non-empty buffer stored after the flatbuffer (Buffer.offset/size), as
    ai-edge-quantizer writes models over 256 KiB."""
    from xstream.tflite import writer
    FbBuffer = writer.FbBuffer
    offsets: dict[int, int] = {}

    def write_buffer(self, buf):
        b = self.b
        FbBuffer.Start(b)
        if buf.data:
            FbBuffer.AddOffset(b, offsets.get(id(buf), 2))
            FbBuffer.AddSize(b, len(buf.data))
        return FbBuffer.End(b)

    monkeypatch.setattr(writer._Writer, "_write_buffer", write_buffer)
    order: list = []
    seen = set()
    for sg in model.subgraphs:
        for t in sg.tensors():
            if t.buffer is not None and t.buffer.data and id(t.buffer) not in seen:
                seen.add(id(t.buffer))
                order.append(t.buffer)
    n = len(xstream.serialize(model))
    pos = -(-n // 16) * 16
    for buf in order:
        offsets[id(buf)] = pos
        pos = -(-(pos + len(buf.data)) // 16) * 16
    head = xstream.serialize(model)
    assert len(head) == n
    tail = bytearray(pos - n)
    for buf in order:
        tail[offsets[id(buf)] - n:offsets[id(buf)] - n + len(buf.data)] = buf.data
    monkeypatch.undo()
    return head + bytes(tail)


def test_verify_notes_an_original_stored_past_the_flatbuffer(tmp_path, monkeypatch):
    model = xstream.load(zoo_model("tdnn_dilated_int8"))
    path = tmp_path / "offsets.tflite"
    path.write_bytes(_external_buffers_file(model, monkeypatch))
    read = xstream.load(path)
    assert read.external_buffers > 0 and xstream.load(zoo_model("tdnn_dilated_int8")).external_buffers == 0
    out = tmp_path / "s.tflite"
    assert _invoke("convert", path, out).exit_code == 0
    assert xstream.load(out).external_buffers == 0  # the stream stores its weights inline
    r = _invoke("verify", path, out)
    assert r.exit_code == 0, r.output
    assert "note: the original stores" in r.stdout and "after the flatbuffer (Buffer.offset" in r.stdout
    assert "note: the original stores" not in _invoke("verify", zoo_model("tdnn_dilated_int8"), out).stdout


def test_harness_build_says_what_it_does(tmp_path, monkeypatch):
    """The first tflm-host run builds the harness (tens of seconds): one progress line, and only then."""
    from xstream.runtimes import tflm_host
    fake = tmp_path / "build.sh"
    fake.write_text("echo 'build.sh: compiling with g++' >&2\necho /bin/true\n")
    monkeypatch.setattr(tflm_host, "KERNELS_DIR", tmp_path)
    monkeypatch.setattr(tflm_host, "_HOST_BINARY", None)
    monkeypatch.delenv("XSTREAM_TFLM_HOST", raising=False)
    import io
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert tflm_host.tflm_host_binary() == "/bin/true"
    assert err.getvalue() == "xstream: building the TFLite Micro host harness (kernels/build.sh, about 40 s, once)\n"
    fake.write_text("echo 'build.sh: up to date' >&2\necho /bin/true\n")
    monkeypatch.setattr(tflm_host, "_HOST_BINARY", None)
    err.truncate(0)
    err.seek(0)
    assert tflm_host.tflm_host_binary() == "/bin/true" and err.getvalue() == ""
