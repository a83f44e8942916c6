"""XMOS xcore: compile a model with xformer (xmos-ai-tools), read its tensor arena, run the result on the host.

The deployment this targets: train -> TFLite -> `xstream convert --target xcore` -> xformer -> xcore. xformer
(`xcore-opt`, shipped in the xmos-ai-tools wheel) rewrites a .tflite into xcore ops and plans its memory; the
same wheel carries the host build of the xcore TFLite Micro runtime with every xcore op registered
(`xmos_ai_tools.xinterpreters.TFLMHostInterpreter`, xtflm_python.so). That interpreter has no hook for custom
ops, which is why the xcore target emits the `external` state form: state is plain model I/O, so xformer compiles
it like any model and the stock host runtime runs it.

- `compile_model(data)`: xformer on a .tflite, with a time limit; the compiled .tflite (plus the .cpp/.h xformer
  generates) and "Tensor arena size", the bytes a firmware must give the xcore runtime (activations, model I/O and
  the runtime's persistent buffers). Results are cached per process by content.
- `state_pairs(model)`: the (S, S_next) tensor names of the external form. Compiled with
  `--xcore-same-allocation-input-output-tensor=S,S_next` for each pair (the default here), S_next is written
  where S lives: after an invoke the next state is already in place, no copy and no RAM outside the arena.
- `host_runner(data)`: the runner `xstream verify --runtime xcore|xcore-litert` uses: `XcoreHost` runs the
  compiled model in TFLMHostInterpreter; `XcoreGeneratedHost` ($XSTREAM_XCORE_HOST=generated) builds xformer's
  generated C++ with g++ against the wheel's host xcore library (kernels/harness/xcore_generated_host.cc), the
  code a firmware runs, with its tensor arena of exactly the reported size.
- `arena_report(original)`: xformer's arena for the original and for its streaming form, and the state bytes;
  `kernel_deviation(original)`: how far xcore's kernels are from LiteRT's on the original alone.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import UsageError, XstreamError
from .ir import Model
from .verify import _stop_process, _TFLMHost  # the client side of the harness's `serve` pipe protocol

XFORMER_TIMEOUT = 180  # seconds; a zoo model takes about one
THREADS = 1
_ARENA = re.compile(r"Tensor arena size\s*:\s*(\d+)")
_PERSISTENT = re.compile(r"Size of persistent buffers\s*=\s*(\d+)")  # printed with --xcore-tflmc-print


class XformerFailed(XstreamError):
    """xformer refused or crashed on a model; the message carries its own error line."""

    exit_code = 1


def xformer_binary() -> str:
    """xformer's executable: $XSTREAM_XCORE_OPT, else `xcore-opt` next to this Python (a venv's bin, where the
    xmos-ai-tools wheel installs it), else on PATH."""
    env = os.environ.get("XSTREAM_XCORE_OPT")
    if env:
        if not os.access(env, os.X_OK):
            raise UsageError(f"XSTREAM_XCORE_OPT={env} is not an executable")
        return env
    beside = Path(sys.executable).parent / "xcore-opt"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("xcore-opt")
    if found:
        return found
    raise UsageError("XMOS xformer (xcore-opt) not found: pip install xmos-ai-tools (it is in xstream's test "
                     "extra) or set XSTREAM_XCORE_OPT")


def xformer_version() -> str:
    """The xmos-ai-tools release that ships xformer (xcore-opt itself has no version string)."""
    try:
        from importlib.metadata import version
        return f"xmos-ai-tools {version('xmos-ai-tools')}"
    except Exception:
        return "xmos-ai-tools, version unknown"


def host_interpreter_class():
    """xmos-ai-tools' host xcore runtime (TFLMHostInterpreter), or a UsageError saying what to install."""
    try:
        from xmos_ai_tools.xinterpreters import TFLMHostInterpreter
    except Exception as e:  # ImportError, or OSError from loading its shared library
        raise UsageError(f"the host xcore runtime of xmos-ai-tools cannot be loaded ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); pip install xmos-ai-tools") from None
    return TFLMHostInterpreter


