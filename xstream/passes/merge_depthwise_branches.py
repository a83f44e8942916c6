"""One depthwise conv for a MixConv: SPLIT on channels -> a depthwise conv per branch (each kernel its own size)
-> optional crops -> CONCATENATION on channels becomes one depthwise conv whose kernel is the largest, the shorter
kernels zero-padded where their taps do not reach.

The merged conv computes every output exactly: a zero tap adds an exact zero (int8 weights are symmetric, so the
padded value is the zero point 0; float adds +-0.0), per-channel scales are concatenated (per-tensor ones spread
over their channels, which is what TFLite's int8 kernels compute anyway), and the output quantization is the
concatenation's, which every branch already had. A stream of it keeps one buffer of the largest window, as
microWakeWord's hand-made streams do, with no split, slices or concat: on TFLite Micro each of those ops and
tensors costs more arena than the frames (docs/TFLM_COST.md). The price is the zero taps' MACs: the merge is made
only where they add at most `MAX_EXTRA_MACS` of the branches' own.
"""

from __future__ import annotations

import numpy as np

from .. import make, ops
from ..ir import (
    PADDING_VALID,
    Model,
    Operator,
    Quantization,
    Subgraph,
    Tensor,
    same_quantization,
)
from . import Pass

MAX_EXTRA_MACS = 0.5  # merge when the zero taps cost at most this fraction of the branches' MACs
# LiteRT's builtin int8 depthwise kernel takes another path, and rounds differently, below 8 channels (measured:
# branches of 4 + 4 channels merged into 8 differ by 1 LSB in ~40% of windows; 8 + 8, 12 + 4, 32 + 32 never).
MIN_INT8_CHANNELS = 8

_SAME_OPTIONS = ("padding", "stride_h", "stride_w", "dilation_h_factor", "dilation_w_factor", "depth_multiplier",
                 "fused_activation_function")


def _const_axis(t: Tensor | None, rank: int) -> int | None:
    if t is None or t.data is None or t.data.size != 1:
        return None
    return int(np.asarray(t.data).reshape(-1)[0]) % rank


def _only_consumer(sg: Subgraph, t: Tensor) -> Operator | None:
    users = sg.consumers(t)
    return users[0] if len(users) == 1 and t not in sg.outputs else None


