"""MixConv (split on channels -> a depthwise conv per kernel size -> crops -> concat) becomes one depthwise conv:
exact on the whole window, one state in the stream, and left alone where the merge is not exact or not cheap."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from builders import mixconv_model

import xstream
from xstream.ir import Model
from xstream.passes.merge_depthwise_branches import merge_depthwise_branches
from xstream.runtimes import random_frames


def _types(model: Model) -> list[str]:
    return [op.type for op in model.main.operators]


_RESOLVERS = {"xnnpack": None, "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
              "reference": OpResolverType.BUILTIN_REF}


def _run(data: bytes, x: np.ndarray, resolver: str) -> np.ndarray:
    kw = {} if _RESOLVERS[resolver] is None else {"experimental_op_resolver_type": _RESOLVERS[resolver]}
    it = Interpreter(model_content=data, **kw)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def _whole_window_equal(a: Model, b: Model, dtype: str) -> None:
    """int8: bit-equal in each of LiteRT's kernel sets (XNNPACK, builtin, reference); float: within 1e-5."""
    da, db = xstream.serialize(a), xstream.serialize(b)
    rng = np.random.default_rng(1)
    for _ in range(8):
        x = random_frames(a.main.inputs[0].shape, np.dtype(dtype), rng)
        for resolver in _RESOLVERS:
            ya, yb = _run(da, x, resolver), _run(db, x, resolver)
            if dtype == "int8":
                assert np.array_equal(ya, yb), (resolver, np.abs(ya.astype(int) - yb).max())
            else:
                np.testing.assert_allclose(yb, ya, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["int8", "float32"])
@pytest.mark.parametrize("kernels,channels", [((3, 7), (8, 8)), ((5, 5), (8, 16)), ((3, 5, 7), (8, 8, 12))])
@pytest.mark.parametrize("crop", ["newest", "oldest"])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (1, 2), (2, 1)])
def test_mixconv_becomes_one_depthwise_conv_with_the_same_outputs(dtype, kernels, channels, crop, stride, dilation):
    m = mixconv_model(kernels, channels, dtype, crop=crop, stride=stride, dilation=dilation)
    result = merge_depthwise_branches(m)
    assert result.modified
    merged = result.model
    assert "SPLIT_V" not in _types(merged) and "CONCATENATION" not in _types(merged)
    assert _types(merged).count("DEPTHWISE_CONV_2D") == 1
    assert _types(m).count("DEPTHWISE_CONV_2D") == len(kernels)  # the input is left alone
    _whole_window_equal(m, merged, dtype)


def test_per_tensor_weights_become_per_channel_and_stay_exact():
    m = mixconv_model(per_tensor=True)
    merged = merge_depthwise_branches(m).model
    (conv,) = [op for op in merged.main.operators if op.type == "DEPTHWISE_CONV_2D"]
    assert len(conv.inputs[1].quantization.scale) == 16 and conv.inputs[1].quantization.quantized_dimension == 3
    _whole_window_equal(m, merged, "int8")


@pytest.mark.parametrize("dtype,bias,act", [("int8", True, 1), ("float32", True, 3)])  # LiteRT needs a bias
def test_a_fused_activation_merges_too(dtype, bias, act):
    m = mixconv_model(dtype=dtype, bias=bias, act=act)
    merged = merge_depthwise_branches(m).model
    assert _types(merged).count("DEPTHWISE_CONV_2D") == 1
    _whole_window_equal(m, merged, dtype)


@pytest.mark.parametrize("why,kwargs", [
    ("concat in another order than the split", {"concat_order": [1, 0]}),
    ("zero taps would cost more than half the branches' MACs", {"kernels": (1, 15), "channels": (56, 8)}),
    ("LiteRT's int8 kernel rounds another way below 8 channels", {"channels": (4, 4)}),
    ("a crop shifts a branch by less than the dilation", {"kernels": (3, 5), "dilation": 2, "crop": 1}),
    ("a kernel that is not symmetric in the merged grid", {"kernels": (3, 5), "crop": 5}),
])
def test_left_alone(why, kwargs):
    m = mixconv_model(**kwargs)
    assert not merge_depthwise_branches(m).modified, why


def test_left_alone_when_a_branch_output_has_another_reader():
    m = mixconv_model()
    sg = m.main
    dw0 = next(op for op in sg.operators if op.type == "DEPTHWISE_CONV_2D")
    sg.outputs.append(dw0.outputs[0])
    assert not merge_depthwise_branches(m).modified


def test_left_alone_when_branches_differ_in_activation():
    m = mixconv_model()
    dws = [op for op in m.main.operators if op.type == "DEPTHWISE_CONV_2D"]
    dws[1].options["fused_activation_function"] = 1
    assert not merge_depthwise_branches(m).modified


def test_the_merge_is_what_makes_a_mixconv_stream_keep_one_buffer():
    m = mixconv_model(kernels=(3, 7), channels=(8, 8), T=24, head="none")
    c = xstream.convert(m, state="ring-buffer")
    assert sum(op.kind == "RING_BUFFER" for op in c.main.operators) == 1
    assert "SPLIT_V" not in _types(c) and _types(c).count("DEPTHWISE_CONV_2D") == 1
    report = xstream.verify(m, c, runtime="litert")
    assert report.equal, report
