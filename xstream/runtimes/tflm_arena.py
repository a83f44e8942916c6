"""Measure the smallest tensor arena with which TensorFlow Lite Micro really allocates and invokes a model.

xstream's own arena figure (``xstream inspect``) is a modelled activation plan. TFLite Micro needs more than the
plan: persistent structs per tensor and per op (TfLiteEvalTensor, NodeAndRegistration, kernel op data such as
conv's per-channel multipliers), quantization parameters, resource variables, the allocator objects themselves,
and, while it plans, temporary bookkeeping (AllocationInfo per tensor, GreedyMemoryPlanner's per-buffer lists).
This module measures the real figure by trying arena sizes.

Two runtimes:

* :func:`smallest_arena_tflm` uses the ``tflite-micro`` Python package (its ``runtime.Interpreter``, a
  ``RecordingMicroAllocator``). It cannot run xstream's RING_BUFFER custom op.
* :func:`smallest_arena_host` drives ``xstream_tflm_host arena`` (kernels/harness), the TFLM runtime of
  xmos-ai-tools with a plain ``MicroAllocator`` and the RING_BUFFER kernel: every streaming form, and the figure
  closest to what an application that copies the harness needs.

Every try runs in a child process: TFLM does not check every allocation in every kernel's Prepare, and at some
arena sizes just below the working size it dereferences a null pointer (seen: CONV_2D at 2,688-2,735 bytes for
holdout conv2d_kws_int8 in the Python interpreter). A crash counts as "does not work".

The search: double from 1 KiB until a size works (``hi``), bisect to the byte between the last failure and
``hi``, then check the band above the answer (every 16 bytes for ``band`` bytes, and a geometric set of sizes up
to ``hi``); a failure there restarts the bisection above it. So the answer N is the smallest size found such that
N and every checked size above it work. With a 16-byte aligned arena start (malloc's) the answer is a multiple of
16: TFLM aligns the tail allocations down, so the bytes of N beyond a multiple of 16 are never used.

Nothing here imports the rest of xstream but its errors and the harness binary (tflm_host): it takes model bytes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from ..errors import InterpreterError, ModelReadError, UsageError

__all__ = [
    "ArenaSearch",
    "arena_works_tflm",
    "tflm_allocations",
    "smallest_arena_tflm",
    "search_arena_tflm",
    "smallest_arena_host",
    "host_arena_report",
    "arena_figure",
]

# Child exit codes of one try.
_OK, _ALLOC_FAILED, _INVOKE_FAILED, _NO_RUNTIME = 0, 3, 4, 5

_START = 1024
_MAX_ARENA = 1 << 30


@dataclass
class ArenaSearch:
    """The result of a search: ``arena_bytes`` is the answer; ``tries`` how many sizes were tried;
    ``crashes`` the sizes at which the runtime crashed (segfault) instead of failing cleanly;
    ``non_monotonic`` the sizes above a working size that failed (each restarted the search)."""

    arena_bytes: int
    tries: int = 0
    crashes: list[int] = field(default_factory=list)
    non_monotonic: list[int] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# tflite-micro (Python package)


def _count_inputs(data: bytes) -> int:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema_fb

    try:
        model = schema_fb.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise ModelReadError("the model has no subgraph")
        return model.Subgraphs(0).InputsLength()
    except ModelReadError:
        raise
    except Exception as e:  # a truncated or foreign flatbuffer: struct.error, IndexError, ...
        raise ModelReadError(f"not a readable TFLite model ({type(e).__name__})") from None


def _try_in_process(data: bytes, arena_size: int, invoke: bool, inputs: int) -> int:
    """One try, in this process: the child's exit code."""
    try:
        import numpy as np
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return _NO_RUNTIME
    try:
        interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena_size)
    except RuntimeError:
        return _ALLOC_FAILED
    if not invoke:
        return _OK
    try:
        for i in range(inputs):
            d = interpreter.get_input_details(i)
            interpreter.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
        interpreter.invoke()  # kTfLiteAbort (a CIRCULAR_BUFFER still collecting) returns; kTfLiteError raises
    except (RuntimeError, ValueError, IndexError):
        return _INVOKE_FAILED
    return _OK


def _no_crash_dump() -> None:
    """In a child: a TFLM crash is an expected outcome, so no faulthandler traceback (pytest enables faulthandler
    on a duplicate of stderr, which silencing fd 2 does not reach)."""
    try:
        import faulthandler

        faulthandler.disable()
    except Exception:  # pragma: no cover
        pass


