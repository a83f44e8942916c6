"""The StreamPlan: what the analysis found, as plain objects that refer to the model's own tensors and operators.

A plan is computed on one working copy of a model and applied to that same copy: its dicts are keyed by the
Tensor and Operator objects themselves (they hash by identity), never by index or id().
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Operator, Tensor

WINDOW_EXACT = "window-exact"
CAUSAL = "causal"


@dataclass
class TimeInfo:
    axis: int
    length: int  # L: frames on the time axis in the original model
    stride: int  # S: input frames per frame of this tensor
    first_end: int  # input frame (window coordinates) where frame 0's receptive field ends
    pad_left: int = 0  # frames of causal padding at the front, still to be absorbed by a sliding op
    raw_input: bool = False  # the model input's frames, only reshaped (zeros here are the input's zeros)

    def unused(self, window: int) -> int:
        """Input frames after the last frame's receptive field (the D this tensor would give)."""
        return window - 1 - self.first_end - (self.length - 1) * self.stride


@dataclass
class Reader:
    """An op input that reads a window of a tensor's buffered history instead of the tensor itself."""

    op: Operator
    slot: int
    extra: int  # frames beyond the n new ones this reader needs (receptive_field - stride); may be < 0
    lag: int = 0  # frames by which the window ends before the newest frame (a delay)
    full_length: int | None = None  # heads: exactly this many frames (the original length)

    def length(self, n: int) -> int:
        return self.full_length if self.full_length is not None else n + self.extra


@dataclass
class State:
    """One buffer on one tensor, shared by all its readers (STREAMING.md: largest need wins)."""

    tensor: Tensor
    axis: int
    frames_in: int  # n: frames the tensor gains per step
    frames: int  # F: frames the buffer exposes (state = F - n)
    readers: list[Reader]  # the buffer starts at the tensor's zero point (docs/RING_BUFFER.md)
    frame_bytes: int = 0  # bytes of one frame of the tensor (fixed at analysis: passes change its length)

    @property
    def state_frames(self) -> int:
        return max(self.frames - self.frames_in, 0)

    @property
    def state_bytes(self) -> int:
        return self.state_frames * self.frame_bytes


@dataclass
class Slide:
    op: Operator
    index: int
    kernel: int
    stride: int
    dilation: int
    frames_in: int = 0
    frames_out: int = 0

    @property
    def receptive_field(self) -> int:
        return self.dilation * (self.kernel - 1) + 1


@dataclass
class StreamPlan:
    time_axis: int
    window: int  # T
    hop: int  # H
    contract: str
    offset: int  # D: the window's last frame is the newest frame fed + D
    warmup: int  # steps before the first output the contract covers
    compare_step: int | None  # causal: the 0-based step that completes the first window
    times: dict[Tensor, TimeInfo]
    states: list[State]
    slides: list[Slide]
    heads: list[Operator]
    causal_pads: list[Operator]
    crops: list[tuple[Operator, int]]  # (op, time axis of its input)
    time_reshapes: list[Operator]
    input_delay: int = 0  # frames the input is delayed (causal models whose first window is off the hop grid)

    def frames(self, t: Tensor) -> int:
        """Frames per step of a time tensor in the streaming model."""
        return self.hop // self.times[t].stride

    def time_info(self, t: Tensor | None) -> TimeInfo | None:
        return None if t is None else self.times.get(t)

    @property
    def state_bytes(self) -> int:
        return sum(s.state_bytes for s in self.states)

    @property
    def minimum_state_bytes(self) -> int:
        """STREAMING.md's rule: per tensor, the largest history any sliding op or head on it needs."""
        total = 0
        for s in self.states:
            need = max((r.length(s.frames_in) - s.frames_in for r in s.readers if r.lag == 0), default=0)
            total += max(need, 0) * s.frame_bytes
        return total


