"""The TFLite Micro Python interpreter (`tflite-micro` on PyPI) as a runner; its reset() resets variables."""

from __future__ import annotations

import numpy as np

from ..errors import InterpreterError
from ..tflite.reader import read_bytes
from .native_log import captured_fds, missing_kernel


class TFLM:
    """The TFLite Micro Python interpreter (`tflite-micro` on PyPI); its reset() resets variables."""

    def __init__(self, data: bytes, kernels: str):
        try:
            from tflite_micro.python.tflite_micro import runtime
        except ImportError:
            raise InterpreterError("--runtime tflm needs the tflite-micro package (pip install tflite-micro)") from None
        with captured_fds() as log:  # TFLM prints why it cannot allocate (e.g. a missing kernel) on stdout
            try:
                self.it = runtime.Interpreter.from_bytes(data)
                error = None
            except RuntimeError as e:
                error = e
        if error is not None:
            why = missing_kernel(log[0])
            raise RuntimeError(why + " in tflite-micro" if why else str(error))  # open_runner names the model
        main = read_bytes(data).main  # the counts: probing past the last index makes TFLM print errors
        self.inputs = self._details(self.it.get_input_details, len(main.inputs))
        self.outputs = self._details(self.it.get_output_details, len(main.outputs))

    @staticmethod
    def _details(get, count: int) -> list[dict]:
        """Its details, in LiteRT's layout (shape, dtype, quantization=(scale, zero_point))."""
        out = []
        for i in range(count):
            d = get(i)
            q = d.get("quantization_parameters") or {}
            zps = list(q.get("zero_points", [])) or [0]
            scales = list(q.get("scales", [])) or [0.0]
            out.append({"shape": d["shape"], "dtype": d["dtype"], "quantization": (scales[0], zps[0])})
        return out

    def reset(self) -> None:
        self.it.reset()

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]:
        for i, v in enumerate(values):
            self.it.set_input(v, i)
        self.it.invoke()
        return [np.array(self.it.get_output(i)) for i in range(len(self.outputs))]