@dataclass(frozen=True)
class Compiled:
    """One xformer run: the compiled model, its arena, and what xformer was asked."""

    data: bytes  # the compiled .tflite (xcore ops, offline memory plan in its metadata)
    arena_bytes: int  # xformer's "Tensor arena size"
    persistent_bytes: int | None  # of which the runtime's persistent buffers (op data: kernels' parameters)
    flags: tuple[str, ...]
    seconds: float
    cpp: str = field(repr=False, default="")  # the generated model_*.cpp and .h (what a firmware compiles)
    header: str = field(repr=False, default="")

    def save(self, path: str | os.PathLike) -> None:
        """Write the compiled .tflite to `path`, and xformer's PATH.cpp / PATH.h beside it."""
        path = Path(path)
        path.write_bytes(self.data)
        Path(f"{path}.cpp").write_text(self.cpp)
        Path(f"{path}.h").write_text(self.header)


_CACHE: dict[str, Compiled | XformerFailed] = {}  # by content and flags; a refusal is remembered too


def _why(stderr: str, stdout: str, code: int) -> str:
    """xformer's own error line: an assertion or an `error:` diagnostic, without the stack dump."""
    lines = [ln.strip() for ln in (stderr + "\n" + stdout).splitlines() if ln.strip()]
    for ln in lines:
        if "Assertion" in ln or "error:" in ln.lower() or ln.lower().startswith("error"):
            ln = re.sub(r"^.*?xcore-opt: ", "", ln)
            return re.sub(r"^\S+:\d+(:\d+)?: ", "", ln)[:400]  # the source file and line it names
    signal = f" (signal {-code})" if code < 0 else ""
    return (lines[0][:400] if lines else "no message") + f"; exit status {code}{signal}"


def compile_model(data: bytes, *, same_allocation: list[tuple[str, str]] | tuple = (), threads: int = THREADS,
                  flags: tuple[str, ...] | list[str] = (), timeout: float = XFORMER_TIMEOUT) -> Compiled:
    """xformer on a .tflite (bytes): the compiled model and its tensor arena. `flags`: more xcore-opt options
    (e.g. "--xcore-conv-err-threshold=0"). Raises XformerFailed with xformer's own message when it refuses,
    crashes or runs past `timeout` seconds."""
    flags = [f"--xcore-thread-count={threads}", "--xcore-tflmc-print", *flags]
    flags += [f"--xcore-same-allocation-input-output-tensor={a},{b}" for a, b in same_allocation]
    key = hashlib.sha256(data + "\0".join(flags).encode()).hexdigest()
    if key in _CACHE:
        hit = _CACHE[key]
        if isinstance(hit, XformerFailed):
            raise XformerFailed(str(hit))
        return hit
    binary = xformer_binary()
    with tempfile.TemporaryDirectory(prefix="xstream-xformer-") as tmp:
        src, out = os.path.join(tmp, "model.tflite"), os.path.join(tmp, "model_xcore.tflite")
        with open(src, "wb") as f:
            f.write(data)
        start = time.monotonic()
        try:
            r = subprocess.run([binary, *flags, "-o", out, src], capture_output=True, text=True, timeout=timeout,
                               cwd=tmp)
        except subprocess.TimeoutExpired:
            raise XformerFailed(f"xformer ran longer than {timeout:g} s") from None
        seconds = time.monotonic() - start
        m = _ARENA.search(r.stdout)
        if r.returncode != 0 or not os.path.exists(out) or m is None:
            _CACHE[key] = XformerFailed(f"xformer: {_why(r.stderr, r.stdout, r.returncode)}")
            raise XformerFailed(str(_CACHE[key]))

        def text(p):
            return Path(p).read_text(errors="replace") if os.path.exists(p) else ""

        p = _PERSISTENT.search(r.stdout + r.stderr)
        result = Compiled(Path(out).read_bytes(), int(m.group(1)), int(p.group(1)) if p else None, tuple(flags),
                          seconds, text(out + ".cpp"), text(out + ".h"))
    _CACHE[key] = result
    return result


