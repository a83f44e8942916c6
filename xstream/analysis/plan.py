"""The StreamPlan: what the analysis found, as plain objects that refer to the model's own tensors and operators.

A plan is computed on one working copy of a model and applied to that same copy: its dicts are keyed by the
Tensor and Operator objects themselves (they hash by identity), never by index or id().
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Operator, Tensor

WINDOW_EXACT = "window-exact"
CAUSAL = "causal"
CONTEXT = "context"
SAME_PADDING_MODES = ("exact", CONTEXT)  # --same-padding: edge recompute (window-exact) or the context stream


@dataclass
class TimeInfo:
    axis: int
    length: int  # L: frames on the time axis in the original model
    stride: int  # S: input frames per frame of this tensor
    first_end: int  # input frame (window coordinates) where frame 0's receptive field ends
    pad_left: int = 0  # frames of causal padding at the front, still to be absorbed by a sliding op
    raw_input: bool = False  # the model input's frames, only reshaped (zeros here are the input's zeros)
    frame: int = 1  # entries of the time axis per frame: > 1 on a flat input before the RESHAPE into frames
    # Edges (models that pad time on both sides): frames at the front (left) and the end (right) of the window
    # whose values depend on the padding, i.e. on where the window is. The frames between are the interior: the
    # same in every window that holds them, computed once by the stream. None: as the op's time inputs (the
    # analysis fills it in).
    edge_left: int | None = None
    edge_right: int | None = None

    @property
    def interior(self) -> int:
        return self.length - (self.edge_left or 0) - (self.edge_right or 0)

    def unused(self, window: int) -> int:
        """Input frames after the last interior frame's receptive field (the D this tensor would give)."""
        return window - 1 - self.first_end - (self.length - 1 - (self.edge_right or 0)) * self.stride


@dataclass
class Reader:
    """An op input that reads a window of a tensor's buffered history instead of the tensor itself."""

    op: Operator
    slot: int
    extra: int  # frames beyond the n new ones this reader needs (receptive_field - stride); may be < 0
    lag: int = 0  # frames by which the window ends before the newest frame (a delay)
    full_length: int | None = None  # heads: exactly this many frames (the original length)
    # The slot reads this tensor, of which the buffered one is a per-frame reshape (an EXPAND_DIMS before a conv):
    # the window is reshaped back to its shape. None: the slot reads the buffered tensor itself.
    via: Tensor | None = None

    def length(self, n: int) -> int:
        return self.full_length if self.full_length is not None else n + self.extra


@dataclass
class State:
    """One buffer on one tensor, shared by all its readers (docs/CONTRACT.md: largest need wins)."""

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
    pad_before: int = 0  # SAME padding on time in the original (the stream runs the op VALID on time)
    pad_after: int = 0

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
    frame: int = 1  # entries of the input's time axis per frame (> 1: a flat input, `[1, T*F]`)
    edge_pads: list[Operator] = field(default_factory=list)  # PADs on time that the stream drops (both sides)
    edges: list["EdgeBranch"] = field(default_factory=list)  # sub-window recomputes of the edges (left, right)
    edge_reads: list["EdgeRead"] = field(default_factory=list)  # heads/outputs that read [left|interior|right]
    same_padding: str = "exact"
    context: object | None = None  # context.ContextWindow: the reference window of a `context` stream
    # (state, the states it replaced): a buffer before a channel split that stands for one per branch
    # (passes/share_split_buffers.py); the contract's minimum still counts the branches' own.
    shared_states: list[tuple["State", list["State"]]] = field(default_factory=list)

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
        """docs/CONTRACT.md's rule: per tensor, the largest history any sliding op or head on it needs."""
        total = 0
        replaced = {id(s): parts for s, parts in self.shared_states}
        for s in (part for s in self.states for part in replaced.get(id(s), [s])):
            # Delays that align branches are no history; a window is, even where it is read some frames back (a
            # head's, or a conv's that reads further back to delay its branch).
            need = max((r.length(s.frames_in) - s.frames_in for r in s.readers), default=0)
            total += max(need, 0) * s.frame_bytes
        return total




@dataclass
class EdgeBranch:
    """Copies of the original ops (same options, shared weights) that recompute, every step, the frames that read
    padding, exactly as the original does. `left`: on the window's first `frames` input frames, from a delay line
    (its left padding is the original's); `right`: layer by layer, each op on its input's newest interior frames
    (from the stream's state) and right edge (its right padding is the original's). Frames that read a
    sub-window's own cut are never used."""

    side: str  # "left" or "right"
    frames: int  # input frames of the window it runs on (0: it reads the stream's state layer by layer)
    entry: Operator | None  # the first op: takes the window's frames from the input's buffer (a Reader reads)
    ops: list[Operator]  # entry first, then copies of the original ops, in order
    tensors: dict[Tensor, Tensor]  # original tensor -> its sub-window tensor
    offsets: dict[Tensor, int]  # original tensor -> index of the sub-window tensor's frame 0 in the original

    @property
    def macs(self) -> int:
        from ..ops import cost
        return sum(cost(op, [None if t is None else t.shape for t in op.inputs], [t.shape for t in op.outputs])[0]
                   for op in self.ops)


@dataclass
class EdgeRead:
    """A head (or a per-frame model output) that reads frames [lo, hi) of `tensor`: its left-edge part from the
    left branch, its interior from the stream (a Reader on `concat`), its right-edge part from the right branch."""

    op: Operator | None  # the head; None for a model output
    slot: int
    tensor: Tensor
    lo: int
    hi: int
    ops: list[Operator]  # detached: slices of the branches' outputs, then `concat`
    concat: Operator  # CONCATENATION(left, interior, right) along time; its output replaces `tensor` for `op`
    interior_slot: int | None  # the concat input the interior Reader feeds (None: no interior part)
