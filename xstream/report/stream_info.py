"""What a streaming model is (contract, window, hop, offset, warm-up, state): one dict, written into the model's
metadata as "xstream_stream" and shared by `convert --json`, `inspect` and the Python API."""

from __future__ import annotations

import json

from ..analysis import StreamPlan
from ..ir import Buffer, Metadata, Model
from ..version import __version__
from .measure import measure

METADATA_NAME = "xstream_stream"
CONTRACT_DOC = "docs/CONTRACT.md"


def stream_info(model: Model, plan: StreamPlan, state_form: str, target: str | None) -> dict:
    """The description of `model`, the stream computed from `plan` (its objects are the stream's) in
    `state_form`. `state_buffers`: each tensor whose past frames the contract keeps (frames, bytes);
    `state_bytes`: what the form really holds (a CIRCULAR_BUFFER, for one, keeps its newest frame too)."""
    return {
        "tool": "xstream",
        "version": __version__,
        "contract_doc": CONTRACT_DOC,
        "contract": plan.contract,
        "window": plan.window,
        "hop": plan.hop,
        "offset": plan.offset,
        "warmup": plan.warmup,
        "compare_step": plan.compare_step,
        "input_delay": plan.input_delay,
        "time_axis": plan.time_axis,
        "frames_per_invoke": model.main.inputs[0].shape[plan.time_axis] // plan.frame,
        "state_form": state_form,
        "state_buffers": [{"name": s.tensor.name, "frames": s.state_frames, "bytes": s.state_bytes}
                          for s in plan.states if s.state_frames > 0],
        "state_bytes": measure(model).state_bytes,
        "target": target,
        **_padding(plan),
    }


def _padding(plan: StreamPlan) -> dict:
    """How padding on both sides of time is streamed: edge recompute (its cost) or the context stream."""
    if plan.context is not None:
        c = plan.context
        return {"same_padding": "context", "context": {"window": c.window, "before": c.before, "after": c.after,
                                                       "offset": c.offset}}
    if plan.edges or plan.edge_reads:
        return {"same_padding": "exact", "edges": {
            "macs": sum(b.macs for b in plan.edges),
            "delay_line_frames": max((b.frames for b in plan.edges), default=0),
            "branches": [{"side": b.side, "frames": b.frames, "ops": len(b.ops), "macs": b.macs}
                         for b in plan.edges]}}
    return {}


def attach(model: Model, info: dict) -> None:
    """Write `info` into `model`'s metadata (replacing an earlier entry of the same name)."""
    model.metadata = [m for m in model.metadata if m.name != METADATA_NAME]
    data = json.dumps(info, separators=(",", ":"), sort_keys=False).encode()
    model.metadata.append(Metadata(METADATA_NAME, Buffer(data)))


def read(model: Model) -> dict | None:
    """The description a streaming model carries (written by `attach`), or None: not written by xstream, or
    unreadable (a note in the dict says so)."""
    entry = next((m for m in model.metadata if m.name == METADATA_NAME), None)
    if entry is None:
        return None
    try:
        info = json.loads(entry.buffer.data.decode())
    except (UnicodeDecodeError, ValueError):
        return {"unreadable": f"metadata {METADATA_NAME!r} is not JSON"}
    if not isinstance(info, dict):
        return {"unreadable": f"metadata {METADATA_NAME!r} is not a JSON object"}
    bad = _malformed(info)
    return {"unreadable": f"metadata {METADATA_NAME!r} has a malformed {bad!r}"} if bad else info


_TYPES = {"contract": str, "window": int, "hop": int, "offset": int, "warmup": int, "time_axis": int,
          "state_form": str, "state_bytes": int, "state_buffers": list}
_BUFFER_TYPES = {"name": str, "frames": int, "bytes": int}


def _malformed(info: dict) -> str | None:
    """The first key whose value is not of the type `attach` writes (what readers index unchecked), or None."""
    for key, kind in _TYPES.items():
        if key in info and (not isinstance(info[key], kind) or isinstance(info[key], bool)):
            return key
    if info.get("contract") == "causal" and not isinstance(info.get("compare_step"), int):
        return "compare_step"
    for b in info.get("state_buffers", []):
        if not isinstance(b, dict) or any(not isinstance(b.get(k), t) for k, t in _BUFFER_TYPES.items()):
            return "state_buffers"
    return None
