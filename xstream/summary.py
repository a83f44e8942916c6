"""A static description of a model for `xstream inspect`: operators, shapes, key options and totals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .ir import PADDING_SAME, PADDING_VALID, Model, Operator, Tensor

_PADDING = {PADDING_SAME: "SAME", PADDING_VALID: "VALID"}


@dataclass
class OpRow:
    index: int
    type: str
    inputs: list[str]
    outputs: list[str]
    options: dict = field(default_factory=dict)


@dataclass
class ModelSummary:
    operators: list[OpRow]
    inputs: list[str]
    outputs: list[str]
    op_count: int
    params: int
    weight_bytes: int
    subgraphs: int

    def to_dict(self) -> dict:
        return asdict(self)


def describe_tensor(t: Tensor | None) -> str:
    if t is None:
        return "-"
    return f"{t.dtype}{list(t.shape)}"


def key_options(op: Operator) -> dict:
    """The options a user reads to understand how an op moves along its axes."""
    o = op.options
    out: dict = {}
    if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) > 1 and op.inputs[1] is not None:
        w = op.inputs[1].shape
        out["kernel"] = [int(w[1]), int(w[2])]
    if op.type in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        out["kernel"] = [o.get("filter_height", 1), o.get("filter_width", 1)]
    if "stride_h" in o:
        out["stride"] = [o["stride_h"], o.get("stride_w", 1)]
    if "dilation_h_factor" in o:
        out["dilation"] = [o["dilation_h_factor"], o.get("dilation_w_factor", 1)]
    if "padding" in o:
        out["padding"] = _PADDING.get(o["padding"], o["padding"])
    if op.type in ("MEAN", "REDUCE_MAX", "SUM") and len(op.inputs) > 1 and op.inputs[1] is not None \
            and op.inputs[1].is_constant:
        out["axis"] = np.atleast_1d(op.inputs[1].data).tolist()
    if op.type == "CUSTOM" and op.custom_options is not None:
        out["custom_options_bytes"] = len(op.custom_options)
    return out


def summarize(model: Model) -> ModelSummary:
    sg = model.main
    rows = [OpRow(i, op.kind, [describe_tensor(t) for t in op.inputs], [describe_tensor(t) for t in op.outputs],
                  key_options(op)) for i, op in enumerate(sg.operators)]
    params = 0
    weight_bytes = 0
    seen: set[int] = set()
    for s in model.subgraphs:
        for t in s.tensors():
            if t.is_constant and id(t.buffer) not in seen:
                seen.add(id(t.buffer))
                params += int(np.prod(t.shape, dtype=np.int64))
                weight_bytes += len(t.buffer.data)
    return ModelSummary(rows, [describe_tensor(t) for t in sg.inputs], [describe_tensor(t) for t in sg.outputs],
                        sum(len(s.operators) for s in model.subgraphs), params, weight_bytes, len(model.subgraphs))