def state_pairs(model: Model) -> list[tuple[str, str]]:
    """The external form's state: each extra input S with its output S_next, by tensor name."""
    outputs = {t.name for t in model.main.outputs}
    return [(t.name, t.name + "_next") for t in model.main.inputs[1:] if t.name + "_next" in outputs]


def compile_for_xcore(model: Model, *, same_allocation: bool = True, **kw) -> Compiled:
    """xformer on an IR model; with `same_allocation`, every state S shares its memory with S_next."""
    from .writer import serialize
    return compile_model(serialize(model), same_allocation=state_pairs(model) if same_allocation else (), **kw)


# -- running on the host ----------------------------------------------------------------------------------


def _compile_for_host(data: bytes, same_allocation: bool, in_place: bool, flags: tuple[str, ...]):
    """What a host runner runs: the model compiled by xformer, its state pairs, and a note when the model is an
    original that xformer takes only with static shapes. Returns (model, pairs, compiled, note)."""
    from .reader import read_bytes
    from .writer import serialize
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
            raise XstreamError(f"xformer changed the model's inputs/outputs: {sorted(by_in)} / {sorted(by_out)}")
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


# -- the RAM a streaming model saves on xcore -------------------------------------------------------------


@dataclass
class ArenaReport:
    original_arena_bytes: int | None  # xformer's arena for the original (see original_note)
    streaming_arena_bytes: int | None  # xformer's arena for the streaming model (external form, state inside)
    original_op_data_bytes: int | None  # of which the runtime's persistent buffers (kernels' op data)
    streaming_op_data_bytes: int | None
    state_bytes: int  # the external state (inside the streaming arena)
    state_form: str
    original_note: str = ""
    streaming_error: str = ""
    same_allocation: bool = True
    notes: list[str] = field(default_factory=list)
    xformer: str = field(default_factory=lambda: xformer_version())

    @property
    def streaming_ram_bytes(self) -> int | None:
        """The RAM the streaming model needs: its arena, plus a copy of the state when S and S_next are not
        compiled into one place (the application then keeps the state between invokes itself)."""
        if self.streaming_arena_bytes is None:
            return None
        return self.streaming_arena_bytes + (0 if self.same_allocation else self.state_bytes)

    @property
    def saved_bytes(self) -> int | None:
        if self.original_arena_bytes is None or self.streaming_ram_bytes is None:
            return None
        return self.original_arena_bytes - self.streaming_ram_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["streaming_ram_bytes"] = self.streaming_ram_bytes
        d["saved_bytes"] = self.saved_bytes
        return d

    def _why_more(self) -> str:
        if None in (self.original_op_data_bytes, self.streaming_op_data_bytes):
            return ""
        op = self.streaming_op_data_bytes - self.original_op_data_bytes
        act = (self.streaming_arena_bytes - self.streaming_op_data_bytes) - \
            (self.original_arena_bytes - self.original_op_data_bytes)
        return (f": op data {op:+,} bytes (each state adds a concat and a slice op), activations and state "
                f"{act:+,} bytes")

    def format(self) -> str:
        """The table `xstream inspect --xcore` prints."""
        def n(v):
            return "-" if v is None else f"{v:,}"

        ram_note = "" if self.same_allocation else " (arena + a copy of the state kept by the application)"
        rows = [("tensor arena bytes", n(self.original_arena_bytes), n(self.streaming_arena_bytes)),
                ("  of which state (model I/O)", "0", n(self.state_bytes)),
                ("  of which kernels' op data", n(self.original_op_data_bytes), n(self.streaming_op_data_bytes)),
                ("RAM bytes" + ram_note, n(self.original_arena_bytes), n(self.streaming_ram_bytes))]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len("original"), *(len(r[1]) for r in rows))
        lines = [f"xcore     XMOS xformer ({self.xformer}, {THREADS} thread): tensor arena, the RAM the xcore "
                 "runtime needs (activations, model I/O, its persistent buffers)",
                 f"{'':{w0}}  {'original':{w1}}  streaming ({self.state_form} state)"]
        lines += [f"{a:{w0}}  {b:{w1}}  {c}" for a, b, c in rows]
        if self.saved_bytes is not None:
            pct = 100.0 * self.saved_bytes / self.original_arena_bytes if self.original_arena_bytes else 0.0
            lines.append(f"saved     {self.saved_bytes:,} bytes ({pct:.0f}% of the original's arena)"
                         if self.saved_bytes >= 0 else
                         f"more      the streaming model needs {-self.saved_bytes:,} bytes more ({-pct:.0f}%)"
                         + self._why_more())
        if self.original_note != "as given":
            lines.append(f"original  {self.original_note}")
        if self.streaming_error:
            lines.append(f"streaming {self.streaming_error}")
        lines += [f"note      {x}" for x in self.notes]
        return "\n".join(lines)


