"""The tidy passes that make a stream's copies cheaper in TFLite Micro: frame slices become GATHERs
(passes/gather_frames.py), and the flatten before a FULLY_CONNECTED goes (passes/drop_flatten_before_fc.py).
Each is shown to change what it should, leave alone what it must, and compute the same values in LiteRT and
TFLite Micro."""

from __future__ import annotations

import numpy as np
import pytest
from builders import GraphBuilder

import xstream
from xstream.passes.drop_flatten_before_fc import drop_flatten_before_fc
from xstream.passes.gather_frames import frame_run, gather_frames
from xstream.pipeline import convert_with_plan
from xstream.runtimes import open_runner

RUNTIMES = ["litert", "tflm"]


def _types(model) -> list[str]:
    return [op.type for op in model.main.operators]


def _same_outputs(a, b, runtime: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = [rng.standard_normal(t.shape).astype(np.float32) for t in a.main.inputs]
    ra, rb = open_runner(xstream.serialize(a), runtime), open_runner(xstream.serialize(b), runtime)
    for u, v in zip(ra(x), rb(x)):
        assert np.array_equal(u, v)


def _slice(g: GraphBuilder, x, begin, end, strides=None, shape=None, **masks):
    strides = strides or [1] * len(begin)
    if shape is None:
        shape = [min(e if e > 0 else d + e, d) - (b if b >= 0 else d + b) for b, e, d in zip(begin, end, x.shape)]
    return g.op("STRIDED_SLICE", [x, g.ints(begin), g.ints(end), g.ints(strides)], shape, dict(masks),
                "StridedSliceOptions")


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("axis,begin,end", [(1, 2, 7), (1, 0, 1), (1, 6, 8), (2, 1, 3), (3, 0, 4)])
def test_a_run_of_frames_becomes_a_gather(axis, begin, end, runtime):
    g = GraphBuilder()
    x = g.input((1, 8, 3, 5))
    lo, hi = [0, 0, 0, 0], list(x.shape)
    lo[axis], hi[axis] = begin, end
    m = g.model(_slice(g, x, lo, hi))
    out = gather_frames(m).model
    assert _types(out) == ["GATHER"] and _types(m) == ["STRIDED_SLICE"]  # the input model is untouched
    op = out.main.operators[0]
    assert op.options["axis"] == axis and op.inputs[1].data.tolist() == list(range(begin, end))
    _same_outputs(m, out, runtime)


def test_negative_bounds_and_masks_are_read_as_the_runtime_does():
    g = GraphBuilder()
    x = g.input((1, 8, 1, 4))
    m = g.model(_slice(g, x, [0, -3, 5, 0], [0, 0, 0, 4], shape=[1, 3, 1, 4], begin_mask=0b0101, end_mask=0b0111))
    assert frame_run(m.main.operators[0]) == (1, 5, 8)
    out = gather_frames(m).model
    assert out.main.operators[0].inputs[1].data.tolist() == [5, 6, 7]
    _same_outputs(m, out, "litert")


@pytest.mark.parametrize("case", ["step 2", "two axes", "shrink", "int16", "int32"])
def test_other_slices_stay(case):
    g = GraphBuilder()
    dtype = {"int16": "int16", "int32": "int32"}.get(case, "float32")
    x = g.input((1, 8, 2, 4), dtype=dtype)
    if case == "step 2":
        y = _slice(g, x, [0, 0, 0, 0], [1, 8, 2, 4], [1, 2, 1, 1], shape=[1, 4, 2, 4])
    elif case == "two axes":
        y = _slice(g, x, [0, 2, 1, 0], [1, 6, 2, 4])
    elif case == "shrink":
        y = _slice(g, x, [0, 3, 0, 0], [1, 4, 2, 4], shape=[1, 2, 4], shrink_axis_mask=0b10)
    else:  # TFLite Micro's GATHER copies int8 and float32 only
        y = _slice(g, x, [0, 2, 0, 0], [1, 6, 2, 4])
    y.dtype = dtype
    m = g.model(y)
    r = gather_frames(m)
    assert not r.modified and _types(r.model) == ["STRIDED_SLICE"]


def _flatten_head(g: GraphBuilder, x, keep_num_dims: bool = False):
    flat = g.reshape(x, (1, int(np.prod(x.shape))))
    y = g.fc(flat, 3)
    g.ops[-1].options["keep_num_dims"] = keep_num_dims
    return flat, y


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_flatten_before_a_fully_connected_goes(runtime):
    g = GraphBuilder()
    x = g.input((1, 6, 1, 4))
    _, y = _flatten_head(g, g.conv(x, 3, 4, axis=1))
    m = g.model(y)
    out = drop_flatten_before_fc(m).model
    assert _types(m) == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"] and _types(out) == ["CONV_2D", "FULLY_CONNECTED"]
    assert out.main.operators[1].inputs[0] is out.main.operators[0].outputs[0]
    _same_outputs(m, out, runtime)


@pytest.mark.parametrize("case", ["keep_num_dims", "another reader", "an output", "not 2-D"])
def test_a_flatten_that_is_needed_stays(case):
    g = GraphBuilder()
    x = g.input((1, 6, 1, 4))
    h = g.conv(x, 3, 4, axis=1)
    if case == "not 2-D":
        flat = g.reshape(h, (1, 4, 4))
        y = g.fc(flat, 3)
        outputs = [y]
    else:
        flat, y = _flatten_head(g, h, keep_num_dims=case == "keep_num_dims")
        outputs = [y]
        if case == "another reader":
            outputs.append(g.reduce("MEAN", flat, [1]))
        elif case == "an output":
            outputs.append(flat)
    m = g.model(outputs)
    r = drop_flatten_before_fc(m)
    assert not r.modified and "RESHAPE" in _types(r.model)


def test_targets_keep_what_their_toolchain_needs():
    """ESPHome's op resolver has no GATHER, LiteRT's XNNPACK delegate does not take it; xformer wants a
    FULLY_CONNECTED's input flat. Without a target the
    MixedNet's next states are GATHERs and its head reads the window unflattened."""
    from helpers import MODELS
    m = xstream.load(MODELS / "mww" / "mixednet_int8.tflite")
    plain = _types(convert_with_plan(m, state="variable").model)
    assert "GATHER" in plain and "STRIDED_SLICE" not in plain and plain.count("RESHAPE") == 1
    for target in ("esphome", "litert"):  # no GATHER in ESPHome's resolver; XNNPACK delegates STRIDED_SLICE only
        kept = _types(convert_with_plan(m, target=target).model)
        assert "GATHER" not in kept and "STRIDED_SLICE" in kept, target
    xcore = _types(convert_with_plan(m, target="xcore").model)
    assert "GATHER" in xcore and xcore.index("RESHAPE", 1) < xcore.index("FULLY_CONNECTED")


# -- reshapes around per-frame ops (passes/sink_reshapes.py + drop_identity_ops) ---------------------------------

def _tidy(m):
    from xstream.passes.drop_identity_ops import drop_identity_ops
    from xstream.passes.sink_reshapes import sink_reshapes
    r = sink_reshapes(m)
    return r.modified, drop_identity_ops(r.model).model


def _conv1d_pair(g: GraphBuilder, x):
    """Two Keras-style Conv1D outputs, each squeezed from [1, 1, T, C] to [1, T, C]."""
    a = g.reshape(g.conv(x, 3, 4), (1, 4, 4))
    b = g.reshape(g.conv(x, 3, 4), (1, 4, 4))
    return a, b


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("merge", ["ADD", "CONCATENATION", "RELU"])
def test_squeezes_and_expand_around_a_per_frame_op_go(merge, runtime):
    g = GraphBuilder()
    x = g.input((1, 1, 6, 3))
    a, b = _conv1d_pair(g, x)
    if merge == "ADD":
        y = g.op("ADD", [a, b], (1, 4, 4), {"fused_activation_function": 0}, "AddOptions")
    elif merge == "CONCATENATION":
        y = g.op("CONCATENATION", [a, b], (1, 4, 8), {"axis": -1, "fused_activation_function": 0},
                 "ConcatenationOptions")
    else:
        y = g.op("RELU", [a], (1, 4, 4))
    z = g.conv(g.reshape(y, (1, 1, 4, y.shape[-1])), 3, 2)  # the next Conv1D's expand
    m = g.model(z)
    changed, out = _tidy(m)
    assert changed and "RESHAPE" not in _types(out), _types(out)
    _same_outputs(m, out, runtime)


def test_a_shared_squeeze_goes_when_its_other_readers_expand_it_back():
    """WaveNet: a Conv1D's squeezed output feeds the residual ADD and the next Conv1D's expand."""
    g = GraphBuilder()
    x = g.input((1, 1, 6, 3))
    a, b = _conv1d_pair(g, x)
    y = g.op("ADD", [a, b], (1, 4, 4), {"fused_activation_function": 0}, "AddOptions")
    z = g.conv(g.reshape(a, (1, 1, 4, 4)), 3, 2)  # a's other reader: expanded back
    m = g.model([g.reshape(y, (1, 1, 4, 4)), z])
    changed, out = _tidy(m)
    assert changed and _types(out).count("RESHAPE") == 1, _types(out)  # the output's, which the model names
    _same_outputs(m, out, "litert")


@pytest.mark.parametrize("case", ["constant over a moved axis", "concat on time", "not unit axes", "no gain",
                                  "per-axis quantized"])
def test_reshapes_that_do_not_cancel_stay(case):
    """Each graph would lose ops if the reshapes sank, except where the result would differ (or nothing is
    gained): time on axis 1 here, squeezed from [1, 4, 1, 4] (the unit axis inside, not leading)."""
    g = GraphBuilder()
    x = g.input((1, 6, 1, 3))
    a = g.reshape(g.conv(x, 3, 4, axis=1), (1, 4, 4))
    b = g.reshape(g.conv(x, 3, 4, axis=1), (1, 4, 4))
    back = (1, 4, 1, 4)
    if case == "constant over a moved axis":  # [4, 4] is (T, C) of [1, 4, 4] but (1, C) of [1, 4, 1, 4]
        y = g.op("ADD", [a, g.const(np.arange(16, dtype=np.float32).reshape(4, 4))], (1, 4, 4),
                 {"fused_activation_function": 0}, "AddOptions")
    elif case == "concat on time":
        y = g.op("CONCATENATION", [a, b], (1, 8, 4), {"axis": 1, "fused_activation_function": 0},
                 "ConcatenationOptions")
        back = (1, 8, 1, 4)
    elif case == "not unit axes":
        a2, b2 = g.reshape(a, (1, 16)), g.reshape(b, (1, 16))
        y = g.op("ADD", [a2, b2], (1, 16), {"fused_activation_function": 0}, "AddOptions")
    elif case == "per-axis quantized":  # its quantization names axis 2, which the rank change would move
        from xstream.ir import Quantization
        y = g.op("ADD", [a, b], (1, 4, 4), {"fused_activation_function": 0}, "AddOptions")
        y.quantization = Quantization(scale=np.full(4, 0.1, np.float32), zero_point=np.zeros(4, np.int64),
                                      quantized_dimension=2)
    else:  # one squeeze in, and the op's result is a model output: sinking would only move the reshape
        y = g.op("RELU", [a], (1, 4, 4))
    m = g.model(y if case == "no gain" else g.conv(g.reshape(y, back), 3, 2, axis=1))
    from xstream.passes.sink_reshapes import sink_reshapes
    assert not sink_reshapes(m).modified


# -- a head's buffer before the squeeze (passes/unsqueeze_head_windows.py) -------------------------------------

def _gap_head_model(reduce: str = "MEAN", keep_dims: bool = False, axes=(1,), also_output: bool = False,
                    hop_frames: int = 12):
    """Keras' Conv1D + GlobalAveragePooling1D/GlobalMaxPooling1D as TF writes it: [1, T, C] -> expand -> conv
    (time on W) -> squeeze -> reduce over time -> dense."""
    g = GraphBuilder(seed=3)
    x = g.input((1, hop_frames, 3))
    h = g.conv(g.reshape(x, (1, 1, hop_frames, 3)), 3, 4)
    s = g.reshape(h, (1, hop_frames - 2, 4))
    r = g.reduce(reduce, s, list(axes), keep_dims=keep_dims)
    y = g.fc(r if not keep_dims else g.reshape(r, (1, 4)), 2)
    return g.model([y, s] if also_output else [y])


@pytest.mark.parametrize("reduce", ["MEAN", "REDUCE_MAX"])
@pytest.mark.parametrize("hop", [1, 2])
@pytest.mark.parametrize("state", ["ring-buffer", "variable"])
def test_a_global_pool_head_buffers_the_conv_output(reduce, hop, state):
    m = _gap_head_model(reduce)
    c = convert_with_plan(m, state=state, hop=hop).model
    head = next(op for op in c.main.operators if op.type == reduce)
    assert len(head.inputs[0].shape) == 4 and sorted(head.inputs[1].data.tolist()) == [1, 2]
    assert _types(c).count("RESHAPE") == 1, _types(c)  # the input's expand alone
    for runtime in (["tflm-host"] if state == "ring-buffer" else ["litert", "tflm"]):
        r = xstream.verify(m, c, runtime=runtime, steps=40, sequences=2)
        assert r.equal, (runtime, r)


@pytest.mark.parametrize("case", ["keep_dims", "time and channels", "squeezed frames read elsewhere"])
def test_a_head_that_needs_the_squeeze_keeps_it(case):
    m = {"keep_dims": lambda: _gap_head_model(keep_dims=True),
         "time and channels": lambda: _gap_head_model(axes=(1, 2)),
         "squeezed frames read elsewhere": lambda: _gap_head_model(also_output=True)}[case]()
    c = convert_with_plan(m, state="ring-buffer").model
    heads = [op for op in c.main.operators if op.type == "MEAN"]
    assert heads and all(len(op.inputs[0].shape) == 3 for op in heads)


# -- a delay line that feeds a window (passes/merge_delay_lines.py) --------------------------------------------

def _delay_then_window(stride: int, dtype: str = "float32"):
    """x [1, 2, 1, 3] -> RING_BUFFER (3 frames) -> its oldest 2 (a 1-frame delay) -> RESHAPE -> RING_BUFFER (F)
    -> CONV_2D k3 on time (VALID, `stride`): what a stream builds for a causal model's delayed input."""
    from types import SimpleNamespace

    from xstream import make
    from xstream.analysis.plan import Slide
    from xstream.forms import ring_buffer
    g = GraphBuilder(seed=5)
    x = g.input((1, 2, 1, 3))
    w1 = make.like(x, "w1", (1, 3, 1, 3))
    d = make.like(x, "d", (1, 2, 1, 3))
    g.ops += [ring_buffer.make_op(x, w1, 1, 3), make.gather_frames(w1, 1, 0, 2, d)]
    e = g.reshape(d, (1, 2, 1, 3))
    frames = 3 if stride == 2 else 4
    w2 = make.like(x, "w2", (1, frames, 1, 3))
    g.ops.append(ring_buffer.make_op(e, w2, 1, frames))
    y = g.conv(w2, 3, 4, axis=1, stride=stride)
    m = g.model(y)
    plan = SimpleNamespace(slides=[Slide(g.ops[-1], 0, 3, stride, 1)], states=[])
    return m, plan


def _steps(data: bytes, xs) -> list:
    r = open_runner(data, "tflm-host")
    return [r([x])[0] for x in xs]


@pytest.mark.parametrize("stride,view", [(2, False), (1, True)])
def test_a_delay_line_joins_the_window_it_feeds(stride, view):
    from xstream.passes.merge_delay_lines import merge_delay_lines
    m, plan = _delay_then_window(stride)
    before = xstream.serialize(m)
    assert merge_delay_lines.run(m, plan)
    kinds = [op.custom_code or op.type for op in m.main.operators]
    assert kinds.count("RING_BUFFER") == 1 and kinds.count("GATHER") == int(view), kinds
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 2, 1, 3)).astype(np.float32) for _ in range(8)]
    for a, b in zip(_steps(before, xs), _steps(xstream.serialize(m), xs)):
        assert np.array_equal(a, b)


