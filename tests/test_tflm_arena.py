"""xstream.tflm_arena: the smallest TFLite Micro arena, measured (tflite-micro Python and the C++ host harness).

The check that matters: the size returned works and 16 bytes less does not (so a search that stops early, or
one that overshoots, fails here)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tflite_micro")

from xstream.runtimes.tflm_arena import (  # noqa: E402
    arena_works_tflm,
    host_arena_report,
    search_arena_tflm,
    smallest_arena_host,
    smallest_arena_tflm,
    tflm_allocations,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
ZOO = ["ds_cnn_kws_int8", "tdnn_dilated_int8", "residual_tdnn_int8"]
HOLDOUT = ["conv2d_kws_int8"]


def _model(name: str) -> bytes:
    path = MODELS / f"{name}.tflite"
    if not path.exists():
        path = MODELS / "holdout" / f"{name}.tflite"
    return path.read_bytes()


def _convert(name: str, form: str, tmp_path: Path) -> bytes:
    src = MODELS / f"{name}.tflite"
    if not src.exists():
        src = MODELS / "holdout" / f"{name}.tflite"
    dst = tmp_path / f"{name}.{form}.tflite"
    r = subprocess.run([sys.executable, "-m", "xstream", "convert", str(src), str(dst), "--state", form],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"xstream convert --state {form} {name} failed: {(r.stderr or r.stdout).strip()[-300:]}")
    return dst.read_bytes()


def _check_tight(data: bytes, n: int) -> None:
    assert n > 0
    assert arena_works_tflm(data, n), f"the returned arena ({n} bytes) does not work"
    assert arena_works_tflm(data, n + 16), f"{n + 16} bytes do not work although {n} do"
    assert not arena_works_tflm(data, n - 16), f"{n - 16} bytes work: {n} is not the smallest"


@pytest.mark.parametrize("name", ZOO + HOLDOUT)
def test_smallest_arena_tflm_original(name):
    data = _model(name)
    n = smallest_arena_tflm(data)
    _check_tight(data, n)


@pytest.mark.parametrize("name", ["ds_cnn_kws_int8", "conv2d_kws_int8"])
def test_smallest_arena_tflm_variable_form(name, tmp_path):
    data = _convert(name, "variable", tmp_path)
    result = search_arena_tflm(data)
    _check_tight(data, result.arena_bytes)
    # The variable form keeps its state in resource variables, persistent in the arena: the arena of the stream
    # is not zero, and every try of the search is counted.
    assert result.tries > 5


def test_allocate_only_is_not_larger():
    data = _model("ds_cnn_kws_int8")
    assert smallest_arena_tflm(data, invoke=False) <= smallest_arena_tflm(data)


def test_allocations_breakdown():
    data = _model("ds_cnn_kws_int8")
    n = smallest_arena_tflm(data)
    rec = tflm_allocations(data, 2 * n)
    assert rec["total"] == rec["head"] + rec["tail"]
    assert rec["total"] <= n
    assert rec["allocations"]["NodeAndRegistration struct"]["count"] > 0


def test_unrunnable_model_raises(tmp_path):
    from xstream.errors import InterpreterError, ModelReadError

    # tflite-micro's Python interpreter has no RING_BUFFER op: no arena size works.
    data = _convert("ds_cnn_kws_int8", "ring-buffer", tmp_path)
    with pytest.raises(InterpreterError):
        search_arena_tflm(data, max_arena=1 << 16)
    with pytest.raises(ModelReadError):
        smallest_arena_tflm(b"not a model")


@pytest.fixture(scope="module")
def host_binary():
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the TFLM host harness cannot be built")
    pytest.importorskip("xmos_ai_tools")
    r = subprocess.run(["bash", str(ROOT / "kernels" / "build.sh")], capture_output=True, text=True,
                       env={**__import__("os").environ, "PYTHON": sys.executable})
    if r.returncode != 0:
        pytest.fail(f"kernels/build.sh failed: {r.stderr.strip()[-500:]}")
    return r.stdout.strip().splitlines()[-1]


def _host_works(binary: str, data: bytes, n: int, tmp_path: Path) -> bool:
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    # `info --arena N` loads (AllocateTensors) in an arena of N bytes; a crash is a failure too.
    r = subprocess.run([binary, "info", str(path), "--arena", str(n)], capture_output=True, text=True)
    return r.returncode == 0


@pytest.mark.parametrize("form", ["original", "ring-buffer", "variable"])
def test_smallest_arena_host(host_binary, form, tmp_path):
    name = "ds_cnn_kws_int8"
    data = _model(name) if form == "original" else _convert(name, form, tmp_path)
    report = host_arena_report(data, host_binary, invoke=False)
    n = report["arena_bytes"]
    assert n == smallest_arena_host(data, host_binary, invoke=False)
    assert 0 < report["arena_used_bytes"] <= n
    assert _host_works(host_binary, data, n, tmp_path)
    assert not _host_works(host_binary, data, n - 16, tmp_path)
    assert smallest_arena_host(data, host_binary) >= n  # with an invoke: never less than allocation alone
