"""A description of a model for `xstream inspect`: operators, shapes, key options, totals and, on request,
what streaming it would give (per op and before/after, against the theoretical minimum; see measure.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from typing import Callable

from .. import forms, ops
from ..ir import Model, Subgraph, Tensor
from ..pipeline import prepare, rewrite
from . import stream_info
from .form_choice import advice, form_arenas
from .gain import gain
from .measure import fill_step_costs, measure, minimum_step_cost, op_cost, ratio, stream_rows, weight_bytes

# Measures a model's TFLite Micro arena: (model, runtime or None) -> {"tflm_arena_bytes", "tflm_arena_runtime",
# "tflm_arena_note"} (runtimes.tflm_arena.arena_figure on its bytes); injected, so this module runs nothing itself.
ArenaMeter = Callable[[Model, "str | None"], dict]


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
    subgraph_operators: list[dict] = field(default_factory=list)  # the other subgraphs: index, name, operators
    warnings: list[str] = field(default_factory=list)
    stream: dict | None = None  # what a streaming model says about itself (its "xstream_stream" metadata)

    def to_dict(self) -> dict:
        return asdict(self)


def describe_tensor(t: Tensor | None) -> str:
    if t is None:
        return "-"
    return f"{t.dtype}{list(t.shape)}"


def _op_rows(sg: Subgraph) -> list[OpRow]:
    rows = []
    for i, op in enumerate(sg.operators):
        c = op_cost(op)
        rows.append(OpRow(i, op.kind, [describe_tensor(t) for t in op.inputs],
                          [describe_tensor(t) for t in op.outputs], ops.key_options(op), c.macs, c.other))
    return rows


def placeholder_warnings(model: Model) -> list[str]:
    """Inputs with a dynamic dimension other than the batch: the file stores a placeholder size there (often 1),
    and every shape, MAC and byte figure derived from it describes that placeholder, not the real model."""
    out = []
    for t in model.main.inputs:
        sig = t.shape_signature
        if sig is not None and any(d < 0 for d in list(sig)[1:]):
            out.append(f"input {t.name!r} has dynamic dimension(s) (shape_signature {list(sig)}): the shapes, MACs "
                       f"and bytes below use the placeholder shape {list(t.shape)} stored in the file; export the "
                       "model with a fixed shape to see the real figures")
    return out


def summarize(model: Model) -> ModelSummary:
    sg = model.main
    params, nbytes = weight_bytes(model)
    others = [{"index": k, "name": s.name, "operators": [asdict(r) for r in _op_rows(s)]}
              for k, s in enumerate(model.subgraphs) if k > 0]
    return ModelSummary(_op_rows(sg), [describe_tensor(t) for t in sg.inputs],
                        [describe_tensor(t) for t in sg.outputs], sum(len(s.operators) for s in model.subgraphs),
                        params, nbytes, len(model.subgraphs), measure(model).to_dict(), others,
                        placeholder_warnings(model), stream_info.read(model))


def stream_summary(model: Model, state: str = forms.DEFAULT, hop: int | None = None, time_axis: int | None = None,
                   arena_meter: ArenaMeter | None = None, same_padding: str = "exact") -> dict:
    """What `xstream convert` would give for `model`, without writing it: per op and totals before/after, with
    the keys and values of `convert --json`'s stream description. With `arena_meter`, "before" and "after" also
    hold TFLite Micro's measured arena (both in one runtime), and the gain uses it for RAM."""
    work, plan = prepare(model, hop, time_axis, same_padding)
    analysed = list(work.main.operators)
    rows = stream_rows(work, plan)  # before the plan is applied: the original shapes
    low = minimum_step_cost(work, plan)
    before = measure(model)
    result = rewrite(work, plan, state)
    fill_step_costs(rows, analysed, result.model, plan)
    after = measure(result.model)
    known = set(analysed)
    added: dict[str, int] = {}  # ops the conversion added (state handling), by kind
    for op in result.model.main.operators:
        if op not in known:
            added[op.kind] = added.get(op.kind, 0) + 1
    minimum = {"arena_bytes": after.arena.live_peak, "state_bytes": plan.minimum_state_bytes,
               "weight_bytes": before.weight_bytes, "macs": low.macs, "other_ops": low.other}
    b, a = before.to_dict(), after.to_dict()
    if arena_meter is not None:
        a.update(arena_meter(result.model, None))
        b.update(arena_meter(model, a["tflm_arena_runtime"]))
    g = gain(b, a)
    arenas = None
    if arena_meter is not None and "ram" in g["nothing"] and g["ram"]["figure"] == "tflm_arena_bytes":
        arenas = form_arenas(model, arena_meter, a["tflm_arena_runtime"], {state: a["tflm_arena_bytes"]}, hop,
                             time_axis)
        words = advice(state, arenas, b["tflm_arena_bytes"])
        if words:
            g["message"] += f"; {words}"
    return {
        **stream_info.read(result.model),
        "form": state,
        "written": False,
        "contract": plan.contract,
        "window": plan.window,
        "hop": plan.hop,
        "offset": plan.offset,
        "warmup": plan.warmup,
        "time_axis": plan.time_axis,
        "operators": [vars(r) for r in rows],
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
        "gain": g,
        "form_arenas": arenas,  # each form's measured TFLite Micro arena, when the chosen one gains no RAM
        "no_gain": g if g["nothing"] else None,  # as in convert --json
    }
