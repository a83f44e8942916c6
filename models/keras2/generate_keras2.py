"""Generate small test models written with Keras 2 (tf_keras), converted to TFLite.

Run from the repository root with TensorFlow 2.21 and the matching tf_keras 2.21 (TensorFlow is NOT
a dependency of xstream; the .tflite files are committed):

    /work/venvs/tf/bin/python models/keras2/generate_keras2.py

TF_USE_LEGACY_KERAS=1 makes tf.keras the Keras 2 implementation (tf_keras), so the converter sees
the graphs Keras 2 builds (its own Conv1D / causal padding / dilation lowering), not Keras 3's.
Untrained: default initializers, biases N(0, 0.1), no BatchNorm, seeded. For every model NAME this
writes NAME_float.tflite and NAME_int8.tflite (full-integer, int8 input and output, Optimize.DEFAULT,
100 seeded N(0, 1) representative samples, TFLITE_BUILTINS_INT8), next to this script.
"""

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import tensorflow as tf  # noqa: E402

import tf_keras  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # models/tflite_export.py
import tflite_export as export  # noqa: E402

keras = tf.keras
layers = keras.layers
assert keras.layers.Conv1D is tf_keras.layers.Conv1D, "tf.keras is not Keras 2 (tf_keras)"

OUT_DIR = os.path.dirname(os.path.abspath(__file__))


def causal_gap(batch_size=1):
    """Causal Conv1D stack (k3 d1, k3 d2, k3 d4), GlobalAveragePooling1D + Dense(8)."""
    inp = keras.Input(shape=(40, 16), batch_size=batch_size, name="features")
    x = layers.Conv1D(24, 3, padding="causal", activation="relu")(inp)
    x = layers.Conv1D(24, 3, padding="causal", dilation_rate=2, activation="relu")(x)
    x = layers.Conv1D(24, 3, padding="causal", dilation_rate=4, activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="causal_gap")


def ds_cnn_valid(batch_size=1):
    """DS-CNN-like, all VALID: Conv2D (10,4) stride (2,1), 2x (DepthwiseConv2D 3x3 + 1x1), Flatten + Dense."""
    inp = keras.Input(shape=(49, 10, 1), batch_size=batch_size, name="mfcc")
    x = layers.Conv2D(16, (10, 4), strides=(2, 1), padding="valid", activation="relu")(inp)
    for _ in range(2):
        x = layers.DepthwiseConv2D((3, 3), padding="valid", activation="relu")(x)
        x = layers.Conv2D(16, (1, 1), padding="valid", activation="relu")(x)
    x = layers.Flatten()(x)
    out = layers.Dense(12)(x)
    return keras.Model(inp, out, name="ds_cnn_valid")


def tdnn_dilated_dynbatch(batch_size=None):
    """TDNN with an unknown batch: VALID Conv1D k5 d1, k3 d2, k3 d3; Flatten + Dense(8)."""
    inp = keras.Input(shape=(49, 20), batch_size=batch_size, name="features")
    x = layers.Conv1D(24, 5, dilation_rate=1, padding="valid", activation="relu")(inp)
    x = layers.Conv1D(24, 3, dilation_rate=2, padding="valid", activation="relu")(x)
    x = layers.Conv1D(24, 3, dilation_rate=3, padding="valid", activation="relu")(x)
    x = layers.Flatten()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="tdnn_dilated_dynbatch")


MODELS = [
    ("causal_gap", causal_gap),
    ("ds_cnn_valid", ds_cnn_valid),
    ("tdnn_dilated_dynbatch", tdnn_dilated_dynbatch),
]


def build(index, builder):
    keras.utils.set_random_seed(10000 + index)
    return export.random_biases(builder(), 11000 + index)


def convert_int8(model, index):
    return export.convert_int8(model, export.normal_samples(export.input_shape(model), 12000 + index))


def main():
    for index, (name, builder) in enumerate(MODELS):
        model = build(index, builder)
        export.write(OUT_DIR, f"{name}_float", export.convert_float(model))
        export.write(OUT_DIR, f"{name}_int8", convert_int8(model, index))


if __name__ == "__main__":
    main()
