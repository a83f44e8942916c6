"""Generate the xstream model zoo: small untrained Keras time-series models converted to TFLite.

Run from the repository root with a TensorFlow environment (TensorFlow is NOT a runtime or test
dependency of xstream; the generated .tflite files are committed):

    /work/venv-tf/bin/python models/generate.py

For every model NAME this writes, next to this script:
  NAME_float.tflite           plain float32 conversion, batch fixed at 1
  NAME_int8.tflite            full-integer int8 conversion (int8 input and output), batch fixed at 1
  NAME_dynbatch_float.tflite  same weights, batch left unknown (see VARIANTS below)
  NAME_dynbatch_int8.tflite

Everything is seeded, so re-running reproduces the same weights and representative data.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import keras  # noqa: E402
from keras import layers  # noqa: E402
import tflite_export as export  # noqa: E402

OUT_DIR = os.path.dirname(os.path.abspath(__file__))


def ds_cnn_kws(batch_size=1):
    """DS-CNN keyword spotter on 49x10 MFCC frames (time on axis 1, stride 2 on time)."""
    inp = keras.Input(shape=(49, 10, 1), batch_size=batch_size, name="mfcc")
    x = layers.Conv2D(32, (10, 4), strides=(2, 1), padding="valid", activation="relu")(inp)
    for _ in range(2):
        x = layers.DepthwiseConv2D((3, 3), padding="valid", activation="relu")(x)
        x = layers.Conv2D(32, (1, 1), padding="valid", activation="relu")(x)
    x = layers.AveragePooling2D(pool_size=(2, 1))(x)
    x = layers.Flatten()(x)
    out = layers.Dense(12)(x)
    return keras.Model(inp, out, name="ds_cnn_kws")


def tdnn_dilated(batch_size=1):
    """TDNN: valid Conv1D stack with dilations 1, 2, 3; flatten + dense head."""
    inp = keras.Input(shape=(49, 20), batch_size=batch_size, name="features")
    x = layers.Conv1D(32, 5, dilation_rate=1, padding="valid", activation="relu")(inp)
    x = layers.Conv1D(32, 3, dilation_rate=2, padding="valid", activation="relu")(x)
    x = layers.Conv1D(32, 3, dilation_rate=3, padding="valid", activation="relu")(x)
    x = layers.Flatten()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="tdnn_dilated")


def causal_mean(batch_size=1):
    """Causal Conv1D stack (left PAD on time), global average pooling (MEAN) head."""
    inp = keras.Input(shape=(40, 16), batch_size=batch_size, name="features")
    x = layers.Conv1D(32, 3, padding="causal", activation="relu")(inp)
    x = layers.Conv1D(32, 5, padding="causal", dilation_rate=2, activation="relu")(x)
    x = layers.Conv1D(32, 3, padding="causal", activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="causal_mean")


def separable_maxpool(batch_size=1):
    """SeparableConv1D (depthwise + 1x1), max pooling on time, strided Conv1D, flatten + dense."""
    inp = keras.Input(shape=(48, 16), batch_size=batch_size, name="features")
    x = layers.SeparableConv1D(32, 5, padding="valid", activation="relu")(inp)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Conv1D(32, 3, strides=2, padding="valid", activation="relu")(x)
    x = layers.Flatten()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="separable_maxpool")


def same_padding(batch_size=1):
    """SAME padding on time (needs future frames): the converter must refuse it."""
    inp = keras.Input(shape=(32, 8), batch_size=batch_size, name="features")
    x = layers.Conv1D(16, 3, padding="same", activation="relu")(inp)
    x = layers.Conv1D(16, 3, padding="same", activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    out = layers.Dense(4)(x)
    return keras.Model(inp, out, name="same_padding")


def residual_tdnn(batch_size=1):
    """Two branches off one tensor, different receptive fields, merged by ADD (branch alignment)."""
    inp = keras.Input(shape=(40, 16), batch_size=batch_size, name="features")
    x = layers.Conv1D(32, 3, padding="valid", activation="relu")(inp)
    a = layers.Conv1D(32, 3, padding="valid")(x)
    b = layers.Cropping1D((1, 1))(x)
    x = layers.Add()([a, b])
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="residual_tdnn")


MODELS = [
    ("ds_cnn_kws", ds_cnn_kws),
    ("tdnn_dilated", tdnn_dilated),
    ("causal_mean", causal_mean),
    ("separable_maxpool", separable_maxpool),
    ("same_padding", same_padding),
    ("residual_tdnn", residual_tdnn),
]


def build(index, builder, batch_size):
    keras.utils.set_random_seed(1000 + index)
    return export.random_biases(builder(batch_size), 2000 + index)


def convert_int8(model, index):
    return export.convert_int8(model, export.normal_samples(export.input_shape(model), 3000 + index))


# (suffix, batch size): the fixed-batch models are the main zoo. The "dynbatch" twins have the same
# weights but an unknown batch dimension (shape_signature [-1, ...]); with it the converter keeps
# the TensorFlow lowering that a static batch lets it fold away: dilated Conv1D stays
# SPACE_TO_BATCH_ND + EXPAND_DIMS + CONV_2D + RESHAPE + BATCH_TO_SPACE_ND, Flatten becomes
# SHAPE + STRIDED_SLICE + PACK + RESHAPE, and Conv1D starts with EXPAND_DIMS instead of RESHAPE.
VARIANTS = [("", 1), ("_dynbatch", None)]


def main():
    for index, (name, builder) in enumerate(MODELS):
        for variant, batch_size in VARIANTS:
            model = build(index, builder, batch_size)
            export.write(OUT_DIR, f"{name}{variant}_float", export.convert_float(model))
            export.write(OUT_DIR, f"{name}{variant}_int8", convert_int8(model, index))


if __name__ == "__main__":
    main()
