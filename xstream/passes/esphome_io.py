"""Fit a stream to ESPHome's micro_wake_word: int8 `[1, stride, 40]` features in, one uint8 probability out, only
the ops and resource variables the component has; refuse, naming what to change, what cannot be fitted.

Runs after the state form (`variable`) and static_reshapes. The facts are in targets/esphome.py. What it adapts:
- input: 40 values per frame in another shape (`[1, H, 40, 1]`, `[1, H, 1, 40]`) get a RESHAPE from `[1, H, 40]`;
  an int8 quantization other than ESPHome's (26/255, -128) gets a QUANTIZE int8 -> int8 from ESPHome's, so the
  model sees its own quantization of the features ESPHome computes (beyond its range they clamp, as they would);
- output: one value in [0, 1] becomes uint8 with scale 1/255 and zero point 0 (ESPHome: probability = value/255).
  A QUANTIZE that ends the model (int8 -> uint8 at 1/256, as TF's converter writes for a uint8 output) is
  retargeted: one op, since TFLite Micro requantizes int8 -> uint8 directly; a final DEQUANTIZE of an int8 value
  becomes that QUANTIZE; an int8 output (LOGISTIC's, 1/256 and -128) gets one appended. TFLite Micro's QUANTIZE
  cannot make uint8 from float32 or uint8, so a float or other uint8 head is refused.
"""

from __future__ import annotations

import numpy as np

from .. import make
from ..errors import StreamingRefused
from ..ir import Model, Operator, Quantization, Subgraph, Tensor
from ..targets import esphome
from . import Pass

# What to do instead of an op the component does not register (ops it lacks that converters commonly emit).
_INSTEAD = {
    "SOFTMAX": "end with one sigmoid (LOGISTIC) output",
    "DEQUANTIZE": "quantize the whole model (int8 input and output)",
    "RELU": "let the converter fuse the activation into the conv or dense layer before it",
    "RELU6": "let the converter fuse the activation into the conv or dense layer before it",
    "EXPAND_DIMS": "give the model a static batch of 1 so it becomes a RESHAPE",
    "SQUEEZE": "give the model a static batch of 1 so it becomes a RESHAPE",
    "SHAPE": "flatten with a static Reshape (a fixed batch of 1)",
    "TRANSPOSE": "keep time on axis 1 and features last (channels-last layers)",
    "SPACE_TO_BATCH_ND": "use a conv with a dilation xstream can fold",
    "BATCH_TO_SPACE_ND": "use a conv with a dilation xstream can fold",
}


def _where(op: Operator) -> str:
    return f"operator {op.source_index} ({op.kind})" if op.source_index is not None \
        else f"an operator xstream added ({op.kind})"


def _q(scale: float, zero_point: int) -> Quantization:
    return Quantization(scale=np.array([scale], dtype=np.float32), zero_point=np.array([zero_point], dtype=np.int64))


def _replace_input(model: Model, sg: Subgraph, old: Tensor, new: Tensor) -> None:
    sg.inputs = [new if t is old else t for t in sg.inputs]
    for sig in model.signatures:
        if sig.subgraph is sg:
            sig.inputs = [(n, new if t is old else t) for n, t in sig.inputs]


def _fit_input(model: Model) -> str | None:
    """Adapt input 0 to int8 [1, H, 40] at ESPHome's quantization, or say why not."""
    sg = model.main
    x = sg.inputs[0]
    what = f"input 0 {x.name!r} is {x.dtype} {list(x.shape)}"
    feed = (f"ESPHome feeds int8 [1, stride, {esphome.FEATURES}]: {esphome.FEATURES} micro_speech features per "
            f"slice, scale {esphome.INPUT_SCALE:.8f}, zero point {esphome.INPUT_ZERO_POINT}")
    if x.dtype != "int8":
        return (f"{what}: {feed}; convert with full-integer quantization (int8 input, representative features in "
                f"[0, 26])")
    per_frame = int(np.prod(x.shape[2:], dtype=np.int64)) if len(x.shape) >= 3 else 0
    if len(x.shape) < 3 or x.shape[0] != 1 or per_frame != esphome.FEATURES:
        return (f"{what} ({per_frame or 'no'} values per frame on axis 1): {feed}; train on {esphome.FEATURES} "
                "features per frame with time on axis 1")
    q = esphome.quantization_of(x)
    if q is None:
        return f"{what} without per-tensor quantization: {feed}"
    want = (1, x.shape[1], esphome.FEATURES)
    same_q = esphome.same_scale(q[0], esphome.INPUT_SCALE) and q[1] == esphome.INPUT_ZERO_POINT
    if same_q and tuple(x.shape) == want:
        return None
    name = x.name
    x.name = sg.unique_name(f"{name}/model_input")
    fed = Tensor(name, "int8", want, quantization=_q(esphome.INPUT_SCALE, esphome.INPUT_ZERO_POINT))
    if tuple(x.shape) == want:
        chain = [make.quantize(fed, x)]
    else:
        chain, cur = [], fed
        if not same_q:
            cur = make.like(x, sg.unique_name(f"{name}/requantized"), want)
            chain.append(make.quantize(fed, cur))
        chain.append(make.reshape(cur, x))
    _replace_input(model, sg, x, fed)
    sg.operators[0:0] = chain
    return None


