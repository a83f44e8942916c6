"""ESPHome's micro_wake_word as a target: what the component runs, and the v2 manifest it loads beside the model.

The deployment: `xstream convert IN OUT --target esphome` writes OUT (the `variable` form, EXPAND_DIMS as RESHAPE,
the head requantized by passes/esphome_io.py) and OUT with `.json`, the manifest ESPHome's YAML points to
(`micro_wake_word: models: - model: OUT.json`).

What the component does with a model (docs/esphome_facts.md, source ESPHOME_SOURCE):
- one `MicroMutableOpResolver<20>` with exactly STREAMING_OPS: no custom op, so no RING_BUFFER;
- input 0 must be int8 `[1, stride, 40]`; it memmoves `stride` slices of 40 features into it and invokes; it never
  reads the input's quantization: features are quantized with INPUT_SCALE and INPUT_ZERO_POINT;
- output 0 must be uint8 `[1, 1]`; probability = value / 255 (the output's own quantization is ignored);
- `MicroResourceVariables::Create(allocator, 20)` in a separate 1024-byte variable arena that holds only that
  bookkeeping: the variables' buffers (the state) are `AllocatePersistentBuffer`s of the interpreter, so they come
  from the manifest's `tensor_arena_size`, which is why the arena is measured on the whole model;
- `interpreter->Reset()` is never called: state starts at zero once (CALL_ONCE) and then runs on.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..ir import Model

# The ESPHome source followed: esphome/esphome at commit 33fdbbe (2024-10-25), `__version__ = "2024.11.0-dev"`.
# The op list, the input/output checks, the 20 variable slots and the 1024-byte variable arena are the same since
# "[micro_wake_word] Version 2" (#7032, 2024.7.0) and in upstream dev of 2026-05 (seen through a search index).
ESPHOME_VERSION = "2024.11.0-dev"
ESPHOME_SOURCE = "esphome/esphome@33fdbbe (2024-10-25), esphome/components/micro_wake_word"

# StreamingModel/MicroWakeWord::register_streaming_ops_, in its order.
STREAMING_OPS = ("CALL_ONCE", "VAR_HANDLE", "RESHAPE", "READ_VARIABLE", "STRIDED_SLICE", "CONCATENATION",
                 "ASSIGN_VARIABLE", "CONV_2D", "MUL", "ADD", "MEAN", "FULLY_CONNECTED", "LOGISTIC", "QUANTIZE",
                 "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "PAD", "PACK", "SPLIT_V")
RESOURCE_VARIABLES = 20  # MicroResourceVariables::Create(ma_, 20)
FEATURES = 40  # PREPROCESSOR_FEATURE_SIZE: micro_speech frontend channels per slice
# micro_wake_word.cpp: int8 = (v * 256 + 333) / 666 - 128 for the frontend's uint16 v, i.e. v / 25.6 quantized
# with scale 26/255 and zero point -128.
INPUT_SCALE = 26.0 / 255.0
INPUT_ZERO_POINT = -128
OUTPUT_SCALE = 1.0 / 255.0  # ESPHome: probability = uint8 / 255
OUTPUT_ZERO_POINT = 0

# Manifest defaults. 2024.7.0 is the first release with the v2 manifest and this op resolver (#7032).
MINIMUM_ESPHOME_VERSION = "2024.7.0"
FEATURE_STEP_MS = 10
ARENA_MARGIN = 0.10  # tensor_arena_size = measured * (1 + ARENA_MARGIN), rounded up to ARENA_ROUND bytes
ARENA_ROUND = 1024
ARENA_RULE = "TFLite Micro's measured smallest arena + 10%, rounded up to 1 KiB"


def same_scale(a: float, b: float) -> bool:
    """Scales stored as float32 in a .tflite (26/255 reads back as 0.10196079)."""
    return abs(float(a) - float(b)) <= 1e-6 * abs(float(b))


def quantization_of(t) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor quantized tensor, else None."""
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    return float(q.scale[0]), t.zero_point


