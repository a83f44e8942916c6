"""xstream's TFLite Micro host harness (kernels/harness) as a runner, and the client of its `serve` pipe protocol."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import weakref

import numpy as np

from .. import kernel_sources
from ..errors import InterpreterError
from .native_log import missing_kernel

KERNELS_DIR = kernel_sources.kernels_dir()  # kernels/ in a checkout, xstream/_kernels in a wheel


_HOST_BINARY: str | None = None


def tflm_host_binary() -> str:
    """The TFLite Micro host harness (kernels/harness): $XSTREAM_TFLM_HOST, or built by kernels/build.sh from a
    source checkout (cached: it rebuilds only when a source changed)."""
    global _HOST_BINARY
    if os.environ.get("XSTREAM_TFLM_HOST"):
        return os.environ["XSTREAM_TFLM_HOST"]
    if _HOST_BINARY is not None and os.path.exists(_HOST_BINARY):
        return _HOST_BINARY
    script = KERNELS_DIR / "build.sh"
    if not script.exists():
        raise InterpreterError("--runtime tflm-host needs xstream's TFLM harness: run from a source checkout (it is "
                               "built by kernels/build.sh) or set XSTREAM_TFLM_HOST to a built xstream_tflm_host")
    build_dir = str(kernel_sources.harness_build_dir())
    proc = subprocess.Popen(["bash", str(script), build_dir], env={**os.environ, "PYTHON": sys.executable},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors = []
    for line in proc.stderr:  # build.sh says "compiling" only when it really builds (it caches by a stamp)
        errors.append(line.rstrip())
        if line.startswith("build.sh: compiling"):
            print("xstream: building the TFLite Micro host harness (kernels/build.sh, about 40 s, once)",
                  file=sys.stderr, flush=True)
    out = proc.stdout.read()
    if proc.wait() != 0:
        why = ([e for e in errors if e.strip()] or ["(no message)"])[-1]
        raise InterpreterError(f"cannot build the TFLM host harness with kernels/build.sh: {why}")
    _HOST_BINARY = out.strip().splitlines()[-1]
    return _HOST_BINARY


_HOST_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
                "float32": np.float32, "float64": np.float64, "bool": np.bool_}


def stop_process(proc: subprocess.Popen, log) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.write(b"Q")
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            proc.kill()
            proc.wait()
    for f in (proc.stdout, log):
        try:
            f.close()
        except (OSError, ValueError):
            pass


class TFLMHost:
    """xstream's TFLite Micro host harness: the TFLM runtime of xmos-ai-tools with the RING_BUFFER kernel
    (kernels/ring_buffer) and TFLM's CIRCULAR_BUFFER registered, driven over a pipe (`xstream_tflm_host serve`).
    reset() starts a new utterance (MicroInterpreter::Reset, or ResetRingBuffers for the ring-buffer form)."""

    def __init__(self, data: bytes, kernels: str):
        binary = tflm_host_binary()
        self._log = tempfile.TemporaryFile()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.tflite")
            with open(path, "wb") as f:
                f.write(data)
            self.proc = subprocess.Popen([binary, "serve", path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log)
            self._finalizer = weakref.finalize(self, stop_process, self.proc, self._log)
            lines = []
            while not lines or lines[-1] != "ready":
                line = self.proc.stdout.readline()
                if not line:
                    why = self._error("\n".join(lines))
                    raise InterpreterError(f"tflm-host cannot load the model: {why}")
                lines.append(line.decode().strip())
        self.inputs, self.outputs = self._parse(lines)
        self.last_status = "ok"

    def _error(self, printed: str = "") -> str:
        """Why the harness stopped: the kernel it lacks (TFLM prints that on stdout while loading, `printed`), or
        the last line of its stderr."""
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.seek(0)
        log = self._log.read().decode(errors="replace")
        missing = missing_kernel(printed + "\n" + log)
        if missing:
            return missing + " in xstream's TFLite Micro harness (kernels/harness/host_op_resolver.h)"
        text = log.strip().splitlines()
        return text[-1] if text else f"exit status {self.proc.returncode}"

    @staticmethod
    def _parse(lines: list[str]) -> tuple[list[dict], list[dict]]:
        sections: dict[str, list[dict]] = {}
        current = None
        for line in lines:
            words = line.split()
            if words[0] in ("inputs", "outputs"):
                current = sections.setdefault(words[0], [])
            elif words[0] in _HOST_DTYPES and current is not None:
                rank = int(words[3])
                shape = np.array([int(w) for w in words[4:4 + rank]], dtype=np.int32)
                current.append({"index": len(current), "shape": shape, "dtype": _HOST_DTYPES[words[0]],
                                "quantization": (float(words[1]), int(words[2]))})
        return sections.get("inputs", []), sections.get("outputs", [])

    def _status(self) -> bytes:
        s = self.proc.stdout.read(1)
        if s not in (b"0", b"A"):
            why = self._error() if not s else "the interpreter returned an error"
            raise InterpreterError(f"tflm-host failed: {why}")
        return s

    def reset(self) -> None:
        self.proc.stdin.write(b"R")
        self.proc.stdin.flush()
        self._status()

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]:
        payload = [b"I"]
        for d, v in zip(self.inputs, values):
            payload.append(np.ascontiguousarray(v, dtype=d["dtype"]).reshape(tuple(d["shape"])).tobytes())
        self.proc.stdin.write(b"".join(payload))
        self.proc.stdin.flush()
        self.last_status = "abort" if self._status() == b"A" else "ok"
        outs = []
        for d in self.outputs:
            shape = tuple(int(x) for x in d["shape"])
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(d["dtype"]).itemsize
            outs.append(np.frombuffer(self.proc.stdout.read(n), dtype=d["dtype"]).reshape(shape).copy())
        return outs

    def close(self) -> None:
        self._finalizer()
