"""The XMOS xcore host runtime as a runner: a model compiled by xformer, run in xmos-ai-tools' TFLMHostInterpreter
or as xformer's generated C++ built with g++ against the wheel's host xcore library (the code a firmware runs)."""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np

from ..errors import InterpreterError, UsageError
from ..ir import Model
from ..targets.xcore import Compiled, XformerFailed, compile_model, state_pairs, xformer_ready_original
from .frames import random_frames
from .litert import LiteRT
from .tflm_host import KERNELS_DIR, TFLMHost, stop_process


def host_interpreter_class():
    """xmos-ai-tools' host xcore runtime (TFLMHostInterpreter), or an InterpreterError saying what to install."""
    try:
        from xmos_ai_tools.xinterpreters import TFLMHostInterpreter
    except Exception as e:  # ImportError, or OSError from loading its shared library
        raise InterpreterError(f"the host xcore runtime of xmos-ai-tools cannot be loaded ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); pip install xmos-ai-tools") from None
    return TFLMHostInterpreter



def _compile_for_host(data: bytes, same_allocation: bool, in_place: bool, flags: tuple[str, ...]):
    """What a host runner runs: the model compiled by xformer, its state pairs, and a note when the model is an
    original that xformer takes only with static shapes. Returns (model, pairs, compiled, note)."""
    from ..tflite.reader import read_bytes
    from ..tflite.writer import serialize
    if in_place and not same_allocation:
        raise UsageError("in_place needs same_allocation")
    model = read_bytes(data)
    pairs = state_pairs(model)
    try:
        return model, pairs, compile_model(data, same_allocation=pairs if same_allocation else (), flags=flags), ""
    except XformerFailed as e:
        if pairs:  # a streaming model: `xstream convert --target xcore` writes what xformer needs
            raise
        # An original as TF emits it (EXPAND_DIMS of an unknown batch): the same maths with static shapes.
        compiled = compile_model(serialize(xformer_ready_original(model)), flags=flags)
        return model, pairs, compiled, f"{e}; compiled the original with static shapes (EXPAND_DIMS as RESHAPE)"


class XcoreHost:
    """A model compiled by xformer, running in the xcore host runtime of xmos-ai-tools (TFLMHostInterpreter: the
    TFLite Micro runtime with the xcore kernels, compiled for the host). The interface of xstream.verify's
    runners: `inputs`/`outputs` details in LiteRT's layout and in the order of the model given, `reset()`,
    `__call__(values) -> outputs`.

    `in_place=True` runs the external form as a firmware does with same-allocation state: the state inputs
    are set to their zero point at reset() and never again; each invoke's S_next lands where S is read next
    time. Values given for state inputs are then ignored."""

    def __init__(self, data: bytes, kernels: str = "builtin", *, same_allocation: bool = True,
                 in_place: bool = False, flags: tuple[str, ...] = ()):
        model, pairs, self.compiled, self.note = _compile_for_host(data, same_allocation, in_place, flags)
        self.in_place = in_place
        self._state = {s for s, _ in pairs}
        Interpreter = host_interpreter_class()
        self.it = Interpreter()
        self.it.set_model(model_content=self.compiled.data)
        want_in, want_out = [t.name for t in model.main.inputs], [t.name for t in model.main.outputs]
        got_in, got_out = self.it.get_input_details(), self.it.get_output_details()
        by_in = {d["name"]: (i, d) for i, d in enumerate(got_in)}
        by_out = {d["name"]: d for d in got_out}
        if set(by_in) != set(want_in) or set(by_out) != set(want_out):
            raise InterpreterError(f"xformer changed the model's inputs/outputs: {sorted(by_in)} / {sorted(by_out)}")
        self._in_pos = [by_in[n][0] for n in want_in]
        self.inputs = [self._detail(by_in[n][1], n) for n in want_in]
        self.outputs = [self._detail(by_out[n], n) for n in want_out]
        self._out_pos = [[d["name"] for d in got_out].index(n) for n in want_out]
        module = sys.modules.get(Interpreter.__module__)
        lib = getattr(module, "lib", None)
        self._lib = lib if all(hasattr(lib, f) for f in ("set_input_tensor", "get_output_tensor")) and \
            hasattr(self.it, "_check_status") else None
        self.arena_bytes = self.compiled.arena_bytes
        self.reset()

    @staticmethod
    def _detail(d: dict, name: str) -> dict:
        return {"name": name, "index": d["index"], "shape": np.asarray(d["shape"], dtype=np.int32),
                "dtype": d["dtype"], "quantization": (float(d["quantization"][0]), int(d["quantization"][1]))}

    def reset(self) -> None:
        """A new utterance. The external form keeps nothing in the runtime unless in_place."""
        self.it.reset()
        if self.in_place:
            for pos, d in zip(self._in_pos, self.inputs):
                if d["name"] in self._state:
                    zp = d["quantization"][1] if np.issubdtype(np.dtype(d["dtype"]), np.integer) else 0
                    self.it.set_tensor(pos, np.full(tuple(d["shape"]), zp, dtype=d["dtype"]))

    def __call__(self, values: list[np.ndarray]) -> list[np.ndarray]:
        for pos, d, v in zip(self._in_pos, self.inputs, values):
            if self.in_place and d["name"] in self._state:
                continue
            self._set(pos, np.ascontiguousarray(v, dtype=d["dtype"]).reshape(tuple(d["shape"])))
        self.it.invoke()
        return [self._get(pos, d) for pos, d in zip(self._out_pos, self.outputs)]

    # TFLMHostInterpreter's set_tensor/get_tensor re-read the flatbuffer on every call (most of a step's time);
    # the calls below are what they end in: the library's copy in or out of the tensor, by I/O position.
    def _set(self, pos: int, value: np.ndarray) -> None:
        if self._lib is None:
            return self.it.set_tensor(pos, value)
        raw = value.tobytes()
        self.it._check_status(self._lib.set_input_tensor(self.it.obj, pos, raw, len(raw)))

    def _get(self, pos: int, d: dict) -> np.ndarray:
        if self._lib is None:
            return np.array(self.it.get_tensor(d["index"]), copy=True)
        out = np.empty(tuple(d["shape"]), dtype=d["dtype"])
        self.it._check_status(self._lib.get_output_tensor(self.it.obj, pos, out.ctypes.data_as(ctypes.c_void_p),
                                                          out.nbytes))
        return out

    def close(self) -> None:
        if getattr(self, "it", None) is not None and getattr(self.it, "obj", None):
            self.it.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


