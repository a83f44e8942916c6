"""XMOS xcore target: compile a model with xformer (xmos-ai-tools) and read its tensor arena.

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
- `arena_report(original)`: xformer's arena for the original and for its streaming form, and the state bytes
  (report/text.py renders it).
Running compiled models on the host (TFLMHostInterpreter or xformer's generated C++) is runtimes/xcore_host.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


from ..errors import InterpreterError
from ..forms import external
from ..ir import Model

XFORMER_TIMEOUT = 180  # seconds; a zoo model takes about one
THREADS = 1
_ARENA = re.compile(r"Tensor arena size\s*:\s*(\d+)")
_PERSISTENT = re.compile(r"Size of persistent buffers\s*=\s*(\d+)")  # printed with --xcore-tflmc-print


class XformerFailed(InterpreterError):
    """xformer refused or crashed on a model; the message carries its own error line (exit 3: could not run)."""


def xformer_binary() -> str:
    """xformer's executable: $XSTREAM_XCORE_OPT, else `xcore-opt` next to this Python (a venv's bin, where the
    xmos-ai-tools wheel installs it), else on PATH."""
    env = os.environ.get("XSTREAM_XCORE_OPT")
    if env:
        if not os.access(env, os.X_OK):
            raise InterpreterError(f"XSTREAM_XCORE_OPT={env} is not an executable")
        return env
    beside = Path(sys.executable).parent / "xcore-opt"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("xcore-opt")
    if found:
        return found
    raise InterpreterError("XMOS xformer (xcore-opt) not found: pip install xmos-ai-tools (it is in xstream's test "
                     "extra) or set XSTREAM_XCORE_OPT")


def xformer_version() -> str:
    """The xmos-ai-tools release that ships xformer (xcore-opt itself has no version string)."""
    try:
        from importlib.metadata import version
        return f"xmos-ai-tools {version('xmos-ai-tools')}"
    except Exception:
        return "xmos-ai-tools, version unknown"


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
    return [(s.name, n.name) for s, n in external.state_pairs(model)]


def compile_for_xcore(model: Model, *, same_allocation: bool = True, **kw) -> Compiled:
    """xformer on an IR model; with `same_allocation`, every state S shares its memory with S_next."""
    from ..tflite.writer import serialize
    return compile_model(serialize(model), same_allocation=state_pairs(model) if same_allocation else (), **kw)


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
    threads: int = THREADS

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


def xformer_ready_original(model: Model) -> Model:
    """The original as xformer can plan it: xstream's normalized original (real shapes at batch 1, atrous blocks
    folded into dilated convs) with EXPAND_DIMS/SQUEEZE as RESHAPE. Same maths, not streaming."""
    from ..passes.static_reshapes import static_reshapes
    from ..pipeline import normalize
    model = normalize(model)  # a copy
    for sg in model.subgraphs:
        for t in sg.tensors():
            t.shape_signature = None  # one stream at batch 1, as the streaming model runs
    return static_reshapes.apply(model).model


def arena_report(original: Model, *, hop: int | None = None, time_axis: int | None = None,
                 same_allocation: bool = True) -> ArenaReport:
    """xformer's tensor arena for `original` and for `xstream convert --target xcore` of it, and the state.

    The original is compiled as given; if xformer fails on it (it aborts on the EXPAND_DIMS of unknown-batch
    Conv1D models), the xformer-ready original (`xformer_ready_original`) is compiled instead and the note says
    so. A model xstream refuses to stream raises StreamingRefused, as `convert` does."""
    from .. import forms
    from ..pipeline import convert_with_plan
    from ..report.measure import measure
    from ..tflite.writer import serialize

    form = forms.detect(original)
    if form != forms.STATELESS:  # already a stream: describe it as it is
        return _streaming_arena_report(original, form, same_allocation)
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


def _streaming_arena_report(model: Model, form: str, same_allocation: bool) -> ArenaReport:
    """xformer's arena for a model that is already streaming (no original to compare with)."""
    from ..report.measure import measure

    arena = op_data = None
    err = ""
    try:
        c = compile_for_xcore(model, same_allocation=same_allocation)
        arena, op_data = c.arena_bytes, c.persistent_bytes
    except XformerFailed as e:
        err = str(e) + ("" if form == "external" else f" (xformer runs the external form; this model keeps its state "
                                                      f"in the {form} form: convert the original with --target xcore)")
    return ArenaReport(None, arena, None, op_data, measure(model).state_bytes, form,
                       f"the model is already streaming ({form} state); inspect the original non-streaming model "
                       "with --xcore to compare", err, same_allocation,
                       ["state S and S_next share memory"] if same_allocation and state_pairs(model) else [])
