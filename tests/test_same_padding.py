"""Models that pad time on both sides (SAME convs and pools, PAD/MIRROR_PAD around the window), as Keras and
PyTorch export them (models/same): streamed window-exact by edge recompute in every runtime, and by the context
stream on request; each check is shown to fail when the stream is broken the way it could be."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import xstream
from xstream.analysis import edges
from xstream.pipeline import context_reference, convert_with_plan
from xstream.verify import verify

REPO = Path(__file__).resolve().parents[1]
SAME = sorted(p.stem for p in (REPO / "models" / "same").glob("*.tflite"))
INT8 = [n for n in SAME if n.endswith("_int8") and "dynbatch" not in n]


def _load(name: str) -> xstream.Model:
    return xstream.load(REPO / "models" / "same" / f"{name}.tflite")


def test_the_zoo_is_there():
    assert len(SAME) >= 20 and {"mlperf_ds_cnn_int8", "tenet_int8", "accel_gesture_int8", "mobilenetv2_pad_int8",
                                "same_conv1d_k5_int8", "same_strided_int8"} <= set(SAME)


@pytest.mark.parametrize("name", SAME)
def test_converts_by_default_window_exact_in_litert(name):
    model = _load(name)
    c = convert_with_plan(model, "variable")
    assert c.plan.contract == "window-exact" and (c.plan.edges or c.plan.edge_reads)
    r = verify(model, c.model)
    assert r.equal and r.steps_compared > 0, (r.first_mismatch, r.max_abs_error)
    if name.endswith("_int8"):
        assert r.bit_exact


@pytest.mark.parametrize("name", INT8)
def test_window_exact_in_tflite_micro(name, harness):
    model = _load(name)
    r = verify(model, convert_with_plan(model, "variable").model, runtime="tflm", sequences=1)
    assert r.equal and r.bit_exact and r.steps_compared > 0
    r = verify(model, convert_with_plan(model).model, runtime="tflm-host", sequences=1)  # RING_BUFFER kernel
    assert r.equal and r.bit_exact and r.form == "ring-buffer"


@pytest.mark.parametrize("name", INT8)
def test_window_exact_on_the_xcore_host_runtime(name):
    pytest.importorskip("xmos_ai_tools")
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    model = _load(name)
    r = verify(model, convert_with_plan(model, target="xcore").model, runtime="xcore", sequences=1)
    assert r.equal and r.bit_exact


@pytest.mark.parametrize("name", ["mlperf_ds_cnn_float", "tenet_int8", "same_strided_float", "accel_gesture_int8",
                                  "mobilenetv2_pad_int8", "same_conv1d_k5_dynbatch_int8"])
def test_context_stream_equals_its_reference_and_reports_the_edge_effect(name):
    model = _load(name)
    c = convert_with_plan(model, "variable", same_padding="context")
    assert c.plan.contract == "context" and not c.plan.edges
    ctx = c.plan.context
    assert ctx.window == c.plan.window + ctx.before + ctx.after and c.plan.offset <= 0
    r = verify(model, c.model)
    assert r.equal and r.against == "context reference" and r.contract == "context"
    e = r.edge_effect
    assert e["windows"] > 0 and e["max_abs"] >= e["mean_abs"] >= 0
    reference, _ = context_reference(model)
    assert reference.main.inputs[0].shape[1] == ctx.window
    # The context stream costs less per step than the exact one: no edge recompute.
    from xstream.report.measure import measure
    exact = convert_with_plan(model, "variable")
    assert measure(c.model).cost.macs < measure(exact.model).cost.macs


# ---------------------------------------------------------------------------------------------------------
# Broken streams fail


def _fails(model, **convert) -> bool:
    c = convert_with_plan(model, "variable", **convert)
    return not verify(model, c.model, sequences=2).equal


def test_an_edge_region_one_frame_too_small_fails(monkeypatch):
    model = _load("same_conv1d_k5_int8")
    assert not _fails(model)
    real = edges._edges
    monkeypatch.setattr(edges, "_edges", lambda info: (lambda a, b: (a, max(b - 1, 0)))(*real(info)))
    assert _fails(model)
    monkeypatch.setattr(edges, "_edges", lambda info: (lambda a, b: (max(a - 1, 0), b))(*real(info)))
    assert _fails(model)


def test_a_delay_line_one_frame_short_fails(monkeypatch):
    model = _load("tenet_int8")
    assert not _fails(model)
    real = edges.plan_edges

    def short(*args, **kw):
        branches, reads, registered = real(*args, **kw)
        for t, r in registered:
            if r.op is not None and any(b.entry is r.op for b in branches):
                r.lag -= 1  # the delay line hands the left branch a window one frame too new
        return branches, reads, registered

    monkeypatch.setattr("xstream.analysis.time_walk.plan_edges", short)
    assert _fails(model)


def test_a_strided_same_alignment_one_frame_off_fails(monkeypatch):
    """TF puts the smaller half of an odd SAME padding before frame 0: an analysis that put it after would place
    every frame of a stride-2 SAME layer one input frame off."""
    model = _load("mlperf_ds_cnn_float")  # a 10x4 stride-2 SAME first conv: 9 frames of padding
    assert not _fails(model)
    monkeypatch.setattr("xstream.analysis.time_walk.same_split", lambda total: (total - total // 2, total // 2))
    assert _fails(model)


def test_sub_windows_off_the_stride_grid_are_never_used(monkeypatch):
    """The recompute of a stride-2 layer only runs on sub-windows on the stride's grid; forced off it, no
    sub-window fits and the conversion says so instead of streaming wrong frames."""
    monkeypatch.setattr(edges, "aligned", lambda skipped, stride: skipped % stride == 1 % stride)
    with pytest.raises(xstream.XstreamError, match="cannot be recomputed from a sub-window"):
        convert_with_plan(_load("mlperf_ds_cnn_int8"), "variable")


def test_a_context_stream_verified_against_the_original_fails():
    model = _load("tenet_float")
    c = convert_with_plan(model, "variable", same_padding="context")
    assert verify(model, c.model).equal  # against its reference
    r = verify(model, c.model, against="original")
    assert not r.equal and r.max_abs_error > 1e-3


def test_the_cli_writes_the_reference_and_verify_finds_the_context(tmp_path):
    from click.testing import CliRunner
    from xstream.cli import main
    src = REPO / "models" / "same" / "same_strided_int8.tflite"
    out, ref = tmp_path / "s.tflite", tmp_path / "ref.tflite"
    r = CliRunner().invoke(main, ["convert", str(src), str(out), "--same-padding", "context", "--reference", str(ref)])
    assert r.exit_code == 0, r.output
    assert "contract  context:" in r.output and "top-1 agreement" in r.output
    assert xstream.load(ref).main.inputs[0].shape[1] > xstream.load(src).main.inputs[0].shape[1]
    r = CliRunner().invoke(main, ["verify", str(src), str(out)])
    assert r.exit_code == 0 and "proven against the context reference" in r.output
    r = CliRunner().invoke(main, ["verify", str(src), str(out), "--against", "original"])
    assert r.exit_code == 1
    r = CliRunner().invoke(main, ["convert", str(src), str(out), "--reference", str(ref)])
    assert r.exit_code == 2 and "--reference goes with --same-padding context" in r.output
