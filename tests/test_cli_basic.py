"""`xstream inspect`, `--help`, and the one-line error contract for unreadable input."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import xstream
from xstream.cli import main
from helpers import REPO, ZOO, zoo_model


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# inspect


def test_inspect_table():
    path = zoo_model("ds_cnn_kws_float")
    r = _invoke("inspect", str(path))
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    out = r.stdout
    for name in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED"):
        assert name in out
    assert "float32[1, 49, 10, 1]" in out
    assert "padding=VALID" in out or "padding=SAME" in out
    totals = [line for line in out.splitlines() if "params" in line]
    assert len(totals) == 1
    assert re.fullmatch(r"8 ops in 1 subgraph\(s\), \d+ params, \d+ weight bytes", totals[0])


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_inspect_json(path):
    r = _invoke("inspect", "--json", str(path))
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for key in ("operators", "params", "weight_bytes", "inputs", "outputs", "op_count", "subgraphs"):
        assert key in d
    model = xstream.load(path)
    assert [o["type"] for o in d["operators"]] == [op.kind for op in model.main.operators]
    assert d["op_count"] == len(model.main.operators)
    assert d["subgraphs"] == 1
    assert d["params"] > 0 and d["weight_bytes"] >= d["params"]
    if path.stem.endswith("_float"):
        assert d["weight_bytes"] >= 4 * d["params"] - 64  # mostly float32 weights (+ small int32 shapes)


def test_inspect_text_and_json_agree():
    path = zoo_model("tdnn_dilated_int8")
    d = json.loads(_invoke("inspect", "--json", str(path)).stdout)
    text = _invoke("inspect", str(path)).stdout
    assert f"{d['op_count']} ops in {d['subgraphs']} subgraph(s), {d['params']} params, " \
           f"{d['weight_bytes']} weight bytes" in text
    assert d["inputs"] == ["int8[1, 49, 20]"]


def test_inspect_shows_dilation():
    # Option names follow the TFLite schema spelling (dilation_w_factor), which summary.key_options reads.
    d = json.loads(_invoke("inspect", "--json", str(zoo_model("tdnn_dilated_float"))).stdout)
    convs = [o for o in d["operators"] if o["type"] == "CONV_2D"]
    assert [o["options"].get("dilation") for o in convs] == [[1, 1], [1, 2], [1, 3]]


def test_help():
    r = _invoke("--help")
    assert r.exit_code == 0
    assert "Usage" in r.stdout and "inspect" in r.stdout
    r = _invoke("inspect", "--help")
    assert r.exit_code == 0
    assert "MODEL" in r.stdout and "--json" in r.stdout
    assert _invoke("-h").exit_code == 0


def test_version():
    r = _invoke("--version")
    assert r.exit_code == 0 and xstream.__version__ in r.stdout


def test_python_dash_m_inspect():
    path = zoo_model("residual_tdnn_int8")
    p = subprocess.run([sys.executable, "-m", "xstream", "inspect", "--json", str(path)],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert [o["type"] for o in d["operators"]][-1] == "FULLY_CONNECTED"


def test_python_dash_m_error(tmp_path):
    missing = tmp_path / "missing.tflite"
    p = subprocess.run([sys.executable, "-m", "xstream", "inspect", str(missing)],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.splitlines() == [p.stderr.rstrip("\n")]
    assert p.stderr.startswith(f"xstream: error: {missing}: no such file")
    assert "Traceback" not in p.stderr


# ---------------------------------------------------------------------------------------------------------
# Unreadable input


def _bad_missing(tmp: Path) -> Path:
    return tmp / "does_not_exist.tflite"


def _bad_directory(tmp: Path) -> Path:
    d = tmp / "a_directory.tflite"
    d.mkdir()
    return d


def _bad_empty(tmp: Path) -> Path:
    p = tmp / "empty.tflite"
    p.write_bytes(b"")
    return p


def _bad_garbage(tmp: Path) -> Path:
    p = tmp / "garbage.tflite"
    p.write_bytes(b"this is certainly not a flatbuffer\n" * 20)
    return p


def _bad_truncated(tmp: Path) -> Path:
    data = zoo_model("residual_tdnn_float").read_bytes()
    p = tmp / "truncated.tflite"
    p.write_bytes(data[: len(data) // 2])
    return p


def _bad_identifier(tmp: Path) -> Path:
    data = bytearray(zoo_model("residual_tdnn_float").read_bytes())
    data[4:8] = b"TFL2"
    p = tmp / "wrong_identifier.tflite"
    p.write_bytes(bytes(data))
    return p


BAD = {
    "missing": (_bad_missing, "no such file"),
    "directory": (_bad_directory, "is a directory"),
    "empty": (_bad_empty, "not a TFLite model"),
    "garbage": (_bad_garbage, "not a TFLite model"),
    "truncated": (_bad_truncated, "corrupt or truncated"),
    "identifier": (_bad_identifier, "not a TFLite model"),
}
BAD_INPUTS = [pytest.param(*v, id=k) for k, v in BAD.items()]
BAD_INPUTS_CLI = BAD_INPUTS


@pytest.mark.parametrize("json_flag", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("make, fragment", BAD_INPUTS_CLI)
def test_bad_input_one_line_error(make, fragment, json_flag, tmp_path):
    path = make(tmp_path)
    before = _sha(path) if path.is_file() else None
    args = ["inspect", "--json", str(path)] if json_flag else ["inspect", str(path)]
    r = CliRunner().invoke(main, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("xstream: error: ")
    assert str(path) in lines[0]
    assert fragment in lines[0]
    if json_flag:  # --json: stdout is one object, the error's, whatever happened
        err = json.loads(r.stdout)["error"]
        assert err["code"] == 2 and err["kind"] == "unreadable" and lines[0] == "xstream: error: " + err["message"]
    else:
        assert r.stdout == ""
    assert "Traceback" not in r.output
    if before is not None:
        assert _sha(path) == before


@pytest.mark.parametrize("make, fragment", BAD_INPUTS)
def test_bad_input_load_raises_model_read_error(make, fragment, tmp_path):
    path = make(tmp_path)
    with pytest.raises(xstream.XstreamError, match=re.escape(fragment)) as info:
        xstream.load(path)
    assert info.value.exit_code == 2
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# The input is never modified


@pytest.mark.parametrize("name", ["ds_cnn_kws_int8", "causal_mean_dynbatch_float"])
def test_input_file_not_modified(name, tmp_path):
    path = tmp_path / f"{name}.tflite"
    shutil.copyfile(zoo_model(name), path)
    before = _sha(path)
    mtime = path.stat().st_mtime_ns
    for args in (["inspect", str(path)], ["inspect", "--json", str(path)]):
        assert _invoke(*args).exit_code == 0
    xstream.serialize(xstream.load(path))
    assert _sha(path) == before
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
