"""Generate test models that pad TIME with SAME (or an explicit PAD around a VALID conv).

Run from the repository root with a TensorFlow 2.21 + Keras 3 environment (TensorFlow is NOT a
dependency of xstream; the .tflite files are committed):

    /work/venvs/tf/bin/python models/same/generate_same.py

Small untrained models (default Keras initializers, biases N(0, 0.1), no BatchNorm), same recipe as
models/generate.py. For every model NAME this writes, next to this script:
  NAME_float.tflite            float32, batch fixed at 1
  NAME_int8.tflite             full-integer int8 (int8 input and output), batch fixed at 1
  NAME_dynbatch_float.tflite   same weights, unknown batch (shape_signature [-1, ...]),
  NAME_dynbatch_int8.tflite    only for the models in DYNBATCH (those whose op sequence differs)

Everything is seeded; re-running reproduces byte-identical files.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import keras  # noqa: E402
from keras import layers  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # models/tflite_export.py
import tflite_export as export  # noqa: E402

OUT_DIR = os.path.dirname(os.path.abspath(__file__))


def mlperf_ds_cnn(batch_size=1):
    """MLPerf Tiny KWS DS-CNN (SAME everywhere) on 49x10 MFCC, 32 channels instead of 64, no BN."""
    inp = keras.Input(shape=(49, 10, 1), batch_size=batch_size, name="mfcc")
    # 49x10 -> 25x5: time SAME pad total 9 = 4 before + 5 after, freq 2 = 1 + 1.
    x = layers.Conv2D(32, (10, 4), strides=(2, 2), padding="same", activation="relu")(inp)
    for _ in range(3):
        x = layers.DepthwiseConv2D((3, 3), padding="same", activation="relu")(x)
        x = layers.Conv2D(32, (1, 1), padding="same", activation="relu")(x)
    x = layers.AveragePooling2D(pool_size=(25, 5))(x)  # the whole 25x5 map, as in MLPerf
    x = layers.Flatten()(x)
    out = layers.Dense(12, activation="softmax")(x)
    return keras.Model(inp, out, name="mlperf_ds_cnn")


def _tenet_block(x, channels, stride, expansion=3):
    """TENet inverted bottleneck: 1x1 expand, 9x1 depthwise SAME (stride s), 1x1 project, residual."""
    inp_channels = x.shape[-1]
    y = layers.Conv1D(channels * expansion, 1, activation="relu")(x)
    y = layers.DepthwiseConv1D(9, strides=stride, padding="same", activation="relu")(y)
    y = layers.Conv1D(channels, 1)(y)
    if stride != 1 or inp_channels != channels:
        x = layers.Conv1D(channels, 1, strides=stride, padding="same")(x)
    y = layers.Add()([x, y])
    return layers.ReLU()(y)


def tenet(batch_size=1):
    """TENet / TC-ResNet style: 40 MFCC as channels, 9-frame depthwise SAME convs, one stride-2 block."""
    inp = keras.Input(shape=(101, 40), batch_size=batch_size, name="mfcc")
    x = layers.Conv1D(16, 3, padding="same", activation="relu")(inp)
    x = _tenet_block(x, 16, 1)
    x = _tenet_block(x, 24, 2)  # 101 -> 51: SAME pad total 8 = 4 + 4 (1x1 shortcut: 0 + 0)
    x = _tenet_block(x, 24, 1)
    x = _tenet_block(x, 24, 1)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(12)(x)
    return keras.Model(inp, out, name="tenet")


def accel_gesture(batch_size=1):
    """TFLite Micro magic_wand: 128 accelerometer samples x 3 axes, SAME Conv2D + max pooling."""
    inp = keras.Input(shape=(128, 3, 1), batch_size=batch_size, name="accel")
    x = layers.Conv2D(8, (4, 3), padding="same", activation="relu")(inp)  # time pad 1 + 2
    x = layers.MaxPooling2D((3, 3))(x)  # VALID, 128 -> 42 (2 trailing frames unused)
    x = layers.Conv2D(16, (4, 1), padding="same", activation="relu")(x)  # time pad 1 + 2
    x = layers.MaxPooling2D((3, 1), padding="same")(x)  # 42 -> 14, SAME with zero padding
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    out = layers.Dense(4, activation="softmax")(x)
    return keras.Model(inp, out, name="accel_gesture")


def _inverted_residual(x, channels, stride, expansion=4):
    """MobileNetV2 block; stride 2 uses an explicit ZeroPadding2D((1, 1), (1, 1)) + VALID depthwise."""
    in_channels = x.shape[-1]
    y = layers.Conv2D(in_channels * expansion, 1, activation="relu6")(x)
    if stride == 2:
        y = layers.ZeroPadding2D(((1, 1), (1, 1)))(y)
        y = layers.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu6")(y)
    else:
        y = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = layers.Conv2D(channels, 1)(y)
    if stride == 1 and in_channels == channels:
        y = layers.Add()([x, y])
    return y


def mobilenetv2_pad(batch_size=1):
    """MobileNetV2 inverted residuals: ZeroPadding2D + VALID stride-2 depthwise, SAME stride-1 ones.

    The converter fuses a PAD into the following conv when it equals TF's SAME padding. For a 3x3
    stride-2 kernel SAME pads (0, 1) on an even length and (1, 1) on an odd one, so the first
    stride-2 block (time 50, pad (1, 1)) keeps its PAD op and the second (time 25, pad (1, 1), which
    is also what keras.applications' correct_pad gives) becomes a SAME DEPTHWISE_CONV_2D.
    """
    inp = keras.Input(shape=(50, 10, 1), batch_size=batch_size, name="spectrogram")
    x = layers.Conv2D(8, 3, padding="same", activation="relu6")(inp)
    x = _inverted_residual(x, 12, 2)  # PAD (1, 1) on time 50 (not SAME), VALID 52 -> 25
    x = _inverted_residual(x, 12, 1)  # SAME depthwise + residual ADD
    x = _inverted_residual(x, 16, 2)  # pad (1, 1) on time 25 == SAME: fused, 25 -> 13
    x = _inverted_residual(x, 16, 1)
    x = layers.Conv2D(32, 1, activation="relu6")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(12)(x)
    return keras.Model(inp, out, name="mobilenetv2_pad")


def same_conv1d_k5(batch_size=1):
    """Plain Conv1D(padding="same") stack, kernels 3 and 5 and one dilation 2 (like PyTorch padding=k//2)."""
    inp = keras.Input(shape=(40, 16), batch_size=batch_size, name="features")
    x = layers.Conv1D(24, 3, padding="same", activation="relu")(inp)  # pad 1 + 1
    x = layers.Conv1D(24, 5, padding="same", activation="relu")(x)  # pad 2 + 2
    x = layers.Conv1D(24, 3, padding="same", dilation_rate=2, activation="relu")(x)  # pad 2 + 2
    x = layers.Conv1D(16, 5, padding="same", activation="relu")(x)  # pad 2 + 2
    x = layers.Flatten()(x)
    out = layers.Dense(8)(x)
    return keras.Model(inp, out, name="same_conv1d_k5")


def same_strided(batch_size=1):
    """Strided SAME with even and odd kernels: TF pads P//2 before and P - P//2 after."""
    inp = keras.Input(shape=(50, 8), batch_size=batch_size, name="features")
    x = layers.Conv1D(16, 3, strides=2, padding="same", activation="relu")(inp)  # 50->25, P=1: 0+1
    x = layers.Conv1D(16, 4, strides=2, padding="same", activation="relu")(x)  # 25->13, P=3: 1+2
    x = layers.Conv1D(16, 3, strides=2, padding="same", activation="relu")(x)  # 13->7, P=2: 1+1
    x = layers.Conv1D(16, 4, strides=2, padding="same", activation="relu")(x)  # 7->4, P=3: 1+2
    x = layers.MaxPooling1D(2, padding="same")(x)  # 4 -> 2, P=0
    x = layers.Flatten()(x)
    out = layers.Dense(4)(x)
    return keras.Model(inp, out, name="same_strided")


MODELS = [
    ("mlperf_ds_cnn", mlperf_ds_cnn),
    ("tenet", tenet),
    ("accel_gesture", accel_gesture),
    ("mobilenetv2_pad", mobilenetv2_pad),
    ("same_conv1d_k5", same_conv1d_k5),
    ("same_strided", same_strided),
]

# Models whose unknown-batch twin has a different op sequence from the batch-1 model (checked with
# models/describe.py). mobilenetv2_pad is left out: its twin has exactly the same ops (2-D convs, PAD,
# MEAN head; no Conv1D, Flatten or dilation for an unknown batch to change).
DYNBATCH = {"mlperf_ds_cnn", "tenet", "accel_gesture", "same_conv1d_k5", "same_strided"}


def build(index, builder, batch_size):
    keras.utils.set_random_seed(4000 + index)
    return export.random_biases(builder(batch_size), 5000 + index)


def convert_int8(model, index):
    return export.convert_int8(model, export.normal_samples(export.input_shape(model), 6000 + index))


def main():
    for index, (name, builder) in enumerate(MODELS):
        variants = [("", 1)] + ([("_dynbatch", None)] if name in DYNBATCH else [])
        for variant, batch_size in variants:
            model = build(index, builder, batch_size)
            export.write(OUT_DIR, f"{name}{variant}_float", export.convert_float(model))
            export.write(OUT_DIR, f"{name}{variant}_int8", convert_int8(model, index))


if __name__ == "__main__":
    main()
