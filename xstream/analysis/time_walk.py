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
from .plan import CAUSAL, WINDOW_EXACT, Reader, Slide, State, StreamPlan, TimeInfo


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
    def __init__(self, model: Model, time_axis: int):
        self.model = model
        self.sg = model.main
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
        if len(sg.inputs) != 1:
            raise StreamingRefused(f"the model has {len(sg.inputs)} inputs; xstream streams models with exactly "
                                   "one input (the frames)")
        x = sg.inputs[0]
        rank = len(x.shape)
        if not 0 < self.time_axis < rank:
            raise UsageError(f"--time-axis {self.time_axis} is out of range for input {x.name!r} of shape "
                             f"{list(x.shape)} (axis 0 is the batch)")
        if x.shape_signature is not None and x.shape_signature[self.time_axis] < 0:
            raise StreamingRefused(f"input {x.name!r} has a dynamic time dimension (shape_signature "
                                   f"{list(x.shape_signature)}); export the model with a fixed window length")
        if x.shape[self.time_axis] < 2:
            raise StreamingRefused(f"input {x.name!r} has {x.shape[self.time_axis]} frame(s) on axis "
                                   f"{self.time_axis}; nothing to stream (is --time-axis right?)")
        self.window = x.shape[self.time_axis]
        self.set_time(x, TimeInfo(self.time_axis, self.window, 1, 0, raw_input=True))
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
                                   f"nothing to stream (is --time-axis {self.time_axis} right?)")

    def visit(self, op: Operator) -> None:
        time_in = [(i, t) for i, t in enumerate(op.inputs) if self.info(t) is not None]
        if not time_in:
            if any(t is not None and t in self.windowed for t in op.inputs):
                self.windowed.update(op.outputs)
            elif any(t is not None and t in self.shape_of_time for t in op.inputs):
                self.shape_of_time.update(op.outputs)
            return
        if any(t is not None and t in self.windowed for t in op.inputs):
            raise self.refuse(op, "combines a value computed from the whole window with per-frame values "
                                  "(e.g. squeeze-and-excitation over time); this cannot be streamed exactly")
        row = ops.info(op)
        if row.family == ops.CONTROL:
            raise self.refuse(op, "runs a subgraph (control flow: a loop or a condition, e.g. a recurrent layer "
                                  "exported as WHILE) on the time path; xstream cannot follow time through it")
        handler = self.HANDLERS.get(row.family)
        if handler is None:
            raise self.refuse(op, f"{op.kind} on the time path is not known to xstream; it cannot tell how the "
                                  "op uses time (please report the model)")
        if row.family != "shape":
            for _, t in time_in:
                if self.info(t).pad_left and row.family not in (ops.SLIDE, ops.RESHAPE, "transpose"):
                    raise self.refuse(op, "causal padding on time reaches this op before a sliding op; only "
                                          "convolutions and pools directly after the PAD can absorb it")
        self.check_operands(op, row)
        try:
            handler(self, op, time_in)
        except XstreamError:
            raise
        except Exception as e:  # a bug in xstream's handler, not the user's model: say so, do not refuse
            raise InternalError(f"analysing operator {op_index(self.sg, op)} ({op.kind}): {type(e).__name__}: "
                                f"{e}") from e

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
        self.read(t, Reader(op, op.inputs.index(t), 0, full_length=info.length))
        self.head_offsets.append((op, info.unused(self.window)))
        self.windowed.update(op.outputs)

    # -- handlers ----------------------------------------------------------------------------------------
    def op_shape(self, op, time_in) -> None:
        for t in op.outputs:
            self.shape_of_time.add(t)

    def op_unary(self, op, time_in) -> None:
        info = self.info(time_in[0][1])
        for o in op.outputs:
            self.set_time(o, TimeInfo(info.axis, info.length, info.stride, info.first_end))

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
            if rem:
                raise self.refuse(op, f"branches are misaligned by {newest - info.first_end} input frames, not a "
                                      f"multiple of their stride {stride}; no delay can align them")
            if lag:
                self.read(t, Reader(op, slot, 0, lag=lag))
        for o in op.outputs:
            self.set_time(o, TimeInfo(axis, lengths.pop() if lengths else infos[0][2].length, stride, newest))

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
        axis = map_axis(list(x.shape), info.axis, list(out.shape))
        if axis is None:
            if info.pad_left:
                raise self.refuse(op, "flattens a causally padded tensor")
            # Time merged with other axes: a flatten, read whole by the head behind it.
            return self.head(op, x)
        self.time_reshapes.append(op)
        self.set_time(out, TimeInfo(axis, info.length, info.stride, info.first_end, info.pad_left,
                                    raw_input=info.raw_input))

    def op_transpose(self, op, time_in) -> None:
        x = op.inputs[0]
        info = self.info(x)
        perm = _const_ints(op.inputs[1])
        if perm is None:
            raise self.refuse(op, "permutation computed at run time")
        if sorted(perm) != list(range(len(x.shape))):
            raise self.malformed(op, f"permutation {perm} does not fit its rank-{len(x.shape)} input")
        self.set_time(op.outputs[0], TimeInfo(perm.index(info.axis), info.length, info.stride, info.first_end,
                                              info.pad_left, raw_input=info.raw_input))

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
        if right:
            raise self.refuse(op, f"pads {right} frame(s) at the end of the time axis: the output would need "
                                  "future frames (use causal or valid padding)")
        if left:
            if op.type == "MIRROR_PAD":
                raise self.refuse(op, "mirror padding on time reads future frames")
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
        self.set_time(out, TimeInfo(info.axis, info.length + left, info.stride, info.first_end - left * info.stride,
                                    info.pad_left + left))


    def _crop(self, op, begin: int, end: int) -> None:
        x = op.inputs[0]
        info = self.info(x)
        if end - begin < 1:
            raise self.refuse(op, "slices away every frame")
        axis = self._slice_out_axis(op, info.axis)
        self.crops.append((op, info.axis))
        self.set_time(op.outputs[0], TimeInfo(axis, end - begin, info.stride, info.first_end + begin * info.stride))

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
            raise self.refuse(op, "gathers along the time axis; this reorders frames")
        idx_rank = len(op.inputs[1].shape)
        out_axis = info.axis if info.axis < axis else info.axis + idx_rank - 1
        self.set_time(op.outputs[0], TimeInfo(out_axis, info.length, info.stride, info.first_end))

    def op_slide(self, op: Operator, time_in) -> None:
        x = op.inputs[0]
        info = self.info(x)
        if time_in[0][0] != 0 or len(time_in) > 1:
            raise self.refuse(op, "its weights are computed from the frames; not supported")
        rank = len(x.shape)
        if rank != 4 or info.axis not in (1, 2):
            raise self.refuse(op, f"time is on axis {info.axis} of its NHWC input; only height (1) or width (2) "
                                  "can slide")
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
        if o.get("padding") == PADDING_SAME:
            total = max((math.ceil(L / stride) - 1) * stride + rf - L, 0)
            if total:
                raise self.refuse(op, f"SAME padding on the time axis (kernel {kernel}, dilation {dilation}) pads "
                                      "future frames; retrain with padding='valid' or 'causal'")
        out_len = op.outputs[0].shape[info.axis]
        expect = (L - rf) // stride + 1
        if out_len != expect:
            raise self.refuse(op, f"output has {out_len} frames, expected {expect} for kernel {kernel}, stride "
                                  f"{stride}, dilation {dilation} on {L} frames")
        if info.pad_left >= rf:
            raise self.refuse(op, f"reads {info.pad_left} frames of causal padding with a receptive field of {rf}: "
                                  "its first output frames are computed from padding alone, which no stream state "
                                  "reproduces (pad at most receptive field - 1 frames)")
        if out_len == 1 and rf + stride > L and not info.pad_left:
            # The window covers the whole input (a global pool written as a pool): it is a head.
            return self.head(op, x)
        self.slides.append(Slide(op, op_index(self.sg, op), kernel, stride, dilation))
        self.read(x, Reader(op, 0, rf - stride))
        self.set_time(op.outputs[0], TimeInfo(info.axis, out_len, info.stride * stride,
                                              info.first_end + (rf - 1) * info.stride))


