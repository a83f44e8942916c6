"""Convert small in-memory conv/pool stacks (tests/builders.py) over kernel, stride, dilation, padding, layer kind,
layout, dtype, head and hop, and check each against STREAMING.md: refusals where it demands them, and for every
accepted conversion the plan numbers (computed by builders.stream_facts, not by xstream), verify() equal
(int8 bit-exact) and the test's own step-by-step check.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings, strategies as st

import xstream
from xstream.errors import StreamingRefused, UsageError
from xstream.pipeline import convert_with_plan
from xstream.verify import verify
from builders import HEADS, KINDS, PADDINGS, WindowTooShort, conv1d_model, stream_facts
from helpers import Runner, check_stream, random_frames


def _model_and_facts(T, C, layers, head, dtype, time_on, width=1, seed=0):
    facts = stream_facts(T, C, layers, head, dtype, time_on, width)
    model = conv1d_model(T, C, layers, head, dtype, time_on, seed=seed, width=width)
    return model, facts


def _builds_and_runs(model) -> None:
    x = model.main.inputs[0]
    (y,) = Runner(model)([random_frames(x.shape, np.dtype(x.dtype), np.random.default_rng(0))])
    assert y.shape == model.main.outputs[0].shape


def check_case(T, C, layers, head, dtype, time_on, width=1, mult=1, forms=("external",), seed=0):
    """Convert at `mult` x the minimum hop and check everything STREAMING.md says about the result."""
    try:
        model, facts = _model_and_facts(T, C, layers, head, dtype, time_on, width, seed)
    except WindowTooShort:
        return "short"
    hop = facts.min_hop * mult
    if hop > T and facts.avg_same_op is None:  # (that refusal is found while reading the graph, before the hop)
        with pytest.raises(UsageError, match=f"--hop {hop} is longer than the model's window of {T} frames"):
            convert_with_plan(model, forms[0], hop=hop, time_axis=1)
        return "hop>T"
    refusal = facts.refusal(hop)
    if refusal is not None:
        fragment, op = refusal
        for form in forms:
            with pytest.raises(StreamingRefused) as info:
                convert_with_plan(model, form, hop=hop, time_axis=1)
            msg = str(info.value)
            assert fragment in msg, msg
            if op is not None:
                assert msg.startswith(f"operator {op} ({model.main.operators[op].type}): "), msg
        return "refused"
    for form in forms:
        # Time is axis 1 as built (a kernel (1, k) slides only W, which alone would make W time).
        c = convert_with_plan(model, form, hop=hop, time_axis=1)
        p = c.plan
        D = facts.offset(hop)
        contract = "window-exact" if facts.edges else facts.contract
        assert (p.contract, p.window, p.hop, p.offset, p.warmup) == (contract, T, hop, D, facts.warmup(hop))
        if not facts.edges:  # (edge recompute adds a delay line and branch state: measured elsewhere)
            assert p.minimum_state_bytes == facts.minimum_state_bytes(hop)
            # The rule's state, or less where a delay line joined the window it feeds and frames the delay kept
            # for nobody went (passes/merge_delay_lines.py); never below the contract's minimum.
            assert p.minimum_state_bytes <= p.state_bytes <= facts.state_bytes(hop)
        s_in = c.model.main.inputs[0]
        assert s_in.shape[1] == hop and s_in.name == model.main.inputs[0].name
        assert c.model.main.outputs[0].name == model.main.outputs[0].name

        # The test's own step-by-step check, with D and the contract from stream_facts.
        out_time = {0: (1, facts.min_hop)} if facts.per_frame_output else None
        r = check_stream(model, c.model, hop=hop, offset=D, contract=contract, out_time=out_time,
                         sequences=2, seed=seed, one_window=facts.edges)
        assert r["compared"] > 0
        if contract == "causal":
            assert r["compared"] == 2
        else:
            assert r["first"] == facts.warmup(hop)
        assert r["exact"] if dtype == "int8" else r["max_rel"] <= 1e-5, r

        # verify(): not for stateless results (see test_verify_stateless_conversion below).
        if p.state_bytes or p.edges:
            v = verify(model, c.model, sequences=2, seed=seed, time_axis=1)
            assert v.equal, (v.first_mismatch, v.max_abs_error)
            assert v.bit_exact if dtype == "int8" else v.max_rel_error <= 1e-5
            assert (v.offset, v.warmup) == (D, facts.warmup(hop))
            assert v.steps_compared == (2 if facts.contract == "causal" else 2 * (v.steps - v.warmup))
    return "ok"


# ---------------------------------------------------------------------------------------------------------
# Grids


@pytest.mark.parametrize("time_on", ["h", "w"])
@pytest.mark.parametrize("dtype", ["float32", "int8"])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("kind", KINDS)
def test_kind_padding_grid(kind, padding, dtype, time_on):
    """Two layers, the second of `kind` with `padding`: SAME pads time here, streamed exactly by edge recompute.
    Causal: both layers causal, the first with stride 2, so the input must be delayed one frame to align the
    second."""
    layers = [dict(kind="conv", kernel=3, stride=2, filters=3, padding="causal" if padding == "causal" else "valid"),
              dict(kind=kind, kernel=3, dilation=2, padding=padding)]
    outcome = check_case(21, 2, layers, "mean", dtype, time_on, forms=("external", "variable"))
    assert outcome == "ok"


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", range(1, 8))
def test_kernel_stride_grid(kernel, stride):
    for dilation in (1, 3):
        for head in ("flatten_fc", "none"):
            assert check_case(23, 2, [dict(kind="conv", kernel=kernel, stride=stride, dilation=dilation, filters=3),
                                      dict(kind="depthwise", kernel=2)], head, "int8", "w", mult=2) == "ok"


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("time_on", ["h", "w"])
def test_heads(head, time_on):
    width = 3 if time_on == "h" else 1
    layers = [dict(kind="conv", kernel=3, stride=2, filters=4, kernel_w=2 if time_on == "h" else 1),
              dict(kind="maxpool", kernel=2, stride=2)]
    for dtype in ("float32", "int8"):
        assert check_case(30, 2, layers, head, dtype, time_on, width) == "ok"


@pytest.mark.parametrize("kernel,stride,T", [(1, 1, 10), (1, 2, 5), (2, 3, 5), (1, 3, 7), (3, 3, 9)])
def test_same_padding_that_pads_nothing_is_accepted(kernel, stride, T):
    """SAME adds max((ceil(L/s) - 1) * s + k - L, 0) frames; when that is 0 it is VALID and must stream."""
    layers = [dict(kind="conv", kernel=kernel, stride=stride, padding="same", filters=2), dict(kind="conv", kernel=1)]
    assert check_case(T, 2, layers, "flatten_fc", "int8", "w") == "ok"


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("time_on", ["h", "w"])
def test_same_padding_on_time_streams_exactly(time_on, head):
    layers = [dict(kind="conv", kernel=3), dict(kind="conv", kernel=5, padding="same")]
    for dtype in ("float32", "int8"):
        assert check_case(20, 2, layers, head, dtype, time_on, forms=("external", "variable")) == "ok"


@pytest.mark.parametrize("kernel,stride,dilation", [(3, 2, 1), (4, 2, 1), (5, 3, 1), (3, 1, 3), (2, 2, 2), (6, 1, 1)])
@pytest.mark.parametrize("T", [17, 20, 23])
def test_same_strided_and_dilated_stacks_stream_exactly(kernel, stride, dilation, T):
    """TF aligns strided SAME with the smaller half of the padding first; edges grow layer by layer."""
    layers = [dict(kind="conv", kernel=kernel, stride=stride, dilation=dilation, padding="same", filters=3),
              dict(kind="depthwise", kernel=3, padding="same"), dict(kind="maxpool", kernel=2, padding="same")]
    for mult in (1, 2):
        assert check_case(T, 2, layers, "flatten_fc", "int8", "w", mult=mult) in ("ok", "hop>T")
    assert check_case(T, 2, layers, "none", "float32", "h") in ("ok", "short")


def test_global_pool_written_as_a_pool_is_a_head():
    """A pool whose kernel covers its whole input is read like MEAN: state holds its whole input."""
    layers = [dict(kind="conv", kernel=3, stride=2), dict(kind="avgpool", kernel=9)]
    assert check_case(20, 2, layers, "flatten_fc", "int8", "h") == "ok"
    assert check_case(20, 2, layers, "none", "float32", "w", mult=2) == "ok"


# ---------------------------------------------------------------------------------------------------------
# Causal layers


@pytest.mark.parametrize("mult", [1, 2, 3])
@pytest.mark.parametrize("time_on", ["h", "w"])
def test_causal_first_layer_any_hop(time_on, mult):
    """Causal padding on the input itself: any multiple of the hop works (the input is delayed if needed)."""
    layers = [dict(kind="conv", kernel=3, stride=2, padding="causal", filters=3),
              dict(kind="depthwise", kernel=3, dilation=2, padding="causal")]
    for dtype in ("float32", "int8"):
        assert check_case(19, 2, layers, "mean", dtype, time_on, mult=mult) in ("ok", "refused")


@pytest.mark.parametrize("time_on", ["h", "w"])
def test_causal_after_valid_refused(time_on):
    layers = [dict(kind="conv", kernel=3), dict(kind="conv", kernel=3, padding="causal")]
    assert check_case(20, 2, layers, "mean", "float32", time_on) == "refused"


def test_causal_after_pointwise_accepted():
    layers = [dict(kind="conv", kernel=1, filters=3), dict(kind="conv", kernel=4, dilation=2, padding="causal")]
    assert check_case(20, 2, layers, "none", "int8", "w") == "ok"
    assert check_case(20, 2, layers, "flatten_fc", "float32", "h", mult=2) == "ok"
    # At hop 3 the first window (20 frames) needs a 1-frame delay, which the PAD after a conv cannot take: the
    # head reads its window 1 frame back instead; a per-frame output cannot, and is refused with that cause.
    assert check_case(20, 2, layers, "flatten_fc", "float32", "h", mult=3) == "ok"
    assert check_case(20, 2, layers, "none", "float32", "h", mult=3) == "refused"


# ---------------------------------------------------------------------------------------------------------
# Hypothesis


@st.composite
def cases(draw):
    time_on = draw(st.sampled_from(["h", "w"]))
    n = draw(st.integers(1, 3))
    layers = []
    for _ in range(n):
        layers.append(dict(kind=draw(st.sampled_from(KINDS)), kernel=draw(st.integers(1, 7)),
                           stride=draw(st.integers(1, 3)), dilation=draw(st.integers(1, 4)),
                           padding=draw(st.sampled_from(PADDINGS)), filters=draw(st.integers(1, 4)),
                           kernel_w=draw(st.integers(1, 2)) if time_on == "h" else 1,
                           depth_multiplier=draw(st.integers(1, 2))))
    return dict(T=draw(st.integers(6, 40)), C=draw(st.integers(1, 3)), layers=layers,
                head=draw(st.sampled_from(HEADS)), dtype=draw(st.sampled_from(["float32", "int8"])),
                time_on=time_on, width=draw(st.integers(2, 3)) if time_on == "h" else 1,
                mult=draw(st.sampled_from([1, 2])), seed=draw(st.integers(0, 1000)),
                variable=draw(st.booleans()))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                 HealthCheck.too_slow])
@given(cases())
def test_random_stacks(case):
    try:
        stream_facts(case["T"], case["C"], case["layers"], case["head"], case["dtype"], case["time_on"],
                     case["width"])
    except WindowTooShort:
        assume(False)
    forms = ("external", "variable") if case["variable"] else ("external",)
    outcome = check_case(case["T"], case["C"], case["layers"], case["head"], case["dtype"], case["time_on"],
                         case["width"], case["mult"], forms, case["seed"])
    event(outcome)
    assert outcome in ("ok", "refused", "hop>T")


def test_builder_models_run_and_are_not_saturated():
    """The int8 builder picks scales so outputs vary: a test comparing constant outputs would prove nothing."""
    for time_on in ("h", "w"):
        for head in HEADS:
            layers = [dict(kind="conv", kernel=3, filters=4), dict(kind="depthwise", kernel=3, stride=2),
                      dict(kind="avgpool", kernel=2)]
            model = conv1d_model(24, 3, layers, head, "int8", time_on, seed=3)
            _builds_and_runs(model)
            x = model.main.inputs[0]
            rng = np.random.default_rng(1)
            ys = np.stack([Runner(model)([random_frames(x.shape, np.int8, rng)])[0] for _ in range(4)])
            assert len(np.unique(ys)) > 4
            assert np.mean(np.abs(ys.astype(int)) >= 127) < 0.5


# ---------------------------------------------------------------------------------------------------------
# verify() on results it cannot handle today


def test_verify_per_frame_output():
    """verify() crops a per-frame output to the newest hop / stride frames (fixed in 72509db: it looked the
    output up in a plan of a copy of the model and raised on the shape mismatch)."""
    model = conv1d_model(10, 2, [dict(kind="conv", kernel=3)], "none", time_on="h")
    s = xstream.convert(model, state="external")
    assert verify(model, s).equal
    bad = xstream.convert(model, state="external")
    w = bad.main.operators[[op.type for op in bad.main.operators].index("CONV_2D")].inputs[1]
    w.buffer = xstream.Buffer((w.data * 1.01).astype(np.float32).tobytes())
    assert not verify(model, bad).equal


def test_verify_stateless_conversion():
    model = conv1d_model(10, 2, [dict(kind="conv", kernel=2, stride=2)], "none", time_on="h")
    s = xstream.convert(model, state="external")
    assert len(s.main.inputs) == 1 and s.main.inputs[0].shape[1] == 2
    assert verify(model, s).equal


def test_stateless_and_per_frame_conversions_are_right():
    """The same conversions checked by check_stream, independently of verify."""
    for layers in ([dict(kind="conv", kernel=3)], [dict(kind="conv", kernel=2, stride=2)]):
        assert check_case(10, 2, layers, "none", "float32", "h") == "ok"


def test_a_delay_that_kept_frames_for_nobody_keeps_none():
    """A causal stride-2 stack whose input delay line also kept a frame nobody read (hypothesis found it): with the
    delay joined to the window it feeds (passes/merge_delay_lines.py) the state is the contract's minimum, and
    the stream is still exact."""
    layers = [dict(kind="conv", kernel=1, stride=2, filters=1), dict(kind="conv", kernel=2, padding="causal", filters=1)]
    for dtype in ("float32", "int8"):
        model, facts = _model_and_facts(6, 1, layers, "mean", dtype, "w")
        for form in ("external", "variable"):
            p = convert_with_plan(model, form, hop=2, time_axis=1).plan
            assert p.state_bytes == p.minimum_state_bytes < facts.state_bytes(2)
        assert check_case(6, 1, layers, "mean", dtype, "w", forms=("external", "variable")) == "ok"
