"""Constructors for the tensors and builtin ops the passes create, so passes read as graph edits."""

from __future__ import annotations

import copy

import numpy as np

from .ir import NUMPY_DTYPES, Buffer, Operator, Tensor


def const(name: str, values, dtype: str = "int32") -> Tensor:
    arr = np.ascontiguousarray(np.asarray(values, dtype=NUMPY_DTYPES[dtype]))
    return Tensor(name, dtype, tuple(arr.shape), buffer=Buffer(arr.tobytes()))


def like(t: Tensor, name: str, shape) -> Tensor:
    """A new activation tensor with `t`'s dtype and quantization and another shape."""
    return Tensor(name, t.dtype, tuple(int(d) for d in shape), quantization=copy.deepcopy(t.quantization))


def with_axis(shape, axis: int, size: int) -> tuple[int, ...]:
    s = list(shape)
    s[axis] = size
    return tuple(s)


def strided_slice(x: Tensor, axis: int, begin: int, end: int, out: Tensor) -> Operator:
    """out = x[..., begin:end, ...] along `axis` (every other axis whole)."""
    rank = len(x.shape)
    b = [0] * rank
    e = list(x.shape)
    b[axis], e[axis] = begin, end
    tag = f"{out.name}/slice"
    return Operator("STRIDED_SLICE", [x, const(f"{tag}/begin", b), const(f"{tag}/end", e),
                                      const(f"{tag}/strides", [1] * rank)], [out],
                    options={}, options_type="StridedSliceOptions")


def gather_frames(x: Tensor, axis: int, begin: int, end: int, out: Tensor) -> Operator:
    """out = x[..., begin:end, ...] along `axis`, as a GATHER of those indices."""
    return Operator("GATHER", [x, const(f"{out.name}/frames", list(range(begin, end)))], [out],
                    options={"axis": axis, "batch_dims": 0}, options_type="GatherOptions")


def concatenation(inputs: list[Tensor], axis: int, out: Tensor) -> Operator:
    return Operator("CONCATENATION", list(inputs), [out], options={"axis": axis, "fused_activation_function": 0},
                    options_type="ConcatenationOptions")


def reshape(x: Tensor, out: Tensor) -> Operator:
    return Operator("RESHAPE", [x, const(f"{out.name}/shape", list(out.shape))], [out],
                    options={"new_shape": list(out.shape)}, options_type="ReshapeOptions")


def window_as(view: Tensor, via: Tensor | None, times, frames: int, new_ops: list[Operator]) -> Tensor:
    """What a state's reader takes: `view` (a window of the buffered tensor), or, where the buffer is on a
    per-frame reshape of the tensor the reader's slot reads (`Reader.via`), that window reshaped back to the
    slot's tensor's shape with `frames` frames (the RESHAPE is appended to `new_ops`)."""
    if via is None:
        return view
    back = like(via, f"{view.name}/as_{via.name}", with_axis(via.shape, times[via].axis, frames))
    new_ops.append(reshape(view, back))
    return back


def transpose(x: Tensor, perm: list[int], out: Tensor) -> Operator:
    return Operator("TRANSPOSE", [x, const(f"{out.name}/perm", list(perm))], [out],
                    options={}, options_type="TransposeOptions")


def quantize(x: Tensor, out: Tensor) -> Operator:
    """out = x requantized (or quantized) to out's dtype and quantization."""
    return Operator("QUANTIZE", [x], [out])
