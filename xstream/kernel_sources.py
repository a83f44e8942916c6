"""Where the RING_BUFFER kernel and the TFLite Micro host harness sources are: `kernels/` at the top of a source
checkout, or `xstream/_kernels` in an installed wheel (setup.py copies them there at build time)."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
CHECKOUT = _PACKAGE.parent / "kernels"
INSTALLED = _PACKAGE / "_kernels"
KERNEL_FILES = ("ring_buffer/ring_buffer.cc", "ring_buffer/ring_buffer.h")


def kernels_dir() -> Path:
    """The folder with ring_buffer/ (the kernel), harness/ (the host harness), tests/ and build.sh. A checkout's
    kernels/ first, so an editable install builds what the developer edits."""
    for folder in (CHECKOUT, INSTALLED):
        if all((folder / f).is_file() for f in KERNEL_FILES):
            return folder
    return INSTALLED  # the caller reports what is missing


def in_checkout() -> bool:
    return kernels_dir() == CHECKOUT


def harness_build_dir() -> Path:
    """Where kernels/build.sh builds the harness: build/kernels in a checkout, else a user cache (an installed
    package's folder may not be writable)."""
    if in_checkout():
        return CHECKOUT.parent / "build" / "kernels"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "xstream" / "kernels"


def listing(folder: Path | None = None) -> list[str]:
    """The source files under the kernels folder, relative to it."""
    folder = folder or kernels_dir()
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in
                  p.parts and p.suffix != ".pyc")