def _fit_output(model: Model) -> str | None:
    """Make output 0 the uint8 probability ESPHome reads, or say why not."""
    sg = model.main
    y = sg.outputs[0]
    what = f"output 0 {y.name!r} is {y.dtype} {list(y.shape)}"
    reads = "ESPHome reads one probability, a uint8 [1, 1] holding probability * 255"
    n = int(np.prod(y.shape, dtype=np.int64))
    if n != 1:
        return (f"{what}: {n} values; {reads}: train one sigmoid output per wake word "
                "(Dense(1, activation='sigmoid'))")
    if esphome.output_problem(y) is None:
        return None
    producer = sg.producer(y)
    only_output = not sg.consumers(y) and sum(t is y for t in sg.outputs) == 1
    if y.dtype == "float32":
        if producer is None or producer.type != "DEQUANTIZE" or not only_output \
                or producer.inputs[0].dtype not in ("int8", "uint8"):
            return (f"{what}: {reads}, and TFLite Micro's QUANTIZE cannot make uint8 from float32; convert with "
                    "full-integer quantization (int8 input and int8 or uint8 output)")
        # The DEQUANTIZE goes; the quantized value it read is the output now.
        sg.operators.remove(producer)
        model.replace_uses(sg, y, producer.inputs[0])
        y = producer.inputs[0]
        producer = sg.producer(y)
        only_output = not sg.consumers(y) and sum(t is y for t in sg.outputs) == 1
    q = esphome.quantization_of(y)
    if y.dtype not in ("int8", "uint8") or q is None:
        return f"{what}: {reads}; quantize the model's output per tensor (int8 or uint8)"
    lo, hi = esphome.output_probability_range(q[0], q[1], y.dtype)
    if lo < -esphome.OUTPUT_SCALE or hi > 1 + esphome.OUTPUT_SCALE:
        return (f"{what} (scale {q[0]:.6g}, zero point {q[1]}) holds values from {lo:.4g} to {hi:.4g}, not a "
                f"probability: {reads}; end the model with a sigmoid (Dense(1, activation='sigmoid'))")
    probability = _q(esphome.OUTPUT_SCALE, esphome.OUTPUT_ZERO_POINT)
    if producer is not None and producer.type == "QUANTIZE" and producer.inputs[0].dtype == "int8" and only_output:
        y.dtype, y.quantization = "uint8", probability  # TFLite Micro requantizes int8 -> uint8 in one op
    elif y.dtype == "int8":
        out = Tensor(sg.unique_name(f"{y.name}/probability"), "uint8", tuple(y.shape), quantization=probability)
        sg.operators.append(make.quantize(y, out))
        model.replace_uses(sg, y, out, skip=sg.operators[-1])
        y = out
    else:
        return (f"{what} (scale {q[0]:.6g}, zero point {q[1]}): {reads} at scale 1/255, and TFLite Micro's "
                "QUANTIZE cannot requantize uint8 to uint8; convert with an int8 output (TF's uint8 output is fine: "
                "it ends in a QUANTIZE from int8)")
    if tuple(y.shape) != (1, 1):
        out = make.like(y, sg.unique_name(f"{y.name}/1x1"), (1, 1))
        sg.operators.append(make.reshape(y, out))
        model.replace_uses(sg, y, out, skip=sg.operators[-1])
    return None


def _unsupported_ops(model: Model) -> str | None:
    missing: dict[str, list[Operator]] = {}
    for _, op in model.operators():
        if op.type not in esphome.STREAMING_OPS:
            missing.setdefault(op.kind, []).append(op)
    if not missing:
        return None
    named = ", ".join(_where(op) for found in missing.values() for op in found[:3])
    hints = "; ".join(f"instead of {kind}: {_INSTEAD[kind]}" for kind in missing if kind in _INSTEAD)
    return (f"{named} not in ESPHome's micro_wake_word op resolver (it registers only "
            f"{', '.join(esphome.STREAMING_OPS)}; no custom ops)" + (f"; {hints}" if hints else ""))


def _too_many_variables(model: Model) -> str | None:
    n = len(esphome.resource_variables(model))
    if n <= esphome.RESOURCE_VARIABLES:
        return None
    return (f"the stream keeps its state in {n} resource variables (one per tensor a time-sliding op reads); "
            f"ESPHome creates {esphome.RESOURCE_VARIABLES} (MicroResourceVariables::Create(..., "
            f"{esphome.RESOURCE_VARIABLES})): use fewer time-sliding layers that read different tensors")


def _run(model: Model) -> bool:
    sg = model.main

    def snapshot():
        return ([id(op) for op in sg.operators], [id(t) for t in sg.inputs + sg.outputs],
                [(t.dtype, id(t.quantization)) for t in sg.outputs])

    before = snapshot()
    problems = []
    if len(sg.inputs) != 1:
        problems.append(f"the model has {len(sg.inputs)} inputs; ESPHome feeds only input 0 (features)")
    if len(sg.outputs) != 1:
        problems.append(f"the model has {len(sg.outputs)} outputs; ESPHome reads only output 0 (one probability): "
                        "export the model with one output")
    if sg.inputs:
        problems.append(_fit_input(model))
    if sg.outputs:
        problems.append(_fit_output(model))
    problems += [_unsupported_ops(model), _too_many_variables(model)]
    problems = [p for p in problems if p]
    if problems:
        raise StreamingRefused(f"ESPHome's micro_wake_word ({esphome.ESPHOME_VERSION}) cannot run this model: "
                               + "; ".join(problems))
    return snapshot() != before


esphome_io = Pass("esphome_io", _run, requires=("static_shapes",), ensures=("static_shapes", "esphome_io"))