def _try_forked(data: bytes, arena_size: int, invoke: bool, inputs: int, log_fd: int | None) -> int | None:
    """One try in a forked child with fd 1 and 2 silenced (or sent to log_fd). The exit code, or None if the
    child died of a signal (a crash in TFLM)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = _NO_RUNTIME
        try:
            target = log_fd if log_fd is not None else os.open(os.devnull, os.O_WRONLY)
            os.dup2(target, 1)
            os.dup2(target, 2)
            _no_crash_dump()
            code = _try_in_process(data, arena_size, invoke, inputs)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return None
    return os.WEXITSTATUS(status)


def _quiet_in_process(data: bytes, arena_size: int, invoke: bool, inputs: int) -> int:
    """Where fork is missing: the try in this process, fd 2 silenced and restored (a crash is not survivable)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        return _try_in_process(data, arena_size, invoke, inputs)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _TFLMProbe:
    def __init__(self, data: bytes, invoke: bool):
        self.data = bytes(data)
        self.invoke = invoke
        self.inputs = _count_inputs(self.data)
        self.tries = 0
        self.crashes: list[int] = []
        self.last_code: int | None = None

    def __call__(self, n: int) -> bool:
        self.tries += 1
        if hasattr(os, "fork"):
            code = _try_forked(self.data, n, self.invoke, self.inputs, None)
        else:
            code = _quiet_in_process(self.data, n, self.invoke, self.inputs)
        if code is None:
            self.crashes.append(n)
        if code == _NO_RUNTIME:
            raise InterpreterError("the tflite-micro Python package is not installed (pip install tflite-micro)")
        self.last_code = code
        return code == _OK

    def why(self, n: int) -> str:
        """The last line TFLM printed when the try at n failed."""
        with tempfile.TemporaryFile() as log:
            code = _try_forked(self.data, n, self.invoke, self.inputs, log.fileno()) if hasattr(os, "fork") \
                else None
            log.seek(0)
            lines = [ln for ln in log.read().decode(errors="replace").splitlines() if ln.strip()]
        what = {None: "crashed", _ALLOC_FAILED: "cannot allocate", _INVOKE_FAILED: "cannot invoke"}.get(code, "fails")
        return f"{what}{': ' + lines[-1].strip() if lines else ''}"


def arena_works_tflm(data: bytes, arena_size: int, *, invoke: bool = True) -> bool:
    """Whether the tflite-micro Python interpreter allocates (and, with invoke, invokes once with zero inputs)
    the model in an arena of arena_size bytes. The try runs in a child process (a TFLM crash is a False)."""
    return _TFLMProbe(data, invoke)(arena_size)


def _search(works, *, start: int, max_arena: int, band: int, describe) -> ArenaSearch:
    """The smallest n such that works(n) and every checked size above it up to the first working power-of-two
    multiple of start (hi) work. works must be pure (same answer for the same n)."""
    non_monotonic: list[int] = []
    hi = start
    lo = 0  # largest size known to fail (0 fails by definition)
    while not works(hi):
        lo = hi
        if hi >= max_arena:
            raise InterpreterError(f"TFLite Micro does not run this model even with a {hi}-byte arena "
                                   f"({describe(hi)})")
        hi = min(hi * 2, max_arena)
    top = hi
    while True:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if works(mid):
                hi = mid
            else:
                lo = mid
        # Check above the answer: every 16 bytes in a band, then a geometric ladder up to `top`.
        checks = list(range(hi + 16, min(hi + band, top) + 1, 16))
        step = band
        n = hi + band
        while n < top:
            checks.append(n)
            step *= 2
            n = hi + step
        failed = next((c for c in checks if not works(c)), None)
        if failed is None:
            return ArenaSearch(hi, non_monotonic=non_monotonic)
        non_monotonic.append(failed)
        lo, hi = failed, top


def search_arena_tflm(data: bytes, *, invoke: bool = True, band: int = 256,
                      max_arena: int = _MAX_ARENA) -> ArenaSearch:
    """smallest_arena_tflm with the details of the search (tries, crashes, non-monotonic sizes)."""
    probe = _TFLMProbe(data, invoke)
    result = _search(probe, start=_START, max_arena=max_arena, band=band, describe=probe.why)
    result.tries = probe.tries
    result.crashes = sorted(set(probe.crashes))
    return result


def smallest_arena_tflm(data: bytes, *, invoke: bool = True) -> int:
    """The smallest ``arena_size`` with which ``tflite_micro``'s Python interpreter
    (``runtime.Interpreter.from_bytes(data, arena_size=N)``, a RecordingMicroAllocator) allocates the model and,
    with invoke, invokes it once with zero inputs. Raises InterpreterError if it never does (e.g. a custom op
    it does not have, such as RING_BUFFER: use smallest_arena_host)."""
    return search_arena_tflm(data, invoke=invoke).arena_bytes


_ALLOCATION_LINE = re.compile(r"'(?P<name>[^']+)' used (?P<used>\d+) bytes with alignment overhead "
                              r"\(requested (?P<requested>\d+) bytes for (?P<count>\d+) ")
_TOTAL_LINE = re.compile(r"Arena allocation (?P<what>total|head|tail) (?P<bytes>\d+) bytes")