def xformer_ready_original(model: Model) -> Model:
    """The original as xformer can plan it: xstream's normalized original (real shapes at batch 1, atrous blocks
    folded into dilated convs) with EXPAND_DIMS/SQUEEZE as RESHAPE. Same maths, not streaming."""
    from .passes.static_reshapes import static_reshapes
    from .pipeline import normalize
    model = normalize(model)  # a copy
    for sg in model.subgraphs:
        for t in sg.tensors():
            t.shape_signature = None  # one stream at batch 1, as the streaming model runs
    return static_reshapes(model).model


def arena_report(original: Model, *, hop: int | None = None, time_axis: int = 1,
                 same_allocation: bool = True) -> ArenaReport:
    """xformer's tensor arena for `original` and for `xstream convert --target xcore` of it, and the state.

    The original is compiled as given; if xformer fails on it (it aborts on the EXPAND_DIMS of unknown-batch
    Conv1D models), the xformer-ready original (`xformer_ready_original`) is compiled instead and the note says
    so. A model xstream refuses to stream raises StreamingRefused, as `convert` does."""
    from .measure import measure
    from .pipeline import convert_with_plan
    from .writer import serialize

    notes = []
    original_arena = original_op = None
    original_note = "as given"
    try:
        c = compile_model(serialize(original))
        original_arena, original_op = c.arena_bytes, c.persistent_bytes
    except XformerFailed as first:
        try:
            c = compile_model(serialize(xformer_ready_original(original)))
            original_arena, original_op = c.arena_bytes, c.persistent_bytes
            original_note = (f"xformer fails on the file as given ({first}); measured on the same maths with static "
                             "shapes (normalized, EXPAND_DIMS as RESHAPE)")
        except XformerFailed as second:
            original_note = f"xformer fails on it: {first}; also with static shapes: {second}"
    conv = convert_with_plan(original, hop=hop, time_axis=time_axis, target="xcore")
    state = measure(conv.model).state_bytes
    streaming_arena = streaming_op = None
    err = ""
    try:
        c = compile_for_xcore(conv.model, same_allocation=same_allocation)
        streaming_arena, streaming_op = c.arena_bytes, c.persistent_bytes
    except XformerFailed as e:
        err = str(e)
    if same_allocation and state_pairs(conv.model):
        notes.append("state S and S_next share memory (--xcore-same-allocation-input-output-tensor): the next "
                     "state is in place after each invoke, no copy, nothing outside the arena")
    return ArenaReport(original_arena, streaming_arena, original_op, streaming_op, state, conv.state, original_note,
                       err, same_allocation, notes)


# -- the generated C++ on the host ------------------------------------------------------------------------

HOST_BACKENDS = ("interpreter", "generated")
_DRIVER = Path(__file__).resolve().parents[1] / "kernels" / "harness" / "xcore_generated_host.cc"
_DEFINES = ("-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_STRIP_ERROR_STRINGS", "-DXCORE", "-DNO_INTERPRETER")  # aitoolslib


