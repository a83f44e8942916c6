"""Give every tensor of every subgraph a name of its own (the model's inputs and outputs keep theirs first).

Runtimes and tools find tensors by name (xformer's same-allocation pairs, signature defs, a user's code), so two
tensors with one name are a trap even where a runtime accepts them.
"""

from __future__ import annotations

from ..ir import Model
from . import Pass


def _run(model: Model) -> bool:
    changed = False
    for sg in model.subgraphs:
        tensors = sg.tensors()
        io = set(sg.inputs + sg.outputs)
        every = {t.name for t in tensors}
        used: set[str] = set()
        for t in [t for t in tensors if t in io] + [t for t in tensors if t not in io]:
            if t.name in used:
                base, k = t.name, 1
                while f"{base}_{k}" in used or f"{base}_{k}" in every:
                    k += 1
                t.name = f"{base}_{k}"
                every.add(t.name)
                changed = True
            used.add(t.name)
    return changed


unique_names = Pass("unique_names", _run, ensures=("unique_names",))
