"""Run work that drives native interpreters in a forked child: a native crash (SIGSEGV on a model that is invalid
for the runtime) ends the child, not the caller, and becomes one InterpreterError. Results and XstreamErrors
come back through a pipe."""

from __future__ import annotations

import os
import pickle
import signal

from ..errors import InterpreterError, XstreamError


def in_child(fn, runtime: str, *, quiet: bool = True):
    """`fn()` in a forked child (in-process where fork does not exist). `quiet`: interpreters' own stderr logs
    are silenced in the child (xstream's one error line says what failed)."""
    if not hasattr(os, "fork"):
        return fn()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        if quiet:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            import faulthandler
            faulthandler.disable()  # a crash here is an outcome the parent reports; no traceback dump (pytest's)
        try:
            try:
                payload = ("ok", fn())
            except BaseException as e:  # everything goes back to the parent, which decides
                payload = ("err", e if isinstance(e, XstreamError) else
                           RuntimeError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
            with os.fdopen(write_fd, "wb") as f:
                pickle.dump(payload, f)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        raise InterpreterError(f"{runtime} crashed ({sig}) running the models; one of them is not valid for it")
    try:
        kind, value = pickle.loads(data)
    except Exception:
        raise InterpreterError(f"{runtime} ended without a result running the models") from None
    if kind == "err":
        raise value
    return value
