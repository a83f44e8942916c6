"""The editable graph: plain objects that refer to each other; indices exist only in the reader and writer."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from . import ops

# TFLite TensorType names (lower case) and the numpy dtype of their elements.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "float64": np.dtype(np.float64),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "uint16": np.dtype(np.uint16),
    "int32": np.dtype(np.int32),
    "uint32": np.dtype(np.uint32),
    "int64": np.dtype(np.int64),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
}

# Enum values of the schema that the passes reason about (Padding, ActivationFunctionType).
PADDING_SAME = 0
PADDING_VALID = 1


def itemsize(dtype: str) -> int:
    """Bytes per element of a TFLite dtype name (int4 counts as one byte: TFLite Micro unpacks it)."""
    if dtype in NUMPY_DTYPES:
        return NUMPY_DTYPES[dtype].itemsize
    return 1


@dataclass(eq=False)
class Buffer:
    """Raw bytes, shared by identity between the tensors (or metadata entries) that use them."""

    data: bytes = b""


@dataclass(eq=False)
class Quantization:
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    min: np.ndarray | None = None
    max: np.ndarray | None = None
    quantized_dimension: int = 0

    def same_as(self, other: "Quantization | None") -> bool:
        if other is None:
            return False
        for a, b in ((self.scale, other.scale), (self.zero_point, other.zero_point),
                     (self.min, other.min), (self.max, other.max)):
            if (a is None) != (b is None):
                return False
            if a is not None and not np.array_equal(a, b):
                return False
        return self.quantized_dimension == other.quantized_dimension


def same_quantization(a: Tensor, b: Tensor) -> bool:
    """Do `a` and `b` encode values alike: both unquantized, or the same scales, zero points and axis?"""
    if a.quantization is None or b.quantization is None:
        return a.quantization is None and b.quantization is None
    return a.quantization.same_as(b.quantization)


def names_an_axis(t: Tensor) -> bool:
    """Is `t` quantized per axis (its quantization names an axis, which a reshape or rank change would move)?"""
    q = t.quantization
    return q is not None and q.scale is not None and len(q.scale) > 1


@dataclass(eq=False)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None = None
    buffer: Buffer | None = None
    quantization: Quantization | None = None
    is_variable: bool = False
    has_rank: bool = False

    @property
    def is_constant(self) -> bool:
        return self.buffer is not None and len(self.buffer.data) > 0

    @property
    def data(self) -> np.ndarray | None:
        """The constant's values shaped like the tensor, or None for an activation."""
        if not self.is_constant or self.dtype not in NUMPY_DTYPES:
            return None  # strings, resources, int4...: no numeric view
        arr = np.frombuffer(self.buffer.data, dtype=NUMPY_DTYPES[self.dtype])
        return arr.reshape(self.shape)

    @property
    def zero_point(self) -> int:
        """The value that means 0.0 (the initial value of any state built from this tensor)."""
        q = self.quantization
        if q is None or q.zero_point is None or len(q.zero_point) == 0:
            return 0
        return int(q.zero_point[0])

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * itemsize(self.dtype)

    def set_shape(self, shape) -> None:
        """Change the static shape; a dynamic batch in shape_signature stays dynamic."""
        self.shape = tuple(int(d) for d in shape)
        if self.shape_signature is not None:
            batch_dynamic = len(self.shape_signature) > 0 and self.shape_signature[0] == -1
            sig = list(self.shape)
            if batch_dynamic and sig:
                sig[0] = -1
            self.shape_signature = tuple(sig)

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {self.dtype}, {list(self.shape)})"


@dataclass(eq=False)
class Operator:
    """One operator. `type` is the builtin name (e.g. "CONV_2D") or "CUSTOM" with `custom_code` set."""

    type: str
    inputs: list[Tensor | None] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    options_type: str | None = None
    options2: dict = field(default_factory=dict)
    options2_type: str | None = None
    custom_code: str | None = None
    custom_options: bytes | None = None
    custom_options_format: int = 0
    version: int = 1
    mutating_variable_inputs: list[bool] | None = None
    intermediates: list[Tensor] = field(default_factory=list)
    source_index: int | None = None  # its index in the model the user gave (for messages); None if created

    @property
    def kind(self) -> str:
        """What a user calls this op: the builtin name, or the custom code of a custom op."""
        return self.custom_code if self.type == "CUSTOM" and self.custom_code else self.type

    def __repr__(self) -> str:
        return f"Operator({self.kind})"