_Analyzer.HANDLERS = {name[3:]: fn for name, fn in vars(_Analyzer).items() if name.startswith("op_")}


def analyze(model: Model, time_axis: int = 1, hop: int | None = None) -> StreamPlan:
    """Compute how `model` streams with `hop` input frames per step (default: the smallest exact hop)."""
    a = _Analyzer(model, time_axis)
    a.run()
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

    contract = CAUSAL if a.causal_pads else WINDOW_EXACT
    compare_step = None
    input_delay = 0
    if contract == CAUSAL:
        # The first window (frames 0..T-1) must end on a step boundary. If it does not, delay the input so it
        # does: the delay's zeros then stand for padding, which holds where the padded tensor is the input.
        input_delay = -(T - D) % hop
        for op in a.causal_pads:
            before = a.times[op.inputs[0]]
            if not before.raw_input and before.first_end != before.stride - 1 - input_delay:
                raise _refuse(a.sg, op, "causal padding after a strided or valid op: at hop "
                                        f"{hop} the stream computes frames where the original pads, so no state "
                                        "can stand for the padding (pad causally from the input on, or use valid)")
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
    else:
        warmup = max(0, -(-(T - D) // hop) - 1)

    states = []
    for t, readers in a.readers.items():
        info = a.times[t]
        n = hop // info.stride
        if all(r.lag == 0 and r.length(n) == n for r in readers):
            continue  # every reader takes just the new frames (e.g. 1x1 convs): nothing to keep
        frames = max(r.lag + r.length(n) for r in readers)
        states.append(State(t, info.axis, n, frames, readers, t.nbytes // t.shape[info.axis]))
    for s in a.slides:
        info = a.times[s.op.inputs[0]]
        s.frames_in = hop // info.stride
        s.frames_out = s.frames_in // s.stride
    plan = StreamPlan(time_axis, T, hop, contract, D, warmup, compare_step, a.times, states, a.slides,
                      a.heads, a.causal_pads, a.crops, a.time_reshapes, input_delay=input_delay)
    return plan
