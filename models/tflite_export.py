"""The export every generator under models/ shares: seeded non-trivial biases, Keras model -> float and
full-integer int8 .tflite, written next to the generator. Needs TensorFlow, which xstream itself never imports (the .tflite files are committed).

The int8 export is full-integer: Optimize.DEFAULT, TFLITE_BUILTINS_INT8, int8 input, int8 output unless asked
otherwise, calibrated on the representative dataset given (`normal_samples`: seeded N(0, 1) inputs).
"""

import os

import numpy as np
import tensorflow as tf

REPRESENTATIVE_SAMPLES = 100


def random_biases(model, seed):
    """Default initializers give zero biases; draw every bias from N(0, 0.1), seeded, so they are non-trivial."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for var in layer.weights:
            if "bias" in getattr(var, "path", var.name):  # Keras 3 names a variable by its path, Keras 2 by name
                var.assign(rng.normal(0.0, 0.1, size=var.shape).astype(np.float32))
    return model


def convert_float(model):
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def normal_samples(shape, seed, samples=REPRESENTATIVE_SAMPLES):
    """A representative dataset: `samples` seeded N(0, 1) inputs of `shape`."""

    def representative_dataset():
        rng = np.random.default_rng(seed)
        for _ in range(samples):
            yield [rng.standard_normal(shape).astype(np.float32)]

    return representative_dataset


def input_shape(model):
    """The model's input shape with an unknown batch as 1."""
    return tuple(1 if d is None else d for d in model.inputs[0].shape)


def convert_int8(model, representative_dataset, output_type=tf.int8):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = output_type
    return converter.convert()


def write(out_dir, name, data):
    """Write `data` as out_dir/name.tflite and say so."""
    path = os.path.join(out_dir, f"{name}.tflite")
    with open(path, "wb") as f:
        f.write(data)
    print(f"{path}: {len(data)} bytes")
