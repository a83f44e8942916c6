"""Each rewriting pass alone: it changes what it should (and the model computes the same), and leaves alone what
it should not touch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xstream
from xstream.passes.fold_dilated_convs import fold_dilated_convs
from xstream.passes.fold_unrolled_frames import fold_unrolled_frames
from xstream.passes.resolve_shapes import resolve_shapes
from xstream.passes.static_reshapes import static_reshapes
from helpers import random_input, random_inputs, run_litert, zoo_model

HOLDOUT = Path(__file__).resolve().parents[1] / "models" / "holdout"


def _kinds(model) -> list[str]:
    return [op.kind for op in model.main.operators]


def _same_outputs(a, b, exact: bool) -> None:
    from ai_edge_litert.interpreter import Interpreter
    detail = Interpreter(model_content=xstream.serialize(a)).get_input_details()[0]
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = random_input(detail, rng)
        for u, v in zip(run_litert(xstream.serialize(a), [x]), run_litert(xstream.serialize(b), [x])):
            if exact:
                assert np.array_equal(u, v)
            else:
                np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["tdnn_dilated_dynbatch_float", "tdnn_dilated_dynbatch_int8",
                                  "causal_mean_dynbatch_int8"])
def test_fold_dilated_convs_changes_atrous_blocks(name):
    model = xstream.load(zoo_model(name))
    r = fold_dilated_convs(model)
    assert r.modified
    assert "SPACE_TO_BATCH_ND" not in _kinds(r.model) and "BATCH_TO_SPACE_ND" not in _kinds(r.model)
    assert any(op.options.get("dilation_w_factor", 1) > 1 for op in r.model.main.operators)
    assert "SPACE_TO_BATCH_ND" in _kinds(model)  # the input model is not touched
    _same_outputs(model, r.model, exact="int8" in name)


@pytest.mark.parametrize("name", ["tdnn_dilated_int8", "ds_cnn_kws_int8", "residual_tdnn_dynbatch_float"])
def test_fold_dilated_convs_leaves_other_models_alone(name):
    model = xstream.load(zoo_model(name))
    r = fold_dilated_convs(model)
    assert not r.modified and _kinds(r.model) == _kinds(model)


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_resolve_shapes_fixes_placeholders_of_unknown_batch(kind):
    model = xstream.load(HOLDOUT / f"dense_ln_conv_{kind}.tflite")
    r = resolve_shapes(model)
    assert r.modified
    reshape = next(op for op in r.model.main.operators if op.type == "RESHAPE")
    assert reshape.outputs[0].shape == (40, 16)  # [B*T, F] at batch 1, not the placeholder [1, 1]
    first = next(op for op in model.main.operators if op.type == "RESHAPE")
    assert first.outputs[0].shape != (40, 16)
    _same_outputs(model, r.model, exact=True)


@pytest.mark.parametrize("name", ["ds_cnn_kws_int8", "tdnn_dilated_float", "causal_mean_dynbatch_float"])
def test_resolve_shapes_leaves_right_shapes_alone(name):
    model = xstream.load(zoo_model(name))
    r = resolve_shapes(model)
    assert not r.modified
    assert [t.shape for t in r.model.main.tensors()] == [t.shape for t in model.main.tensors()]


def test_fold_unrolled_frames_folds_time_distributed():
    model = resolve_shapes(xstream.load(HOLDOUT / "per_frame_labels_float.tflite")).model
    assert _kinds(model).count("STRIDED_SLICE") == 34
    r = fold_unrolled_frames(model)
    assert r.modified
    assert "STRIDED_SLICE" not in _kinds(r.model) and "PACK" not in _kinds(r.model)
    assert _kinds(r.model).count("FULLY_CONNECTED") == 1
    _same_outputs(model, r.model, exact=False)


def test_fold_unrolled_frames_leaves_per_frame_quantization_alone():
    # The int8 converter gave every unrolled frame its own scale: folding would change the results.
    model = resolve_shapes(xstream.load(HOLDOUT / "per_frame_labels_int8.tflite")).model
    r = fold_unrolled_frames(model)
    assert not r.modified and _kinds(r.model) == _kinds(model)


@pytest.mark.parametrize("name", ["ds_cnn_kws_dynbatch_int8", "residual_tdnn_float"])
def test_fold_unrolled_frames_leaves_other_packs_alone(name):
    model = xstream.load(zoo_model(name))
    r = fold_unrolled_frames(model)
    assert not r.modified and _kinds(r.model) == _kinds(model)


@pytest.mark.parametrize("name", ["tdnn_dilated_dynbatch_int8", "separable_maxpool_dynbatch_float"])
def test_static_reshapes_replaces_expand_dims_of_a_streaming_model(name):
    model = xstream.convert(xstream.load(zoo_model(name)), state="external")  # static shapes, batch 1
    r = static_reshapes(model)
    assert r.modified
    assert "EXPAND_DIMS" in _kinds(model) and "EXPAND_DIMS" not in _kinds(r.model)
    a, b = xstream.serialize(model), xstream.serialize(r.model)
    rng = np.random.default_rng(0)
    for _ in range(3):
        inputs = random_inputs(a, rng)
        for u, v in zip(run_litert(a, inputs), run_litert(b, inputs)):
            assert np.array_equal(u, v)


def test_static_reshapes_leaves_dynamic_shapes_alone():
    # In an unknown-batch original the batch inside an atrous block is not the placeholder 1.
    model = xstream.load(zoo_model("tdnn_dilated_dynbatch_int8"))
    r = static_reshapes(model)
    assert not r.modified and _kinds(r.model) == _kinds(model)


def test_static_reshapes_leaves_models_without_expand_dims_alone():
    model = xstream.load(zoo_model("ds_cnn_kws_int8"))
    r = static_reshapes(model)
    assert not r.modified and _kinds(r.model) == _kinds(model)
