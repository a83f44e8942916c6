"""One tensor per distinct constant in each subgraph: the slices' begin/end/strides, the reshapes' shapes, the
splits' axes that the state handling adds are mostly equal, and TFLite Micro pays for every tensor (24 bytes of
TfLiteEvalTensor, and about 32 bytes of planner scratch while it allocates: docs/TFLM_COST.md), weights or not."""

from __future__ import annotations

from ..ir import Model, Tensor
from . import Pass


def _key(t: Tensor):
    q = t.quantization
    quant = None if q is None else tuple(None if a is None else tuple(a.reshape(-1).tolist())
                                         for a in (q.scale, q.zero_point, q.min, q.max)) + (q.quantized_dimension,)
    return t.dtype, tuple(t.shape), t.shape_signature, bytes(t.buffer.data), quant


def _run(model: Model) -> bool:
    changed = False
    for sg in model.subgraphs:
        io = set(sg.inputs + sg.outputs)
        first: dict = {}
        for op in sg.operators:
            for k, t in enumerate(op.inputs):
                if t is None or not t.is_constant or t.is_variable or t in io:
                    continue
                kept = first.setdefault(_key(t), t)
                if kept is not t:
                    op.inputs[k] = kept
                    changed = True
    return changed


share_constants = Pass("share_constants", _run, requires=("topological",), ensures=("topological",))
