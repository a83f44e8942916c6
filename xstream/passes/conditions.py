"""Conditions on a model that passes require and ensure, by name; `check` raises InternalError when one fails.

A failed condition after a pass is a bug in xstream (the pass broke its promise), never the user's fault.
"""

from __future__ import annotations

from typing import Callable

from ..errors import InternalError
from ..ir import Model
from ..targets import esphome


def _unique_names(model: Model) -> str | None:
    for i, sg in enumerate(model.subgraphs):
        dup = sg.duplicate_names()
        if dup:
            return f"subgraph {i} has more than one tensor named {', '.join(map(repr, dup[:3]))}"
    return None


def _topological(model: Model) -> str | None:
    for i, sg in enumerate(model.subgraphs):
        ready = set(sg.inputs)
        produced = {t for op in sg.operators for t in op.outputs}
        for k, op in enumerate(sg.operators):
            for t in op.inputs:
                if t is not None and t in produced and t not in ready:
                    return f"subgraph {i} operator {k} ({op.kind}) reads {t.name!r} before it is written"
            ready.update(op.outputs)
    return None


def _source_indexed(model: Model) -> str | None:
    missing = [op.kind for op in model.main.operators if op.source_index is None]
    return f"operators without their index in the user's file: {missing[:3]}" if missing else None


def _no_ring_buffers(model: Model) -> str | None:
    return "RING_BUFFER ops remain" if any(op.kind == "RING_BUFFER" for _, op in model.operators()) else None


def _static_shapes(model: Model) -> str | None:
    left = [op.kind for op in model.main.operators if op.type in ("EXPAND_DIMS", "SQUEEZE")
            and all(d > 0 for t in (op.inputs[0], op.outputs[0]) for d in t.shape)
            and all(t.shape_signature is None or min(t.shape_signature, default=0) >= 0
                    for t in (op.inputs[0], op.outputs[0]))]
    return f"{len(left)} EXPAND_DIMS/SQUEEZE with static shapes remain" if left else None


def _batch_one(model: Model) -> str | None:
    dynamic = [t.name for t in model.main.tensors() if t.shape_signature is not None]
    return f"tensors keep a shape_signature: {dynamic[:3]}" if dynamic else None


def _state_io_paired(model: Model) -> str | None:
    outputs = {t.name for t in model.main.outputs}
    unpaired = [t.name for t in model.main.inputs[1:] if t.name + "_next" not in outputs]
    return f"state inputs without a <name>_next output: {unpaired}" if unpaired else None


def _esphome_io(model: Model) -> str | None:
    bad = esphome.io_problems(model)
    return "; ".join(bad) if bad else None



CONDITIONS: dict[str, Callable[[Model], str | None]] = {
    "unique_names": _unique_names,
    "topological": _topological,
    "source_indexed": _source_indexed,
    "no_ring_buffers": _no_ring_buffers,
    "static_shapes": _static_shapes,
    "batch_one": _batch_one,
    "state_io_paired": _state_io_paired,
    "esphome_io": _esphome_io,  # int8 [1, stride, 40] in, uint8 [1, 1] probability out (targets/esphome.py)
}


def failed(model: Model, names) -> list[str]:
    """The conditions among `names` that do not hold, with why."""
    out = []
    for name in names:
        why = CONDITIONS[name](model)
        if why is not None:
            out.append(f"{name}: {why}")
    return out


def check(model: Model, names, when: str) -> None:
    bad = failed(model, names)
    if bad:
        raise InternalError(f"{when}: {'; '.join(bad)}")
