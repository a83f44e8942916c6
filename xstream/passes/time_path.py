"""Shrink the time path of an analysed model to what one invoke sees: shared by every pass that applies a plan.

After the analysis, every tensor on the time path takes `frames` frames per invoke instead of its original
length; crops on time only moved which frames line up (the plan's offsets), so in a stream every frame passes;
reshapes get the static target shape they now have; a causal PAD that fed a sliding op is absorbed by the state
spliced before that op.
"""

from __future__ import annotations

import numpy as np

from .. import make
from ..analysis import StreamPlan
from ..analysis.edges import other_axis_padding
from ..ir import NUMPY_DTYPES, PADDING_VALID, Model, Operator, Subgraph, Tensor


def _ints(t: Tensor) -> list[int]:
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def shrink_time(plan: StreamPlan, frames_of) -> None:
    """Give every time tensor `frames_of(info)` frames, open every crop, and fix reshapes to static shapes."""
    for t, info in plan.times.items():
        t.set_shape(make.with_axis(t.shape, info.axis, frames_of(info) * info.frame))
    for op, axis in plan.crops:
        _uncrop_time(op, axis, frames_of(plan.times[op.inputs[0]]))
    edge_heads = {read.op for read in plan.edge_reads}
    for op in plan.time_reshapes + plan.heads:
        if op.type == "RESHAPE":
            fix_reshape(op)
        elif op.type == "GATHER" and op not in edge_heads:  # one frame picked: its reader's 1-frame window
            index = make.const(f"{op.outputs[0].name}/frame", [0], op.inputs[1].dtype)
            index.shape = tuple(op.inputs[1].shape)  # a scalar index drops the time axis; keep it a scalar
            op.inputs[1] = index


def absorb_causal_pads(model: Model, sg: Subgraph, plan: StreamPlan) -> None:
    """Drop the time padding of each causal PAD (the state before its reader starts at the pad value) and of each
    PAD the stream replaces by real frames or edge recompute (plan.edge_pads): the stream never pads time."""
    for pad in plan.causal_pads + plan.edge_pads:
        axis = plan.times[pad.outputs[0]].axis  # its input may already read a state view
        rows = _ints(pad.inputs[1])
        rows[2 * axis] = rows[2 * axis + 1] = 0
        if any(rows):
            pad.inputs[1] = make.const(f"{pad.outputs[0].name}/paddings", np.reshape(rows, (-1, 2)),
                                       pad.inputs[1].dtype)
            continue
        model.replace_uses(sg, pad.outputs[0], pad.inputs[0])
        sg.operators.remove(pad)


def splice_edges(model: Model, sg: Subgraph, plan: StreamPlan) -> None:
    """Put the edge branches and each edge read's slices and CONCATENATION in the graph, and make each head (or
    model output) read the concatenation: [left edge | interior from the stream | right edge]."""
    for branch in plan.edges:
        sg.operators[0:0] = branch.ops  # they read only the input and weights; toposort places them
    for read in plan.edge_reads:
        out = read.concat.outputs[0]
        at = sg.index_of(read.op) if read.op is not None else len(sg.operators)
        sg.operators[at:at] = read.ops
        if read.op is not None:
            read.op.inputs[read.slot] = out
            continue
        # A per-frame model output: the concatenation takes its place and its name.
        old = sg.outputs[read.slot]
        out.name, old.name = old.name, f"{old.name}/stream"
        sg.outputs[read.slot] = out
        for sig in model.signatures:
            if sig.subgraph is sg:
                sig.outputs = [(n, out if t is old else t) for n, t in sig.outputs]


def valid_on_time(sg: Subgraph, plan: StreamPlan) -> None:
    """Each sliding op that pads time SAME runs VALID on time in the stream (it computes the interior frames);
    SAME padding it had on its other spatial axis becomes an explicit PAD there."""
    for slide in plan.slides:
        if not (slide.pad_before or slide.pad_after):
            continue
        op = slide.op
        time_axis = plan.times[op.outputs[0]].axis
        other = 3 - time_axis  # NHWC: H is 1, W is 2
        before, after = other_axis_padding(op, other)  # (on the op's shapes: other axes are unchanged)
        op.options["padding"] = PADDING_VALID
        if not (before or after):
            continue
        x = op.inputs[0]
        rows = [[0, 0]] * 4
        rows[other] = [before, after]
        padded = make.like(x, f"{op.outputs[0].name}/padded", make.with_axis(x.shape, other,
                                                                              x.shape[other] + before + after))
        inputs = [x, make.const(f"{padded.name}/paddings", rows)]
        if op.type == "MAX_POOL_2D":  # SAME max pooling ignores the padding: pad with the lowest value
            low = np.iinfo(NUMPY_DTYPES[x.dtype]).min if x.dtype in ("int8", "int16") else -np.inf
            fill = make.const(f"{padded.name}/fill", [low], x.dtype)
            fill.quantization = make.like(x, fill.name, (1,)).quantization  # PADV2 wants the output's scale
            inputs.append(fill)
            pad = Operator("PADV2", inputs, [padded], options={}, options_type="PadV2Options")
        else:
            pad = Operator("PAD", inputs, [padded], options={}, options_type="PadOptions")
        sg.operators.insert(sg.index_of(op), pad)
        op.inputs[0] = padded


def finish(sg: Subgraph) -> None:
    """One stream at batch 1 with fixed shapes; drop what nothing reads; restore execution order."""
    for t in sg.tensors():
        t.shape_signature = None
    sg.toposort()  # first: cleanup reads the graph backwards from the outputs and needs execution order
    sg.cleanup()


def _uncrop_time(op: Operator, axis: int, frames: int) -> None:
    if op.type == "GATHER":  # consecutive frames: every frame of the step
        op.inputs[1] = make.const(f"{op.outputs[0].name}/frames", np.arange(frames), op.inputs[1].dtype)
        return
    if op.type == "STRIDED_SLICE":
        op.options["begin_mask"] = op.options.get("begin_mask", 0) | (1 << axis)
        op.options["end_mask"] = op.options.get("end_mask", 0) | (1 << axis)
    else:  # SLICE
        begin, size = _ints(op.inputs[1]), _ints(op.inputs[2])
        begin[axis], size[axis] = 0, frames
        op.inputs[1] = make.const(f"{op.outputs[0].name}/begin", begin, op.inputs[1].dtype)
        op.inputs[2] = make.const(f"{op.outputs[0].name}/size", size, op.inputs[2].dtype)


def fix_reshape(op: Operator) -> None:
    """Give a reshape the static target shape it now has (a run-time SHAPE/PACK chain becomes dead)."""
    target = list(op.outputs[0].shape)
    if len(op.inputs) > 1 and op.inputs[1] is not None:
        op.inputs[1] = make.const(f"{op.outputs[0].name}/shape", target)
    if op.options_type == "ReshapeOptions" or "new_shape" in op.options:
        op.options["new_shape"] = target
