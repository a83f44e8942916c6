"""Which state form needs the least TFLite Micro arena for a model, measured: what `inspect --stream` and
`convert` name when the chosen form needs more than the original (TFLite Micro pays per op and per tensor, so on
a small model a form's state handling can cost more than the activations streaming saves: docs/TFLM_COST.md)."""

from __future__ import annotations

from typing import Callable

from .. import forms
from ..errors import XstreamError
from ..ir import Model
from ..pipeline import convert

# (model, runtime or None) -> {"tflm_arena_bytes", "tflm_arena_runtime", "tflm_arena_note"}: report.inspect's
# ArenaMeter (the CLI's measures each model once).
ArenaMeter = Callable[[Model, "str | None"], dict]


def form_arenas(model: Model, meter: ArenaMeter, runtime: str | None, known: dict[str, int | None],
                hop: int | None = None, time_axis: int | None = None,
                same_padding: str = "exact") -> dict[str, int | None]:
    """Each state form's measured arena for `model` in `runtime` (None where the form refuses the model or the
    runtime cannot run it); `known`: figures already measured, by form."""
    out: dict[str, int | None] = {}
    for name in forms.NAMES:
        if name in known:
            out[name] = known[name]
            continue
        try:
            stream = convert(model, state=name, hop=hop, time_axis=time_axis, same_padding=same_padding)
        except XstreamError:
            out[name] = None
            continue
        out[name] = meter(stream, runtime).get("tflm_arena_bytes")
    return out


def advice(chosen: str, arenas: dict[str, int | None], original: int | None) -> str | None:
    """The words after a no-gain message on RAM: the form that needs the least measured arena, and whether even
    it beats the original. None when no other form was measured."""
    measured = {name: n for name, n in arenas.items() if n is not None}
    if not measured:
        return None
    best = min(measured, key=lambda name: (measured[name], name != chosen))
    if best == chosen:
        return (f"no state form needs less: --state {best} is the cheapest ({measured[best]:,} bytes, TFLite Micro "
                "arena, measured); on TFLite Micro the original needs less RAM")
    words = f"use --state {best}: {measured[best]:,} bytes (TFLite Micro arena, measured)"
    if original is not None and measured[best] >= original:
        words += "; no form needs less than the original here"
    return words
