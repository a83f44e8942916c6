"""The xcore deployment, end to end: `xstream convert --target xcore` -> XMOS xformer (xmos-ai-tools) -> the host
xcore runtime, frame by frame against the original.

Per zoo model (examples/xcore/stream_to_xcore.py does each step; this file checks what it finds):
- on xcore, the streaming model equals the original (both compiled by xformer, run in xmos-ai-tools'
  TFLMHostInterpreter, the xcore kernels built for x86): bit-exact for int8, as STREAMING.md asks with the same
  kernels for both;
- against the original in LiteRT, int8 differs by at most XCORE_LSB: xcore's conv kernels (XC_conv2d_v2, which
  xformer also uses for depthwise convs, average pools and fully connected layers) requantize differently from
  LiteRT's. The original compiled alone shows the same kind of difference, so it is xformer's, not the stream's;
- xformer's generated C++ (what a firmware builds), compiled with g++ against the wheel's libhost_xtflitemicro.a,
  with each state compiled into the memory of its S_next and never copied, gives the same outputs at every step
  (one model per architecture: each takes ~7 s to compile);
- xformer's tensor arena for the original and the streaming model (`xstream inspect --xcore`), and the table in
  examples/xcore/README.md is what the example prints today.

xformer runs once per model and content (xstream.xcore caches it); generated C++ is built once per model under
build/xcore (cached by content). Skips with the reason when xmos-ai-tools (xformer or its host runtime) or g++ is
missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

import xstream
from xstream.cli import main
from xstream.errors import InterpreterError, UsageError
from xstream.pipeline import convert_with_plan
from xstream.verify import verify
from xstream.targets import xcore
from xstream.runtimes import xcore_host

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
EXAMPLE = REPO / "examples" / "xcore"
_ALL = sorted(p.stem for p in MODELS.glob("*.tflite") if not p.stem.startswith("same_padding"))
INT8 = [n for n in _ALL if n.endswith("_int8")]
FLOAT = [n for n in _ALL if n.endswith("_float") and "dynbatch" not in n]  # one per architecture: not required
# xformer's generated C++ takes ~7 s to compile per model (its TFLM headers): one model per architecture.
GENERATED = [n for n in INT8 if "dynbatch" not in n]
CONV1D_TDNN = {"tdnn_dilated_int8", "tdnn_dilated_dynbatch_int8", "causal_mean_int8", "causal_mean_dynbatch_int8",
               "residual_tdnn_int8", "residual_tdnn_dynbatch_int8", "separable_maxpool_int8",
               "separable_maxpool_dynbatch_int8"}
# Largest difference of the streaming model on xcore from the original in LiteRT (int8 LSB), over the example's
# default frames (3 sequences, seed 0): the xcore kernels' rounding, 1 LSB per conv layer at most.
XCORE_LSB = 3
# xformer 1.4.2 lowers a float MAX_POOL_2D to its int8-only kernel and stops (the original as well).
XFORMER_FLOAT_MAXPOOL = {"separable_maxpool_float", "separable_maxpool_dynbatch_float"}

sys.path.insert(0, str(EXAMPLE))
try:
    import stream_to_xcore as example  # noqa: E402
finally:
    sys.path.pop(0)


@pytest.fixture(scope="session")
def tools() -> None:
    try:
        xcore.xformer_binary()
        xcore_host.host_interpreter_class()
    except (UsageError, InterpreterError) as e:
        pytest.skip(f"XMOS xformer or its host runtime is not available: {e}")


@pytest.fixture(scope="session")
def results(tools):
    """The example's run of one zoo model (convert, xformer, both comparisons, arena), computed once."""
    cache: dict[str, example.ModelResult] = {}

    def get(name: str) -> example.ModelResult:
        if name not in cache:
            cache[name] = example.run_model(MODELS / f"{name}.tflite")
        return cache[name]

    return get


def _load(name: str) -> xstream.Model:
    return xstream.load(MODELS / f"{name}.tflite")


# ---------------------------------------------------------------------------------------------------------
# Every int8 zoo model: streaming on xcore = original on xcore; against LiteRT, xcore's rounding only


def test_every_streamable_int8_model_is_checked():
    assert len(INT8) == 10 and CONV1D_TDNN < set(INT8)


@pytest.mark.parametrize("name", INT8)
def test_int8_zoo_on_xcore(results, name):
    r = results(name)
    assert not r.error, r.error
    assert r.steps_compared > 0
    assert r.xcore_equal and r.xcore_bit_exact, f"streaming differs from the original on xcore: {r.xcore_max_abs}"
    # Against the user's original in LiteRT: a few LSB, which xformer introduces without streaming too.
    assert r.litert_max_abs <= XCORE_LSB, r.litert_max_abs
    assert 0 < r.kernel_max_abs <= XCORE_LSB and r.kernel_windows_differing > 0
    assert r.arena_original > 0 and r.arena_streaming > 0 and r.state_bytes > 0
    assert r.passed


