"""Every refusal of the analysis: the right exception, and a message naming the operator (index and type).

Each model is built in memory (tests/builders.py) and, unless the test says why not, first shown to run in
LiteRT, so a refusal is about streaming, not about a broken graph.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import xstream
from xstream.cli import main
from xstream.errors import StreamingRefused, UsageError
from xstream.pipeline import convert_with_plan
from xstream.verify import verify
from builders import GraphBuilder, assert_runs, conv1d_model
from helpers import REPO, zoo_model

FORMS = ("ring-buffer", "variable", "external")


def _runs(model) -> None:
    """The model is a valid TFLite graph: LiteRT allocates and invokes it on zeros, output shapes as built."""
    assert_runs(model)


def _refused(model, fragment: str, op: tuple[int, str] | None = None, exc=StreamingRefused, **kw) -> str:
    """convert() raises `exc` in every state form, with `fragment` (and "operator i (TYPE)") in the message."""
    messages = set()
    for form in FORMS:
        with pytest.raises(exc) as info:
            convert_with_plan(model, form, **kw)
        messages.add(str(info.value))
    assert len(messages) == 1, messages  # the refusal does not depend on the state form
    msg = messages.pop()
    assert fragment in msg, msg
    if op is not None:
        assert msg.startswith(f"operator {op[0]} ({op[1]}): "), msg
    assert "\n" not in msg
    return msg


def _pad_model(pad_type: str, left: int, right: int, fill=None, T: int = 12, C: int = 3, options=None,
               options_type="PadOptions"):
    """[1,T,C] -> PAD* on time -> RESHAPE [1,1,T',C] -> CONV_2D k3 -> MEAN -> output."""
    g = GraphBuilder()
    x = g.input((1, T, C))
    ins = [x, g.ints([[0, 0], [left, right], [0, 0]])]
    if fill is not None:
        ins.append(g.const(np.float32(fill)))
    L = T + left + right
    p = g.op(pad_type, ins, (1, L, C), options or {}, options_type)
    c = g.conv(g.reshape(p, (1, 1, L, C)), 3)
    return g.model(g.reduce("MEAN", c, [1, 2]))


# ---------------------------------------------------------------------------------------------------------
# Padding on time


@pytest.mark.parametrize("name", ["same_padding_float", "same_padding_int8", "same_padding_dynbatch_float",
                                  "same_padding_dynbatch_int8"])
def test_zoo_same_padding_streams_exactly(name):
    """SAME on time is streamed window-exact by edge recompute (it used to be refused)."""
    model = xstream.load(zoo_model(name))
    c = convert_with_plan(model, "variable")
    assert c.plan.contract == "window-exact" and c.plan.edges and c.plan.offset <= 0
    r = verify(model, c.model)
    assert r.equal and (r.bit_exact or "float" in name)


@pytest.mark.parametrize("time_on", ["h", "w"])
def test_same_padding_on_time_streams_with_edges(time_on):
    model = conv1d_model(16, 2, [dict(kind="conv", kernel=3, padding="same")], "mean", time_on=time_on)
    _runs(model)
    c = convert_with_plan(model, "external")
    assert {b.side for b in c.plan.edges} == {"left", "right"}
    assert verify(model, c.model).equal


def test_same_padding_in_second_layer_only_that_layer_has_edges():
    model = conv1d_model(16, 2, [dict(kind="conv", kernel=3), dict(kind="avgpool", kernel=2, stride=2,
                                                                   padding="same"),
                                 dict(kind="depthwise", kernel=3, padding="same")], "mean", time_on="h")
    _runs(model)
    # The pool (14 frames, kernel 2, stride 2) pads nothing under SAME; the depthwise conv does.
    c = convert_with_plan(model, "external")
    padded = [s.op.type for s in c.plan.slides if s.pad_before or s.pad_after]
    assert padded == ["DEPTHWISE_CONV_2D"]
    assert verify(model, c.model).equal


def test_same_padding_that_pads_nothing_on_time_is_accepted():
    """SAME with kernel 1, stride 1 (or kernel 2, stride 3 on 5 frames) adds no frame: it is VALID."""
    for layers, T in (([dict(kind="conv", kernel=1, padding="same"), dict(kind="conv", kernel=3)], 10),
                      ([dict(kind="maxpool", kernel=2, stride=3, padding="same")], 5)):
        model = conv1d_model(T, 2, layers, "mean", time_on="w")
        c = convert_with_plan(model, "external")
        assert verify(model, c.model).equal


@pytest.mark.parametrize("op,left,right,extra", [
    ("PAD", 0, 2, {}), ("PAD", 1, 1, {}), ("PAD", 3, 1, {}),
    ("MIRROR_PAD", 2, 0, {"options": {"mode": 0}, "options_type": "MirrorPadOptions"}),
    ("MIRROR_PAD", 1, 2, {"options": {"mode": 1}, "options_type": "MirrorPadOptions"})])
def test_padding_after_the_window_streams_with_edges(op, left, right, extra):
    """A PAD after the window, or any MIRROR_PAD, makes window edges; the stream recomputes them exactly."""
    model = _pad_model(op, left, right, **extra)
    _runs(model)
    c = convert_with_plan(model, "external")
    assert c.plan.contract == "window-exact" and c.plan.edge_pads
    assert verify(model, c.model).equal


def test_padv2_with_nonzero_value_refused():
    model = _pad_model("PADV2", 2, 0, fill=1.0, options_type="PadV2Options")
    _runs(model)
    _refused(model, "not the zero point 0", (0, "PADV2"))


def test_padv2_with_fractional_value_refused():
    model = _pad_model("PADV2", 2, 0, fill=0.5, options_type="PadV2Options")
    _runs(model)
    _refused(model, "not the zero point", (0, "PADV2"))


def test_padv2_with_zero_value_is_a_causal_pad():
    model = _pad_model("PADV2", 2, 0, fill=0.0, options_type="PadV2Options")
    c = convert_with_plan(model, "external")
    assert c.plan.contract == "causal"
    assert verify(model, c.model).equal


def test_pad_that_requantizes_refused():
    model = conv1d_model(12, 2, [dict(kind="conv", kernel=3, padding="causal")], "mean", "int8", time_on="h")
    pad = model.main.operators[0]
    assert pad.type == "PAD"
    pad.outputs[0].quantization.scale = pad.outputs[0].quantization.scale * 2
    _runs(model)
    _refused(model, "requantizes while padding time", (0, "PAD"))


def test_pad_with_paddings_computed_at_run_time_refused():
    g = GraphBuilder()
    x = g.input((1, 12, 3))
    rows = g.op("ADD", [g.ints([[0, 0], [1, 0], [0, 0]]), g.ints([[0, 0], [1, 0], [0, 0]])], (3, 2),
                {"fused_activation_function": 0}, "AddOptions", dtype="int32")
    p = g.op("PAD", [x, rows], (1, 14, 3), {}, "PadOptions")
    c = g.conv(g.reshape(p, (1, 1, 14, 3)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "paddings computed at run time", (1, "PAD"))


def test_causal_padding_reaching_a_non_sliding_op_refused():
    g = GraphBuilder()
    x = g.input((1, 12, 3))
    p = g.op("PAD", [x, g.ints([[0, 0], [2, 0], [0, 0]])], (1, 14, 3), {}, "PadOptions")
    r = g.op("RELU", [p], (1, 14, 3))
    c = g.conv(g.reshape(r, (1, 1, 14, 3)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "causal padding on time reaches this op before a sliding op", (1, "RELU"))


def test_flatten_of_causally_padded_tensor_refused():
    g = GraphBuilder()
    x = g.input((1, 12, 3))
    p = g.op("PAD", [x, g.ints([[0, 0], [2, 0], [0, 0]])], (1, 14, 3), {}, "PadOptions")
    model = g.model(g.fc(g.reshape(p, (1, 42)), 4))
    _runs(model)
    _refused(model, "flattens a causally padded tensor", (1, "RESHAPE"))


@pytest.mark.parametrize("time_on", ["h", "w"])
def test_causal_padding_after_a_valid_op_refused(time_on):
    model = conv1d_model(20, 2, [dict(kind="conv", kernel=3), dict(kind="conv", kernel=3, padding="causal")],
                         "mean", time_on=time_on)
    _runs(model)
    index = 1 if time_on == "h" else 2  # [RESHAPE] CONV_2D PAD CONV_2D
    _refused(model, "causal padding after a strided or valid op", (index, "PAD"))


# ---------------------------------------------------------------------------------------------------------
# Mixing time


def test_concatenation_along_time_refused():
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    cat = g.op("CONCATENATION", [x, x], (1, 20, 3), {"axis": 1, "fused_activation_function": 0},
               "ConcatenationOptions")
    c = g.conv(g.reshape(cat, (1, 1, 20, 3)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "concatenates along the time axis", (0, "CONCATENATION"))


def test_concatenation_with_a_constant_refused():
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    cat = g.op("CONCATENATION", [x, g.const(np.ones((1, 10, 1), np.float32))], (1, 10, 4),
               {"axis": 2, "fused_activation_function": 0}, "ConcatenationOptions")
    c = g.conv(g.reshape(cat, (1, 1, 10, 4)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "not computed from the frames", (0, "CONCATENATION"))


def test_positional_encoding_add_refused():
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    pe = g.op("ADD", [x, g.const(np.arange(30, dtype=np.float32).reshape(1, 10, 3))], (1, 10, 3),
              {"fused_activation_function": 0}, "AddOptions")
    c = g.conv(g.reshape(pe, (1, 1, 10, 3)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "varies along time (10 frames) but is not computed from the frames", (0, "ADD"))


def test_per_channel_constant_add_is_accepted():
    """The same ADD with a constant of 1 frame (a bias) is per-frame: it streams."""
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    pe = g.op("ADD", [x, g.const(np.arange(3, dtype=np.float32).reshape(1, 1, 3))], (1, 10, 3),
              {"fused_activation_function": 0}, "AddOptions")
    c = g.conv(g.reshape(pe, (1, 1, 10, 3)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    conv = convert_with_plan(model, "external")
    assert verify(model, conv.model).equal


def test_squeeze_excite_mul_refused():
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    c = g.conv(g.reshape(x, (1, 1, 10, 3)), 3)  # [1,1,8,3]
    squeeze = g.reduce("MEAN", c, [1, 2], keep_dims=True)  # [1,1,1,3]
    excite = g.op("LOGISTIC", [squeeze], (1, 1, 1, 3))
    scaled = g.op("MUL", [c, excite], (1, 1, 8, 3), {"fused_activation_function": 0}, "MulOptions")
    model = g.model(g.reduce("MEAN", scaled, [1, 2]))
    _runs(model)
    _refused(model, "combines a value computed from the whole window with per-frame values", (4, "MUL"))


def test_softmax_over_time_refused():
    g = GraphBuilder()
    x = g.input((1, 3, 10))  # time on the last axis (--time-axis 2)
    s = g.op("SOFTMAX", [x], (1, 3, 10), {"beta": 1.0}, "SoftmaxOptions")
    c = g.conv(g.reshape(s, (1, 1, 3, 10)), 1, axis=2)  # slides nothing; time is the channel axis
    model = g.model(c)
    _runs(model)
    _refused(model, "normalises over the time axis", (0, "SOFTMAX"), time_axis=2)


def test_merge_of_time_on_different_axes_refused():
    g = GraphBuilder()
    x = g.input((1, 8, 8))
    xt = g.op("TRANSPOSE", [x, g.ints([0, 2, 1])], (1, 8, 8), {}, "TransposeOptions")
    s = g.op("ADD", [x, xt], (1, 8, 8), {"fused_activation_function": 0}, "AddOptions")
    c = g.conv(g.reshape(s, (1, 1, 8, 8)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "its inputs carry time on different axes", (1, "ADD"))


def test_merge_of_different_frame_rates_refused():
    g = GraphBuilder()
    x = g.input((1, 8, 2))
    r = g.reshape(x, (1, 1, 8, 2))
    a = g.conv(r, 1, stride=2)  # 4 frames, stride 2
    b = g.conv(r, 5)  # 4 frames, stride 1
    s = g.op("ADD", [a, b], (1, 1, 4, 2), {"fused_activation_function": 0}, "AddOptions")
    model = g.model(g.reduce("MEAN", s, [1, 2]))
    _runs(model)
    _refused(model, "merges branches with different frame rates (strides [1, 2])", (3, "ADD"))


def test_misaligned_branches_get_a_phase_delay_and_stream():
    """Strided branches whose frames end on input frames of different parity: the earlier branch reads its
    input one frame further back, so both produce frame j at the same step (TC-ResNet's shortcut beside a
    centred stride-2 conv)."""
    g = GraphBuilder()
    x = g.input((1, 9, 2))
    r = g.reshape(x, (1, 1, 9, 2))
    a = g.conv(r, 2, stride=2)  # 4 frames ending on input frames 1, 3, 5, 7
    b = g.conv(r, 3, stride=2)  # 4 frames ending on input frames 2, 4, 6, 8
    s = g.op("ADD", [a, b], (1, 1, 4, 2), {"fused_activation_function": 0}, "AddOptions")
    model = g.model(g.reduce("MEAN", s, [1, 2]))
    _runs(model)
    c = convert_with_plan(model, "external")
    assert any(r.lag for st in c.plan.states for r in st.readers if r.op.type == "CONV_2D")
    assert verify(model, c.model).equal


def test_misaligned_branches_with_a_delayed_tensor_read_twice_stream_exactly():
    g = GraphBuilder()
    x = g.input((1, 9, 2))
    r = g.reshape(x, (1, 1, 9, 2))
    a = g.conv(r, 2, stride=2)
    b = g.conv(r, 3, stride=2)
    s = g.op("ADD", [a, b], (1, 1, 4, 2), {"fused_activation_function": 0}, "AddOptions")
    model = g.model([g.reduce("MEAN", s, [1, 2]), g.reduce("MEAN", a, [1, 2])])  # `a` is read twice
    _runs(model)
    c = convert_with_plan(model, "external")  # both heads see `a` one frame later: one offset for both
    assert verify(model, c.model).equal


def test_aligned_branches_get_a_delay_and_stream():
    """The same merge with stride 1 only needs a delay on the older branch. Its frames are already in the buffer
    the conv keeps on `r`: the crop reads them there, so the delay costs no state beyond the minimum."""
    g = GraphBuilder()
    x = g.input((1, 9, 2))
    r = g.reshape(x, (1, 1, 9, 2))
    a = g.conv(r, 3)  # 7 frames, ending on 2..8
    b = g.op("STRIDED_SLICE", [r, g.ints([0, 0, 1, 0]), g.ints([1, 1, 8, 2]), g.ints([1, 1, 1, 1])],
             (1, 1, 7, 2), {}, "StridedSliceOptions")  # frames 1..7: ends one frame earlier
    s = g.op("ADD", [a, b], (1, 1, 7, 2), {"fused_activation_function": 0}, "AddOptions")
    model = g.model(g.reduce("MEAN", s, [1, 2]))
    c = convert_with_plan(model, "external")
    # float32: the conv's 2 frames of r, the MEAN's 6 of s; nothing for the delay
    assert c.plan.state_bytes == c.plan.minimum_state_bytes == 2 * 2 * 4 + 6 * 2 * 4
    [state] = [st for st in c.plan.states if st.tensor.name == r.name]  # (the plan is of a working copy)
    assert {(rd.op.type, rd.extra, rd.lag) for rd in state.readers} == \
        {("CONV_2D", 2, 0), ("STRIDED_SLICE", 0, 1)}
    assert verify(model, c.model).equal


def test_outputs_at_different_offsets_refused():
    g = GraphBuilder()
    x = g.input((1, 9, 2))
    r = g.reshape(x, (1, 1, 9, 2))
    a = g.conv(r, 2, stride=2)  # reads frames 0..7: D = 1
    out_a = g.reduce("MEAN", a, [1, 2])
    out_b = g.reduce("MEAN", r, [1, 2])  # reads all 9: D = 0
    model = g.model([out_a, out_b])
    _runs(model)
    msg = _refused(model, "outputs end on different frames of the window (offsets [0, 1])")
    assert msg.startswith("the model's outputs")


def test_fully_connected_flattening_time_refused():
    g = GraphBuilder()
    x = g.input((1, 6, 2, 3))
    y = g.fc(x, 4)  # FULLY_CONNECTED flattens [1,6,2] into rows: time mixed with another axis
    y.shape = (12, 4)
    c = g.conv(g.reshape(y, (1, 1, 12, 4)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "flattens time with other axes", (0, "FULLY_CONNECTED"))


def test_reduction_axes_computed_at_run_time_refused():
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    axes = g.op("ADD", [g.ints([0]), g.ints([1])], (1,), {"fused_activation_function": 0}, "AddOptions",
                dtype="int32")
    m = g.op("MEAN", [x, axes], (1, 3), {"keep_dims": False}, "ReducerOptions")
    model = g.model(m)
    _runs(model)
    _refused(model, "reduces over axes computed at run time", (1, "MEAN"))


def test_unknown_op_on_time_path_refused():
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    rev = g.op("REVERSE_V2", [x, g.ints([1])], (1, 10, 3))
    c = g.conv(g.reshape(rev, (1, 1, 10, 3)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "REVERSE_V2 on the time path is not known to xstream", (0, "REVERSE_V2"))


def test_split_along_time_refused():
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    a, b = g.op("SPLIT", [g.ints(1), x], (1, 5, 3), {"num_splits": 2}, "SplitOptions", outputs=2)
    s = g.op("ADD", [a, b], (1, 5, 3), {"fused_activation_function": 0}, "AddOptions")
    c = g.conv(g.reshape(s, (1, 1, 5, 3)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "splits along the time axis", (0, "SPLIT"))


def test_gather_along_time_refused():
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    ga = g.op("GATHER", [x, g.ints(list(range(9, -1, -1)))], (1, 10, 3), {"axis": 1, "batch_dims": 0},
              "GatherOptions")
    c = g.conv(g.reshape(ga, (1, 1, 10, 3)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "picks frames [9, 8, 7, 6, 5, 4, 3, 2] along time out of order", (0, "GATHER"))


@pytest.mark.parametrize("case,fragment", [
    ("shrink", "selects a single frame of the time axis"),
    ("step", "takes every 2th frame"),
    ("empty", "slices away every frame"),
])
def test_strided_slice_on_time_refused(case, fragment):
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    r = g.reshape(x, (1, 1, 10, 3))
    if case == "shrink":
        s = g.op("STRIDED_SLICE", [r, g.ints([0, 0, 4, 0]), g.ints([1, 1, 5, 3]), g.ints([1, 1, 1, 1])],
                 (1, 1, 3), {"shrink_axis_mask": 4}, "StridedSliceOptions")
        model = g.model(s)
    else:
        step, end, L = (2, 10, 5) if case == "step" else (1, 4, 0)
        s = g.op("STRIDED_SLICE", [r, g.ints([0, 0, 4, 0]), g.ints([1, 1, end, 3]), g.ints([1, 1, step, 1])],
                 (1, 1, max(L, 3), 3), {}, "StridedSliceOptions")
        model = g.model(g.reduce("MEAN", g.conv(s, 3), [1, 2]))
    if case != "empty":  # an empty slice has no valid static shape to run
        _runs(model)
    _refused(model, fragment, (1, "STRIDED_SLICE"))


def test_conv_sliding_the_channel_axis_refused():
    """Time as the channel axis of a CONV_2D (--time-axis 2 on [1, C, T]) is not a sliding axis."""
    g = GraphBuilder()
    x = g.input((1, 3, 10))
    c = g.conv(g.reshape(x, (1, 1, 3, 10)), 2, axis=2)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "time is on axis 3 of its NHWC input", (1, "CONV_2D"), time_axis=2)


def test_conv_weights_from_frames_refused():
    g = GraphBuilder()
    x = g.input((1, 4, 1, 4))  # time on H, also used as the filter [O=1, 4, 1, 4]
    b = g.const(np.zeros(1, np.float32))
    c = g.op("CONV_2D", [x, x, b], (1, 1, 1, 1), {"padding": 1, "stride_h": 1, "stride_w": 1,
                                                   "dilation_h_factor": 1, "dilation_w_factor": 1,
                                                   "fused_activation_function": 0}, "Conv2DOptions")
    model = g.model(c)
    _refused(model, "its weights are computed from the frames", (0, "CONV_2D"))


def test_conv_with_inconsistent_output_length_refused():
    """A graph whose stored conv output length disagrees with its kernel (not runnable as stored)."""
    model = conv1d_model(12, 2, [dict(kind="conv", kernel=3)], "none", time_on="h")
    conv = model.main.operators[0]
    conv.outputs[0].shape = (1, 9, 1, 2)
    _refused(model, "output has 9 frames, expected 10 for kernel 3, stride 1, dilation 1 on 12 frames",
             (0, "CONV_2D"))


# ---------------------------------------------------------------------------------------------------------
# Models that already stream, inputs, time axis


@pytest.mark.parametrize("name", ["ds_cnn_kws_int8", "causal_mean_float"])
def test_converting_a_variable_form_model_again_refused(name):
    model = xstream.load(zoo_model(name))
    once = xstream.convert(model, state="variable")
    again = xstream.load(xstream.serialize(once))
    index = next(i for i, op in enumerate(again.main.operators) if op.type == "VAR_HANDLE")
    _refused(again, "the model already carries state (resource variables)", (index, "VAR_HANDLE"))


def test_converting_an_external_form_model_again_refused():
    model = xstream.load(zoo_model("tdnn_dilated_int8"))
    once = xstream.convert(model, state="external")
    n = len(once.main.inputs)
    assert n > 1
    msg = _refused(once, f"the model has {n} inputs")
    assert "exactly one input" in msg


def test_converting_a_ring_buffer_model_again_refused():
    once = xstream.convert(xstream.load(zoo_model("separable_maxpool_int8")))  # hop 4: 4 frames in
    index = next(i for i, op in enumerate(once.main.operators) if op.kind == "RING_BUFFER")
    _refused(once, "the model is already streaming", (index, "RING_BUFFER"))
    # At hop 1 the input has a single frame; the state op is still what says why.
    once = xstream.convert(xstream.load(zoo_model("residual_tdnn_float")))
    _refused(once, "the model is already streaming")


def test_variable_tensor_refused():
    model = conv1d_model(12, 2, [dict(kind="conv", kernel=3)], "mean")
    model.main.operators[0].inputs[2].is_variable = True  # the bias, flagged as a variable
    msg = _refused(model, "is a variable: the model already carries state")
    assert repr(model.main.operators[0].inputs[2].name) in msg


def test_dynamic_time_dimension_refused():
    model = conv1d_model(12, 2, [dict(kind="conv", kernel=3)], "mean", time_on="w")
    x = model.main.inputs[0]
    x.shape_signature = (1, -1, 2)
    _runs(model)
    msg = _refused(model, "has a dynamic time dimension (shape_signature [1, -1, 2])")
    assert repr(x.name) in msg


def test_dynamic_batch_is_accepted():
    model = conv1d_model(12, 2, [dict(kind="conv", kernel=3)], "mean", time_on="w")
    model.main.inputs[0].shape_signature = (-1, 12, 2)
    c = convert_with_plan(model, "external")
    assert verify(model, c.model).equal


def test_two_inputs_refused():
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    y = g.input((1, 10, 3), name="other")
    s = g.op("ADD", [x, y], (1, 10, 3), {"fused_activation_function": 0}, "AddOptions")
    c = g.conv(g.reshape(s, (1, 1, 10, 3)), 3)
    model = g.model(g.reduce("MEAN", c, [1, 2]))
    _runs(model)
    _refused(model, "the model has 2 inputs")


@pytest.mark.parametrize("axis", [0, 3, -1, 7])
def test_time_axis_out_of_range(axis):
    model = xstream.load(zoo_model("tdnn_dilated_float"))  # input [1, 49, 20]
    msg = _refused(model, f"--time-axis {axis} is out of range", exc=UsageError, time_axis=axis)
    assert "[1, 49, 20]" in msg


def test_time_axis_on_features_with_nothing_sliding_refused():
    """Per-frame dense layers only (keep_num_dims FULLY_CONNECTED): nothing slides, nothing reads the window."""
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    w = g.random((4, 3))
    y = g.op("FULLY_CONNECTED", [x, w, g.const(np.zeros(4, np.float32))], (1, 10, 4),
             {"fused_activation_function": 0, "keep_num_dims": True}, "FullyConnectedOptions")
    model = g.model(y)
    _runs(model)
    _refused(model, "nothing to stream (is --time-axis 1 right?)")


def test_time_axis_of_one_frame_refused():
    model = xstream.load(zoo_model("ds_cnn_kws_float"))  # [1, 49, 10, 1]: axis 3 has one "frame"
    _refused(model, "has 1 frame(s) on axis 3; nothing to stream", time_axis=3)


@pytest.mark.parametrize("name,index", [("tdnn_dilated_float", 1), ("causal_mean_int8", 2)])
def test_time_axis_on_conv1d_features_refused(name, index):
    """--time-axis 2 on a Conv1D model's [1, T, F] input: F becomes the conv's channel axis, which cannot slide."""
    model = xstream.load(zoo_model(name))
    _refused(model, "time is on axis 3 of its NHWC input; only height (1) or width (2) can slide",
             (index, "CONV_2D"), time_axis=2)


def test_time_axis_on_ds_cnn_features_streams_or_is_refused():
    """ds_cnn_kws with --time-axis 2 (the 10 features): the conv slides there, but the Flatten head then merges
    the real time axis; the result must be a clear refusal or a conversion that verifies, never a wrong model."""
    model = xstream.load(zoo_model("ds_cnn_kws_float"))
    try:
        c = convert_with_plan(model, "external", time_axis=2)
    except StreamingRefused as e:
        assert re.match(r"(operator \d+ \([A-Z_0-9]+\): |the model|no operator|input )", str(e)), str(e)
    else:
        assert verify(model, c.model, time_axis=2).equal


def test_output_that_is_the_shape_of_time_refused():
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    c = g.conv(g.reshape(x, (1, 1, 10, 3)), 3)
    shape = g.op("SHAPE", [c], (4,), {"out_type": 2}, "ShapeOptions", dtype="int32")
    model = g.model([g.reduce("MEAN", c, [1, 2]), shape])
    _runs(model)
    msg = _refused(model, "shape of a time tensor")
    assert "no streaming form" in msg and "shape_" in msg


# ---------------------------------------------------------------------------------------------------------
# Hop


@pytest.mark.parametrize("hop", [3, 5, 6])
def test_hop_not_a_multiple_of_the_strides(hop):
    model = xstream.load(zoo_model("ds_cnn_kws_int8"))  # strides 2 (conv) x 2 (pool): minimum hop 4
    _refused(model, f"--hop {hop} is not a multiple of 4", exc=UsageError, hop=hop)


@pytest.mark.parametrize("hop", [0, -4])
def test_hop_must_be_positive(hop):
    model = xstream.load(zoo_model("ds_cnn_kws_int8"))
    _refused(model, f"--hop {hop}: the hop must be positive (input frames per step)", exc=UsageError, hop=hop)


def test_hop_longer_than_the_window():
    model = xstream.load(zoo_model("tdnn_dilated_float"))  # 49 frames
    _refused(model, "--hop 50 is longer than the model's window of 49 frames", exc=UsageError, hop=50)


# ---------------------------------------------------------------------------------------------------------
# The CLI


def test_cli_refusal_exits_1_with_one_line(tmp_path):
    out = tmp_path / "out.tflite"
    r = subprocess.run([sys.executable, "-m", "xstream", "convert", str(REPO / "models/holdout/squeeze_excite_float.tflite"),
                        str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1, r
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert re.match(r"xstream: error: operator \d+ \(\w+\): combines a value computed from the whole window", lines[0]), \
        lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp file left behind either


@pytest.mark.parametrize("state", FORMS)
def test_cli_hop_not_a_multiple_exits_2(tmp_path, state):
    out = tmp_path / "out.tflite"
    r = CliRunner().invoke(main, ["convert", str(zoo_model("ds_cnn_kws_float")), str(out), "--hop", "3",
                                  "--state", state])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("xstream: error: --hop 3 is not a multiple of 4")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------
# Issue 14: hybrid (dynamic-range) models, and control flow named as such


def _hybrid_model():
    """[1,10,3] float -> CONV_2D with int8 weights (per-channel scales, no DEQUANTIZE) -> MEAN: what
    Optimize.DEFAULT without a representative dataset writes."""
    from xstream.ir import Quantization, Tensor
    from xstream.ir import Buffer as Buf
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    r = g.reshape(x, (1, 1, 10, 3))
    c = g.conv(r, 3)
    conv = g.ops[-1]
    w = conv.inputs[1]
    wf = w.data.astype(np.float32)
    scale = np.abs(wf).reshape(wf.shape[0], -1).max(axis=1) / 127
    q = np.round(wf / scale[:, None, None, None]).astype(np.int8)
    conv.inputs[1] = Tensor("w_int8", "int8", w.shape, buffer=Buf(q.tobytes()),
                            quantization=Quantization(scale=scale.astype(np.float32),
                                                      zero_point=np.zeros(len(scale), np.int64)))
    return g.model(g.reduce("MEAN", c, [1, 2]))


def test_hybrid_quantization_refused_with_why_and_what_to_do():
    model = _hybrid_model()
    _runs(model)  # LiteRT runs it (hybrid kernel)
    msg = _refused(model, "dynamic-range (hybrid) quantization", (1, "CONV_2D"))
    assert "int8 weights" in msg and "whole input" in msg
    assert "float32" in msg and "full-integer int8" in msg


def test_float_and_full_int8_models_are_not_hybrid():
    for name in ("ds_cnn_kws_float", "ds_cnn_kws_int8"):
        assert convert_with_plan(xstream.load(zoo_model(name)), "external").plan.contract


def test_if_on_a_whole_window_condition_is_refused_as_control_flow():
    """An IF whose condition is computed from the whole window and whose branch input is per-frame: the cause is
    control flow, not squeeze-and-excitation."""
    g = GraphBuilder()
    x = g.input((1, 10, 3))
    c = g.conv(g.reshape(x, (1, 1, 10, 3)), 3)  # [1,1,8,3]
    cond = g.op("GREATER", [g.reduce("MEAN", c, [0, 1, 2, 3]), g.const(np.float32(0))], (), dtype="bool")
    y = g.op("IF", [cond, c], (1, 1, 8, 3), {"then_subgraph_index": 0, "else_subgraph_index": 0}, "IfOptions")
    model = g.model(g.reduce("MEAN", y, [1, 2]))
    msg = _refused(model, "runs a subgraph (control flow", (4, "IF"))
    assert "squeeze" not in msg
