"""What native runtimes print on file descriptors 1 and 2: capture it, and find in it the kernel a runtime lacks."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

_MISSING = re.compile(r"Didn't find op for (builtin|custom) opcode '([^']+)'")


def missing_kernel(log: str) -> str | None:
    """The op a TFLite Micro runtime has no kernel for, from its log ("Didn't find op for builtin opcode
    'RSQRT'"), as a phrase for an error message; None if the log names none."""
    m = _MISSING.search(log)
    if m is None:
        return None
    kind, name = m.groups()
    return f"it has no kernel for the {kind} op {name}"


@contextlib.contextmanager
def captured_fds():
    """Send fds 1 and 2 to a temporary file while the block runs; yields a list that holds the text afterwards."""
    out: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield out
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            log.seek(0)
            out.append(log.read().decode(errors="replace"))
