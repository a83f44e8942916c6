"""A static description of a model for `xstream inspect`: operators, shapes, key options, totals and, on request,
what streaming it would give (per op and before/after, against the theoretical minimum; see measure.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .ir import PADDING_SAME, PADDING_VALID, Model, Operator, Tensor
from .measure import measure, minimum_step_cost, op_cost, ratio, stream_rows, weight_bytes
from .pipeline import RING_BUFFER, convert_with_plan

_PADDING = {PADDING_SAME: "SAME", PADDING_VALID: "VALID"}


@dataclass
class OpRow:
    index: int
    type: str
    inputs: list[str]
    outputs: list[str]
    options: dict = field(default_factory=dict)
    macs: int = 0  # per invoke (measure.op_cost)
    other_ops: int = 0


@dataclass
class ModelSummary:
    operators: list[OpRow]
    inputs: list[str]
    outputs: list[str]
    op_count: int
    params: int
    weight_bytes: int
    subgraphs: int
    cost: dict = field(default_factory=dict)  # measure.ModelMeasure.to_dict(): arena, state, weights, MACs

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
    if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(op.inputs) > 1 and op.inputs[1] is not None \
            and len(op.inputs[1].shape) == 4:
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
    rows = []
    for i, op in enumerate(sg.operators):
        c = op_cost(op)
        rows.append(OpRow(i, op.kind, [describe_tensor(t) for t in op.inputs],
                          [describe_tensor(t) for t in op.outputs], key_options(op), c.macs, c.other))
    params, nbytes = weight_bytes(model)
    return ModelSummary(rows, [describe_tensor(t) for t in sg.inputs], [describe_tensor(t) for t in sg.outputs],
                        sum(len(s.operators) for s in model.subgraphs), params, nbytes, len(model.subgraphs),
                        measure(model).to_dict())


def stream_summary(model: Model, state: str = RING_BUFFER, hop: int | None = None, time_axis: int = 1) -> dict:
    """What `xstream convert` would give for `model`, without writing it: per op and totals before/after."""
    result = convert_with_plan(model, state=state, hop=hop, time_axis=time_axis)
    plan, folded = result.plan, result.source
    before, after = measure(model), measure(result.model)
    low = minimum_step_cost(folded, plan)
    names = {op.outputs[0].name for op in folded.main.operators if op.outputs}
    added: dict[str, int] = {}  # ops the conversion added (state handling), by kind
    for op in result.model.main.operators:
        if not (op.outputs and op.outputs[0].name in names):
            added[op.kind] = added.get(op.kind, 0) + 1
    minimum = {"arena_bytes": after.arena.live_peak, "state_bytes": plan.minimum_state_bytes,
               "weight_bytes": before.weight_bytes, "macs": low.macs, "other_ops": low.other}
    b, a = before.to_dict(), after.to_dict()
    return {
        "form": state,
        "written": False,
        "contract": plan.contract,
        "window": plan.window,
        "hop": plan.hop,
        "offset": plan.offset,
        "warmup": plan.warmup,
        "time_axis": plan.time_axis,
        "operators": [vars(r) for r in stream_rows(folded, plan, result.model)],
        "added_ops": added,
        "before": b,
        "after": a,
        "minimum": minimum,
        "after_over_minimum": {k: ratio(a[k], v) for k, v in minimum.items()},
        "before_over_after": {"ram_bytes": ratio(b["ram_bytes"], a["ram_bytes"]),
                              "arena_bytes": ratio(b["arena_bytes"], a["arena_bytes"]),
                              "macs": ratio(b["macs"], a["macs"]),
                              "other_ops": ratio(b["other_ops"], a["other_ops"])},
        "planner": after.arena.planner,
    }