def tflm_allocations(data: bytes, arena_size: int, *, invoke: bool = True) -> dict:
    """The RecordingMicroAllocator's account of a run of the tflite-micro Python interpreter at arena_size:
    {"total", "head", "tail": bytes, "allocations": {name: {"used", "requested", "count"}}}. Runs in a child."""
    if not hasattr(os, "fork"):
        raise UsageError("tflm_allocations needs os.fork")
    inputs = _count_inputs(data)
    with tempfile.TemporaryFile() as log:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = _NO_RUNTIME
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                _no_crash_dump()
                from tflite_micro.python.tflite_micro import runtime
                import numpy as np

                code = _ALLOC_FAILED
                interpreter = runtime.Interpreter.from_bytes(bytes(data), arena_size=arena_size)
                code = _INVOKE_FAILED
                if invoke:
                    for i in range(inputs):
                        d = interpreter.get_input_details(i)
                        interpreter.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
                    interpreter.invoke()
                os.dup2(log.fileno(), 2)
                interpreter.print_allocations()
                code = _OK
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != _OK:
            raise InterpreterError(f"tflite-micro cannot run the model with a {arena_size}-byte arena")
        log.seek(0)
        text = log.read().decode(errors="replace")
    out: dict = {"allocations": {}}
    for m in _TOTAL_LINE.finditer(text):
        out[m["what"]] = int(m["bytes"])
    for m in _ALLOCATION_LINE.finditer(text):
        out["allocations"][m["name"]] = {k: int(m[k]) for k in ("used", "requested", "count")}
    return out


# ---------------------------------------------------------------------------------------------------------------
# xstream_tflm_host (kernels/harness)


def host_arena_report(data: bytes, binary: str, *, invoke: bool = True, timeout: float = 300.0) -> dict:
    """Runs ``binary arena MODEL [--invoke]`` (xstream_tflm_host: the search in C++, one fork per try) and
    returns its ``key value...`` lines as a dict of ints / lists of ints: at least ``arena_bytes`` (the answer)
    and ``arena_used_bytes`` (MicroInterpreter::arena_used_bytes() at that size); also ``tries``, ``crashes``,
    ``non_monotonic`` and, when the runtime has a RecordingMicroAllocator, ``recorded_*`` entries
    (requested, used, count) and ``head``/``tail``."""
    if not binary or not os.path.exists(binary):
        raise InterpreterError(f"no xstream_tflm_host at {binary!r} (build it with kernels/build.sh)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(data)
        cmd = [binary, "arena", path] + (["--invoke"] if invoke else [])
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise InterpreterError(f"xstream_tflm_host arena: {why}")
    out: dict = {}
    for line in r.stdout.splitlines():
        words = line.split()
        if not words:
            continue
        values = [int(w) for w in words[1:] if re.fullmatch(r"-?\d+", w)]
        out[words[0]] = values[0] if len(values) == 1 and words[0] not in ("crashes", "non_monotonic") else values
    if "arena_bytes" not in out:
        raise InterpreterError(f"xstream_tflm_host arena printed no arena_bytes: {r.stdout.strip()[:200]}")
    return out


def smallest_arena_host(data: bytes, binary: str, *, invoke: bool = True) -> int:
    """The smallest arena with which xstream's TFLM host harness (binary: a built xstream_tflm_host) allocates
    the model and, with invoke, invokes it once with zero inputs. Every form, RING_BUFFER included."""
    return host_arena_report(data, binary, invoke=invoke)["arena_bytes"]


# ---------------------------------------------------------------------------------------------------------------
# The figure `xstream inspect` reports


def arena_figure(data: bytes, *, runtime: str | None = None, timeout: float = 10.0) -> dict:
    """TFLite Micro's smallest working arena for the model `data`, measured, as inspect reports it:
    {"tflm_arena_bytes": N or None, "tflm_arena_runtime": "tflm-host" | "tflm" | None, "tflm_arena_note": why
    there is no figure, or ""}. `runtime` None: xstream's harness (every form, RING_BUFFER included, and a plain
    MicroAllocator as an application has), else the tflite-micro interpreter, which has no RING_BUFFER kernel;
    a runtime given is the only one tried (so two figures compare one runtime). `timeout`: seconds the harness may
    search (a model that hangs TFLite Micro gets no figure)."""
    from .tflm_host import tflm_host_binary

    reasons = []
    for name in ((runtime,) if runtime else ("tflm-host", "tflm")):
        try:
            if name == "tflm-host":
                n = host_arena_report(data, tflm_host_binary(), timeout=timeout)["arena_bytes"]
            else:
                n = search_arena_tflm(data, max_arena=1 << 26).arena_bytes
            return {"tflm_arena_bytes": n, "tflm_arena_runtime": name, "tflm_arena_note": ""}
        except (InterpreterError, UsageError, ModelReadError, OSError, subprocess.SubprocessError) as e:
            reasons.append(f"{name}: {e}")
    return {"tflm_arena_bytes": None, "tflm_arena_runtime": None, "tflm_arena_note": "; ".join(reasons)}
