"""Where models run: one small Runner protocol over LiteRT, TFLite Micro, xstream's TFLM harness and xcore.

A runner is made from model bytes and offers `inputs` / `outputs` (LiteRT-style details: shape, dtype,
quantization=(scale, zero_point)), `reset()` (a new utterance: state back to its zero point) and
`__call__(values) -> outputs`. `open_runner` picks one by name and turns interpreter failures into one
InterpreterError line; `isolation.in_child` runs work in a forked child so a native crash is an error, not the end
of the caller.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..errors import InterpreterError, UsageError, XstreamError
from .frames import random_frames  # noqa: F401  (re-exported)

RUNTIMES = ("litert", "tflm", "tflm-host", "xcore", "xcore-litert")
# xcore: the model compiled by XMOS xformer, run in the host xcore runtime (runtimes/xcore_host.py). xcore-litert:
# verify runs the streaming model so and the original in LiteRT (xcore kernels round differently from LiteRT's).
REFERENCE_RUNTIME = {"xcore-litert": "litert"}
KERNELS = ("builtin", "reference")


class Runner(Protocol):
    inputs: list[dict]
    outputs: list[dict]

    def reset(self) -> None: ...

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]: ...


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Guarded:
    """A runner whose interpreter errors (at allocate, set, invoke, reset) become one InterpreterError."""

    def __init__(self, runner, runtime: str, which: str):
        self.runner, self.runtime, self.which = runner, runtime, which
        self.inputs, self.outputs = runner.inputs, runner.outputs

    def __getattr__(self, name: str):  # anything else a runner offers (e.g. tflm-host's last_status)
        return getattr(self.runner, name)

    def _fail(self, e: Exception) -> InterpreterError:
        return InterpreterError(f"{self.runtime} failed running the {self.which} model: {_first_line(e)}")

    def reset(self) -> None:
        try:
            self.runner.reset()
        except XstreamError:
            raise
        except Exception as e:
            raise self._fail(e) from None

    def __call__(self, values):
        try:
            return self.runner(values)
        except XstreamError:
            raise
        except Exception as e:
            raise self._fail(e) from None


def open_runner(data: bytes, runtime: str, kernels: str = "builtin", which: str = "model") -> Runner:
    """A runner of `runtime` for the model `data`; `which` names the model in error messages."""
    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if kernels not in KERNELS:
        raise UsageError(f"unknown kernels {kernels!r}; use one of {', '.join(KERNELS)}")
    try:
        if runtime in ("xcore", "xcore-litert"):
            from .xcore_host import host_runner
            return Guarded(host_runner(data, kernels), runtime, which)
        if runtime == "litert":
            from .litert import LiteRT as cls
        elif runtime == "tflm":
            from .tflm import TFLM as cls
        else:
            from .tflm_host import TFLMHost as cls
        return Guarded(cls(data, kernels), runtime, which)
    except XstreamError:
        raise
    except Exception as e:
        raise InterpreterError(f"{runtime} cannot load the {which} model: {_first_line(e)}") from None
