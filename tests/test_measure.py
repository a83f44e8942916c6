"""xstream.measure: op costs and state by hand on small in-memory models; the arena plan against TFLite Micro's
own planner (its unit-test numbers and its recording allocator) and against a brute-force optimum."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

import xstream
from xstream.analysis import analyze
from xstream.ir import PADDING_VALID, Buffer, Model, Operator, Subgraph, Tensor
from xstream.report.measure import (ALIGNMENT, Cost, arena_lifetimes, arena_peak, greedy_offsets, live_peak, measure,
                             minimum_step_cost, model_state, op_cost, plan_arena, stream_rows, fill_step_costs)
from xstream.pipeline import convert_with_plan, prepare, rewrite
from helpers import ZOO, zoo_model

STREAMABLE = [p for p in ZOO if not p.stem.startswith("same_padding")]


# ---------------------------------------------------------------------------------------------------------
# Tiny float32 models built in memory


def _act(name: str, shape) -> Tensor:
    return Tensor(name, "float32", tuple(shape))


def _const(name: str, shape, dtype: str = "float32", rng=np.random.default_rng(0)) -> Tensor:
    if dtype == "int32":
        arr = np.asarray(shape, dtype=np.int32)
        return Tensor(name, "int32", arr.shape, buffer=Buffer(arr.tobytes()))
    arr = rng.standard_normal(shape).astype(np.float32)
    return Tensor(name, "float32", tuple(shape), buffer=Buffer(arr.tobytes()))


def _conv(x: Tensor, out: Tensor, kh: int, kw: int, cin: int, cout: int) -> Operator:
    return Operator("CONV_2D", [x, _const(out.name + "/w", (cout, kh, kw, cin)), _const(out.name + "/b", (cout,))],
                    [out], options={"padding": PADDING_VALID, "stride_w": 1, "stride_h": 1,
                                    "dilation_w_factor": 1, "dilation_h_factor": 1, "fused_activation_function": 0},
                    options_type="Conv2DOptions")


def _reshape(x: Tensor, out: Tensor) -> Operator:
    return Operator("RESHAPE", [x, _const(out.name + "/shape", list(out.shape), "int32")], [out],
                    options={"new_shape": list(out.shape)}, options_type="ReshapeOptions")


def conv_mean_model(T: int = 8, C: int = 4, F: int = 5, K: int = 3, units: int = 2) -> Model:
    """x[1,T,C] -> RESHAPE [1,1,T,C] -> CONV_2D (1xK, C->F, valid) -> RESHAPE [1,T-K+1,F] -> MEAN over time
    -> FULLY_CONNECTED (F->units)."""
    L = T - K + 1
    x = _act("x", (1, T, C))
    x4 = _act("x4", (1, 1, T, C))
    y4 = _act("y4", (1, 1, L, F))
    y = _act("y", (1, L, F))
    m = _act("m", (1, F))
    out = _act("out", (1, units))
    ops = [_reshape(x, x4), _conv(x4, y4, 1, K, C, F), _reshape(y4, y),
           Operator("MEAN", [y, _const("axis", [1], "int32")], [m], options={"keep_dims": False},
                    options_type="ReducerOptions"),
           Operator("FULLY_CONNECTED", [m, _const("fc/w", (units, F)), _const("fc/b", (units,))], [out],
                    options={"fused_activation_function": 0, "keep_num_dims": False},
                    options_type="FullyConnectedOptions")]
    return Model([Subgraph("main", [x], [out], ops)])


# ---------------------------------------------------------------------------------------------------------
# Op costs by hand


def test_op_cost_by_hand():
    x = _act("x", (1, 10, 6, 3))
    conv = _conv(x, _act("c", (1, 8, 5, 16)), 3, 2, 3, 16)
    assert op_cost(conv) == Cost(macs=8 * 5 * 16 * (3 * 2 * 3))  # out_elems * kh*kw*cin
    dw = Operator("DEPTHWISE_CONV_2D", [x, _const("dw/w", (1, 3, 3, 6)), _const("dw/b", (6,))],
                  [_act("d", (1, 8, 4, 6))], options={"depth_multiplier": 2})
    assert op_cost(dw) == Cost(macs=8 * 4 * 6 * 9)  # out_elems * kh*kw
    fc = Operator("FULLY_CONNECTED", [_act("f", (7, 20)), _const("fc/w", (12, 20))], [_act("g", (7, 12))])
    assert op_cost(fc) == Cost(macs=7 * 12 * 20)  # rows * units * in_features
    pool = Operator("AVERAGE_POOL_2D", [x], [_act("p", (1, 5, 6, 3))],
                    options={"filter_height": 2, "filter_width": 1, "stride_h": 2, "stride_w": 1})
    assert op_cost(pool) == Cost(other=5 * 6 * 3 * 2)  # window reads, not MACs
    mean = Operator("MEAN", [x, _const("ax", [1], "int32")], [_act("m", (1, 6, 3))])
    assert op_cost(mean) == Cost(other=10 * 6 * 3)  # one read per input element
    add = Operator("ADD", [x, x], [_act("a", (1, 10, 6, 3))])
    assert op_cost(add) == Cost(other=180)
    assert op_cost(_reshape(x, _act("r", (1, 180)))) == Cost()  # data movement is free
    # Shapes can be overridden (that is how the per-step minimum is computed).
    assert op_cost(conv, out_shapes=[(1, 2, 5, 16)]) == Cost(macs=2 * 5 * 16 * 18)


def test_ds_cnn_kws_macs_by_hand():
    model = xstream.load(zoo_model("ds_cnn_kws_int8"))
    # conv 10x4 (1->32) on 20x7 outputs, dw 3x3 on 18x5x32, 1x1 (32->32) on 18x5, dw on 16x3x32, 1x1 on 16x3,
    # FC 768->12
    original = 20 * 7 * 32 * 40 + 18 * 5 * 32 * 9 + 18 * 5 * 32 * 32 + 16 * 3 * 32 * 9 + 16 * 3 * 32 * 32 + 12 * 768
    assert measure(model).cost.macs == original == 369_472
    # Hop 4: each conv output gains 2 frames per step, the pool 1, the head runs once.
    step = 2 * 7 * 32 * 40 + 2 * 5 * 32 * 9 + 2 * 5 * 32 * 32 + 2 * 3 * 32 * 9 + 2 * 3 * 32 * 32 + 12 * 768
    streaming = convert_with_plan(model).model
    assert measure(streaming).cost.macs == step == 48_128
    assert minimum_step_cost(model, analyze(model)).macs == step


# ---------------------------------------------------------------------------------------------------------
# State and per-step cost by hand on an in-memory model


@pytest.mark.parametrize("form", ["ring-buffer", "variable", "external"])
def test_state_and_step_macs_by_hand(form):
    T, C, F, K, units = 8, 4, 5, 3, 2
    model = conv_mean_model(T, C, F, K, units)
    L = T - K + 1
    result = convert_with_plan(model, state=form)
    m = measure(result.model)
    # Hop 1: the conv keeps K-1 input frames of C floats; the MEAN head keeps L-1 frames of F floats.
    conv_state = (K - 1) * C * 4
    head_state = (L - 1) * F * 4
    assert result.plan.minimum_state_bytes == 32 + 100
    if form == "ring-buffer":  # in place: each RING_BUFFER's window is its state (its frames, no copy in the plan)
        assert sorted(s.bytes for s in m.states) == sorted([K * C * 4, L * F * 4])
    else:
        assert sorted(s.bytes for s in m.states) == sorted([conv_state, head_state])
        assert m.state_bytes == 32 + 100
    assert all(s.form == form for s in m.states)
    assert m.persistent_state_bytes == (0 if form == "external" else m.state_bytes)
    # Per step: one conv output frame, the MEAN reads the whole window of L frames, the FC once.
    assert m.cost == Cost(macs=1 * F * K * C + units * F, other=L * F)
    assert measure(model).cost == Cost(macs=L * F * K * C + units * F, other=L * F)
    assert minimum_step_cost(model, analyze(model)) == m.cost
    with pytest.raises(ValueError, match="not the model's"):
        minimum_step_cost(model, result.plan)  # that plan is of the folded copy convert_with_plan made


def test_stream_rows_by_hand():
    work, plan = prepare(conv_mean_model())
    analysed = list(work.main.operators)
    rows = stream_rows(work, plan)
    fill_step_costs(rows, analysed, rewrite(work, plan).model)
    assert [r.op for r in rows] == ["RESHAPE", "CONV_2D", "RESHAPE", "MEAN", "FULLY_CONNECTED"]
    conv, mean, fc = rows[1], rows[3], rows[4]
    assert (conv.time_axis, conv.frames_in, conv.frames_out, conv.step_in, conv.step_out) == (2, 8, 6, 3, 1)
    assert (conv.state_frames, conv.state_bytes) == (2, 32)
    assert (conv.macs, conv.step_macs, conv.min_macs) == (6 * 5 * 12, 60, 60)
    assert mean.head and (mean.frames_in, mean.step_in, mean.step_out) == (6, 6, None)
    assert (mean.state_frames, mean.state_bytes) == (5, 100)
    assert (mean.other, mean.step_other, mean.min_other) == (30, 30, 30)
    assert (fc.time_axis, fc.macs, fc.step_macs) == (None, 10, 10)


def test_shared_state_counted_once():
    """Two convs (k3 and k5) on one tensor share one state of 4 frames, shown on the first reader."""
    x = _act("x", (1, 1, 10, 2))
    a, b = _act("a", (1, 1, 8, 3)), _act("b", (1, 1, 6, 3))
    ma, mb = _act("ma", (1, 3)), _act("mb", (1, 3))
    axis = _const("axis", [1, 2], "int32")
    out = _act("out", (1, 3))
    ops = [_conv(x, a, 1, 3, 2, 3), _conv(x, b, 1, 5, 2, 3),
           Operator("MEAN", [a, axis], [ma], options={"keep_dims": False}),
           Operator("MEAN", [b, axis], [mb], options={"keep_dims": False}),
           Operator("ADD", [ma, mb], [out], options={"fused_activation_function": 0})]
    model = Model([Subgraph("main", [x], [out], ops)])
    plan = analyze(model, time_axis=2)
    rows = stream_rows(model, plan)
    assert (rows[0].state_frames, rows[0].state_bytes, rows[0].state_shared_with) == (4, 4 * 2 * 4, [1])
    assert (rows[1].state_frames, rows[1].state_bytes, rows[1].state_shared_with) == (0, 0, [0])
    states = model_state(convert_with_plan(model, time_axis=2, state="variable").model)
    assert sum(s.bytes for s in states) == plan.minimum_state_bytes == 32 + (8 - 1) * 3 * 4 + (6 - 1) * 3 * 4


# ---------------------------------------------------------------------------------------------------------
# Arena: lifetimes, TFLM's planner, brute force


def test_lifetimes_follow_tflm_scopes():
    model = conv_mean_model()
    spans = {b.name: (b.first, b.last, b.size) for b in arena_lifetimes(model)}
    # Inputs live from scope 0; op i is scope i+1; outputs live to the last scope; constants are not planned.
    assert spans == {"x": (0, 1, align(8 * 4 * 4)), "x4": (1, 2, 128), "y4": (2, 3, 128), "y": (3, 4, 128),
                     "m": (4, 5, 32), "out": (5, 5, 16)}


def align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


# The cases of tflite-micro's greedy_memory_planner_test.cc: (size, first, last) in order, offsets, peak.
TFLM_CASES = [
    ([(10, 0, 1), (20, 2, 3)], [0, 0], 20),
    ([(10, 0, 1), (20, 1, 2), (30, 2, 3), (40, 3, 4), (50, 0, 1)], [50, 70, 40, 0, 0], 90),
    ([(100, 0, 1), (50, 2, 3), (20, 1, 2)], None, 120),
]


@pytest.mark.parametrize("requests,offsets,peak", TFLM_CASES)
def test_greedy_matches_tflm_unit_tests(requests, offsets, peak):
    got = greedy_offsets(requests)
    if offsets is not None:
        assert got == offsets
    assert arena_peak(requests, got) == peak


def _first_fit(requests, order):
    offsets = [None] * len(requests)
    for i in order:
        size, first, last = requests[i]
        busy = sorted((offsets[j], offsets[j] + requests[j][0]) for j in range(len(requests))
                      if offsets[j] is not None and not (first > requests[j][2] or requests[j][1] > last))
        at = 0
        for lo, hi in busy:
            if lo - at >= size:
                break
            at = max(at, hi)
        offsets[i] = at
    return offsets


def brute_force_optimum(requests) -> int:
    """The smallest arena of any placement: first-fit over every order reaches it (placing an optimal layout's
    buffers by increasing offset, each at its lowest fit, never moves one up)."""
    return min(arena_peak(requests, _first_fit(requests, order))
               for order in itertools.permutations(range(len(requests))))


def _assert_valid(requests, offsets):
    for i, j in itertools.combinations(range(len(requests)), 2):
        (si, fi, li), (sj, fj, lj) = requests[i], requests[j]
        if not (fi > lj or fj > li):
            assert offsets[i] + si <= offsets[j] or offsets[j] + sj <= offsets[i], (i, j)


def _small_graphs():
    """Small graphs whose arena is planned exactly as TFLM would: chain, residual branch, two heads, convs."""
    chain_x = _act("x", (1, 12))
    chain = [chain_x]
    ops = []
    for i, n in enumerate([40, 8, 24, 4]):
        y = _act(f"h{i}", (1, n))
        ops.append(Operator("RELU" if i % 2 else "TANH", [chain[-1]], [y]) if i % 2 else
                   Operator("FULLY_CONNECTED", [chain[-1], _const(f"w{i}", (n, chain[-1].shape[1]))], [y]))
        chain.append(y)
    yield "chain", Model([Subgraph("main", [chain_x], [chain[-1]], ops)])

    x = _act("x", (1, 32))
    a, b, c, d = _act("a", (1, 64)), _act("b", (1, 16)), _act("c", (1, 32)), _act("d", (1, 32))
    ops = [Operator("FULLY_CONNECTED", [x, _const("wa", (64, 32))], [a]),
           Operator("FULLY_CONNECTED", [a, _const("wb", (16, 64))], [b]),
           Operator("FULLY_CONNECTED", [b, _const("wc", (32, 16))], [c]),
           Operator("ADD", [x, c], [d])]
    yield "residual", Model([Subgraph("main", [x], [d], ops)])

    x = _act("x", (1, 8))
    p, q, r, s = _act("p", (1, 100)), _act("q", (1, 4)), _act("r", (1, 20)), _act("s", (1, 4))
    ops = [Operator("FULLY_CONNECTED", [x, _const("wp", (100, 8))], [p]),
           Operator("FULLY_CONNECTED", [p, _const("wq", (4, 100))], [q]),
           Operator("FULLY_CONNECTED", [x, _const("wr", (20, 8))], [r]),
           Operator("FULLY_CONNECTED", [r, _const("ws", (4, 20))], [s])]
    yield "two_heads", Model([Subgraph("main", [x], [q, s], ops)])

    yield "conv_mean", conv_mean_model()


@pytest.mark.parametrize("name,model", list(_small_graphs()), ids=[n for n, _ in _small_graphs()])
def test_arena_equals_brute_force_optimum_on_small_graphs(name, model):
    plan = plan_arena(model)
    requests = [(b.size, b.first, b.last) for b in plan.buffers]
    assert len(requests) <= 8
    offsets = [b.offset for b in plan.buffers]
    _assert_valid(requests, offsets)
    assert plan.peak == brute_force_optimum(requests)
    assert plan.live_peak <= plan.peak


def test_greedy_is_valid_and_never_beats_brute_force_on_random_requests():
    """TFLM's greedy is a heuristic: on random tiny cases it is a valid plan between the live-bytes bound and
    the optimum found by brute force (and usually equal to the optimum)."""
    rnd = random.Random(7)
    equal = 0
    for _ in range(300):
        requests = []
        for _ in range(rnd.randint(1, 6)):
            first = rnd.randint(0, 5)
            requests.append((16 * rnd.randint(1, 8), first, rnd.randint(first, 6)))
        offsets = greedy_offsets(requests)
        _assert_valid(requests, offsets)
        best = brute_force_optimum(requests)
        assert arena_peak(requests, offsets) >= best >= live_peak(requests)
        equal += arena_peak(requests, offsets) == best
    assert equal >= 270


# ---------------------------------------------------------------------------------------------------------
# Against tflite-micro itself


def _tflm_head_bytes(data: bytes, capfd) -> int:
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    capfd.readouterr()
    runtime.Interpreter.from_bytes(data).print_allocations()
    text = capfd.readouterr()
    for line in (text.err + text.out).splitlines():
        if "Arena allocation head" in line:
            return int(line.split("head")[1].split()[0])
    raise AssertionError(f"no head line in {text}")


@pytest.mark.parametrize("path", STREAMABLE, ids=[p.stem for p in STREAMABLE])
def test_arena_equals_tflm_recording_allocator(path, capfd):
    """Our plan of the original and of its variable form is the head TFLM's recording allocator reports."""
    model = xstream.load(path)
    assert plan_arena(model).peak == _tflm_head_bytes(xstream.serialize(model), capfd)
    streaming = convert_with_plan(model, state="variable").model
    assert plan_arena(streaming).peak == _tflm_head_bytes(xstream.serialize(streaming), capfd)
