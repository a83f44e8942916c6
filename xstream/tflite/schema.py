"""What the `tflite` schema package says about names and option fields, found by reflection (no per-op table)."""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from dataclasses import dataclass

from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.BuiltinOptions2 import BuiltinOptions2
from tflite.TensorType import TensorType


def _enum(cls) -> dict[str, int]:
    return {k: v for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


OPCODE_BY_NAME: dict[str, int] = _enum(BuiltinOperator)
OPNAME_BY_CODE: dict[int, str] = {v: k for k, v in OPCODE_BY_NAME.items()}
DTYPE_BY_CODE: dict[int, str] = {v: k.lower() for k, v in _enum(TensorType).items()}
DTYPE_CODE: dict[str, int] = {v: k for k, v in DTYPE_BY_CODE.items()}
OPTIONS_BY_CODE: dict[int, str] = {v: k for k, v in _enum(BuiltinOptions).items()}
OPTIONS_CODE: dict[str, int] = _enum(BuiltinOptions)
OPTIONS2_BY_CODE: dict[int, str] = {v: k for k, v in _enum(BuiltinOptions2).items()}
OPTIONS2_CODE: dict[str, int] = _enum(BuiltinOptions2)

_VECTOR_TYPE = re.compile(r"GetVectorAsNumpy\(flatbuffers\.number_types\.(\w+)Flags")


@dataclass(frozen=True)
class OptionField:
    name: str  # snake_case, as users see it: "stride_w"
    camel: str  # as the schema package spells it: "StrideW"
    vector_of: str | None  # element type of a vector field ("Int32"), else None


def snake(camel: str) -> str:
    """"DilationWFactor" -> "dilation_w_factor"."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", camel)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


@functools.lru_cache(maxsize=None)
def module(name: str):
    """The generated module `tflite.<name>` (the package re-exports classes under the same names)."""
    return importlib.import_module(f"tflite.{name}")


@functools.lru_cache(maxsize=None)
def option_fields(options_type: str) -> tuple[OptionField, ...]:
    """The fields of an options table, read off its generated accessor class."""
    cls = getattr(module(options_type), options_type)
    skip_suffix = ("AsNumpy", "Length", "IsNone", "BufferHasIdentifier")
    fields = []
    for name, fn in vars(cls).items():
        if name.startswith("_") or name.startswith("GetRootAs") or name == "Init" or name.endswith(skip_suffix):
            continue
        if not callable(fn) and not isinstance(fn, classmethod):
            continue
        vector_of = None
        if hasattr(cls, name + "Length"):
            src = inspect.getsource(getattr(cls, name + "AsNumpy"))
            m = _VECTOR_TYPE.search(src)
            vector_of = m.group(1) if m else "Int32"
        fields.append(OptionField(snake(name), name, vector_of))
    return tuple(fields)