def input_problem(x) -> str | None:
    """Why ESPHome cannot feed this input (its load_model checks, and the quantization it assumes), or None."""
    q = quantization_of(x)
    if x.dtype != "int8" or len(x.shape) != 3 or x.shape[0] != 1 or x.shape[2] != FEATURES or q is None \
            or not same_scale(q[0], INPUT_SCALE) or q[1] != INPUT_ZERO_POINT:
        return (f"input {x.name!r} is {x.dtype} {list(x.shape)} {q}, not int8 [1, stride, {FEATURES}] "
                f"({INPUT_SCALE:.8f}, {INPUT_ZERO_POINT})")
    return None


def output_problem(y) -> str | None:
    """Why ESPHome cannot read this output as its probability (uint8 [1, 1], value/255), or None."""
    q = quantization_of(y)
    if y.dtype != "uint8" or list(y.shape) != [1, 1] or q is None or not same_scale(q[0], OUTPUT_SCALE) \
            or q[1] != OUTPUT_ZERO_POINT:
        return f"output {y.name!r} is {y.dtype} {list(y.shape)} {q}, not uint8 [1, 1] (1/255, 0)"
    return None


def io_problems(model: Model) -> list[str]:
    """What keeps ESPHome from loading `model`'s input and output, in short words."""
    sg = model.main
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        return [f"{len(sg.inputs)} input(s) and {len(sg.outputs)} output(s), not one each"]
    return [p for p in (input_problem(sg.inputs[0]), output_problem(sg.outputs[0])) if p]


def resource_variables(model: Model) -> list[str]:
    """The distinct resource variables (VAR_HANDLE shared names) of the model: one slot each in TFLite Micro."""
    names = []
    for _, op in model.operators():
        if op.type == "VAR_HANDLE":
            name = (op.options.get("container") or "", op.options.get("shared_name") or "")
            if name not in names:
                names.append(name)
    return ["/".join(n for n in name if n) for name in names]


# ---------------------------------------------------------------------------------------------------------------
# The manifest


@dataclass(frozen=True)
class ManifestFields:
    """What the user says about the model; None for a field means its default (the manifest's text says which)."""

    wake_word: str | None = None  # default: OUT's file stem in words ("hey_jarvis" -> "Hey Jarvis")
    author: str = "xstream"
    website: str | None = None  # optional in the schema; omitted when not given
    trained_languages: tuple[str, ...] = ()
    probability_cutoff: float = 0.9
    sliding_window_size: int = 5
    feature_step_size: int = FEATURE_STEP_MS
    minimum_esphome_version: str = MINIMUM_ESPHOME_VERSION

    def check(self) -> None:
        """ESPHome's MANIFEST_SCHEMA_V2 validators, as usage errors before any work."""
        if not 0.0 <= self.probability_cutoff <= 1.0:
            raise UsageError(f"--probability-cutoff {self.probability_cutoff}: a probability, from 0 to 1")
        if self.sliding_window_size < 1:
            raise UsageError(f"--sliding-window-size {self.sliding_window_size}: at least 1 (probabilities averaged)")
        if not 0 <= self.feature_step_size <= 30:
            raise UsageError(f"--feature-step-size {self.feature_step_size}: ESPHome takes 0 to 30 ms")
        if not re.fullmatch(r"\d+\.\d+\.\d+", self.minimum_esphome_version):
            raise UsageError(f"--minimum-esphome-version {self.minimum_esphome_version!r}: a version like "
                             f"{MINIMUM_ESPHOME_VERSION}")
        if self.website is not None and not re.fullmatch(r"https?://[^\s/]+\S*", self.website):
            raise UsageError(f"--website {self.website!r}: a URL starting with http:// or https://")
        if self.wake_word is not None and not self.wake_word.strip():
            raise UsageError("--wake-word is empty; give the phrase the model listens for")
        if any(not lang.strip() for lang in self.trained_languages):
            raise UsageError("--trained-languages: a comma-separated list of language codes, e.g. en,de")


