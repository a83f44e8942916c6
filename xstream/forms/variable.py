"""The `variable` form: state in builtin resource variables (VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE), zeroed
by a CALL_ONCE init subgraph, so the model runs on stock LiteRT and TFLite Micro."""

from __future__ import annotations

from .. import make
from ..ir import Model, Operator, Subgraph, Tensor
from ..passes import Pass
from . import lower_ring_buffers
from .base import StateBuffer, StateForm
from .lower_ring_buffers import zeros

NAME = "variable"
INIT_SUBGRAPH = "xstream_init_states"


class _Variables:
    """VAR_HANDLE + READ_VARIABLE before, ASSIGN_VARIABLE after; zeroed by a CALL_ONCE."""

    def __init__(self, model: Model):
        self.model = model
        self.init = Subgraph(name=INIT_SUBGRAPH)
        self.used = False

    @staticmethod
    def _handle(name: str) -> tuple[Operator, Tensor]:
        h = Tensor(f"{name}/handle", "resource", ())
        return Operator("VAR_HANDLE", [], [h], options={"container": "", "shared_name": name},
                        options_type="VarHandleOptions"), h

    def state(self, x: Tensor, state_shape, name: str):
        self.used = True
        var_op, handle = self._handle(name)
        read = make.like(x, f"{name}/read", state_shape)
        before = [var_op, Operator("READ_VARIABLE", [handle], [read], options_type="ReadVariableOptions")]
        init_op, init_handle = self._handle(name)
        self.init.operators += [init_op, Operator("ASSIGN_VARIABLE", [init_handle, zeros(x, state_shape,
                                                                                        f"{name}/init")], [],
                                                  options_type="AssignVariableOptions")]

        def write(next_state: Tensor) -> list[Operator]:
            return [Operator("ASSIGN_VARIABLE", [handle, next_state], [], options_type="AssignVariableOptions")]

        return before, read, write

    def finish(self, sg: Subgraph) -> None:
        if not self.used:
            return
        self.model.subgraphs.append(self.init)
        sg.operators.insert(0, Operator("CALL_ONCE", [], [], options={"init_subgraph_index": self.init},
                                        options_type="CallOnceOptions"))


def has_init(model: Model) -> bool:
    """Does the model zero its resource variables itself (a CALL_ONCE init subgraph)? Without one (--target tflm,
    passes/drop_variable_init.py) only TFLite Micro starts them at their zero point."""
    return any(op.type == "CALL_ONCE" for op in model.main.operators)


def _run(model: Model) -> bool:
    return lower_ring_buffers.lower(model, _Variables(model))


def _state_buffers(model: Model) -> list[StateBuffer]:
    """One buffer per variable: its largest value read or assigned (TFLite Micro keeps one copy)."""
    variables: dict[str, int] = {}
    handles: dict[Tensor, str] = {}
    for _, op in model.operators():
        if op.type == "VAR_HANDLE" and op.outputs:
            name = op.options.get("shared_name") or op.outputs[0].name
            handles[op.outputs[0]] = name
            variables.setdefault(name, 0)
    for _, op in model.operators():
        if op.type in ("READ_VARIABLE", "ASSIGN_VARIABLE") and op.inputs and op.inputs[0] in handles:
            value = op.outputs[0] if op.type == "READ_VARIABLE" and op.outputs else \
                op.inputs[1] if op.type == "ASSIGN_VARIABLE" and len(op.inputs) > 1 else None
            if value is None:
                continue
            name = handles[op.inputs[0]]
            variables[name] = max(variables[name], value.nbytes)
    return [StateBuffer(name, NAME, b, False) for name, b in variables.items()]


lower = Pass("lower_to_variables", _run, requires=("topological",), ensures=("no_ring_buffers", "topological"))
FORM = StateForm(NAME, "builtin resource variables (VAR_HANDLE, READ_VARIABLE, CONCATENATION, GATHER, "
                       "ASSIGN_VARIABLE, zeroed by CALL_ONCE); stock LiteRT and TFLite Micro",
                 detect=lambda m: any(op.type == "VAR_HANDLE" for _, op in m.operators()),
                 state_buffers=_state_buffers, lower=lower)
