"""Follow the time axis through a model and compute a StreamPlan; it reads the model and changes nothing.

Every tensor on the time path gets a `TimeInfo`: its time axis, its length `L` in the original model, the input
frames per frame `S` (cumulative stride) and `first_end`, the input frame (window coordinates) on which its first
frame's receptive field ends. Streaming computes every tensor's frames so that the newest one ends on the newest
input frame; the original's last frame ends `unused` frames before the window's end. Ops that slide along time
need history (a ring buffer); heads need the whole original length; merges of branches whose frames end on
different input frames need a delay on the older branch.
"""

from __future__ import annotations

import math
import numpy as np

from .. import ops
from ..errors import InternalError, StreamingRefused, UsageError, XstreamError
from ..ir import PADDING_SAME, Model, Operator, Subgraph, Tensor
from .edges import other_axis_padding, plan_edges, same_split
from .context import plan_context
from .plan import CAUSAL, CONTEXT, SAME_PADDING_MODES, WINDOW_EXACT, Reader, Slide, State, StreamPlan, TimeInfo
from .time_axis import batch_matmul_axis, find_time_axis, frame_of, split_axis


class _NeedsEdges(Exception):
    """Raised in causal mode on the first padding after the window: analyze() starts again tracking edges."""


def op_index(sg: Subgraph, op: Operator) -> int:
    """The index a user sees: in the file they gave, where known."""
    return op.source_index if op.source_index is not None else sg.index_of(op)


def _refuse(sg: Subgraph, op: Operator, why: str) -> StreamingRefused:
    return StreamingRefused(f"operator {op_index(sg, op)} ({op.kind}): {why}")


def _const_ints(t: Tensor | None) -> list[int] | None:
    """The values of an integer constant; None for an activation or a constant that is not integers."""
    data = None if t is None else t.data
    if data is None or not np.issubdtype(data.dtype, np.integer):
        return None
    return [int(v) for v in data.reshape(-1)]


def map_axis(in_shape, axis: int, out_shape) -> int | None:
    """Where a reshape puts axis `axis`, if it stays a whole axis of its own; None if it merges or splits."""
    prefix = int(np.prod(in_shape[:axis], dtype=np.int64))
    size = in_shape[axis]
    acc = 1
    for b, d in enumerate(out_shape):
        if acc == prefix and d == size:
            return b
        acc *= d
        if acc > prefix and prefix != 0:
            break
    return None


