"""TFLite Micro only: no CALL_ONCE init subgraph for the variable form's state.

TFLite Micro allocates a resource variable when an ASSIGN_VARIABLE is prepared and fills it with a default value
taken from that tensor: the zero point of an int8 tensor, 0 otherwise (`MicroResourceVariables`; again at every
`Reset`). That is the value the init subgraph assigns, so on TFLite Micro the subgraph, its CALL_ONCE and its
VAR_HANDLE/ASSIGN_VARIABLE pairs only cost arena: on the MixedNet 12 ops, 13 tensors and a subgraph, 1,840 bytes
(tflite-micro interpreter, 21,872 -> 20,032). LiteRT does not (an unassigned variable reads as 0s under its
XNNPACK delegate, and READ_VARIABLE fails without it), so this runs for `--target tflm` only, and only where every
initial value is what TFLite Micro sets.
"""

from __future__ import annotations

import numpy as np

from ..forms import variable
from ..ir import Model, Subgraph, Tensor
from . import Pass


def _tflm_default(t: Tensor | None) -> bool:
    """Is constant `t` all TFLite Micro's default for a variable of its type?"""
    if t is None or t.data is None:
        return False
    values = np.asarray(t.data)
    if t.dtype == "int8":
        return bool(np.all(values == t.zero_point))
    if t.dtype in ("float32", "int16", "int32"):
        return bool(np.all(values == 0))
    return False


def _run(model: Model) -> bool:
    main = model.main
    if not main.operators or main.operators[0].type != "CALL_ONCE":
        return False
    init = main.operators[0].options.get("init_subgraph_index")
    if not isinstance(init, Subgraph) or init.name != variable.INIT_SUBGRAPH:
        return False
    if any(op.type not in ("VAR_HANDLE", "ASSIGN_VARIABLE") for op in init.operators):
        return False
    if not all(_tflm_default(op.inputs[1]) for op in init.operators if op.type == "ASSIGN_VARIABLE"):
        return False
    if any(op.options.get("init_subgraph_index") is init for sg in model.subgraphs for op in sg.operators[1:]):
        return False
    main.operators.pop(0)
    model.subgraphs.remove(init)
    return True


drop_variable_init = Pass("drop_variable_init", _run, requires=("topological",), ensures=("topological",))