# -- pointwise convs as FULLY_CONNECTED (passes/pointwise_convs_as_fc.py, --target tflm, every form) ---------------------

def _pointwise_model(dtype: str, act, time_on: str, seed: int, first=None, pointwise=None):
    from builders import conv1d_model
    first = first or {"kind": "conv", "kernel": 3, "filters": 8}
    pointwise = pointwise or {"kind": "conv", "kernel": 1, "filters": 12, "act": act}
    return conv1d_model(10, 5, [first, pointwise], head="none", dtype=dtype, seed=seed, time_on=time_on)


def _inputs(model, rng):
    return [rng.integers(-128, 128, t.shape).astype(np.int8) if t.dtype == "int8"
            else rng.standard_normal(t.shape).astype(np.float32) for t in model.main.inputs]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("dtype", ["int8", "float32"])
@pytest.mark.parametrize("act,time_on", [(None, "h"), ("relu", "w"), ("relu6", "h")])
def test_a_pointwise_conv_becomes_a_fully_connected(dtype, act, time_on, runtime):
    """Per-channel int8 weights included: the same values in LiteRT and in TFLite Micro (tflite-micro)."""
    from xstream.passes.pointwise_convs_as_fc import pointwise_convs_as_fc
    m = _pointwise_model(dtype, act, time_on, seed=3)
    r = pointwise_convs_as_fc(m)
    assert r.modified and _types(r.model).count("FULLY_CONNECTED") == 1 and _types(m).count("CONV_2D") == 2
    fc = next(op for op in r.model.main.operators if op.type == "FULLY_CONNECTED")
    conv = [op for op in m.main.operators if op.type == "CONV_2D"][-1]
    assert fc.options["keep_num_dims"] and fc.outputs[0].shape == conv.outputs[0].shape
    if dtype == "int8":
        assert len(fc.inputs[1].quantization.scale) == 12  # per-channel weights, kept as they were
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = _inputs(m, rng)
        a = open_runner(xstream.serialize(m), runtime)(x)[0]
        b = open_runner(xstream.serialize(r.model), runtime)(x)[0]
        assert len(np.unique(a)) > 10  # outputs that vary: equality says something
        if dtype == "int8":
            assert np.array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["kernel3", "stride2", "grouped"])
