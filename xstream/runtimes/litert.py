"""LiteRT (ai-edge-litert) as a runner: builtin kernels without the XNNPACK delegate."""

from __future__ import annotations

import numpy as np

from ..errors import InterpreterError


class LiteRT:
    """Builtin LiteRT kernels without the XNNPACK delegate: it picks different algorithms per shape, so two
    graph forms of the same maths are not comparable bit for bit under it."""

    def __init__(self, data: bytes, kernels: str):
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            raise InterpreterError("running models needs LiteRT (ai-edge-litert, a dependency of xstream), which is "
                                   "not installed here: pip install ai-edge-litert") from None
        self._make = lambda: Interpreter(
            model_content=data,
            experimental_op_resolver_type=OpResolverType.BUILTIN_REF if kernels == "reference"
            else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.reset()
        self.inputs = self.it.get_input_details()
        self.outputs = self.it.get_output_details()

    def reset(self) -> None:
        # reset_all_variables() does not reset resource variables; a fresh interpreter does.
        self.it = self._make()
        self.it.allocate_tensors()

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]:
        for d, v in zip(self.inputs, values):
            self.it.set_tensor(d["index"], v)
        self.it.invoke()
        return [self.it.get_tensor(d["index"]).copy() for d in self.outputs]