def _wheel_runtime() -> tuple[Path, Path]:
    """The include directory and the host xcore runtime library of the xmos-ai-tools wheel."""
    import importlib.util
    spec = importlib.util.find_spec("xmos_ai_tools")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the xcore host build needs xmos-ai-tools (pip install xmos-ai-tools)")
    root = Path(list(spec.submodule_search_locations)[0]) / "runtime"
    include, lib = root / "include", root / "lib" / "libhost_xtflitemicro.a"
    if not include.is_dir() or not lib.is_file():
        raise UsageError(f"{lib} is missing from xmos-ai-tools (a Linux x86-64 wheel is needed)")
    return include, lib


def build_generated(compiled: Compiled, build_dir: str | os.PathLike | None = None) -> Path:
    """Compile xformer's generated C++ of `compiled` with kernels/harness/xcore_generated_host.cc against the
    wheel's host xcore runtime: one executable per model, cached by content under build/xcore (a source
    checkout) or `build_dir`. Needs g++ ($CXX)."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise UsageError(f"no C++ compiler ({cxx}): the generated xcore code is built with g++")
    if not _DRIVER.is_file():
        raise UsageError("the xcore host driver (kernels/harness/xcore_generated_host.cc) is part of a source "
                         "checkout of xstream; use XSTREAM_XCORE_HOST=interpreter")
    if not compiled.cpp or not compiled.header:
        raise UsageError("xformer wrote no C++ for this model")
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
    root = Path(build_dir) if build_dir else Path(__file__).resolve().parents[1] / "build" / "xcore"
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
            raise XstreamError(f"cannot build xformer's generated C++ against libhost_xtflitemicro.a: {why}")
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


class XcoreGeneratedHost(_TFLMHost):
    """xformer's generated C++ for the model, built for the host (build_generated) and driven over the pipe
    protocol of `xstream_tflm_host serve` (the client is verify's). Same interface as XcoreHost; `in_place` as
    there; `shared[i]`: state input i+1 and output i+1 are one memory in the generated code."""

    def __init__(self, data: bytes, kernels: str = "builtin", *, same_allocation: bool = True,
                 in_place: bool = False, flags: tuple[str, ...] = ()):
        model, pairs, self.compiled, self.note = _compile_for_host(data, same_allocation, in_place, flags)
        names = _tflite_io_names(self.compiled.data)
        if names != ([t.name for t in model.main.inputs], [t.name for t in model.main.outputs]):
            raise XstreamError(f"xformer reordered the model's inputs/outputs: {names}")
        self.arena_bytes = self.compiled.arena_bytes
        self.binary = build_generated(self.compiled)
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([str(self.binary), "serve"] + (["--in-place"] if in_place else []),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._finalizer = weakref.finalize(self, _stop_process, self.proc, self._log)
        lines = []
        while not lines or lines[-1] != "ready":
            line = self.proc.stdout.readline()
            if not line:
                raise XstreamError(f"the generated xcore code cannot start: {self._error()}")
            lines.append(line.decode().strip())
        self.inputs, self.outputs = self._parse(lines)
        for d, t in zip(self.inputs + self.outputs, model.main.inputs + model.main.outputs):
            d["name"] = t.name
        self.shared = next(([w == "1" for w in ln.split()[1:]] for ln in lines if ln.startswith("shared")), [])
        if in_place and not all(self.shared[:len(pairs)]):
            raise XstreamError("xformer did not place every state S and S_next in the same memory")
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
    from .verify import _random_frames, _runner
    from .writer import serialize
    data = serialize(original)
    xc, lite = host_runner(data), _runner(data, "litert", "builtin")
    rng = np.random.default_rng(seed)
    worst, differ = 0.0, 0
    for _ in range(windows):
        xs = [_random_frames(tuple(d["shape"]), np.dtype(d["dtype"]), rng) for d in lite.inputs]
        a, b = xc(xs), lite(xs)
        d = max(float(np.abs(u.astype(np.float64) - v.astype(np.float64)).max()) for u, v in zip(a, b))
        worst, differ = max(worst, d), differ + (d > 0)
    if hasattr(xc, "close"):
        xc.close()
    return worst, differ