def test_other_convs_stay_convs(case):
    from xstream.passes.pointwise_convs_as_fc import pointwise_convs_as_fc
    pointwise = {"kernel3": {"kind": "conv", "kernel": 3, "filters": 12},
                 "stride2": {"kind": "conv", "kernel": 1, "stride": 2, "filters": 12},
                 "grouped": {"kind": "conv", "kernel": 1, "filters": 12}}[case]
    m = _pointwise_model("int8", None, "h", seed=4, pointwise=pointwise)
    if case == "grouped":  # weights read 4 of the 8 input channels: a grouped conv, not one dot product
        conv = m.main.operators[-1]
        w = conv.inputs[1]
        w.shape = (w.shape[0], 1, 1, 4)
        w.buffer.data = bytes(np.zeros(w.shape, np.int8))
    r = pointwise_convs_as_fc(m)
    assert not r.modified and "FULLY_CONNECTED" not in _types(r.model)


def test_only_tflm_gets_fully_connected():
    """--target tflm, in every form; the other targets and no target keep the convs."""
    from helpers import MODELS
    m = xstream.load(MODELS / "mww" / "mixednet_int8.tflite")
    assert _types(m).count("CONV_2D") == 5

    def fcs(**kw):
        return _types(convert_with_plan(m, **kw).model).count("FULLY_CONNECTED")
    heads = fcs(state="variable")
    assert fcs(target="tflm", state="variable") == heads + 4 == fcs(target="tflm", state="circular-buffer") \
        == fcs(target="tflm")
    assert fcs() == heads == fcs(target="litert") == fcs(target="esphome") == fcs(target="xcore")


def test_the_report_names_the_head_that_reads_the_window():
    """With the flatten gone its FULLY_CONNECTED reads the window, and convert says so; xcore keeps the flatten."""
    from helpers import MODELS

    from xstream.report.conversion import _heads
    m = xstream.load(MODELS / "ds_cnn_kws_int8.tflite")
    assert _heads(convert_with_plan(m)) == ["FULLY_CONNECTED"]
    assert _heads(convert_with_plan(m, target="xcore")) == ["RESHAPE"]