@pytest.mark.parametrize("name", FLOAT)
def test_float_zoo_on_xcore(results, name):
    r = results(name)
    if name in XFORMER_FLOAT_MAXPOOL:
        assert "'xc.maxpool2d' op operand #0 must be tensor of QI8 type values" in r.error
        # Not the stream's doing: xformer stops on the original too.
        with pytest.raises(xcore.XformerFailed, match="xc.maxpool2d"):
            xcore.compile_model(xstream.serialize(xcore.xformer_ready_original(_load(name))))
        return
    assert not r.error, r.error
    assert r.xcore_equal and r.litert_max_rel <= 1e-5


# ---------------------------------------------------------------------------------------------------------
# xformer's generated C++, state in place


@pytest.fixture(scope="session")
def generated(tools) -> dict[str, Path]:
    """Every int8 streaming model's generated C++, built for the host (two at a time)."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx}): xformer's generated code is built with g++ (CI installs it)")
    compiled = {n: xcore.compile_for_xcore(convert_with_plan(_load(n), target="xcore").model) for n in GENERATED}
    with ThreadPoolExecutor(2) as pool:
        built = dict(zip(compiled, pool.map(xcore_host.build_generated, compiled.values())))
    return built


@pytest.mark.parametrize("name", GENERATED)
def test_generated_code_runs_the_stream_with_state_in_place(generated, name):
    """Only input 0 is written after the reset: were S_next not written where S is read, the state would stay at
    its zero point and the outputs would part from the interpreter's after the first step."""
    conv = convert_with_plan(_load(name), target="xcore")
    ok, steps = example.generated_matches(conv.model, 2 * conv.plan.warmup + 8, seed=3)
    assert ok and steps > conv.plan.warmup


def test_generated_code_shares_state_memory(generated):
    data = xstream.serialize(convert_with_plan(_load("ds_cnn_kws_int8"), target="xcore").model)
    host = xcore_host.host_runner(data, backend="generated", in_place=True)
    assert len(host.shared) == 4 and all(host.shared)  # model_input(i)->data == model_output(i)->data
    assert host.arena_bytes == 4304
    host.close()
    with pytest.raises(UsageError, match="in_place needs same_allocation"):
        xcore_host.host_runner(data, backend="generated", same_allocation=False, in_place=True)


def test_verify_runs_the_generated_code(generated, monkeypatch):
    monkeypatch.setenv("XSTREAM_XCORE_HOST", "generated")
    model = _load("tdnn_dilated_int8")
    r = verify(model, convert_with_plan(model, target="xcore").model, runtime="xcore-litert", sequences=1)
    assert r.runtime == "xcore-litert" and r.steps_compared > 0 and r.max_abs_error <= XCORE_LSB


# ---------------------------------------------------------------------------------------------------------
# Arena on the real target


def test_kws_arena_before_and_after(tools):
    rep = xcore.arena_report(_load("ds_cnn_kws_int8"))
    # xmos-ai-tools is pinned (==1.4.2): these are its numbers.
    assert (rep.original_arena_bytes, rep.streaming_arena_bytes, rep.state_bytes) == (7984, 4304, 1520)
    assert rep.saved_bytes == 3680 and rep.streaming_ram_bytes == 4304 and rep.original_note == "as given"
    # Without same allocation the application keeps a copy of the state outside the arena.
    apart = xcore.arena_report(_load("ds_cnn_kws_int8"), same_allocation=False)
    assert apart.streaming_ram_bytes == apart.streaming_arena_bytes + 1520


def test_arena_of_an_unknown_batch_original_is_measured_with_static_shapes(tools):
    with pytest.raises(xcore.XformerFailed, match=r"IsDynamicTensor.*Disabled function"):
        xcore.compile_model(xstream.serialize(_load("tdnn_dilated_dynbatch_int8")))
    rep = xcore.arena_report(_load("tdnn_dilated_dynbatch_int8"))
    assert rep.original_arena_bytes and "static shapes" in rep.original_note and "IsDynamicTensor" in \
        rep.original_note


