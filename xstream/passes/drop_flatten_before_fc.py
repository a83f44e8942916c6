"""A RESHAPE to [batch, K] whose only readers are FULLY_CONNECTED ops goes: a FULLY_CONNECTED without
keep_num_dims reads its input flat as [elements / K, K] in LiteRT and TFLite Micro alike, so the flatten before
a model's head (Keras Flatten, PyTorch's view) is a copy of the whole window for nothing. On a stream that copy is
the head's window: TFLite Micro pays the op, two tensors and the window's bytes (docs/TFLM_COST.md; microWakeWord's
MixedNet: 288 bytes of arena)."""

from __future__ import annotations

from ..ir import Model, Operator, Subgraph, same_quantization
from . import Pass, rewrite_each


def _rewrite(sg: Subgraph, op: Operator) -> bool:
    if not op.inputs or op.inputs[0] is None:
        return False
    x, y = op.inputs[0], op.outputs[0]
    if len(y.shape) != 2 or y in sg.outputs or y.is_variable or x.dtype != y.dtype or not same_quantization(x, y):
        return False
    if any(d < 0 for d in x.shape) or x.nbytes != y.nbytes or x.shape[0] != y.shape[0]:
        return False  # the batch must stay the leading axis for [elements / K, K] to be the same rows
    readers = sg.consumers(y)
    if not readers or any(r.type != "FULLY_CONNECTED" or r.inputs[0] is not y or y in r.inputs[1:]
                          or r.options.get("keep_num_dims", False) or r.inputs[1] is None
                          or r.inputs[1].shape[-1] != y.shape[1] for r in readers):
        return False
    for r in readers:
        r.inputs[0] = x
    sg.operators.remove(op)
    return True


def _run(model: Model) -> bool:
    return rewrite_each(model, "RESHAPE", _rewrite)


drop_flatten_before_fc = Pass("drop_flatten_before_fc", _run, requires=("topological",), ensures=("topological",))
