"""State forms: where a streaming model keeps its state between invokes. One module per form; FORMS registers them.

Adding a form: a module that defines a `StateForm` (name, detect, state_buffers, and either `lower`, a pass from
the RING_BUFFER model, or `insert`, its own insertion from the plan), and one entry in FORMS below.
"""

from __future__ import annotations

from ..ir import Model
from . import circular_buffer, external, ring_buffer, variable
from .base import StateBuffer, StateForm

FORMS: dict[str, StateForm] = {f.name: f for f in (ring_buffer.FORM, variable.FORM, external.FORM,
                                                     circular_buffer.FORM)}
NAMES = tuple(FORMS)
DEFAULT = ring_buffer.NAME
STATELESS = "stateless"  # a stream that needs no history (e.g. stride = kernel), or not a converted model
_DETECT_ORDER = (ring_buffer.NAME, variable.NAME, circular_buffer.NAME, external.NAME)


def get(name: str) -> StateForm:
    from ..errors import UsageError
    if name not in FORMS:
        raise UsageError(f"unknown state form {name!r}; use one of {', '.join(NAMES)}")
    return FORMS[name]


def detect(model: Model) -> str:
    """The form a streaming model keeps its state in, or STATELESS."""
    return next((name for name in _DETECT_ORDER if FORMS[name].detect(model)), STATELESS)


def state_buffers(model: Model) -> list[StateBuffer]:
    """The state a (streaming) model keeps between invokes, in every form it uses; [] for a plain model."""
    return [b for form in FORMS.values() for b in form.state_buffers(model)]


__all__ = ["FORMS", "NAMES", "DEFAULT", "STATELESS", "StateBuffer", "StateForm", "get", "detect", "state_buffers",
           "ring_buffer", "variable", "external", "circular_buffer"]