def test_inspect_xcore(tools):
    runner = CliRunner()
    r = runner.invoke(main, ["inspect", str(MODELS / "ds_cnn_kws_int8.tflite"), "--xcore", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)["xcore"]
    assert (d["original_arena_bytes"], d["streaming_arena_bytes"], d["state_bytes"], d["saved_bytes"]) == \
        (7984, 4304, 1520, 3680)
    r = runner.invoke(main, ["inspect", str(MODELS / "ds_cnn_kws_int8.tflite"), "--xcore"])
    assert r.exit_code == 0, r.output
    assert "tensor arena bytes            7,984     4,304" in r.output and "saved     3,680 bytes (46%" in r.output
    r = runner.invoke(main, ["inspect", str(MODELS / "ds_cnn_kws_int8.tflite"), "--xcore", "--hop", "8", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["xcore"]["streaming_arena_bytes"] > 0
    r = runner.invoke(main, ["inspect", str(MODELS / "ds_cnn_kws_int8.tflite"), "--xcore", "--state", "variable"])
    assert r.exit_code == 2 and "--state: only meaningful with --stream" in r.output
    r = runner.invoke(main, ["inspect", str(MODELS / "holdout" / "squeeze_excite_int8.tflite"), "--xcore"])
    assert r.exit_code == 1 and "combines a value computed from the whole window" in r.output


# ---------------------------------------------------------------------------------------------------------
# The command line a CI runs, and the example


def test_cli_pipeline(tools, tmp_path):
    runner = CliRunner()
    original = str(MODELS / "causal_mean_dynbatch_int8.tflite")
    stream = str(tmp_path / "stream.tflite")
    r = runner.invoke(main, ["convert", original, stream, "--target", "xcore"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["verify", original, stream, "--runtime", "xcore"])
    assert r.exit_code == 0 and "EQUAL" in r.output and "bit-exact" in r.output, r.output
    r = runner.invoke(main, ["verify", original, stream, "--runtime", "xcore-litert", "--json"])
    d = json.loads(r.output)
    assert d["runtime"] == "xcore-litert" and d["max_abs_error"] <= XCORE_LSB
    assert r.exit_code == (0 if d["bit_exact"] else 1)


def test_inspect_xcore_describes_a_streaming_model(tools, tmp_path):
    """inspect describes any model: an xcore-target stream (12 inputs) is compiled as it is, not refused."""
    stream = tmp_path / "s.tflite"
    runner = CliRunner()
    assert runner.invoke(main, ["convert", str(MODELS / "ds_cnn_kws_int8.tflite"), str(stream), "--target",
                                "xcore"]).exit_code == 0
    r = runner.invoke(main, ["inspect", str(stream), "--xcore", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)["xcore"]
    assert (d["original_arena_bytes"], d["streaming_arena_bytes"], d["state_bytes"]) == (None, 4304, 1520)
    assert "already streaming" in d["original_note"]
    r = runner.invoke(main, ["inspect", str(stream), "--xcore"])
    assert r.exit_code == 0 and "tensor arena bytes            -         4,304" in r.stdout


def test_missing_xformer_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("XSTREAM_XCORE_OPT", str(tmp_path / "nowhere"))
    monkeypatch.setattr(xcore, "_CACHE", {})  # nothing compiled earlier in the session
    with pytest.raises(InterpreterError, match="XSTREAM_XCORE_OPT"):
        xcore.xformer_binary()
    original = str(MODELS / "ds_cnn_kws_int8.tflite")
    stream = str(tmp_path / "s.tflite")
    runner = CliRunner()
    assert runner.invoke(main, ["convert", original, stream, "--target", "xcore"]).exit_code == 0
    r = runner.invoke(main, ["verify", original, stream, "--runtime", "xcore"])
    assert r.exit_code == 3 and "xstream: error:" in r.output and "XSTREAM_XCORE_OPT" in r.output  # could not run


def test_example_script(tools, tmp_path):
    """The script a user copies into CI, as a user runs it."""
    r = subprocess.run([sys.executable, str(EXAMPLE / "stream_to_xcore.py"), str(MODELS / "ds_cnn_kws_int8.tflite"),
                        str(MODELS / "holdout" / "squeeze_excite_int8.tflite"), "--out", str(tmp_path), "--json",
                        "--sequences", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr  # squeeze_excite is refused
    assert "PASS ds_cnn_kws_int8" in r.stdout and "FAIL squeeze_excite_int8" in r.stdout
    for f in ("ds_cnn_kws_int8_stream.tflite", "ds_cnn_kws_int8_xcore.tflite", "ds_cnn_kws_int8_xcore.tflite.cpp",
              "ds_cnn_kws_int8_xcore.tflite.h", "report.json"):
        assert (tmp_path / f).stat().st_size > 0, f
    report = json.loads((tmp_path / "report.json").read_text())
    assert report[0]["arena_original"] == 7984 and report[0]["arena_streaming"] == 4304


def test_readme_table_is_today_s(results):
    """examples/xcore/README.md shows the table the example prints for the int8 zoo."""
    table = example.markdown_table([results(n) for n in INT8])
    readme = (EXAMPLE / "README.md").read_text()
    assert table in readme, "regenerate: python examples/xcore/stream_to_xcore.py models/*_int8.tflite " \
                            "(without same_padding), and paste the table\n" + table
