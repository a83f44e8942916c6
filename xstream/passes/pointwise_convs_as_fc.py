"""A 1x1 CONV_2D with stride 1 becomes a FULLY_CONNECTED with keep_num_dims: the same dot product per pixel.

On a stream a pointwise conv runs on one hop of frames, and TFLite Micro's reference CONV_2D spends most of its time
on index arithmetic, not multiplies: on microWakeWord's MixedNet (int8, variable form) the four pointwise convs
took 4.5 of 14.8 us per step in the harness with a per-op profiler, and as FULLY_CONNECTEDs the step is ~1 us
shorter in the tflite-micro interpreter (docs/TFLM_COST.md). Both kernels sum the channels in the same order and requantize with the same
per-channel multipliers, so the values are the same (bit-exact int8, float32 identical).

Only for `--target tflm`: TFLite Micro before September 2024 (tflite-micro PR 2673) computes a FULLY_CONNECTED with
per-channel weights with the first channel's scale, without an error, and `convert` names the TFLite Micro the
stream needs. (xstream's harness wraps its older library's kernel: kernels/harness/xmos_host_fixes.cc.)
"""

from __future__ import annotations

from ..ir import Model, Operator, Subgraph, Tensor, names_an_axis
from . import Pass, rewrite_each

_ACTIVATIONS = (0, 1, 2, 3)  # NONE, RELU, RELU_N1_TO_1, RELU6: what a FULLY_CONNECTED fuses too
_TYPES = {"int8": ("int8", "int32"), "float32": ("float32", "float32")}  # input -> (weights, bias)


def _pointwise(op: Operator) -> bool:
    if len(op.inputs) < 2 or op.inputs[0] is None or op.inputs[1] is None or not op.outputs:
        return False
    x, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    b = op.inputs[2] if len(op.inputs) > 2 else None
    if x.dtype not in _TYPES or y.dtype != x.dtype or len(x.shape) != 4 or any(d < 1 for d in x.shape):
        return False
    wtype, btype = _TYPES[x.dtype]
    if w.dtype != wtype or not w.is_constant or len(w.shape) != 4 or tuple(w.shape[1:3]) != (1, 1) \
            or w.shape[3] != x.shape[3]:
        return False  # a grouped conv (fewer weight channels than input channels) is not one dot product
    if b is not None and (b.dtype != btype or not b.is_constant):
        return False
    if names_an_axis(w) and w.quantization.quantized_dimension != 0:
        return False
    o = op.options
    return (o.get("stride_h", 1), o.get("stride_w", 1)) == (1, 1) \
        and o.get("fused_activation_function", 0) in _ACTIVATIONS and tuple(y.shape[:3]) == tuple(x.shape[:3])


def _rewrite(sg: Subgraph, op: Operator) -> bool:
    if not _pointwise(op):
        return False
    w = op.inputs[1]
    flat = Tensor(w.name, w.dtype, (w.shape[0], w.shape[3]), buffer=w.buffer, quantization=w.quantization)
    if any(r is not op for r in sg.consumers(w)):  # the 4-D weights stay for their other readers
        flat.name = sg.unique_name(w.name + "_fc")
    fc = Operator("FULLY_CONNECTED", [op.inputs[0], flat] + list(op.inputs[2:3]), list(op.outputs),
                  {"fused_activation_function": op.options.get("fused_activation_function", 0),
                   "keep_num_dims": True}, "FullyConnectedOptions", version=5)  # keep_num_dims: version 5
    fc.source_index = op.source_index
    sg.operators[sg.operators.index(op)] = fc
    return True


def _run(model: Model) -> bool:
    return rewrite_each(model, "CONV_2D", _rewrite)


pointwise_convs_as_fc = Pass("pointwise_convs_as_fc", _run, requires=("topological",), ensures=("topological",))


def per_channel_fcs(model: Model) -> int:
    """The FULLY_CONNECTEDs with per-channel weights in `model`: where a stream has more than its original (this
    pass made them), `convert` names the TFLite Micro they need."""
    return sum(1 for _, op in model.operators() if op.type == "FULLY_CONNECTED" and len(op.inputs) > 1
               and op.inputs[1] is not None and names_an_axis(op.inputs[1]))