def manifest_path(out_path: str | os.PathLike) -> Path:
    """OUT with `.json` (OUT without a suffix gets one)."""
    return Path(out_path).with_suffix(".json")


def tensor_arena_size(measured: int) -> int:
    """ARENA_RULE."""
    return int(math.ceil(measured * (1.0 + ARENA_MARGIN) / ARENA_ROUND)) * ARENA_ROUND


def default_wake_word(out_path: str | os.PathLike) -> str:
    words = re.sub(r"[_\-]+", " ", Path(out_path).stem).split()
    return " ".join(w[:1].upper() + w[1:] for w in words) or Path(out_path).stem


def manifest(fields: ManifestFields, model_file: str, arena_bytes: int) -> dict:
    """The v2 manifest (ESPHome's MANIFEST_SCHEMA_V2: keys in its order, nothing else)."""
    m = {
        "type": "micro",
        "wake_word": fields.wake_word if fields.wake_word is not None else default_wake_word(model_file),
        "author": fields.author,
    }
    if fields.website is not None:
        m["website"] = fields.website
    m.update({
        "model": model_file,
        "trained_languages": list(fields.trained_languages),
        "version": 2,
        "micro": {
            "probability_cutoff": fields.probability_cutoff,
            "feature_step_size": fields.feature_step_size,
            "sliding_window_size": fields.sliding_window_size,
            "tensor_arena_size": arena_bytes,
            "minimum_esphome_version": fields.minimum_esphome_version,
        },
    })
    return m


@dataclass
class EsphomeFiles:
    """What `save` wrote, and the figures behind tensor_arena_size."""

    model: str
    manifest: str
    measured_arena_bytes: int  # smallest arena TFLite Micro (tflite-micro) allocates and invokes the model in
    tensor_arena_size: int
    arena_rule: str = ARENA_RULE
    resource_variables: int = 0
    ops: list[str] = field(default_factory=list)
    esphome_version: str = ESPHOME_VERSION
    contents: dict = field(default_factory=dict)  # the manifest itself

    def to_dict(self) -> dict:
        return asdict(self)


def save(model: Model, out_path: str | os.PathLike, fields: ManifestFields | None = None,
         *, avoid: tuple[str, ...] = ()) -> EsphomeFiles:
    """Write `model` to OUT and its manifest to OUT.json, both or neither. The arena is measured in TFLite Micro
    first (tflite-micro; every try in a child process). `avoid`: paths the manifest must not overwrite (the input)."""
    from ..runtimes.tflm_arena import smallest_arena_tflm
    from ..tflite.writer import same_file, serialize, write_files

    fields = fields or ManifestFields()
    fields.check()
    out_path = Path(out_path)
    json_path = manifest_path(out_path)
    if json_path == out_path or any(same_file(json_path, a) for a in avoid):
        raise UsageError(f"{json_path}: the manifest would overwrite {'OUT' if json_path == out_path else 'IN'}; "
                         "give OUT a .tflite name")
    data = serialize(model)
    measured = smallest_arena_tflm(data)
    arena = tensor_arena_size(measured)
    contents = manifest(fields, out_path.name, arena)
    text = json.dumps(contents, indent=2) + "\n"
    write_files({out_path: data, json_path: text.encode()})
    ops = sorted({op.type for _, op in model.operators()})
    return EsphomeFiles(str(out_path), str(json_path), measured, arena, resource_variables=len(
        resource_variables(model)), ops=ops, contents=contents)


def output_probability_range(scale: float, zero_point: int, dtype: str) -> tuple[float, float]:
    """The real values a quantized output can hold."""
    info = np.iinfo(dtype)
    return scale * (info.min - zero_point), scale * (info.max - zero_point)