@dataclass(eq=False)
class Subgraph:
    name: str = ""
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    operators: list[Operator] = field(default_factory=list)

    def tensors(self) -> list[Tensor]:
        """Every tensor the subgraph uses, in a stable order (inputs, then op by op, then outputs)."""
        seen: dict[Tensor, None] = {}  # insertion-ordered set; tensors hash by identity

        def add(ts: Iterable[Tensor | None]) -> None:
            for t in ts:
                if t is not None:
                    seen.setdefault(t)

        add(self.inputs)
        for op in self.operators:
            add(op.inputs)
            add(op.outputs)
            add(op.intermediates)
        add(self.outputs)
        return list(seen)

    def producer(self, tensor: Tensor) -> Operator | None:
        for op in self.operators:
            if any(t is tensor for t in op.outputs):
                return op
        return None

    def consumers(self, tensor: Tensor) -> list[Operator]:
        return [op for op in self.operators if any(t is tensor for t in op.inputs)]

    def index_of(self, op: Operator) -> int:
        for i, o in enumerate(self.operators):
            if o is op:
                return i
        raise ValueError(f"{op!r} is not in subgraph {self.name!r}")

    def replace_uses(self, old: Tensor, new: Tensor, *, skip: Operator | None = None) -> None:
        """Make every reader of `old` (operators except `skip`, and the subgraph outputs) read `new`."""
        for op in self.operators:
            if op is skip:
                continue
            op.inputs = [new if t is old else t for t in op.inputs]
        self.outputs = [new if t is old else t for t in self.outputs]

    def toposort(self) -> None:
        """Order operators so that each runs after the producers of its inputs (stable otherwise)."""
        produced_by: dict[Tensor, Operator] = {t: op for op in self.operators for t in op.outputs}
        order: list[Operator] = []
        seen: set[Operator] = set()

        def visit(op: Operator) -> None:
            stack: list[tuple[Operator, Iterator]] = [(op, iter(op.inputs))]
            seen.add(op)
            while stack:
                cur, it = stack[-1]
                for t in it:
                    dep = produced_by.get(t) if t is not None else None
                    if dep is not None and dep not in seen:
                        seen.add(dep)
                        stack.append((dep, iter(dep.inputs)))
                        break
                else:
                    stack.pop()
                    order.append(cur)

        for op in self.operators:
            if op not in seen:
                visit(op)
        self.operators = order

    def cleanup(self) -> None:
        """Drop operators whose outputs nobody reads, except those with side effects (ops.OpInfo.side_effects)."""
        live: set[Tensor] = set(self.outputs)
        kept: list[Operator] = []
        for op in reversed(self.operators):
            if ops.info(op).side_effects or any(t in live for t in op.outputs):
                kept.append(op)
                live.update(t for t in op.inputs if t is not None)
        self.operators = list(reversed(kept))

    def names(self) -> set[str]:
        return {t.name for t in self.tensors()}

    def unique_name(self, base: str, *, taken: set[str] | None = None, suffixes: tuple[str, ...] = ("",)) -> str:
        """`base`, or `base_1`, `base_2`, ...: the first for which base+suffix is no tensor's name here (nor in
        `taken`) for every suffix, e.g. suffixes=("", "_next") for a state and its next value."""
        used = self.names() | (taken or set())
        name, k = base, 0
        while any(name + s in used for s in suffixes):
            k += 1
            name = f"{base}_{k}"
        return name

    def duplicate_names(self) -> list[str]:
        """Tensor names used by more than one tensor of this subgraph."""
        count: dict[str, int] = {}
        for t in self.tensors():
            count[t.name] = count.get(t.name, 0) + 1
        return sorted(n for n, c in count.items() if c > 1)


@dataclass(eq=False)
class SignatureDef:
    key: str
    subgraph: Subgraph
    inputs: list[tuple[str, Tensor]] = field(default_factory=list)
    outputs: list[tuple[str, Tensor]] = field(default_factory=list)


@dataclass(eq=False)
class Metadata:
    name: str
    buffer: Buffer


@dataclass(eq=False)
class Model:
    subgraphs: list[Subgraph] = field(default_factory=list)
    version: int = 3
    description: str = ""
    metadata: list[Metadata] = field(default_factory=list)
    signatures: list[SignatureDef] = field(default_factory=list)
    # Deprecated in the schema but kept for a lossless round trip.
    metadata_buffers: list[Buffer] = field(default_factory=list)
    # How the file it was read from stored buffers: how many after the flatbuffer (Buffer.offset/size, as
    # ai-edge-quantizer writes large models). The writer always stores them inline.
    external_buffers: int = 0

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    def copy(self) -> "Model":
        """A deep copy that shares no mutable object with this model (buffer bytes are immutable)."""
        return copy.deepcopy(self)

    def replace_uses(self, subgraph: Subgraph, old: Tensor, new: Tensor, *,
                     skip: Operator | None = None) -> None:
        """Rewire every consumer, subgraph output and signature entry of `old` to `new`."""
        subgraph.replace_uses(old, new, skip=skip)
        for sig in self.signatures:
            if sig.subgraph is subgraph:
                sig.outputs = [(n, new if t is old else t) for n, t in sig.outputs]

    def operators(self) -> Iterator[tuple[Subgraph, Operator]]:
        for sg in self.subgraphs:
            for op in sg.operators:
                yield sg, op
