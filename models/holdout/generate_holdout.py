"""Generate the xstream HOLDOUT set: realistic Keras KWS / sensor models the converter was not tuned on.

Run from the repository root with a TensorFlow environment (TensorFlow is NOT a runtime or test
dependency of xstream; the generated .tflite files are committed):

    /work/venv-tf/bin/python models/holdout/generate_holdout.py

Unlike models/generate.py, every model here is built the way users export by default: the batch is
left unknown (`keras.Input(shape=(T, F))`, shape_signature [-1, ...]). For every model NAME this writes,
next to this script:
  NAME_float.tflite   plain float32 conversion
  NAME_int8.tflite    full-integer int8 conversion (int8 input and output, representative dataset)

A model whose int8 conversion the TFLite converter itself rejects gets only the float file (the reason
is printed and listed in README.md).

Weights are random but seeded; biases, BatchNormalization and LayerNormalization parameters are drawn
so that nothing is trivially zero or one. Every file is run once in ai-edge-litert after writing.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # models/tflite_export.py
import tflite_export as export  # noqa: E402

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
MAX_BYTES = 100_000


# ------------------------------------------------------------------------------------------------------
# Models expected to convert (docs/CONTRACT.md: window-exact or causal)


def bn_relu_gap():
    """KWS conv1d stack: Conv1D k3 valid + BatchNormalization (fused) + ReLU x3, GAP head, softmax."""
    inp = keras.Input(shape=(49, 20), name="mfcc")
    x = inp
    for filters, k in ((24, 3), (24, 3), (32, 5)):
        x = layers.Conv1D(filters, k, padding="valid", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(12, activation="softmax")(x)
    return keras.Model(inp, out, name="bn_relu_gap")


def tc_resnet():
    """TC-ResNet-like: residual blocks with stride 2 in both branches (valid), 1x1 projection on the skip.

    main: Conv1D k3 s2 + BN + ReLU, Conv1D k3 + BN; skip: Conv1D k1 s2 + BN, Cropping1D to the main
    branch's length (valid convs shorten the main branch), Add, ReLU. Two blocks, GAP, softmax.
    """
    inp = keras.Input(shape=(49, 20), name="mfcc")
    x = layers.Conv1D(16, 3, padding="valid", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)  # 47 frames
    for filters in (24, 32):
        a = layers.Conv1D(filters, 3, strides=2, padding="valid", use_bias=False)(x)
        a = layers.BatchNormalization()(a)
        a = layers.ReLU()(a)
        a = layers.Conv1D(filters, 3, padding="valid", use_bias=False)(a)
        a = layers.BatchNormalization()(a)
        b = layers.Conv1D(filters, 1, strides=2, padding="valid", use_bias=False)(x)
        b = layers.BatchNormalization()(b)
        # 47 -> main 21, skip 24; 21 -> main 8, skip 11: crop the skip by 3 (centred-ish, as users do)
        b = layers.Cropping1D((1, 2))(b)
        x = layers.ReLU()(layers.Add()([a, b]))
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(12, activation="softmax")(x)
    return keras.Model(inp, out, name="tc_resnet")


def inception():
    """Inception-like: branches k3 and k5 (valid) off one tensor, k3 branch cropped by (1,1), Concatenate on
    channels, then Conv1D and a GAP head."""
    inp = keras.Input(shape=(40, 16), name="features")
    x = layers.Conv1D(24, 3, padding="valid", activation="relu")(inp)
    a = layers.Conv1D(16, 3, padding="valid", activation="relu")(x)
    b = layers.Conv1D(16, 5, padding="valid", activation="relu")(x)
    a = layers.Cropping1D((1, 1))(a)
    x = layers.Concatenate(axis=-1)([a, b])
    x = layers.Conv1D(24, 3, padding="valid", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(8, activation="softmax")(x)
    return keras.Model(inp, out, name="inception")


def conv2d_kws():
    """Conv2D KWS (time on axis 1): Conv2D (3,3) valid, MaxPooling2D((2,2)), Conv2D (3,3), Flatten, Dense."""
    inp = keras.Input(shape=(49, 10, 1), name="mfcc")
    x = layers.Conv2D(8, (3, 3), padding="valid", activation="relu")(inp)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Conv2D(12, (3, 3), padding="valid", activation="relu")(x)
    x = layers.Flatten()(x)
    out = layers.Dense(12, activation="softmax")(x)
    return keras.Model(inp, out, name="conv2d_kws")


def freq_pad_conv2d():
    """'SAME on frequency only': ZeroPadding2D(((0,0),(1,1))) pads frequency, then Conv2D (3,3) valid."""
    inp = keras.Input(shape=(49, 10, 1), name="mfcc")
    x = layers.ZeroPadding2D(((0, 0), (1, 1)))(inp)
    x = layers.Conv2D(8, (3, 3), padding="valid", activation="relu")(x)
    x = layers.ZeroPadding2D(((0, 0), (1, 1)))(x)
    x = layers.Conv2D(8, (3, 3), strides=(2, 1), padding="valid", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(12, activation="softmax")(x)
    return keras.Model(inp, out, name="freq_pad_conv2d")


def dense_ln_conv():
    """Per-frame front end: Dense on [T, F] (FULLY_CONNECTED per frame), LayerNormalization per frame,
    then Conv1D k5 valid and a GAP head."""
    inp = keras.Input(shape=(40, 16), name="features")
    x = layers.Dense(32, activation="relu")(inp)
    x = layers.LayerNormalization()(x)
    x = layers.Conv1D(32, 5, padding="valid", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="dense_ln_conv")


def wavenet():
    """WaveNet-style: 1x1 conv, causal dilated Conv1D k2 with dilations 1,2,4,8 and residual adds (causal keeps
    lengths), GlobalMaxPooling1D head."""
    inp = keras.Input(shape=(49, 16), name="features")
    x = layers.Conv1D(24, 1, activation="relu")(inp)
    for d in (1, 2, 4, 8):
        y = layers.Conv1D(24, 2, padding="causal", dilation_rate=d, activation="relu")(x)
        x = layers.Add()([x, y])
    x = layers.GlobalMaxPooling1D()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="wavenet")


def strided_causal():
    """One strided causal conv: Conv1D k3 stride 2 padding='causal' on 49 frames, GAP head."""
    inp = keras.Input(shape=(49, 16), name="features")
    x = layers.Conv1D(32, 3, strides=2, padding="causal", activation="relu")(inp)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="strided_causal")


def avgpool_stride3():
    """AveragePooling1D(pool 3, stride 1) sliding smoother, then Conv1D k3 stride 3, Flatten + Dense head."""
    inp = keras.Input(shape=(50, 12), name="features")
    x = layers.AveragePooling1D(pool_size=3, strides=1, padding="valid")(inp)
    x = layers.Conv1D(24, 3, strides=3, padding="valid", activation="relu")(x)
    x = layers.Conv1D(24, 3, padding="valid", activation="relu")(x)
    x = layers.Flatten()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="avgpool_stride3")


def two_heads():
    """Two outputs from one GAP: a softmax keyword classifier and a sigmoid voice-activity head."""
    inp = keras.Input(shape=(49, 20), name="mfcc")
    x = layers.Conv1D(24, 3, padding="valid", activation="relu")(inp)
    x = layers.Conv1D(24, 3, strides=2, padding="valid", activation="relu")(x)
    g = layers.GlobalAveragePooling1D()(x)
    kws = layers.Dense(12, activation="softmax", name="keyword")(g)
    vad = layers.Dense(1, activation="sigmoid", name="vad")(g)
    return keras.Model(inp, [kws, vad], name="two_heads")


def per_frame_labels():
    """Sequence labelling, no head: Conv1D k3, dilated Conv1D k3 d2, TimeDistributed Dense + softmax per frame;
    the output is [1, T', C]."""
    inp = keras.Input(shape=(40, 16), name="features")
    x = layers.Conv1D(24, 3, padding="valid", activation="relu")(inp)
    x = layers.Conv1D(24, 3, dilation_rate=2, padding="valid", activation="relu")(x)
    out = layers.TimeDistributed(layers.Dense(5, activation="softmax"))(x)
    return keras.Model(inp, out, name="per_frame_labels")


def per_frame_conv():
    """Sequence labelling written with convolutions: Conv1D k5, Conv1D k3 stride 2, then a 1x1 Conv1D + softmax
    per frame as the output ([1, T', C], no head)."""
    inp = keras.Input(shape=(40, 16), name="features")
    x = layers.Conv1D(24, 5, padding="valid", activation="relu")(inp)
    x = layers.Conv1D(24, 3, strides=2, padding="valid", activation="relu")(x)
    out = layers.Conv1D(5, 1, activation="softmax")(x)
    return keras.Model(inp, out, name="per_frame_conv")


def dilated_conv2d():
    """Conv2D with dilation (2,1) on time, valid; with an unknown batch this is a 2-D SPACE_TO_BATCH_ND block."""
    inp = keras.Input(shape=(49, 10, 1), name="mfcc")
    x = layers.Conv2D(8, (3, 3), padding="valid", activation="relu")(inp)
    x = layers.Conv2D(12, (3, 3), dilation_rate=(2, 1), padding="valid", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(12, activation="softmax")(x)
    return keras.Model(inp, out, name="dilated_conv2d")


# ------------------------------------------------------------------------------------------------------
# Models that must be refused (docs/CONTRACT.md: refused)


def same_conv1d():
    """Conv1D padding='same' (needs future frames) after an otherwise streamable front end: Conv1D + BN + ReLU and a
    dilated Conv1D (d2, valid: a SPACE_TO_BATCH_ND block before the refused op, so the refusal's operator index
    must still be the one in this file)."""
    inp = keras.Input(shape=(49, 20), name="mfcc")
    x = layers.Conv1D(24, 3, padding="valid", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv1D(24, 3, dilation_rate=2, padding="valid", activation="relu")(x)
    x = layers.Conv1D(24, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(12, activation="softmax")(x)
    return keras.Model(inp, out, name="same_conv1d")


def gru():
    """Conv1D front end then a GRU (unroll=False, last state) and Dense.

    The one model with batch fixed at 1: TF 2.21 cannot convert a GRU with an unknown batch at all
    ("'tf.TensorListReserve' op requires element_shape to be static"), so users must export it this way.
    """
    inp = keras.Input(shape=(49, 16), batch_size=1, name="features")
    x = layers.Conv1D(16, 3, padding="valid", activation="relu")(inp)
    x = layers.GRU(16, unroll=False)(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="gru")


def lstm():
    """Conv1D front end then an LSTM (unroll=False, last state) and Dense.

    Batch fixed at 1 for the same reason as gru(): TF 2.21 cannot convert it with an unknown batch.
    """
    inp = keras.Input(shape=(49, 16), batch_size=1, name="features")
    x = layers.Conv1D(16, 3, padding="valid", activation="relu")(inp)
    x = layers.LSTM(16, unroll=False)(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="lstm")


def squeeze_excite():
    """Squeeze-and-excitation over time: GAP -> Dense -> Dense(sigmoid) -> Multiply with the per-frame features."""
    inp = keras.Input(shape=(40, 16), name="features")
    x = layers.Conv1D(24, 3, padding="valid", activation="relu")(inp)
    s = layers.GlobalAveragePooling1D()(x)
    s = layers.Dense(8, activation="relu")(s)
    s = layers.Dense(24, activation="sigmoid")(s)
    s = layers.Reshape((1, 24))(s)
    x = layers.Multiply()([x, s])
    x = layers.Conv1D(24, 3, padding="valid", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="squeeze_excite")


def concat_time():
    """Two conv branches concatenated along TIME (axis 1): reorders frames."""
    inp = keras.Input(shape=(40, 16), name="features")
    a = layers.Conv1D(16, 3, padding="valid", activation="relu")(inp)
    b = layers.Conv1D(16, 5, padding="valid", activation="relu")(inp)
    x = layers.Concatenate(axis=1)([a, b])
    x = layers.Conv1D(16, 3, padding="valid", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="concat_time")


# Models the TFLite converter cannot make full-integer: only NAME_float.tflite is written.
FLOAT_ONLY = {
    "gru": "TF 2.21's full-integer conversion of the GRU kills the process (segmentation fault)",
    "lstm": "TF 2.21's full-integer conversion of the LSTM kills the process (segmentation fault)",
}

MODELS = [
    ("bn_relu_gap", bn_relu_gap),
    ("tc_resnet", tc_resnet),
    ("inception", inception),
    ("conv2d_kws", conv2d_kws),
    ("freq_pad_conv2d", freq_pad_conv2d),
    ("dense_ln_conv", dense_ln_conv),
    ("wavenet", wavenet),
    ("strided_causal", strided_causal),
    ("avgpool_stride3", avgpool_stride3),
    ("two_heads", two_heads),
    ("per_frame_labels", per_frame_labels),
    ("per_frame_conv", per_frame_conv),
    ("dilated_conv2d", dilated_conv2d),
    ("same_conv1d", same_conv1d),
    ("gru", gru),
    ("lstm", lstm),
    ("squeeze_excite", squeeze_excite),
    ("concat_time", concat_time),
]


def build(index, builder):
    keras.utils.set_random_seed(5000 + index)
    model = builder()
    rng = np.random.default_rng(6000 + index)
    for layer in model.layers:
        for var in layer.weights:
            path = var.path
            shape = tuple(var.shape)
            if path.endswith("bias") or path.endswith("beta"):
                var.assign(rng.normal(0.0, 0.1, size=shape).astype(np.float32))
            elif path.endswith("gamma"):
                var.assign(rng.uniform(0.5, 1.5, size=shape).astype(np.float32))
            elif path.endswith("moving_mean"):
                var.assign(rng.normal(0.0, 0.2, size=shape).astype(np.float32))
            elif path.endswith("moving_variance"):
                var.assign(rng.uniform(0.5, 2.0, size=shape).astype(np.float32))
    return model


def convert_int8(model, index):
    return export.convert_int8(model, export.normal_samples(export.input_shape(model), 7000 + index))


def run_once(data):
    """Run the model once (no delegate) on seeded random input; returns output shapes.

    Uses ai-edge-litert when this venv has it, else TensorFlow's bundled interpreter (same kernels). The
    xstream venv checks every file in ai-edge-litert itself: `.venv/bin/python models/describe.py
    models/holdout/*.tflite`.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    it = Interpreter(model_content=data,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        if d["dtype"] == np.int8:
            x = rng.integers(-128, 128, size=d["shape"], dtype=np.int8)
        else:
            x = rng.standard_normal(d["shape"]).astype(d["dtype"])
        it.set_tensor(d["index"], x)
    it.invoke()
    return [list(it.get_tensor(d["index"]).shape) for d in it.get_output_details()]


def main():
    tf.get_logger().setLevel("ERROR")
    failures = []
    for index, (name, builder) in enumerate(MODELS):
        model = build(index, builder)
        converted = [("float", export.convert_float(model))]
        if name in FLOAT_ONLY:
            print(f"{name}_int8: not written: {FLOAT_ONLY[name]}")
        else:
            converted.append(("int8", convert_int8(model, index)))
        for kind, data in converted:
            path = os.path.join(OUT_DIR, f"{name}_{kind}.tflite")
            if len(data) > MAX_BYTES:
                failures.append(f"{path}: {len(data)} bytes > {MAX_BYTES}")
            with open(path, "wb") as f:
                f.write(data)
            print(f"{path}: {len(data)} bytes, runs in LiteRT, outputs {run_once(data)}")
    if failures:
        sys.exit("\n".join(failures))


if __name__ == "__main__":
    main()
