"""Generate a microWakeWord-style MixedNet (non-streaming) as TFLite test models.

Run from the repository root with a TensorFlow 2.21 + Keras 3 environment (TensorFlow is NOT a
dependency of xstream; the .tflite files are committed):

    /work/venvs/tf/bin/python models/mww/generate_mixednet.py

Plain Keras re-implementation of the architecture of kahrendt/microWakeWord (microwakeword/mixednet.py)
with the settings of its training notebook: first conv 32 filters, kernel 5, stride 3 on time;
MixConv kernel sizes [5], [7, 11], [9, 15], [23]; pointwise filters 64, 64, 64, 64; no residuals;
flatten + Dense(1, sigmoid). Layout as in microWakeWord: features [T, 40] are expanded to
[T, 1, 40] (time on H, the 40 features as channels) and every time-sliding op is a VALID
Conv2D / DepthwiseConv2D with a (k, 1) kernel. Branches of a MixConv are aligned as microWakeWord's
StridedDrop does: the longer outputs (smaller kernels) drop their OLDEST frames (a crop at the
start of time, a STRIDED_SLICE), so every branch ends at the newest frame.

Untrained: default Keras initializers, random BatchNorm statistics (the converter folds BN into
the pointwise convs), seeded. Writes next to this script:
  mixednet_float.tflite           float32, batch 1
  mixednet_int8.tflite            full-integer, int8 input and int8 output
  mixednet_uint8out_int8.tflite   full-integer, int8 input and uint8 output (what microWakeWord
                                  writes: inference_input_type=int8, inference_output_type=uint8)
The int8 representative data mimics microWakeWord's: features uniform in [0, 26] (the micro_speech
front end's range), with one value pinned at 0 and one at 26 in every sample, so the input gets
scale ~0.102 and zero point -128 as in real microWakeWord models.
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

SEED = 7000

WINDOW = 204  # input frames (10 ms each)
FEATURES = 40
STRIDE = 3
FIRST_CONV_FILTERS = 32
FIRST_CONV_KERNEL = 5
MIXCONV_KERNELS = [[5], [7, 11], [9, 15], [23]]
POINTWISE_FILTERS = [64, 64, 64, 64]


def _split_channels(total, groups):
    split = [total // groups for _ in range(groups)]
    split[0] += total - sum(split)
    return split


def mixconv(x, kernel_sizes):
    """Depthwise (k, 1) VALID convs on channel groups, cropped at the start of time to equal length."""
    if len(kernel_sizes) == 1:
        return layers.DepthwiseConv2D((kernel_sizes[0], 1), padding="valid")(x)
    splits = _split_channels(x.shape[-1], len(kernel_sizes))
    indices = list(np.cumsum(splits)[:-1])
    parts = keras.ops.split(x, indices, axis=-1)
    outs = [
        layers.DepthwiseConv2D((k, 1), padding="valid")(part)
        for part, k in zip(parts, kernel_sizes)
    ]
    shortest = min(o.shape[1] for o in outs)
    outs = [
        o if o.shape[1] == shortest else layers.Cropping2D(((o.shape[1] - shortest, 0), (0, 0)))(o)
        for o in outs
    ]
    return layers.Concatenate(axis=-1)(outs)


def mixednet(batch_size=1):
    inp = keras.Input(shape=(WINDOW, FEATURES), batch_size=batch_size, name="features")
    x = layers.Reshape((WINDOW, 1, FEATURES))(inp)  # [batch, time, 1, feature]
    x = layers.Conv2D(FIRST_CONV_FILTERS, (FIRST_CONV_KERNEL, 1), strides=(STRIDE, 1),
                      padding="valid", use_bias=False)(x)  # 204 -> 67
    x = layers.ReLU()(x)
    for filters, kernels in zip(POINTWISE_FILTERS, MIXCONV_KERNELS):
        x = mixconv(x, kernels)  # 67 -> 63 -> 53 -> 39 -> 17
        x = layers.Conv2D(filters, 1, use_bias=False, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.Flatten()(x)  # 17 x 64
    out = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inp, out, name="mixednet")


def build(batch_size=1):
    keras.utils.set_random_seed(SEED)
    model = mixednet(batch_size)
    rng = np.random.default_rng(SEED + 1)
    for layer in model.layers:
        for var in layer.weights:
            name = var.path.split("/")[-1]
            shape = var.shape
            if name == "bias" or name == "beta" or name == "moving_mean":
                value = rng.normal(0.0, 0.1, size=shape)
            elif name == "gamma" or name == "moving_variance":
                value = rng.uniform(0.5, 1.5, size=shape)
            else:
                continue
            var.assign(value.astype(np.float32))
    return model


def representative_dataset():
    rng = np.random.default_rng(SEED + 2)
    for _ in range(export.REPRESENTATIVE_SAMPLES):
        sample = rng.uniform(0.0, 26.0, size=(1, WINDOW, FEATURES)).astype(np.float32)
        sample[0, 0, 0] = 0.0
        sample[0, 0, 1] = 26.0
        yield [sample]


def main():
    model = build(1)
    export.write(OUT_DIR, "mixednet_float", export.convert_float(model))
    export.write(OUT_DIR, "mixednet_int8", export.convert_int8(model, representative_dataset))
    export.write(OUT_DIR, "mixednet_uint8out_int8", export.convert_int8(model, representative_dataset, tf.uint8))


if __name__ == "__main__":
    main()
