"""Plan edge recompute for models that pad time on both sides (SAME convs and pools, PAD/MIRROR_PAD around the
window): which frames of each head's input depend on the padding, and the sub-window branches that recompute them.

In a window of a padded tensor, the first `edge_left` frames read padding before the window and the last
`edge_right` frames read padding after it; the frames between (the interior) read none, so they are the same in
every window that holds them and the stream computes each once. The edges are recomputed every step by copies of
the original ops (same options, same weights):
- the left edge by the ops on the window's first P input frames, which an input delay line keeps: their left
  padding is the original's; frames that read the prefix's own cut are never used. P is the shortest prefix for
  which every padded op pads as in the original (TF's SAME splits its padding by the input length modulo the
  stride) and every frame needed is exact;
- the right edge layer by layer: each op on its input's newest interior frames (read from the stream's state)
  followed by that input's right edge, on a sub-window of the original length modulo the stride, so its right
  padding is the original's; frames that read the sub-window's artificial left side are dropped.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from .. import make, ops
from ..errors import StreamingRefused
from ..ir import PADDING_SAME, Operator, Subgraph, Tensor
from .plan import EdgeBranch, EdgeRead, Reader, TimeInfo

LEFT, RIGHT = "left", "right"


def _ints(t: Tensor | None) -> list[int] | None:
    data = None if t is None else t.data
    if data is None or not np.issubdtype(data.dtype, np.integer):
        return None
    return [int(v) for v in data.reshape(-1)]


def _slide_geometry(op: Operator, axis: int) -> tuple[int, int, bool]:
    """(receptive field, stride, SAME) of a sliding op along `axis` (1: height, 2: width)."""
    hw = "h" if axis == 1 else "w"
    o = op.options
    if ops.is_pool(op):
        kernel, dilation = o.get("filter_height" if hw == "h" else "filter_width", 1), 1
    else:
        kernel, dilation = op.inputs[1].shape[axis], o.get(f"dilation_{hw}_factor", 1)
    return dilation * (kernel - 1) + 1, o.get(f"stride_{hw}", 1), o.get("padding") == PADDING_SAME


def other_axis_padding(op: Operator, axis: int) -> tuple[int, int]:
    """TF's SAME padding (before, after) of a sliding op along spatial `axis` of its input (0 for VALID)."""
    if op.options.get("padding") != PADDING_SAME:
        return 0, 0
    rf, stride, _ = _slide_geometry(op, axis)
    n = op.inputs[0].shape[axis]
    total = max((-(-n // stride) - 1) * stride + rf - n, 0)
    return total // 2, total - total // 2


def aligned(skipped: int, stride: int) -> bool:
    """A strided op on a sub-window that starts `skipped` frames into its input computes the original's frames
    only when it starts on the stride's grid."""
    return skipped % stride == 0


def same_split(total: int) -> tuple[int, int]:
    """TF splits SAME padding with the smaller half before frame 0."""
    return total // 2, total - total // 2


def same_before(length: int, rf: int, stride: int) -> int:
    """TF's SAME padding before frame 0 for an input of `length` frames."""
    return same_split(max((math.ceil(length / stride) - 1) * stride + rf - length, 0))[0]


def _crop_bounds(op: Operator, info: TimeInfo) -> tuple[int, int]:
    """[begin, end) of the original frames a crop on time keeps."""
    L, a = info.length, info.axis
    if op.type == "STRIDED_SLICE":
        begin, end = _ints(op.inputs[1]), _ints(op.inputs[2])
        b = 0 if op.options.get("begin_mask", 0) >> a & 1 else begin[a]
        e = L if op.options.get("end_mask", 0) >> a & 1 else end[a]
    else:  # SLICE
        begin, size = _ints(op.inputs[1]), _ints(op.inputs[2])
        b = begin[a]
        e = L if size[a] < 0 else b + size[a]
    b = max(0, min(L, b + L if b < 0 else b))
    e = max(0, min(L, e + L if e < 0 else e))
    return b, e


class _Prefix:
    """Lengths and cut contamination of every tensor when the ops run on the window's first `frames` input frames:
    each op pads its left side as in the original; frames that read past the prefix's cut (`cut` of them, at the
    end of each tensor) are never used."""

    def __init__(self, times: dict[Tensor, TimeInfo], ops_: list[Operator], x: Tensor, frames: int):
        self.times = times
        self.length: dict[Tensor, int] = {x: frames}
        self.cut: dict[Tensor, int] = {x: 0}
        self.crops: dict[Operator, tuple[int, int]] = {}  # crop op -> [begin, end) in its prefix input
        self.whole = frames == times[x].length  # the whole window: its cut is the window's own end
        self.ok = all(self._step(op) for op in ops_)

    def _step(self, op: Operator) -> bool:
        ins = [t for t in op.inputs if t is not None and t in self.length]
        outs = [t for t in op.outputs if t in self.times]
        if not ins or not outs:
            return not outs
        x = ins[0]
        Lx, cx = self.length[x], self.cut[x]
        info_x = self.times[x]
        fam = ops.family(op)
        out = outs[0]
        if fam == ops.SLIDE:
            rf, s, same = _slide_geometry(op, info_x.axis)
            p = same_before(info_x.length, rf, s) if same else 0
            if same and same_before(Lx, rf, s) != p:
                return False
            n = math.ceil(Lx / s) if same else (Lx - rf) // s + 1
            first = -(-(Lx - cx - rf + 1 + p) // s)
            return n >= 1 and self._set(out, n, max(0, n - max(first, 0)))
        if fam == "pad":
            rows = _ints(op.inputs[1])
            left, right = rows[2 * info_x.axis], rows[2 * info_x.axis + 1]
            if op.type == "MIRROR_PAD" and Lx < max(left, right) + _mirror_offset(op):
                return False  # the mirror needs that many frames to reflect
            return self._set(out, Lx + left + right, cx + right)
        if fam == "gather" and op.options.get("axis", 0) % len(x.shape) == info_x.axis:
            return False  # a gather on time inside a padded part: not recomputed on sub-windows
        if fam in ("strided_slice", "slice"):
            b, e = _crop_bounds(op, info_x)
            hi = min(e, Lx)
            if hi - b < 1:
                return False
            self.crops[op] = (b, hi)
            return self._set(out, hi - b, max(0, cx - (Lx - hi)))
        # Per-frame ops: every time input has the same frames; the cut reaches as far as the widest.
        if any(self.length[t] != Lx for t in ins):
            return False
        cut = max(self.cut[t] for t in ins)
        return all(self._set(o, Lx, cut) for o in outs)

    def _set(self, t: Tensor, length: int, cut: int) -> bool:
        if length < 1:
            return False
        self.length[t], self.cut[t] = length, min(cut, length)
        return True

    def exact(self, t: Tensor) -> int:
        """How many of the original's first frames of `t` this prefix computes exactly."""
        return self.length[t] - (0 if self.whole else self.cut[t])


def _mirror_offset(op: Operator) -> int:
    """MIRROR_PAD REFLECT (mode 0) skips the edge frame, so it needs one frame more than it pads."""
    return 1 if op.options.get("mode", 0) == 0 else 0


def _ancestors(sg: Subgraph, times: dict[Tensor, TimeInfo], targets: set[Tensor]) -> list[Operator]:
    """The time-path ops that lead to `targets`, in graph order."""
    need = set(targets)
    chosen: list[Operator] = []
    for op in reversed(sg.operators):
        if any(t in need for t in op.outputs):
            chosen.append(op)
            need.update(t for t in op.inputs if t is not None and t in times)
    return [op for op in reversed(chosen) if any(t is not None and t in times for t in op.inputs)]


def _search(times, ops_, x, needs: dict[Tensor, int], window: int) -> _Prefix | None:
    """The shortest prefix that computes the first `needs[t]` frames of every needed tensor exactly."""
    for frames in range(1, window + 1):
        sub = _Prefix(times, ops_, x, frames)
        if sub.ok and all(t in sub.length and needs[t] <= sub.exact(t) for t in needs):
            return sub
    return None


def _copy_op(op: Operator, inputs: list, outputs: list) -> Operator:
    """A detached copy of `op` (same options and weights) on other time tensors; a RESHAPE gets their shape."""
    new = copy.copy(op)
    new.options = dict(op.options)
    new.inputs, new.outputs, new.source_index = list(inputs), list(outputs), None
    if op.type == "RESHAPE":
        target = list(outputs[0].shape)
        if len(new.inputs) > 1 and new.inputs[1] is not None:
            new.inputs[1] = make.const(f"{outputs[0].name}/shape", target)
        if "new_shape" in new.options:
            new.options["new_shape"] = target
    return new


def _left_branch(times, ops_, x: Tensor, sub: _Prefix, future: int = 0) -> EdgeBranch:
    """Detached copies of `ops_` on the prefix (weights shared with the originals)."""
    tag = f"/{LEFT}_edge"
    axis = times[x].axis
    xs = make.like(x, f"{x.name}{tag}", make.with_axis(x.shape, axis, sub.length[x]))
    xs.shape_signature = None
    if future:  # the window's last frames are not fed yet; no exact frame reads them, so zeros stand there
        rows = [[0, 0] for _ in x.shape]
        rows[axis] = [0, future]
        entry = Operator("PAD", [x, make.const(f"{xs.name}/paddings", rows)], [xs], options={},
                         options_type="PadOptions")
    else:
        entry = make.strided_slice(x, axis, 0, sub.length[x], xs)  # its input becomes the delay line's window
    tensors: dict[Tensor, Tensor] = {x: xs}
    built = [entry]
    for op in ops_:
        if not any(t in sub.length for t in op.outputs):
            continue
        outputs = []
        for t in op.outputs:
            if t in sub.length:
                tensors[t] = make.like(t, f"{t.name}{tag}", make.with_axis(t.shape, times[t].axis, sub.length[t]))
                tensors[t].shape_signature = None
            outputs.append(tensors.get(t, t))
        new = _copy_op(op, [tensors.get(t, t) if t is not None else None for t in op.inputs], outputs)
        if op in sub.crops:
            _retime_crop(new, times[op.inputs[0]].axis, *sub.crops[op])
        built.append(new)
    return EdgeBranch(LEFT, sub.length[x], entry, built, tensors, {t: 0 for t in tensors})


class _RightBranch:
    """The right edges, layer by layer: each op recomputes its output's right-edge frames from its input's last
    frames, which are its input's newest interior frames (read from the stream's state) followed by that input's
    own right edge. Every padded op pads its right side exactly as the original (its sub-window has the
    original's length modulo the stride); frames that read its artificial left side are dropped."""

    def __init__(self, times: dict[Tensor, TimeInfo], ops_: list[Operator], shift_of):
        self.times, self.shift_of = times, shift_of
        self.ops: list[Operator] = []
        self.tensors: dict[Tensor, Tensor] = {}  # X -> its last edge_right frames, exact
        self.readers: list[tuple[Tensor, Reader]] = []
        for op in ops_:
            if any((times[t].edge_right or 0) > 0 for t in op.outputs if t in times):
                self._op(op)

    def _b(self, t: Tensor) -> int:
        return self.times[t].edge_right or 0

    def _like(self, t: Tensor, frames: int, what: str) -> Tensor:
        out = make.like(t, f"{t.name}/{what}", make.with_axis(t.shape, self.times[t].axis, frames))
        out.shape_signature = None
        return out

    def tail(self, x: Tensor, m: int, reader_op: Operator | None = None, slot: int = 0) -> Tensor | None:
        """X's last m frames of the window; when they are all interior and `reader_op` is given, the Reader feeds
        `reader_op`'s `slot` directly and None is returned."""
        b, axis = self._b(x), self.times[x].axis
        if m <= b:
            if m == b:
                return self.tensors[x]
            part = self._like(x, m, f"right_{m}")
            self.ops.append(make.strided_slice(self.tensors[x], axis, b - m, b, part))
            return part
        interior = m - b
        if b == 0 and reader_op is not None:
            self.readers.append((x, Reader(reader_op, slot, 0, lag=self.shift_of(x), full_length=interior)))
            return None
        out = self._like(x, m, f"right_{m}")
        inputs = [x] + ([self.tensors[x]] if b else [])
        concat = make.concatenation(inputs, axis, out)
        self.readers.append((x, Reader(concat, 0, 0, lag=self.shift_of(x), full_length=interior)))
        self.ops.append(concat)
        return out

    def _op(self, op: Operator) -> None:
        times = self.times
        fam = ops.family(op)
        x = op.inputs[0]
        z = next(t for t in op.outputs if t in times)
        bz, info_x = self._b(z), times[x]
        if fam == ops.SLIDE or fam == "pad":
            Lx = info_x.length
            if fam == ops.SLIDE:
                rf, s, same = _slide_geometry(op, info_x.axis)
                p = same_before(Lx, rf, s) if same else 0
                fits = []
                for m in range(max(self._b(x), 1), Lx + 1):
                    if not aligned(Lx - m, s):
                        continue
                    n = math.ceil(m / s) if same else (m - rf) // s + 1
                    if n >= 1 and (Lx - m) // s + n == times[z].length and n - (-(-p // s)) >= bz:
                        fits.append((m, n))
                        break
                if not fits:
                    raise StreamingRefused(f"tensor {z.name!r}: its right edge cannot be recomputed from a "
                                           "sub-window; use --same-padding context")
                m, n = fits[0]
            else:
                rows = _ints(op.inputs[1])
                left, right = rows[2 * info_x.axis], rows[2 * info_x.axis + 1]
                m = max(self._b(x), 1, right + _mirror_offset(op) if op.type == "MIRROR_PAD" else 1)
                n = m + left + right
            full = self._like(z, n, f"right_edge_{n}" if n != bz else "right_edge")
            new = _copy_op(op, [x] + list(op.inputs[1:]), [full])
            e = self.tail(x, m, new, 0)
            if e is not None:
                new.inputs[0] = e
            self.ops.append(new)
            if n == bz:  # the op computes exactly the edge: no slice
                self.tensors[z] = full
                return
            edge = self._like(z, bz, "right_edge")
            self.ops.append(make.strided_slice(full, times[z].axis, n - bz, n, edge))
            self.tensors[z] = edge
            return
        if fam in ("strided_slice", "slice"):
            b, e = _crop_bounds(op, info_x)
            bx = self._b(x)
            lo = e - bz - (info_x.length - bx)  # frames [e - bz, e) of x, in its right edge's coordinates
            edge = self._like(z, bz, "right_edge")
            self.ops.append(make.strided_slice(self.tensors[x], info_x.axis, lo, lo + bz, edge))
            self.tensors[z] = edge
            return
        if fam == "gather" and op.options.get("axis", 0) % len(x.shape) == info_x.axis:
            raise StreamingRefused(f"tensor {z.name!r}: a gather on time inside a SAME-padded part of the model; use "
                                   "--same-padding context")
        # Per-frame ops: every time input's last bz frames, the same op on them.
        outputs = []
        for t in op.outputs:
            if t in times:
                self.tensors[t] = self._like(t, bz, "right_edge")
            outputs.append(self.tensors.get(t, t))
        new = _copy_op(op, op.inputs, outputs)
        for i, t in enumerate(op.inputs):
            if t is not None and t in times:
                part = self.tail(t, bz, new, i)
                if part is not None:
                    new.inputs[i] = part
        self.ops.append(new)


def _retime_crop(op: Operator, axis: int, begin: int, end: int) -> None:
    """Make a copied crop keep frames [begin, end) of its (sub-window) input on `axis`, other axes as before."""
    if op.type == "STRIDED_SLICE":
        b, e = _ints(op.inputs[1]), _ints(op.inputs[2])
        b[axis], e[axis] = begin, end
        op.inputs[1] = make.const(f"{op.outputs[0].name}/begin", b, op.inputs[1].dtype)
        op.inputs[2] = make.const(f"{op.outputs[0].name}/end", e, op.inputs[2].dtype)
        op.options["begin_mask"] = op.options.get("begin_mask", 0) & ~(1 << axis)
        op.options["end_mask"] = op.options.get("end_mask", 0) & ~(1 << axis)
    else:  # SLICE
        b, size = _ints(op.inputs[1]), _ints(op.inputs[2])
        b[axis], size[axis] = begin, end - begin
        op.inputs[1] = make.const(f"{op.outputs[0].name}/begin", b, op.inputs[1].dtype)
        op.inputs[2] = make.const(f"{op.outputs[0].name}/size", size, op.inputs[2].dtype)


def _edges(info: TimeInfo) -> tuple[int, int]:
    """(left, right) edge frames; where they meet, no frame is interior and the left branch computes them all
    (it then runs on the whole window: exact, and no cheaper than the original)."""
    a, b = info.edge_left or 0, info.edge_right or 0
    return (info.length, 0) if a + b >= info.length else (a, b)


def plan_edges(sg: Subgraph, times: dict[Tensor, TimeInfo], reads: list[tuple[Operator | None, int, Tensor, int, int]],
               window: int, offset: int, shift_of) -> tuple[list[EdgeBranch], list[EdgeRead], list[tuple[Tensor, Reader]]]:
    """Branches and reads for `reads` = (head op or None for a model output, slot, tensor, lo, hi): frames
    [lo, hi) of the tensor are what the head reads. The window ends `offset` (D) frames after the newest frame
    fed; `shift_of(t)`: frames of t by which the window's last interior frame lies before the stream's newest.
    Returns the branches, the reads, and the Readers to register (tensor, reader)."""
    x = sg.inputs[0]
    need: dict[str, dict[Tensor, tuple[int, int]]] = {LEFT: {}, RIGHT: {}}
    for _, _, t, lo, hi in reads:
        info = times[t]
        a, b = _edges(info)
        if lo < a:
            need[LEFT][t] = (lo, min(hi, a))
        if hi > info.length - b:
            need[RIGHT][t] = (max(lo, info.length - b), hi)
    branches: dict[str, EdgeBranch] = {}
    registered: list[tuple[Tensor, Reader]] = []
    if need[RIGHT]:
        right = _RightBranch(times, _ancestors(sg, times, set(need[RIGHT])), shift_of)
        offsets = {t: times[t].length - (times[t].edge_right or 0) for t in right.tensors}
        branches[RIGHT] = EdgeBranch(RIGHT, 0, None, right.ops, right.tensors, offsets)
        registered += right.readers
    if need[LEFT]:
        ops_ = _ancestors(sg, times, set(need[LEFT]))
        sub = _search(times, ops_, x, {t: hi for t, (_, hi) in need[LEFT].items()}, window)
        if sub is None:
            t = next(iter(need[LEFT]))
            raise StreamingRefused(f"tensor {t.name!r}: no sub-window of the input recomputes its left edge exactly "
                                   "(an op on the way is not supported there); use --same-padding context")
        lag = window - sub.length[x] - offset
        future = max(-lag, 0)  # frames of the window after the newest frame fed (D > 0: the model never reads them)
        br = _left_branch(times, ops_, x, sub, future)
        branches[LEFT] = br
        registered.append((x, Reader(br.entry, 0, 0, lag=max(lag, 0), full_length=br.frames - future)))

    edge_reads = []
    for op, slot, t, lo, hi in reads:
        info = times[t]
        (a, b), L = _edges(info), info.length
        parts: list[Tensor | None] = []
        built: list[Operator] = []
        for side, (p_lo, p_hi) in ((LEFT, (lo, min(hi, a))), (None, (max(lo, a), min(hi, L - b))),
                                   (RIGHT, (max(lo, L - b), hi))):
            if p_hi <= p_lo:
                continue
            if side is None:
                parts.append(None)  # the interior, from the stream
                continue
            br = branches[side]
            src, off = br.tensors[t], br.offsets[t]
            piece = make.like(t, f"{t.name}/{side}_frames", make.with_axis(t.shape, info.axis, p_hi - p_lo))
            piece.shape_signature = None
            built.append(make.strided_slice(src, info.axis, p_lo - off, p_hi - off, piece))
            parts.append(piece)
        whole = make.like(t, f"{t.name}/window", make.with_axis(t.shape, info.axis, hi - lo))
        whole.shape_signature = None
        interior_slot = parts.index(None) if None in parts else None
        concat = make.concatenation([t if p is None else p for p in parts], info.axis, whole)
        built.append(concat)
        edge_reads.append(EdgeRead(op, slot, t, lo, hi, built, concat, interior_slot))
        if interior_slot is not None:
            i_lo, i_hi = max(lo, a), min(hi, L - b)
            # The interior part ends at the window's last interior frame, `shift_of(t)` frames before the newest.
            registered.append((t, Reader(concat, interior_slot, 0, lag=shift_of(t) + (L - b - i_hi),
                                         full_length=i_hi - i_lo)))
    return list(branches.values()), edge_reads, registered
