"""Generate an openWakeWord-style embedding net (non-streaming, untrained): float32 and full-integer int8.

openWakeWord turns 76 frames of 32 mel bins (775 ms) into one 96-d embedding, every 8 new frames (80 ms), with
Google's speech-embedding conv net; its wake-word heads read the last 16 embeddings. This is a plain-Keras stand-in
of that shape (the original's weights and exact layers are not used): a stack of conv blocks over time and
frequency, VALID on time, max-pooled by 2 three times (stride 8 on time, openWakeWord's own step), down to one
frame of 96 channels.

    /work/venvs/tf/bin/python models/oww/generate_oww.py    # any venv with TensorFlow 2.21 + Keras 3

Run from the repository root; seeded, re-running reproduces the same files. Writes `oww_embedding_float.tflite`
and `oww_embedding_int8.tflite` next to this script.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # models/tflite_export.py
import tflite_export as export  # noqa: E402

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
FRAMES, BINS, EMBEDDING = 76, 32, 96
SEED = 7600


def oww_embedding():
    """[1, 76, 32, 1] mel frames -> [1, 96]: 76 -> 74 -> 72 (pool) 36 -> 34 (pool) 17 -> 15 (pool) 7 -> 5 -> 3 -> 1
    frames; each block a (1, 3) conv over frequency and a (3, 1) conv over time."""
    inp = keras.Input(shape=(FRAMES, BINS, 1), batch_size=1, name="mels")
    x = layers.Conv2D(24, (3, 3), activation="relu")(inp)
    for channels in (24, 48, 48):
        x = layers.Conv2D(channels, (1, 3), activation="relu")(x)
        x = layers.Conv2D(channels, (3, 1), activation="relu")(x)
        x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Conv2D(64, (3, 2), activation="relu")(x)
    x = layers.Conv2D(96, (3, 1), activation="relu")(x)
    x = layers.Conv2D(EMBEDDING, (3, 1))(x)
    out = layers.Flatten(name="embedding")(x)
    return keras.Model(inp, out, name="oww_embedding")


def build():
    keras.utils.set_random_seed(SEED)
    model = oww_embedding()
    rng = np.random.default_rng(SEED + 1)
    for layer in model.layers:  # default initializers give zero biases; make them non-trivial too
        for var in layer.weights:
            if "bias" in var.path:
                var.assign(rng.normal(0.0, 0.1, size=var.shape).astype(np.float32))
    return model


def main():
    model = build()
    export.write(OUT_DIR, "oww_embedding_float", export.convert_float(model))
    export.write(OUT_DIR, "oww_embedding_int8",
                 export.convert_int8(model, export.normal_samples((1, FRAMES, BINS, 1), SEED + 2)))


if __name__ == "__main__":
    main()