class _Analyzer:
    def __init__(self, model: Model, time_axis: int, *, edges: bool = False,
                 dead_right: frozenset = frozenset()):
        self.model = model
        self.sg = model.main
        # edges=True: every padding on time (SAME, PAD on either side) is tracked as window edges (models that
        # pad both sides). Otherwise a left-only PAD is causal padding, absorbed by the state (and the PADs in
        # `dead_right` are treated so too: their right padding reaches no output, e.g. a Chomp1d crop drops it).
        self.edge_mode = edges
        self.dead_right = dead_right
        self.edge_sources: list[Operator] = []  # ops that pad time on both sides or after the window
        self.edge_pads: list[Operator] = []
        self.edge_heads: list[tuple[Operator, int, Tensor]] = []  # heads reading a tensor with edges
        self.times: dict[Tensor, TimeInfo] = {}
        self.windowed: set[Tensor] = set()  # tensors computed after a head (one value per window)
        self.shape_of_time: set[Tensor] = set()  # tensors computed from SHAPE of a time tensor
        self.readers: dict[Tensor, list[Reader]] = {}
        self.slides: list[Slide] = []
        self.heads: list[Operator] = []
        self.causal_pads: list[Operator] = []
        self.crops: list[tuple[Operator, int]] = []
        self.time_reshapes: list[Operator] = []
        self.head_offsets: list[tuple[Operator, int]] = []
        self.time_outputs: list[Tensor] = []
        self.time_axis = time_axis

    # -- bookkeeping -------------------------------------------------------------------------------------
    def set_time(self, t: Tensor, info: TimeInfo) -> None:
        self.times[t] = info

    def info(self, t: Tensor | None) -> TimeInfo | None:
        return None if t is None else self.times.get(t)

    def read(self, t: Tensor, reader: Reader) -> None:
        self.readers.setdefault(t, []).append(reader)

    def refuse(self, op: Operator, why: str) -> StreamingRefused:
        return _refuse(self.sg, op, why)

    # -- entry -------------------------------------------------------------------------------------------
    def run(self) -> None:
        sg = self.sg
        for owner, op in self.model.operators():
            if ops.family(op) == ops.STATE:
                why = ("the model is already streaming (it keeps state in this op)" if op.type == "CUSTOM" else
                       "the model already carries state (resource variables)")
                raise _refuse(owner, op, f"{why}; convert the original non-streaming model instead")
        for t in sg.tensors():
            if t.is_variable:
                raise StreamingRefused(f"tensor {t.name!r} is a variable: the model already carries state; "
                                       "convert the original non-streaming model instead")
        if not sg.outputs:
            raise StreamingRefused("the model has no outputs; nothing to stream")
        self.refuse_hybrid()
        if len(sg.inputs) != 1:
            raise StreamingRefused(f"the model has {len(sg.inputs)} inputs; xstream streams models with exactly "
                                   "one input (the frames)")
        x = sg.inputs[0]
        rank = len(x.shape)
        self.found = self.time_axis is None
        if self.found:
            found = find_time_axis(self.model) if rank > 1 else None
            self.time_axis = found.axis if found else 1
        if not 0 < self.time_axis < rank:
            raise UsageError(f"--time-axis {self.time_axis} is out of range for input {x.name!r} of shape "
                             f"{list(x.shape)} (axis 0 is the batch)")
        self.frame = frame_of(self.model, self.time_axis)
        if x.shape_signature is not None and x.shape_signature[self.time_axis] < 0:
            raise StreamingRefused(f"input {x.name!r} has a dynamic time dimension (shape_signature "
                                   f"{list(x.shape_signature)}); export the model with a fixed window length")
        if x.shape[self.time_axis] // self.frame < 2:
            raise StreamingRefused(f"input {x.name!r} has {x.shape[self.time_axis] // self.frame} frame(s) on axis "
                                   f"{self.time_axis}; nothing to stream {self._axis_hint()}")
        self.window = x.shape[self.time_axis] // self.frame
        self.set_time(x, TimeInfo(self.time_axis, self.window, 1, 0, raw_input=True, frame=self.frame))
        for op in sg.operators:
            self.visit(op)
        for t in sg.outputs:
            if t in self.shape_of_time:
                op = sg.producer(t)
                raise _refuse(sg, op, f"output {t.name!r} is computed from the shape of a time tensor; it has "
                                      "no streaming form")
            if self.info(t) is not None:
                self.time_outputs.append(t)
        if not self.slides and not self.heads:
            raise StreamingRefused("no operator slides along the time axis and none reads the whole window: "
                                   f"nothing to stream {self._axis_hint()}")

    def _axis_hint(self) -> str:
        x = self.sg.inputs[0]
        if self.found:
            return (f"(is --time-axis {self.time_axis} right?): xstream took axis {self.time_axis} of input "
                    f"{x.name!r} of shape {list(x.shape)} as time; give another with --time-axis")
        return (f"(is --time-axis {self.time_axis} right?): input {x.name!r} has shape {list(x.shape)}; without "
                "--time-axis xstream finds the axis that reaches a convolution or pool")

    def refuse_hybrid(self) -> None:
        """Dynamic-range ("hybrid") quantization: float activations meet integer constant weights directly (no
        DEQUANTIZE of the weights). The runtime quantizes those activations on every invoke with a scale taken
        from the whole input it is given, so a hop-sized input quantizes differently from the window."""
        for op in self.sg.operators:
            weights = [t for t in op.inputs if t is not None and t.is_constant and t.quantization is not None
                       and t.quantization.scale is not None and t.dtype in ("int8", "int4", "uint8")]
            if weights and any(t is not None and not t.is_constant and t.dtype == "float32" for t in op.inputs):
                raise self.refuse(op, "dynamic-range (hybrid) quantization: float activations with "
                                      f"{weights[0].dtype} weights; the runtime quantizes the activations on every invoke with a scale "
                                      "computed from the whole input, so a hop-sized input quantizes differently "
                                      "from the window and no stream can equal the original. Export float32 (no "
                                      "Optimize.DEFAULT) or full-integer int8 (with a representative dataset)")

    def visit(self, op: Operator) -> None:
        time_in = [(i, t) for i, t in enumerate(op.inputs) if self.info(t) is not None]
        if not time_in:
            if any(t is not None and t in self.windowed for t in op.inputs):
                self.windowed.update(op.outputs)
            elif any(t is not None and t in self.shape_of_time for t in op.inputs):
                self.shape_of_time.update(op.outputs)
            return
        row = ops.info(op)
        if row.family == ops.CONTROL:  # before the check below: an IF on a whole-window condition is control flow
            raise self.refuse(op, "runs a subgraph (control flow: a loop or a condition, e.g. a recurrent layer "
                                  "exported as WHILE) on the time path; xstream cannot follow time through it")
        if any(t is not None and t in self.windowed for t in op.inputs):
            raise self.refuse(op, "combines a value computed from the whole window with per-frame values "
                                  "(e.g. squeeze-and-excitation over time); this cannot be streamed exactly")
        handler = self.HANDLERS.get(row.family)
        if handler is None:
            raise self.refuse(op, f"{op.kind} on the time path is not known to xstream; it cannot tell how the "
                                  "op uses time (please report the model)")
        if row.family not in (ops.UNARY, ops.BINARY, ops.RESHAPE, "transpose", "shape"):
            for _, t in time_in:
                info = self.info(t)
                if info.frame > 1:
                    raise self.refuse(op, f"reads the flat input's frames ({info.frame} values each on axis "
                                          f"{info.axis}) before a RESHAPE splits them into [frames, values]; "
                                          "only element-wise ops can come before that RESHAPE")
        if row.family != "shape":
            for _, t in time_in:
                if self.info(t).pad_left and row.family not in (ops.SLIDE, ops.RESHAPE, "transpose"):
                    raise self.refuse(op, "causal padding on time reaches this op before a sliding op; only "
                                          "convolutions and pools directly after the PAD can absorb it")
        self.check_operands(op, row)
        try:
            handler(self, op, time_in)
            for t in op.outputs:  # the declared output shape must have the axis the op puts time on
                out = self.info(t)
                if out is not None and not 0 <= out.axis < len(t.shape):
                    raise self.malformed(op, f"output {t.name!r} has shape {list(t.shape)}, with no axis "
                                             f"{out.axis} for the time axis of its input")
            self._inherit_edges(op, time_in)
        except (XstreamError, _NeedsEdges):
            raise
        except Exception as e:  # a bug in xstream's handler, not the user's model: say so, do not refuse
            raise InternalError(f"analysing operator {op_index(self.sg, op)} ({op.kind}): {type(e).__name__}: "
                                f"{e}") from e

    def _inherit_edges(self, op: Operator, time_in) -> None:
        """Outputs whose handler left their edges open get the widest edges of the op's time inputs (per-frame
        ops keep each frame's dependence on the padding)."""
        left = max((self.info(t).edge_left or 0 for _, t in time_in if self.info(t)), default=0)
        right = max((self.info(t).edge_right or 0 for _, t in time_in if self.info(t)), default=0)
        for o in op.outputs:
            info = self.info(o)
            if info is not None and info.edge_left is None:
                info.edge_left = left
            if info is not None and info.edge_right is None:
                info.edge_right = right

    MIN_INPUTS = {ops.SLIDE: 1, ops.REDUCE: 2, "fully_connected": 2, "batch_matmul": 2, "transpose": 2, "pad": 2,
                  "strided_slice": 4, "slice": 3, "gather": 2}

    def check_operands(self, op: Operator, row) -> None:
        """Refuse an operator whose operands TFLite itself would reject, naming it (not a crash in a handler)."""
        need = self.MIN_INPUTS.get(row.family, 1)
        if row.family == ops.SLIDE and row.kernel == "weights":
            need = 2
        if op.type in ("SPLIT", "SPLIT_V"):
            need = 2 if op.type == "SPLIT" else 3
        bad = len(op.inputs) < need or any(t is None for t in op.inputs[:need]) or not op.outputs
        if row.kernel == "weights" and not bad:
            bad = len(op.inputs[1].shape) != 4
        if row.family == ops.SLIDE and not bad:
            bad = len(op.outputs[0].shape) != len(op.inputs[0].shape)
        if bad:
            raise self.refuse(op, f"has {len(op.inputs)} input(s) and {len(op.outputs)} output(s), or operands of "
                                  f"the wrong rank, where {op.kind} takes at least {need} inputs; is the model "
                                  "valid for TFLite?")

    def malformed(self, op: Operator, what: str) -> StreamingRefused:
        return self.refuse(op, f"{what}; is the model valid for TFLite?")

    def head(self, op: Operator, t: Tensor) -> None:
        info = self.info(t)
        self.heads.append(op)
        slot = op.inputs.index(t)
        if info.edge_left or info.edge_right:
            self.edge_heads.append((op, slot, t))  # the interior from the stream, the edges recomputed
        self.read(t, Reader(op, slot, 0, full_length=info.interior))
        self.head_offsets.append((op, info.unused(self.window)))
        self.windowed.update(op.outputs)

    # -- handlers ----------------------------------------------------------------------------------------
    def op_shape(self, op, time_in) -> None:
        for t in op.outputs:
            self.shape_of_time.add(t)

    def op_unary(self, op, time_in) -> None:
        info = self.info(time_in[0][1])
        for o in op.outputs:
            self.set_time(o, TimeInfo(info.axis, info.length, info.stride, info.first_end, frame=info.frame))

    def op_last_axis(self, op, time_in) -> None:
        t = time_in[0][1]
        info = self.info(t)
        if info.axis == len(t.shape) - 1:
            raise self.refuse(op, "normalises over the time axis (it is the last axis); this mixes frames")
        self.op_unary(op, time_in)

    def op_binary(self, op: Operator, time_in) -> None:
        out = op.outputs[0]
        out_rank = len(out.shape)
        infos = [(i, t, self.info(t)) for i, t in time_in]
        axes = {info.axis + out_rank - len(t.shape) for _, t, info in infos}
        if len(axes) != 1:
            raise self.refuse(op, "its inputs carry time on different axes")
        axis = axes.pop()
        for t in op.inputs:
            if t is None or self.info(t) is not None:
                continue
            k = axis - (out_rank - len(t.shape))
            if 0 <= k < len(t.shape) and t.shape[k] != 1:
                raise self.refuse(op, f"input {t.name!r} varies along time ({t.shape[k]} frames) but is not "
                                      "computed from the frames (e.g. a positional encoding); cannot stream")
        self._align(op, infos, axis)

    def _align(self, op: Operator, infos, axis: int) -> None:
        lengths = {info.length for _, _, info in infos}
        strides = {info.stride for _, _, info in infos}
        if len(strides) != 1:
            raise self.refuse(op, f"merges branches with different frame rates (strides {sorted(strides)})")
        if len(lengths) != 1:
            raise self.refuse(op, f"merges branches of different lengths {sorted(lengths)} on time")
        stride = strides.pop()
        newest = max(info.first_end for _, _, info in infos)
        for slot, t, info in infos:
            lag, rem = divmod(newest - info.first_end, stride)
            if rem and self._delay_branch(t, newest - info.first_end):
                lag, rem = 0, 0  # the branch now produces its frames as late as the latest one
            if rem:
                raise self.refuse(op, f"branches are misaligned by {newest - info.first_end} input frames, not a "
                                      f"multiple of their stride {stride}; no delay can align them")
            if lag:
                self._place_delay(op, slot, t, lag)
        frames = {info.frame for _, _, info in infos}
        if len(frames) != 1:
            raise self.refuse(op, "merges the flat input with its frames split out")
        for o in op.outputs:
            self.set_time(o, TimeInfo(axis, lengths.pop() if lengths else infos[0][2].length, stride, newest,
                                      frame=frames.pop() if frames else 1))

    def _state_frames(self, readers: list[Reader]) -> int:
        """Frames of history a buffer with these readers keeps (a head counted at one new frame per step)."""
        return max([0] + [r.lag + (r.extra if r.full_length is None else r.full_length - 1) for r in readers])

    def _place_delay(self, op: Operator, slot: int, t: Tensor, lag: int) -> None:
        """Merge `op` reads branch tensor `t` (input `slot`) `lag` of its frames back. The delayed frames are read
        where keeping them costs the least state: a buffer of `lag` frames on `t`, or upstream, where `t` is
        computed by a chain of ops each read only by the next (per-frame ops, reshapes, crops, 1x1 or sliding
        convs): the chain's first op reads its input's window that much further back, or, where a chain tensor
        is also reshaped into a tensor with a buffer (EXPAND_DIMS before a conv), the op after it reads that
        buffer's delayed frames reshaped back (`Reader.via`). A buffer kept for another reader (a residual skip
        beside the block's first conv) then often holds the frames already: the chain runs on the delayed frames
        instead of the new ones, with the same work. Ties keep fewer buffers, then the nearest place."""
        delay = lag * self.info(t).stride  # in input frames

        def cost(x: Tensor, before: list[Reader], after: list[Reader]) -> tuple[int, int]:
            frame_bytes = x.nbytes // max(x.shape[self.info(x).axis], 1)
            added = self._state_frames(after) - self._state_frames(before)
            return added * frame_bytes, 0 if self._state_frames(before) else 1

        def plain(x: Tensor) -> bool:
            i = self.info(x)
            return i is not None and i.frame == 1 and not (i.pad_left or i.edge_left or i.edge_right)

        now = self.readers.get(t, [])
        new = Reader(op, slot, 0, lag=lag)
        best = (*cost(t, now, now + [new]), 0)
        place = (t, None, new, [])
        path, nxt = [t], op
        while not self.edge_mode:
            cur = path[-1]
            if cur in self.sg.outputs or not plain(cur) or sum(u is cur for u in nxt.inputs) != 1:
                break
            # A sibling that is the same frames reshaped (EXPAND_DIMS before a conv) and keeps a buffer: `nxt`
            # reads its delayed frames, reshaped back to `cur`'s shape (where `nxt` reads no window of `cur`).
            windowed = any(r.op is nxt for r in self.readers.get(cur, []))
            for q in [] if windowed else self.sg.consumers(cur):
                e = q.outputs[0] if q is not nxt and q.type in ("RESHAPE", "EXPAND_DIMS", "SQUEEZE") else None
                if e is None or not plain(e) or e.dtype != cur.dtype or not self.readers.get(e) \
                        or (self.info(e).length, self.info(e).stride) != (self.info(cur).length, self.info(cur).stride):
                    continue
                rs = self.readers[e]
                moved = Reader(nxt, nxt.inputs.index(cur), 0, lag=delay // self.info(e).stride, via=cur)
                score = (*cost(e, rs, rs + [moved]), len(path))
                if score < best:
                    best, place = score, (e, None, moved, path[:-1])
            if self.sg.consumers(cur) != [nxt]:
                break
            p = self.sg.producer(cur)
            if p is None or len(p.outputs) != 1 or p in self.heads or p.type in ("PAD", "PADV2", "MIRROR_PAD"):
                break
            ins = [(i, u) for i, u in enumerate(p.inputs) if u is not None and self.info(u) is not None]
            if len(ins) != 1 or not plain(ins[0][1]) or delay % self.info(ins[0][1]).stride:
                break
            s, x = ins[0]
            rs = self.readers.get(x, [])
            old = next((r for r in rs if r.op is p and r.slot == s), None)
            moved = Reader(p, s, old.extra if old else 0, lag=(old.lag if old else 0) + delay // self.info(x).stride)
            score = (*cost(x, rs, [r for r in rs if r is not old] + [moved]), len(path))
            if score < best:
                best, place = score, (x, old, moved, list(path))
            path.append(x)
            nxt = p
        x, old, moved, delayed = place
        if old is not None:
            old.lag = moved.lag
        else:
            self.read(x, moved)
        for u in delayed:  # their frames are produced `delay` input frames later now
            self.times[u].first_end += delay

    def _delay_branch(self, t: Tensor, delay: int) -> bool:
        """Make branch tensor `t` produce each frame `delay` input frames later: at the last tensor upstream whose
        frame rate divides `delay` (before a strided op: e.g. a stride-2 shortcut beside a centred stride-2
        conv), the op reading it reads its window that much further back. Only through tensors with a single
        consumer, so nothing else sees the delay. False if no such tensor is on the branch."""
        path = [t]
        while True:
            cur = path[-1]
            if len(self.sg.consumers(cur)) > 1 and cur is not t or cur in self.sg.outputs:
                return False
            op = self.sg.producer(cur)
            if op is None:
                return False
            ins = [(i, u) for i, u in enumerate(op.inputs) if u is not None and self.info(u) is not None]
            if len(ins) != 1:
                return False
            slot, x = ins[0]
            info = self.info(x)
            if delay % info.stride == 0:
                reader = next((r for r in self.readers.get(x, []) if r.op is op and r.slot == slot), None)
                if reader is None:
                    self.read(x, Reader(op, slot, 0, lag=delay // info.stride))
                else:
                    reader.lag += delay // info.stride
                for u in path:  # their frames are produced `delay` input frames later now
                    self.times[u].first_end += delay
                return True
            path.append(x)

    def op_concatenation(self, op, time_in) -> None:
        out = op.outputs[0]
        axis = op.options.get("axis", 0) % len(out.shape)
        infos = [(i, t, self.info(t)) for i, t in time_in]
        if any(t is not None and self.info(t) is None for t in op.inputs):
            raise self.refuse(op, "concatenates per-frame values with a tensor that is not computed from the "
                                  "frames; cannot stream")
        if any(info.axis == axis for _, _, info in infos):
            raise self.refuse(op, "concatenates along the time axis; this reorders frames")
        self._align(op, infos, infos[0][2].axis)

    def op_pack(self, op, time_in) -> None:
        if len(time_in) != len(op.inputs):
            raise self.refuse(op, "packs per-frame values with values not computed from the frames")
        axis = op.options.get("axis", 0) % len(op.outputs[0].shape)
        infos = [(i, t, self.info(t)) for i, t in time_in]
        a = infos[0][2].axis
        self._align(op, infos, a if axis > a else a + 1)

    def op_fully_connected(self, op, time_in) -> None:
        x = op.inputs[0]
        info = self.info(x)
        if any(self.info(t) is not None for t in op.inputs[1:]):
            raise self.refuse(op, "its weights are computed from the frames; not supported")
        if info.axis == len(x.shape) - 1:
            return self.head(op, x)
        if op.options.get("keep_num_dims", False):
            axis = info.axis
        elif int(np.prod(x.shape[:info.axis])) == 1 and info.axis == len(x.shape) - 2:
            axis = 0
        else:
            raise self.refuse(op, f"flattens time with other axes (input {list(x.shape)}, time axis {info.axis}) "
                                  "in a fully connected layer that is not the head")
        self.set_time(op.outputs[0], TimeInfo(axis, info.length, info.stride, info.first_end))

    def op_reduce(self, op, time_in) -> None:
        x = op.inputs[0]
        info = self.info(x)
        axes = _const_ints(op.inputs[1])
        if axes is None:
            raise self.refuse(op, "reduces over axes computed at run time; cannot tell whether time is reduced")
        axes = sorted({a % len(x.shape) for a in axes})
        if info.axis in axes:
            return self.head(op, x)
        keep = op.options.get("keep_dims", False)
        axis = info.axis if keep else info.axis - sum(1 for a in axes if a < info.axis)
        self.set_time(op.outputs[0], TimeInfo(axis, info.length, info.stride, info.first_end))

    def op_reshape(self, op, time_in) -> None:
        x = op.inputs[0]
        info = self.info(x)
        if any(self.info(t) is not None for t in op.inputs[1:]):
            raise self.refuse(op, "its shape operand carries time")
        out = op.outputs[0]
        split = split_axis(x.shape, info.axis, out.shape)
        # A flat input's frames: the RESHAPE into [frames, values] splits the time axis at whole frames.
        if split is not None and split[1] > 1 and info.frame % split[1]:
            split = None
        if split is None:
            if info.frame > 1:
                raise self.refuse(op, f"reshapes the flat input (frames of {info.frame} values on axis "
                                      f"{info.axis}) to {list(out.shape)}, which does not keep whole frames on one "
                                      "axis; cannot stream")
            if info.pad_left:
                raise self.refuse(op, "flattens a causally padded tensor")
            # Time merged with other axes: a flatten, read whole by the head behind it.
            return self.head(op, x)
        axis, inner = split
        self.time_reshapes.append(op)
        self.set_time(out, TimeInfo(axis, info.length, info.stride, info.first_end, info.pad_left,
                                    raw_input=info.raw_input, frame=info.frame // inner))

    def op_transpose(self, op, time_in) -> None:
        x = op.inputs[0]
        info = self.info(x)
        perm = _const_ints(op.inputs[1])
        if perm is None:
            raise self.refuse(op, "permutation computed at run time")
        if sorted(perm) != list(range(len(x.shape))):
            raise self.malformed(op, f"permutation {perm} does not fit its rank-{len(x.shape)} input")
        self.set_time(op.outputs[0], TimeInfo(perm.index(info.axis), info.length, info.stride, info.first_end,
                                              info.pad_left, raw_input=info.raw_input, frame=info.frame))

    def _pad_rows(self, op) -> list[list[int]]:
        pads = _const_ints(op.inputs[1])
        if pads is None:
            raise self.refuse(op, "paddings computed at run time")
        if len(pads) != 2 * len(op.inputs[0].shape):
            raise self.malformed(op, f"has {len(pads)} padding values for a rank-{len(op.inputs[0].shape)} input")
        return [pads[i:i + 2] for i in range(0, len(pads), 2)]

    def op_pad(self, op, time_in) -> None:
        x, out = op.inputs[0], op.outputs[0]
        info = self.info(x)
        left, right = self._pad_rows(op)[info.axis]
        if left < 0 or right < 0:
            raise self.malformed(op, f"pads time by {left} and {right} frames")
        L, S = info.length, info.stride
        if self.edge_mode:
            # Padding on both sides: the frames it touches are edges, recomputed with the original PAD itself.
            if left or right:
                self.edge_sources.append(op)
                self.edge_pads.append(op)
            self.set_time(out, TimeInfo(info.axis, L + left + right, S, info.first_end - left * S,
                                        edge_left=(info.edge_left or 0) + left,
                                        edge_right=(info.edge_right or 0) + right))
            return
        if (right and op not in self.dead_right) or (op.type == "MIRROR_PAD" and (left or right)):
            raise _NeedsEdges()
        if left:
            if op.type == "PADV2" and len(op.inputs) > 2 and op.inputs[2] is not None:
                value = op.inputs[2]
                if not value.is_constant:
                    raise self.refuse(op, "pads time with a value computed at run time")
                fill = np.asarray(value.data).reshape(-1)[0].item()
                if fill != x.zero_point:
                    raise self.refuse(op, f"pads time with {fill}, not the zero point {x.zero_point}; the ring "
                                          "buffer starts at the zero point")
            if x.quantization is not None and out.quantization is not None \
                    and not x.quantization.same_as(out.quantization):
                raise self.refuse(op, "requantizes while padding time; not supported")
            self.causal_pads.append(op)
        elif right:
            self.edge_pads.append(op)  # padding after the window that no output reads: the stream drops it
        self.set_time(out, TimeInfo(info.axis, L + left + right, S, info.first_end - left * S,
                                    info.pad_left + left))

    def _crop(self, op, begin: int, end: int) -> None:
        x = op.inputs[0]
        info = self.info(x)
        if end - begin < 1:
            raise self.refuse(op, "slices away every frame")
        axis = self._slice_out_axis(op, info.axis)
        self.crops.append((op, info.axis))
        left = max((info.edge_left or 0) - begin, 0)
        right = max((info.edge_right or 0) - (info.length - end), 0)
        self.set_time(op.outputs[0], TimeInfo(axis, end - begin, info.stride, info.first_end + begin * info.stride,
                                              edge_left=left, edge_right=right))

    def _slice_out_axis(self, op, axis: int) -> int:
        shrink = op.options.get("shrink_axis_mask", 0) if op.type == "STRIDED_SLICE" else 0
        return axis - sum(1 for k in range(axis) if shrink >> k & 1)

    def op_strided_slice(self, op, time_in) -> None:
        x = op.inputs[0]
        info = self.info(x)
        if self.info(op.inputs[1]) or self.info(op.inputs[2]) or self.info(op.inputs[3]):
            raise self.refuse(op, "slice bounds carry time")
        begin, end, strides = (_const_ints(t) for t in op.inputs[1:4])
        if begin is None or end is None or strides is None:
            raise self.refuse(op, "slice bounds computed at run time")
        if not len(begin) == len(end) == len(strides) == len(x.shape):
            raise self.malformed(op, f"has slice bounds of {len(begin)}, {len(end)} and {len(strides)} values for a "
                                     f"rank-{len(x.shape)} input")
        o = op.options
        a = info.axis
        if o.get("ellipsis_mask", 0) or o.get("new_axis_mask", 0):
            raise self.refuse(op, "ellipsis/new-axis slicing on the time path is not supported")
        if o.get("shrink_axis_mask", 0) >> a & 1:
            raise self.refuse(op, "selects a single frame of the time axis; not supported (an unrolled per-frame "
                                  "loop such as Keras TimeDistributed streams only when every frame runs the same "
                                  "ops with the same weights and quantization)")
        if strides[a] != 1:
            raise self.refuse(op, f"takes every {strides[a]}th frame; not supported")
        L = info.length
        b = 0 if o.get("begin_mask", 0) >> a & 1 else begin[a]
        e = L if o.get("end_mask", 0) >> a & 1 else end[a]
        b = max(0, min(L, b + L if b < 0 else b))
        e = max(0, min(L, e + L if e < 0 else e))
        self._crop(op, b, e)

    def op_slice(self, op, time_in) -> None:
        x = op.inputs[0]
        info = self.info(x)
        begin, size = _const_ints(op.inputs[1]), _const_ints(op.inputs[2])
        if begin is None or size is None:
            raise self.refuse(op, "slice bounds computed at run time")
        if not len(begin) == len(size) == len(x.shape):
            raise self.malformed(op, f"has slice bounds of {len(begin)} and {len(size)} values for a "
                                     f"rank-{len(x.shape)} input")
        b = begin[info.axis]
        s = size[info.axis]
        self._crop(op, b, info.length if s < 0 else b + s)

    def _split(self, op, x: Tensor, axis_t: Tensor | None, axis_opt: int | None = None) -> None:
        info = self.info(x)
        axis = axis_opt if axis_opt is not None else (_const_ints(axis_t) or [None])[0]
        if axis is None:
            raise self.refuse(op, "split axis computed at run time")
        if axis % len(x.shape) == info.axis:
            raise self.refuse(op, "splits along the time axis")
        out_axis = info.axis
        if op.type == "UNPACK" and axis % len(x.shape) < info.axis:
            out_axis -= 1
        for o in op.outputs:
            self.set_time(o, TimeInfo(out_axis, info.length, info.stride, info.first_end))

    def op_split(self, op, time_in) -> None:
        if op.type == "SPLIT":
            self._split(op, op.inputs[1], op.inputs[0])
        elif op.type == "SPLIT_V":
            self._split(op, op.inputs[0], op.inputs[2])
        else:  # UNPACK
            self._split(op, op.inputs[0], None, op.options.get("axis", 0))

    def op_gather(self, op, time_in) -> None:
        x = op.inputs[0]
        info = self.info(x)
        if self.info(op.inputs[1]) is not None:
            raise self.refuse(op, "gathers with indices computed from the frames")
        axis = op.options.get("axis", 0) % len(x.shape)
        if axis == info.axis:
            return self._gather_frames(op, x, info)
        idx_rank = len(op.inputs[1].shape)
        out_axis = info.axis if info.axis < axis else info.axis + idx_rank - 1
        self.set_time(op.outputs[0], TimeInfo(out_axis, info.length, info.stride, info.first_end))

    def _gather_frames(self, op, x: Tensor, info: TimeInfo) -> None:
        """GATHER along time with constant indices: one frame (x[:, :, -1] from onnx2tf) or a run of consecutive
        frames is a crop; anything else reorders frames."""
        idx = _const_ints(op.inputs[1])
        if idx is None:
            raise self.refuse(op, "picks frames with indices computed at run time; cannot stream")
        L = info.length
        idx = [i + L if i < 0 else i for i in idx]
        if not idx or any(not 0 <= i < L for i in idx):
            raise self.malformed(op, f"picks frames {idx} of {L}")
        rank = len(op.inputs[1].shape)
        if rank > 1 or op.options.get("batch_dims", 0) or idx != list(range(idx[0], idx[0] + len(idx))):
            raise self.refuse(op, f"picks frames {idx[:8]} along time out of order, with gaps or in a grid; only "
                                  "one frame (x[:, :, -1]) or consecutive frames (x[:, :, a:b]) can be streamed")
        if rank == 1:  # a run of frames, the time axis kept: a crop
            return self._crop(op, idx[0], idx[-1] + 1)
        # One frame, the time axis dropped: the head reads that frame alone (the stream's GATHER takes index 0
        # of a 1-frame window; time_path.shrink_time).
        if info.edge_left or info.edge_right:
            return self.head(op, x)  # the edges put the whole window back together; the index stays
        self.heads.append(op)
        self.read(x, Reader(op, 0, 0, full_length=1))
        picked = TimeInfo(info.axis, 1, info.stride, info.first_end + idx[0] * info.stride)
        self.head_offsets.append((op, picked.unused(self.window)))
        self.windowed.update(op.outputs)

    def op_batch_matmul(self, op, time_in) -> None:
        """A per-frame Linear exported as BATCH_MATMUL with a constant operand (onnx2tf): per frame unless time is
        contracted (then it reads the whole window: a head)."""
        if len(time_in) > 1:
            raise self.refuse(op, "multiplies two tensors computed from the frames (e.g. attention over time); "
                                  "cannot stream")
        slot, x = time_in[0]
        info = self.info(x)
        out = op.outputs[0]
        out_axis = batch_matmul_axis(op, slot, info.axis)
        if out_axis is None:
            return self.head(op, x)  # a fully connected layer over time (a Linear over frames)
        other = op.inputs[1 - slot]
        if info.axis < len(x.shape) - 2:  # time in the batch axes: the other operand must not vary along it
            k = out_axis - (len(out.shape) - len(other.shape))
            if 0 <= k < len(other.shape) - 2 and other.shape[k] != 1:
                raise self.refuse(op, f"operand {other.name!r} varies along time ({other.shape[k]} frames) but is "
                                      "not computed from the frames; cannot stream")
        self.set_time(out, TimeInfo(out_axis, info.length, info.stride, info.first_end))

    def op_slide(self, op: Operator, time_in) -> None:
        x = op.inputs[0]
        info = self.info(x)
        if time_in[0][0] != 0 or len(time_in) > 1:
            raise self.refuse(op, "its weights are computed from the frames; not supported")
        rank = len(x.shape)
        if rank != 4 or info.axis not in (1, 2):
            where = {3: "the channels (a Conv1d's in_channels)"}.get(info.axis, "")
            raise self.refuse(op, f"time is on axis {info.axis} of its NHWC input; only height (1) or width (2) can "
                                  f"slide{'; axis 3 is ' + where if where else ''} {self._axis_hint()}")
        hw = "h" if info.axis == 1 else "w"
        if op.options_type not in ("Conv2DOptions", "DepthwiseConv2DOptions", "Pool2DOptions"):
            raise self.refuse(op, f"has no {op.kind} options (kernel, stride, padding), or options of another op; "
                                  "the model is malformed")
        o = op.options
        if ops.is_pool(op):
            kernel = o.get("filter_height" if hw == "h" else "filter_width", 1)
            dilation = 1
        else:
            kernel = op.inputs[1].shape[info.axis]
            dilation = o.get(f"dilation_{hw}_factor", 1)
        stride = o.get(f"stride_{hw}", 1)
        rf = dilation * (kernel - 1) + 1
        L = info.length
        before = after = 0
        if o.get("padding") == PADDING_SAME:
            # TF's SAME: the output has ceil(L / stride) frames; the padding is split with the smaller half first.
            total = max((math.ceil(L / stride) - 1) * stride + rf - L, 0)
            before, after = same_split(total)
            if total and not self.edge_mode:
                raise _NeedsEdges()  # (edge mode reads every padding, causal PADs too, as window edges)
            if total and ops.is_pool(op) and op.type != "MAX_POOL_2D" and any(other_axis_padding(op, 3 - info.axis)):
                raise self.refuse(op, "pads both time and its other axis SAME; the stream runs it VALID on time, and "
                                      "an average over SAME padding counts only real values, which no explicit PAD "
                                      "reproduces (export it with padding='valid' on the feature axis)")
            expect = math.ceil(L / stride)
        else:
            expect = (L - rf) // stride + 1
        out_len = op.outputs[0].shape[info.axis]
        if out_len != expect:
            raise self.refuse(op, f"output has {out_len} frames, expected {expect} for kernel {kernel}, stride "
                                  f"{stride}, dilation {dilation} on {L} frames")
        if info.pad_left >= rf:
            raise self.refuse(op, f"reads {info.pad_left} frames of causal padding with a receptive field of {rf}: "
                                  "its first output frames are computed from padding alone, which no stream state "
                                  "reproduces (pad at most receptive field - 1 frames)")
        if out_len == 1 and rf + stride > L and not info.pad_left and not before and not after:
            # The window covers the whole input (a global pool written as a pool): it is a head.
            return self.head(op, x)
        self.slides.append(Slide(op, op_index(self.sg, op), kernel, stride, dilation, pad_before=before,
                                 pad_after=after))
        if before or after:
            self.edge_sources.append(op)
        self.read(x, Reader(op, 0, rf - stride))
        # Output frame j reads input frames j*stride - before ... + rf - 1 (the stream runs it VALID on time, so
        # it computes exactly the frames that read no padding: the interior).
        a, b = info.edge_left or 0, info.edge_right or 0
        left = min(out_len, -(-(a + before) // stride)) if a + before > 0 else 0
        first_right = -(-(L - b - rf + 1 + before) // stride)
        right = max(0, out_len - max(first_right, 0))
        self.set_time(op.outputs[0], TimeInfo(info.axis, out_len, info.stride * stride,
                                              info.first_end + (rf - 1 - before) * info.stride,
                                              edge_left=left, edge_right=right))


_Analyzer.HANDLERS = {name[3:]: fn for name, fn in vars(_Analyzer).items() if name.startswith("op_")}


def analyze(model: Model, time_axis: int | None = None, hop: int | None = None,
            same_padding: str = "exact") -> StreamPlan:
    """Compute how `model` streams with `hop` input frames per step (default: the smallest exact hop); time is
    on input axis `time_axis`, found by itself when None (time_axis.py)."""
    if hop is not None and hop < 1:
        raise UsageError(f"--hop {hop}: the hop must be positive (input frames per step)")
    for t in model.main.tensors():
        if 0 in t.shape and not t.is_constant:
            raise UsageError(f"tensor {t.name!r} has an empty dimension (shape {list(t.shape)}): the model computes "
                             f"nothing on it; export it with the shapes it runs with")
    a = _walk(model, time_axis)
    T = a.window
    strides = {info.stride for info in a.times.values()}
    min_hop = 1
    for s in strides:
        min_hop = min_hop * s // math.gcd(min_hop, s)
    if hop is None:
        hop = min_hop
    if hop < 1 or hop % min_hop:
        raise UsageError(f"--hop {hop} is not a multiple of {min_hop}, the product of the strides along time; "
                         f"use {min_hop}, {2 * min_hop}, ...")
    if hop > T:
        raise UsageError(f"--hop {hop} is longer than the model's window of {T} frames")

    offsets = {d for _, d in a.head_offsets} | {a.times[t].unused(T) for t in a.time_outputs}
    if len(offsets) > 1:
        raise StreamingRefused(f"the model's outputs end on different frames of the window (offsets "
                               f"{sorted(offsets)}); outputs would need different delays")
    if not offsets:
        raise StreamingRefused("no model output depends on the frames through a head or a per-frame path; "
                               "nothing to stream")
    D = offsets.pop()
    if same_padding not in SAME_PADDING_MODES:
        raise UsageError(f"--same-padding {same_padding!r}: use one of {', '.join(SAME_PADDING_MODES)}")
    edge_plan = _plan_edges(a, T, D, hop, same_padding) if a.edge_mode else None
    if edge_plan is not None:
        D = edge_plan[0]

    contract = CAUSAL if a.causal_pads else WINDOW_EXACT
    if edge_plan is not None and edge_plan[3] is not None:
        contract = CONTEXT  # equal to the context reference, not to the original
    compare_step = None
    input_delay = 0
    if contract == CAUSAL:
        # The first window (frames 0..T-1) must end on a step boundary. If it does not, delay the input so it
        # does: the delay's zeros then stand for padding, which holds where the padded tensor is the input.
        input_delay = -(T - D) % hop
        late = [op for op in a.causal_pads if not a.times[op.inputs[0]].raw_input
                and a.times[op.inputs[0]].first_end != a.times[op.inputs[0]].stride - 1 - input_delay]
        for op in late:
            before = a.times[op.inputs[0]]
            if before.first_end != before.stride - 1:
                raise _refuse(a.sg, op, "causal padding after a strided or valid op (e.g. a Conv1d without "
                                        "padding, then F.pad): the stream computes frames where the original pads, "
                                        "so no state can stand for the padding (pad causally from the input on, "
                                        "or use valid)")
        if late:
            # Delaying the input would run its zero frames through the ops before these PADs, whose outputs would
            # then stand where the original pads: delay the heads instead (_delay_heads).
            _delay_heads(a, late[0], T, D, hop, min_hop, input_delay)
            D -= input_delay
            input_delay = 0
        D -= input_delay
        compare_step = (T - D) // hop - 1
        warmup = compare_step
        if input_delay:
            x = a.sg.inputs[0]
            for r in a.readers.get(x, []):
                r.lag += input_delay
            read_already = {(r.op, r.slot) for r in a.readers.get(x, [])}
            for op in a.sg.consumers(x):
                for slot, t in enumerate(op.inputs):
                    if t is x and (op, slot) not in read_already:
                        a.read(x, Reader(op, slot, 0, lag=input_delay))
    elif edge_plan is not None and edge_plan[3] is not None:  # context: the reference window
        ctx = edge_plan[3]
        warmup = max(0, -(-(ctx.window - ctx.offset) // hop) - 1)
    else:
        warmup = max(0, -(-(T - D) // hop) - 1)

    states = []
    for t, readers in a.readers.items():
        info = a.times[t]
        n = hop // info.stride
        if all(r.lag == 0 and r.length(n) == n for r in readers):
            continue  # every reader takes just the new frames (e.g. 1x1 convs): nothing to keep
        frames = max(r.lag + r.length(n) for r in readers)
        if info.frame > 1:  # a flat input: the buffer counts entries of its axis, `frame` per frame
            if any(r.extra or r.full_length is not None for r in readers):
                raise InternalError(f"a window is read from the flat input {t.name!r} before its RESHAPE into frames")
            for r in readers:
                r.lag *= info.frame
            n, frames = n * info.frame, frames * info.frame
        states.append(State(t, info.axis, n, frames, readers, t.nbytes // t.shape[info.axis]))
    for s in a.slides:
        info = a.times[s.op.inputs[0]]
        s.frames_in = hop // info.stride
        s.frames_out = s.frames_in // s.stride
    plan = StreamPlan(a.time_axis, T, hop, contract, D, warmup, compare_step, a.times, states, a.slides,
                      a.heads, a.causal_pads, a.crops, a.time_reshapes, input_delay=input_delay,
                      edge_pads=a.edge_pads, frame=a.frame)
    if edge_plan is not None:
        plan.edges, plan.edge_reads, plan.context = edge_plan[1], edge_plan[2], edge_plan[3]
        plan.same_padding = same_padding
    return plan


def _delay_heads(a: _Analyzer, pad: Operator, T: int, D: int, hop: int, min_hop: int, delay: int) -> None:
    """A causal model whose first window ends `delay` frames before a step ends, with causal padding on a computed
    tensor (not on the input): the stream runs undelayed, so after a reset its state holds the padding exactly, and
    every head reads its window `delay` input frames back, so the step that ends `delay` frames after the first
    window reads exactly that window. Refuses, with the true cause, where that cannot be expressed."""
    hops = [h for h in range(min_hop, T + 1, min_hop) if (T - D) % h == 0]
    cause = (f"the first window ({T - D} frames up to the last one the model reads) ends {delay} frame(s) before "
             f"a step of --hop {hop} does, and this PAD pads a computed tensor, not the input, so delaying the "
             "input would put computed frames where the original pads")
    fix = f"use --hop {' or '.join(str(h) for h in hops[:4])}" if hops else "use a hop that divides the window"
    if a.time_outputs:
        raise _refuse(a.sg, pad, f"{cause}, and output {a.time_outputs[0].name!r} is per frame (only a head can be "
                                 f"delayed instead); {fix}")
    for t, readers in a.readers.items():
        for r in readers:
            if r.full_length is None:
                continue
            stride = a.times[t].stride
            if delay % stride:
                raise _refuse(a.sg, pad, f"{cause}, and the head operator {op_index(a.sg, r.op)} ({r.op.kind}) "
                                         f"reads frames {stride} input frames apart, so it cannot read {delay} "
                                         f"frame(s) back; {fix}")
            r.lag += delay // stride


def _walk(model: Model, time_axis: int) -> _Analyzer:
    """Follow time through `model`: first reading left-only padding as causal; if the model pads time after the
    window too, again with every padding as window edges; and if that padding after the window reaches no
    output (a crop drops it, as Chomp1d does), once more as causal padding without it."""
    try:
        a = _Analyzer(model, time_axis)
        a.run()
        return a
    except _NeedsEdges:
        pass
    a = _Analyzer(model, time_axis, edges=True)
    a.run()
    read = [t for _, _, t in a.edge_heads] + a.time_outputs
    live_right = any(a.times[t].edge_right for t in read)
    if not live_right and all(op.type in ("PAD", "PADV2") for op in a.edge_sources):
        dead = frozenset(op for op in a.edge_pads if a.times[op.outputs[0]].length > a.times[op.inputs[0]].length)
        try:
            causal = _Analyzer(model, time_axis, dead_right=dead)
            causal.run()
            return causal
        except (_NeedsEdges, StreamingRefused):
            pass  # keep the edges: the left edge is recomputed instead of standing for causal padding
    return a


def _plan_edges(a: _Analyzer, T: int, D: int, hop: int, mode: str = "exact"):
    """Edge mode: (offset, branches, reads, context window), with the Readers registered on `a`. None when no
    edge reaches a head or an output (every padding is cropped away: a plain VALID stream)."""
    if mode == CONTEXT:
        read = [t for op in a.heads for t in op.inputs if t is not None and t in a.times] + a.time_outputs
        if not any(a.times[t].edge_left or a.times[t].edge_right for t in read):
            return None
        ctx = plan_context(a.model, a.times, read)
        for t, readers in a.readers.items():  # each head reads its whole length, all real frames
            for r in readers:
                if r.full_length is not None:
                    r.full_length = a.times[t].length
        return ctx.offset - ctx.after, [], [], ctx
    reads = [(op, slot, t, 0, a.times[t].length) for op, slot, t in a.edge_heads]
    outs = []
    for t in a.time_outputs:
        info = a.times[t]
        n = hop // info.stride
        outs.append((None, a.sg.outputs.index(t), t, info.length - n, info.length))
    tensors = [r[2] for r in reads] + [o[2] for o in outs]
    live_right = any(a.times[t].edge_right for t in tensors)
    step = 1  # the window may move only by whole frames of every tensor a head or an output reads
    for t in tensors + [t for op in a.heads for t in op.inputs if t is not None and t in a.times]:
        step = step * a.times[t].stride // math.gcd(step, a.times[t].stride)
    offset = D - step * -(-D // step) if live_right and D > 0 else D
    shift = D - offset  # input frames between the window's last interior frame and the newest frame fed

    def shift_of(t: Tensor) -> int:
        """Frames of t between its window's last interior frame and the stream's newest frame of t."""
        info = a.times[t]
        return (info.unused(T) - offset) // info.stride

    if not reads and not any(a.times[t].edge_left or a.times[t].edge_right for t in tensors) and not shift:
        return None
    if shift:  # every head reads its window `shift` input frames back
        for t, readers in a.readers.items():
            for r in readers:
                if r.full_length is not None:
                    r.lag += shift_of(t)
    edge_outputs = [o for o in outs if a.times[o[2]].edge_left or a.times[o[2]].edge_right or shift]
    for op, slot, t in a.edge_heads:  # the head reads the concat; the interior Reader moves there
        a.readers[t] = [r for r in a.readers[t] if not (r.op is op and r.slot == slot)]
    branches, edge_reads, registered = plan_edges(a.sg, a.times, reads + edge_outputs, T, offset, shift_of)
    for t, r in registered:
        a.read(t, r)
    return offset, branches, edge_reads, None