HOST_BACKENDS = ("interpreter", "generated")
_DRIVER = KERNELS_DIR / "harness" / "xcore_generated_host.cc"
_DEFINES = ("-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_STRIP_ERROR_STRINGS", "-DXCORE", "-DNO_INTERPRETER")  # aitoolslib


def _wheel_runtime() -> tuple[Path, Path]:
    """The include directory and the host xcore runtime library of the xmos-ai-tools wheel."""
    import importlib.util
    spec = importlib.util.find_spec("xmos_ai_tools")
    if spec is None or not spec.submodule_search_locations:
        raise InterpreterError("the xcore host build needs xmos-ai-tools (pip install xmos-ai-tools)")
    root = Path(list(spec.submodule_search_locations)[0]) / "runtime"
    include, lib = root / "include", root / "lib" / "libhost_xtflitemicro.a"
    if not include.is_dir() or not lib.is_file():
        raise InterpreterError(f"{lib} is missing from xmos-ai-tools (a Linux x86-64 wheel is needed)")
    return include, lib


def build_generated(compiled: Compiled, build_dir: str | os.PathLike | None = None) -> Path:
    """Compile xformer's generated C++ of `compiled` with kernels/harness/xcore_generated_host.cc against the
    wheel's host xcore runtime: one executable per model, cached by content under build/xcore (a source
    checkout) or `build_dir`. Needs g++ ($CXX)."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise InterpreterError(f"no C++ compiler ({cxx}): the generated xcore code is built with g++")
    if not _DRIVER.is_file():
        raise InterpreterError("the xcore host driver (kernels/harness/xcore_generated_host.cc) is part of a source "
                         "checkout of xstream; use XSTREAM_XCORE_HOST=interpreter")
    if not compiled.cpp or not compiled.header:
        raise InterpreterError("xformer wrote no C++ for this model")
    include, lib = _wheel_runtime()
    flags = ["-std=c++17", "-O0", "-w", *_DEFINES, f"-I{include}", f"-I{_DRIVER.parent}"]
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    st = lib.stat()

    def stable(text: str) -> str:  # xformer stamps the time it generated the code
        return re.sub(r"(?m)^// Generated on:.*$", "", text)

    driver = _DRIVER.read_text() + (_DRIVER.parent / "tensor_bytes.h").read_text()
    key = hashlib.sha256("\0".join([stable(compiled.cpp), stable(compiled.header), driver,
                                    " ".join(flags), version, f"{st.st_size} {st.st_mtime_ns}"]).encode()
                         ).hexdigest()[:24]
    root = Path(build_dir) if build_dir else KERNELS_DIR.parent / "build" / "xcore"
    exe = root / key / "xcore_generated_host"
    if exe.is_file():
        return exe
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=root))
    try:
        (tmp / "model.tflite.cpp").write_text(compiled.cpp)
        (tmp / "model.tflite.h").write_text(compiled.header)
        r = subprocess.run([cxx, *flags, "-include", str(tmp / "model.tflite.h"), str(_DRIVER),
                            str(tmp / "model.tflite.cpp"), str(lib), "-o", str(tmp / "xcore_generated_host")],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            why = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[-300:])
            raise InterpreterError(f"cannot build xformer's generated C++ against libhost_xtflitemicro.a: {why}")
        try:
            os.rename(tmp, root / key)
        except OSError:  # built meanwhile by another process
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return exe


def _tflite_io_names(data: bytes) -> tuple[list[str], list[str]]:
    """Input and output names of a compiled model (xformer's output is read with the tflite package: xstream's
    reader checks graphs that xcore ops, which read weights from a blob, do not satisfy)."""
    import tflite
    m = tflite.Model.GetRootAsModel(data, 0)
    sg = m.Subgraphs(0)
    name = lambda i: sg.Tensors(i).Name().decode()  # noqa: E731
    return ([name(sg.Inputs(i)) for i in range(sg.InputsLength())],
            [name(sg.Outputs(i)) for i in range(sg.OutputsLength())])


class XcoreGeneratedHost(TFLMHost):
    """xformer's generated C++ for the model, built for the host (build_generated) and driven over the pipe
    protocol of `xstream_tflm_host serve` (the client is verify's). Same interface as XcoreHost; `in_place` as
    there; `shared[i]`: state input i+1 and output i+1 are one memory in the generated code."""

    def __init__(self, data: bytes, kernels: str = "builtin", *, same_allocation: bool = True,
                 in_place: bool = False, flags: tuple[str, ...] = ()):
        model, pairs, self.compiled, self.note = _compile_for_host(data, same_allocation, in_place, flags)
        names = _tflite_io_names(self.compiled.data)
        if names != ([t.name for t in model.main.inputs], [t.name for t in model.main.outputs]):
            raise InterpreterError(f"xformer reordered the model's inputs/outputs: {names}")
        self.arena_bytes = self.compiled.arena_bytes
        self.binary = build_generated(self.compiled)
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([str(self.binary), "serve"] + (["--in-place"] if in_place else []),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._finalizer = weakref.finalize(self, stop_process, self.proc, self._log)
        lines = []
        while not lines or lines[-1] != "ready":
            line = self.proc.stdout.readline()
            if not line:
                raise InterpreterError(f"the generated xcore code cannot start: {self._error()}")
            lines.append(line.decode().strip())
        self.inputs, self.outputs = self._parse(lines)
        for d, t in zip(self.inputs + self.outputs, model.main.inputs + model.main.outputs):
            d["name"] = t.name
        self.shared = next(([w == "1" for w in ln.split()[1:]] for ln in lines if ln.startswith("shared")), [])
        if in_place and not all(self.shared[:len(pairs)]):
            raise InterpreterError("xformer did not place every state S and S_next in the same memory")
        self.last_status = "ok"


def host_runner(data: bytes, kernels: str = "builtin", *, backend: str | None = None, **kw):
    """The xcore host runner for xstream.verify (runtime "xcore"): XcoreHost (backend "interpreter", the default:
    xmos-ai-tools' TFLMHostInterpreter) or the generated C++ built with g++ (backend "generated"). The backend
    is `backend`, else $XSTREAM_XCORE_HOST."""
    backend = backend or os.environ.get("XSTREAM_XCORE_HOST") or "interpreter"
    if backend not in HOST_BACKENDS:
        raise UsageError(f"XSTREAM_XCORE_HOST={backend!r}: use one of {', '.join(HOST_BACKENDS)}")
    if backend == "generated":
        return XcoreGeneratedHost(data, kernels, **kw)
    return XcoreHost(data, kernels, **kw)


def kernel_deviation(original: Model, *, windows: int = 8, seed: int = 0) -> tuple[float, int]:
    """How far xcore's kernels are from LiteRT's on `original` itself, without streaming: the model compiled by
    xformer on the host xcore runtime against the model in LiteRT, on `windows` random inputs. Returns the
    largest absolute difference and the number of windows with any difference."""
    from ..tflite.writer import serialize
    data = serialize(original)
    xc, lite = host_runner(data), LiteRT(data, "builtin")
    rng = np.random.default_rng(seed)
    worst, differ = 0.0, 0
    for _ in range(windows):
        xs = [random_frames(tuple(d["shape"]), np.dtype(d["dtype"]), rng) for d in lite.inputs]
        a, b = xc(xs), lite(xs)
        d = max(float(np.abs(u.astype(np.float64) - v.astype(np.float64)).max()) for u, v in zip(a, b))
        worst, differ = max(worst, d), differ + (d > 0)
    if hasattr(xc, "close"):
        xc.close()
    return worst, differ
