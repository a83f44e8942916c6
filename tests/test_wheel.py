"""A non-editable install carries the kernel and harness sources: the wheel holds them as xstream/_kernels and
`xstream kernels` prints a folder that exists in the install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from helpers import REPO

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "xstream", "kernels")
IN_WHEEL = ("xstream/_kernels/ring_buffer/ring_buffer.cc", "xstream/_kernels/ring_buffer/ring_buffer.h",
            "xstream/_kernels/harness/xstream_tflm_host.cc", "xstream/_kernels/harness/host_op_resolver.h",
            "xstream/_kernels/harness/xmos_host_fixes.cc", "xstream/_kernels/tests/ring_buffer_test.cc",
            "xstream/_kernels/tests/vectors.txt", "xstream/_kernels/build.sh", "xstream/kernel_sources.py")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (pip wheel, build isolation: it fetches setuptools>=77)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"),
                           str(src)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "setuptools" in done.stderr and ("No matching distribution" in done.stderr or
                                                                  "Could not find a version" in done.stderr):
        pytest.skip("no network to fetch setuptools for the isolated build")
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = (tmp / "dist").glob("xstream-*.whl")
    return path


def test_the_wheel_carries_the_kernel_sources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [n for n in IN_WHEEL if n not in names]
    assert not missing, missing
    assert not any("__pycache__" in n for n in names)


def test_kernels_command_prints_a_folder_of_the_install(wheel, tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    script = ("import json, sys, xstream, xstream.cli; print(xstream.__file__); "
              "xstream.cli.main(['kernels', '--json'])")
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    first, rest = run.stdout.split("\n", 1)
    assert first.startswith(str(site))  # the installed copy, not the checkout
    printed = json.loads(rest)
    folder = site / "xstream" / "_kernels"
    assert printed["path"] == str(folder)
    assert all((folder / "ring_buffer" / f).is_file() for f in ("ring_buffer.cc", "ring_buffer.h"))
    assert "harness/xstream_tflm_host.cc" in printed["files"] and "build.sh" in printed["files"]
    # The harness of `verify --runtime tflm-host` is built from the installed sources into a user cache.
    where = subprocess.run([sys.executable, "-c", "from xstream.runtimes import tflm_host; from xstream import "
                            "kernel_sources as k; print(tflm_host.KERNELS_DIR); print(k.harness_build_dir())"],
                           capture_output=True, text=True, cwd=tmp_path, env={**env, "XDG_CACHE_HOME": "/c"})
    assert where.stdout.split() == [str(folder), "/c/xstream/kernels"], where.stderr


def test_kernels_command_in_a_checkout():
    from click.testing import CliRunner

    from xstream.cli import main

    r = CliRunner().invoke(main, ["kernels"])
    assert r.exit_code == 0 and r.stdout.strip() == str(REPO / "kernels")
