"""Fold TF's atrous blocks (SPACE_TO_BATCH_ND ... conv ... BATCH_TO_SPACE_ND) into one conv with dilation.

TF lowers a dilated Conv1D/Conv2D with an unknown batch into a space-to-batch block that hides the dilation in
the batch dimension. The analysis needs the dilation in the conv options, and TFLite Micro computes these blocks
wrongly, so the folded conv is also the form that runs right on MCUs.
"""

from __future__ import annotations

import numpy as np

from .. import make, ops
from ..analysis import map_axis
from ..errors import StreamingRefused
from ..ir import PADDING_SAME, PADDING_VALID, Model, Operator, Subgraph, Tensor
from . import Pass, rewrite_each


def _ints(t: Tensor | None) -> list[int] | None:
    if t is None or not t.is_constant:
        return None
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def _single_consumer(sg: Subgraph, t: Tensor) -> Operator | None:
    users = sg.consumers(t)
    if len(users) != 1 or any(o is t for o in sg.outputs):
        return None
    return users[0]


def _is_conv(op: Operator) -> bool:
    return ops.info(op).kernel == "weights"


def _find_block(sg: Subgraph, s2b: Operator):
    """The ops from `s2b` to its BATCH_TO_SPACE_ND, or None if it is not a plain atrous conv block."""
    chain: list[Operator] = []
    t = s2b.outputs[0]
    while True:
        op = _single_consumer(sg, t)
        if op is None or op.inputs[0] is not t:
            return None
        if op.type == "BATCH_TO_SPACE_ND":
            break
        if ops.family(op) != ops.RESHAPE and not _is_conv(op):
            return None
        chain.append(op)
        t = op.outputs[0]
    convs = [op for op in chain if _is_conv(op)]
    if len(convs) != 1:
        return None
    return chain, convs[0], op


def _is_same(conv: Operator, block: list[int], pads: list[int], crops: list[int]) -> bool:
    """Is the block TF's lowering of a dilated SAME conv (stride 1)? Per blocked axis it pads SAME's split of
    (kernel - 1) * dilation (the smaller half first), plus what makes the length a multiple of the block, which
    the crop removes again; every other spatial axis of the kernel is 1 (SAME would pad it too)."""
    o = conv.options
    if o.get("stride_h", 1) != 1 or o.get("stride_w", 1) != 1:
        return False
    kernel = conv.inputs[1].shape  # [out, kh, kw, in] (depthwise: [1, kh, kw, c])
    if len(block) == 1 and kernel[2] != 1 and kernel[1] != 1:
        return False
    for i, d in enumerate(block):
        k = kernel[1 + i] if len(block) > 1 else max(kernel[1], kernel[2])
        total = d * (k - 1)
        before, after, crop_before, crop_after = pads[2 * i], pads[2 * i + 1], crops[2 * i], crops[2 * i + 1]
        if crop_before or before != total // 2 or after - crop_after != total - total // 2:
            return False
    return True


def _fold_one(sg: Subgraph, s2b: Operator) -> bool:
    found = _find_block(sg, s2b)
    if found is None:
        return False
    chain, conv, b2s = found
    if len(conv.inputs) < 2 or conv.inputs[1] is None or len(conv.inputs[1].shape) != 4:
        return False  # not a conv we can read: leave the block; the analysis refuses it by name
    where = f"operator {sg.index_of(s2b)} (SPACE_TO_BATCH_ND)"
    block = _ints(s2b.inputs[1])
    pads = _ints(s2b.inputs[2])
    if block is None or pads is None or _ints(b2s.inputs[1]) != block or _ints(b2s.inputs[2]) is None:
        return False
    crops = _ints(b2s.inputs[2])
    x, y = s2b.inputs[0], b2s.outputs[0]
    nblock = len(block)
    if conv.options.get("padding") != PADDING_VALID:
        raise StreamingRefused(f"{where}: the convolution inside the dilated block is not VALID")
    same = any(pads[2 * i] or crops[2 * i] for i in range(nblock))
    if same and not _is_same(conv, block, pads, crops):
        raise StreamingRefused(f"{where}: dilated convolution block pads the start of a spatial axis in a way "
                               "that is not SAME padding; not supported")

    # Follow each blocked spatial axis (1..nblock of x) through the chain to the conv's input.
    axes = list(range(1, nblock + 1))
    cur = s2b.outputs[0]
    new_shapes: dict[Tensor, list[int]] = {}
    # The batch inside the block is batch * prod(block), though a dynamic-batch model writes 1 there.
    shape = [x.shape[0]] + [x.shape[a] for a in axes] + list(cur.shape[nblock + 1:])
    new_shapes[cur] = shape
    for op in chain:
        out = op.outputs[0]
        if op is conv:
            hw = {1: "h", 2: "w"}
            if any(a not in hw for a in axes):
                return False
            kernel = conv.inputs[1].shape
            for a, d in zip(axes, block):
                conv.options[f"dilation_{hw[a]}_factor"] = d
            shape = list(new_shapes[cur])
            if same:  # TF wrote a dilated SAME conv: the block's padding is SAME's, its crop the block's rounding
                conv.options["padding"] = PADDING_SAME
            else:
                for a, d in zip(axes, block):
                    shape[a] = shape[a] - d * (kernel[a] - 1)
            shape[-1] = out.shape[-1]
        else:
            mapped = [map_axis(list(cur.shape), a, list(out.shape)) for a in axes]
            if any(m is None for m in mapped):
                return False
            shape = list(out.shape)
            shape[0] = x.shape[0]
            src = new_shapes[cur]
            for a, m in zip(axes, mapped):
                shape[m] = src[a]
            axes = mapped
        new_shapes[out] = shape
        cur = out
    final = new_shapes[cur]
    if [final[a] for a in axes] != [y.shape[a] for a in range(1, nblock + 1)]:
        raise StreamingRefused(f"{where}: folding the dilated block gives {final}, but the block's output is "
                               f"{list(y.shape)}; not a plain atrous convolution")

    # Rewire: x feeds the chain directly, the chain's last op writes y; drop the two block ops.
    chain[0].inputs[0] = x
    for op in chain:
        out = op.outputs[0]
        if op is chain[-1]:
            op.outputs[0] = y
        else:
            out.set_shape(new_shapes[out])
        if op.type == "RESHAPE":
            target = y.shape if op is chain[-1] else new_shapes[out]
            const = make.const(f"{out.name}/folded_shape", list(target))
            if len(op.inputs) > 1:
                op.inputs[1] = const
            op.options["new_shape"] = list(target)
    sg.operators = [op for op in sg.operators if op is not s2b and op is not b2s]
    return True


def _run(model: Model) -> bool:
    """Fold every atrous conv block of `model` into a dilated conv."""
    return rewrite_each(model, "SPACE_TO_BATCH_ND", _fold_one)


fold_dilated_convs = Pass("fold_dilated_convs", _run, requires=("topological",), ensures=("topological",))