def _crop_begin(op: Operator) -> list[int] | None:
    """A STRIDED_SLICE that crops the spatial axes of a [N, H, W, C] tensor (step 1, batch and channels whole):
    its begin on H and W, else None."""
    if op.type != "STRIDED_SLICE" or len(op.inputs) < 4:
        return None
    x, y = op.inputs[0], op.outputs[0]
    if any(op.options.get(k, 0) for k in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask", "offset")):
        return None
    if any(t is None or t.data is None for t in op.inputs[1:4]) or len(x.shape) != 4:
        return None
    begin = [int(v) for v in op.inputs[1].data.reshape(-1)]
    strides = [int(v) for v in op.inputs[3].data.reshape(-1)]
    if len(begin) != 4 or strides != [1, 1, 1, 1]:
        return None
    if op.options.get("begin_mask", 0):
        begin = [0 if op.options["begin_mask"] >> i & 1 else b for i, b in enumerate(begin)]
    begin = [b % x.shape[i] if b < 0 else b for i, b in enumerate(begin)]
    if begin[0] or begin[3] or y.shape[0] != x.shape[0] or y.shape[3] != x.shape[3]:
        return None
    if any(begin[a] + y.shape[a] > x.shape[a] for a in (1, 2)) or not same_quantization(x, y):
        return None
    return [begin[1], begin[2]]


def _branch(sg: Subgraph, t: Tensor):
    """The depthwise conv reading split output `t`, its crop's begin on (H, W) and the tensor the branch ends in."""
    conv = _only_consumer(sg, t)
    if conv is None or conv.type != "DEPTHWISE_CONV_2D" or conv.inputs[0] is not t or len(conv.inputs) < 2:
        return None
    w = conv.inputs[1]
    if w is None or w.data is None or len(w.shape) != 4 or w.shape[0] != 1:
        return None
    end, begin = conv.outputs[0], [0, 0]
    nxt = _only_consumer(sg, end)
    if nxt is not None and nxt.type == "STRIDED_SLICE":
        begin = _crop_begin(nxt)
        if begin is None:
            return None
        end = nxt.outputs[0]
    return conv, begin, end, nxt if end is not conv.outputs[0] else None


def _per_channel(q: Quantization | None, channels: int, axis: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(scales, zero points), one per channel of a weight or bias tensor."""
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    scale, zp = np.asarray(q.scale, np.float32), np.asarray(q.zero_point if q.zero_point is not None else [0])
    if len(scale) == 1:
        scale = np.repeat(scale, channels)
    elif len(scale) != channels or q.quantized_dimension != axis:
        return None
    zp = np.repeat(zp, channels) if len(zp) == 1 else zp
    return (scale, zp.astype(np.int64)) if len(zp) == channels else None


def _merge(sg: Subgraph, split: Operator) -> bool:
    slots = ops.split_slots(split)
    if slots is None:
        return False
    x = split.inputs[slots[0]]
    if len(x.shape) != 4 or _const_axis(split.inputs[slots[1]], 4) != 3:
        return False
    branches = [_branch(sg, t) for t in split.outputs]
    if len(branches) < 2 or any(b is None for b in branches):
        return False
    concat = _only_consumer(sg, branches[0][2])
    if concat is None or concat.type != "CONCATENATION" or concat.options.get("fused_activation_function", 0):
        return False
    if concat.inputs != [b[2] for b in branches] or concat.options.get("axis", 0) % 4 != 3:
        return False
    convs = [b[0] for b in branches]
    first = convs[0]
    if first.options.get("padding") != PADDING_VALID or first.options.get("depth_multiplier", 1) != 1:
        return False
    if any(c.options.get(k) != first.options.get(k) for c in convs for k in _SAME_OPTIONS):
        return False
    y = concat.outputs[0]
    weights = [c.inputs[1] for c in convs]
    biases = [c.inputs[2] if len(c.inputs) > 2 else None for c in convs]
    if any(not same_quantization(c.inputs[0], x) or not same_quantization(c.outputs[0], y) or not same_quantization(b[2], y)
           for c, b in zip(convs, branches)):
        return False
    if len({w.dtype for w in weights}) != 1 or weights[0].dtype not in ("float32", "int8") or \
            (weights[0].dtype == "int8") != (x.dtype in ("int8", "int16")):
        return False
    if any(b is None for b in biases) and any(b is not None for b in biases):
        return False
    if any(b is not None and (b.data is None or b.data.size != w.shape[3]) for b, w in zip(biases, weights)):
        return False
    if len({b.dtype for b in biases if b is not None}) > 1:
        return False

    # Where each branch's taps fall in the merged kernel, per spatial axis (H, W).
    stride = (first.options.get("stride_h", 1), first.options.get("stride_w", 1))
    dil = (first.options.get("dilation_h_factor", 1), first.options.get("dilation_w_factor", 1))
    lo = [min(b[1][a] for b in branches) for a in (0, 1)]
    offsets = []
    for _, begin, _, _ in branches:
        off = []
        for a in (0, 1):
            shift = (begin[a] - lo[a]) * stride[a]
            if shift % dil[a]:
                return False
            off.append(shift // dil[a])
        offsets.append(off)
    kernel = [max(o[a] + w.shape[1 + a] for o, w in zip(offsets, weights)) for a in (0, 1)]
    merged_len = [(x.shape[1 + a] - (kernel[a] - 1) * dil[a] - 1) // stride[a] + 1 for a in (0, 1)]
    if any(lo[a] + y.shape[1 + a] > merged_len[a] for a in (0, 1)):
        return False
    own = sum(int(np.prod(w.shape)) for w in weights)
    channels = [w.shape[3] for w in weights]
    total = sum(channels)
    if total != y.shape[3] or total != x.shape[3]:
        return False
    if total * kernel[0] * kernel[1] - own > MAX_EXTRA_MACS * own:
        return False
    if x.dtype != "float32" and min(channels) < MIN_INT8_CHANNELS:
        return False

    # The merged weights: zeros (the weights' zero point) where a branch's kernel does not reach.
    wq = None
    filt = np.zeros((1, kernel[0], kernel[1], total), dtype=weights[0].data.dtype)
    c0 = 0
    scales, zps = [], []
    for w, o, c in zip(weights, offsets, channels):
        if w.dtype == "int8":
            pc = _per_channel(w.quantization, c, 3)
            if pc is None or np.any(pc[1] != 0):
                return False
            scales.append(pc[0])
            zps.append(pc[1])
        filt[0, o[0]:o[0] + w.shape[1], o[1]:o[1] + w.shape[2], c0:c0 + c] = w.data[0]
        c0 += c
    if weights[0].dtype == "int8":
        wq = Quantization(scale=np.concatenate(scales), zero_point=np.concatenate(zps), quantized_dimension=3)
    bias = None
    if biases[0] is not None:
        bq = None
        if biases[0].quantization is not None and biases[0].quantization.scale is not None:
            pcs = [_per_channel(b.quantization, c, 0) for b, c in zip(biases, channels)]
            if any(p is None for p in pcs):
                return False
            bq = Quantization(scale=np.concatenate([p[0] for p in pcs]),
                              zero_point=np.concatenate([p[1] for p in pcs]), quantized_dimension=0)
        bias = make.const(sg.unique_name(f"{biases[0].name}/merged"),
                          np.concatenate([b.data.reshape(-1) for b in biases]), biases[0].dtype)
        bias.quantization = bq
    wt = make.const(sg.unique_name(f"{weights[0].name}/merged"), filt, weights[0].dtype)
    wt.quantization = wq

    out = y
    crop = None
    if lo != [0, 0] or merged_len != list(y.shape[1:3]):
        out = make.like(y, sg.unique_name(f"{y.name}/merged"), (y.shape[0], *merged_len, total))
        crop = make.strided_slice(out, 1, lo[0], lo[0] + y.shape[1], y)
        if lo[1] or merged_len[1] != y.shape[2]:
            end = [out.shape[0], lo[0] + y.shape[1], lo[1] + y.shape[2], total]
            crop.inputs[1] = make.const(f"{y.name}/slice/begin", [0, lo[0], lo[1], 0])
            crop.inputs[2] = make.const(f"{y.name}/slice/end", end)
    options = dict(first.options)
    tail = [bias] if bias is not None else [None] * (len(first.inputs) - 2)  # an absent bias stays an empty slot
    conv = Operator("DEPTHWISE_CONV_2D", [x, wt] + tail, [out], options=options,
                    options_type=first.options_type, version=max(c.version for c in convs))
    conv.source_index = first.source_index
    where = sg.operators.index(split)
    gone = {split, concat, *convs, *(b[3] for b in branches if b[3] is not None)}
    sg.operators = [op for op in sg.operators if op not in gone]
    sg.operators[where:where] = [conv] + ([crop] if crop is not None else [])
    sg.toposort()
    sg.cleanup()
    return True


def _run(model: Model) -> bool:
    changed = False
    for sg in model.subgraphs:
        for op in list(sg.operators):
            if op in sg.operators and ops.split_slots(op) is not None:
                changed |= _merge(sg, op)
    return changed


merge_depthwise_branches = Pass("merge_depthwise_branches", _run, requires=("topological",),
                                ensures=("topological",))
