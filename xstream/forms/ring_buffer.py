"""The `ring-buffer` form: xstream's RING_BUFFER custom op as docs/RING_BUFFER.md specifies it (options, numpy
reference, the state it keeps). The pass that splices it into a model is passes/insert_ring_buffers.py; its
TFLite Micro kernel is kernels/ring_buffer."""

from __future__ import annotations

import numpy as np
from flatbuffers import flexbuffers

from ..errors import XstreamError
from ..ir import Model, Operator, Tensor
from .base import StateBuffer, StateForm

CUSTOM_CODE = "RING_BUFFER"
FLEXBUFFERS_FORMAT = 0  # CustomOptionsFormat.FLEXBUFFERS


def encode_options(axis: int, frames: int, in_place: bool = False) -> bytes:
    opts = {"axis": int(axis), "frames": int(frames)}
    if in_place:
        opts["in_place"] = True
    return bytes(flexbuffers.Dumps(opts))


def in_place(op: Operator) -> bool:
    """Option "in_place": the output is a variable tensor and is the op's state (docs/RING_BUFFER.md)."""
    try:
        return bool(flexbuffers.Loads(op.custom_options or b"").get("in_place", False))
    except Exception:
        return False


def decode_options(op: Operator) -> tuple[int, int]:
    try:
        opts = flexbuffers.Loads(op.custom_options or b"")
        return int(opts["axis"]), int(opts["frames"])
    except Exception as e:  # malformed options in a user's model
        raise XstreamError(f"{CUSTOM_CODE}: custom options are not a flexbuffer map with axis and frames ({e})") \
            from None


def make_op(x: Tensor, y: Tensor, axis: int, frames: int, *, in_place: bool = False) -> Operator:
    """x -> RING_BUFFER -> y; `in_place`: y becomes a variable tensor that is the state (no window in the
    activation arena, n more frames of state)."""
    y.is_variable = in_place
    return Operator("CUSTOM", [x], [y], custom_code=CUSTOM_CODE,
                    custom_options=encode_options(axis, frames, in_place), custom_options_format=FLEXBUFFERS_FORMAT)


def is_ring_buffer(op: Operator) -> bool:
    return op.type == "CUSTOM" and op.custom_code == CUSTOM_CODE


class RingBufferReference:
    """Numpy model of the kernel: y = last `frames` of concat(state, x); state = last (frames - n) of y."""

    def __init__(self, axis: int, frames: int, n: int, frame_shape, dtype, zero_point: int = 0):
        self.axis, self.frames, self.n = axis, frames, n
        shape = list(frame_shape)
        shape[axis] = max(frames - n, 0)
        self.state = np.full(shape, zero_point, dtype=dtype)
        self.zero_point = zero_point

    def reset(self) -> None:
        self.state[...] = self.zero_point

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[self.axis] != self.n:
            raise ValueError(f"expected {self.n} frames on axis {self.axis}, got {x.shape[self.axis]}")
        full = np.concatenate([self.state, x], axis=self.axis)
        y = np.take(full, range(full.shape[self.axis] - self.frames, full.shape[self.axis]), axis=self.axis)
        keep = self.state.shape[self.axis]
        if keep:
            self.state = np.take(y, range(self.frames - keep, self.frames), axis=self.axis).copy()
        return y


def held_bytes(op: Operator) -> int:
    """The bytes a RING_BUFFER holds between invokes: its state, or in place its whole window."""
    axis, frames = decode_options(op)
    x = op.inputs[0]
    n = x.shape[axis]
    held = frames if in_place(op) else max(frames - n, 0)
    return held * (x.nbytes // n if n else 0)


def _state_buffers(model: Model) -> list[StateBuffer]:
    return [StateBuffer(op.inputs[0].name, NAME, held_bytes(op), False, in_place(op))
            for op in model.main.operators if is_ring_buffer(op)]


NAME = "ring-buffer"
FORM = StateForm(NAME, f"{CUSTOM_CODE} custom ops (docs/RING_BUFFER.md); TFLite Micro with xstream's kernel "
                       "(kernels/ring_buffer)",
                 detect=lambda m: any(is_ring_buffer(op) for op in m.main.operators),
                 state_buffers=_state_buffers, custom_code=CUSTOM_CODE)
