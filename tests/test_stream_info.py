"""The output describes itself and RAM is what TFLite Micro needs (issue 14): the "xstream_stream" metadata that
`convert --json`, `inspect --json` and `xstream.stream_info` share, the gain rule, and `tflm_arena_bytes` measured
in TFLite Micro itself."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import xstream
from xstream.cli import main
from xstream.report.gain import gain
from xstream.report.stream_info import METADATA_NAME
from xstream.runtimes.tflm_arena import arena_works_tflm, host_arena_report
from xstream.tflite.writer import serialize
from helpers import zoo_model

KEYS = ("tool", "version", "contract_doc", "contract", "window", "hop", "offset", "warmup", "compare_step",
        "input_delay", "time_axis", "frames_per_invoke", "state_form", "state_buffers", "state_bytes", "target")


def _json(*args) -> dict:
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.mark.parametrize("name, form, target", [("ds_cnn_kws_int8", "ring-buffer", None),
                                                ("causal_mean_float", "variable", "litert"),
                                                ("tdnn_dilated_int8", "external", "xcore"),
                                                ("ds_cnn_kws_int8", "circular-buffer", None)])
def test_convert_inspect_and_python_give_one_description(name, form, target, tmp_path):
    out = tmp_path / "s.tflite"
    args = ["convert", zoo_model(name), out, "--state", form, "--json"] + (["--target", target] if target else [])
    conv = _json(*args)
    written = xstream.stream_info(xstream.load(out))
    assert set(KEYS) <= set(written)
    assert {k: conv[k] for k in written} == written  # convert --json: same keys, same values
    assert _json("inspect", out, "--json")["stream"] == written  # read back from the file
    model = xstream.convert(xstream.load(zoo_model(name)), state=form, target=target)
    assert xstream.stream_info(model) == written  # the Python API carries it too
    assert written["version"] == xstream.__version__ and written["contract_doc"] == "docs/CONTRACT.md"
    assert written["state_form"] == form and written["target"] == target
    assert sum(b["bytes"] for b in written["state_buffers"]) == conv["minimum_state_bytes"]
    assert all(b["frames"] > 0 and b["name"] for b in written["state_buffers"])
    text = CliRunner().invoke(main, ["inspect", str(out)]).stdout
    assert f"stream    written by xstream {xstream.__version__} (docs/CONTRACT.md): {written['contract']}" in text


def test_inspect_stream_has_the_same_description_as_convert(tmp_path):
    conv = _json("convert", zoo_model("ds_cnn_kws_int8"), tmp_path / "s.tflite", "--state", "variable", "--json")
    s = _json("inspect", zoo_model("ds_cnn_kws_int8"), "--stream", "--state", "variable", "--json")["stream"]
    assert {k: s[k] for k in KEYS} == {k: conv[k] for k in KEYS}


def test_plain_model_has_no_description():
    assert xstream.stream_info(xstream.load(zoo_model("ds_cnn_kws_int8"))) is None
    assert _json("inspect", zoo_model("ds_cnn_kws_int8"), "--json")["stream"] is None


def test_metadata_entry_is_json_in_the_file(tmp_path):
    out = tmp_path / "s.tflite"
    xstream.save(xstream.convert(xstream.load(zoo_model("ds_cnn_kws_int8"))), out)
    (entry,) = [m for m in xstream.load(out).metadata if m.name == METADATA_NAME]
    assert json.loads(entry.buffer.data)["hop"] == 4


def test_gain_rule():
    before = {"ram_bytes": 7360, "macs": 369_472, "tflm_arena_bytes": 11_144}
    after = {"ram_bytes": 3056, "macs": 48_128, "tflm_arena_bytes": 7_680}
    g = gain(before, after)
    assert g["nothing"] == [] and g["message"] is None
    assert g["ram"] == {"before": 11_144, "after": 7_680, "figure": "tflm_arena_bytes", "ratio": 1.451}
    # no measurement on one side: the planned figures on both
    g = gain({"ram_bytes": 100, "macs": 10, "tflm_arena_bytes": None}, {"ram_bytes": 120, "macs": 10,
                                                                        "tflm_arena_bytes": 50})
    assert g["ram"]["figure"] == "ram_bytes" and g["nothing"] == ["ram", "macs"]
    assert g["message"] == ("streaming gains nothing here: RAM 120 bytes streaming vs 100 bytes original; "
                            "MACs per step 10 streaming vs 10 original")


# ---------------------------------------------------------------------------------------------------------
# tflm_arena_bytes: TFLite Micro's own smallest working arena, wired through inspect


@pytest.mark.parametrize("name", ["ds_cnn_kws_int8", "tdnn_dilated_float", "causal_mean_int8"])
def test_inspect_tflm_arena_is_the_interpreter_measurement(name, harness):
    """inspect's figure for the original and each form is TFLite Micro's: the arena allocates and invokes at N
    bytes and not at N - 16, in the runtime inspect names."""
    d = _json("inspect", zoo_model(name), "--json")
    assert d["tflm_arena_runtime"] == "tflm-host"
    data = zoo_model(name).read_bytes()
    n = d["tflm_arena_bytes"]
    assert host_arena_report(data, str(harness))["arena_bytes"] == n
    assert n > d["cost"]["arena_bytes"]  # more than the activation plan: op data, tensor structs, scratch
    for form in ("ring-buffer", "variable", "external"):
        s = _json("inspect", zoo_model(name), "--stream", "--state", form, "--json")["stream"]
        assert s["before"]["tflm_arena_bytes"] == n and s["after"]["tflm_arena_runtime"] == "tflm-host"
        stream = serialize(xstream.convert(xstream.load(zoo_model(name)), state=form))
        assert host_arena_report(stream, str(harness))["arena_bytes"] == s["after"]["tflm_arena_bytes"]


@pytest.mark.parametrize("name", ["ds_cnn_kws_int8", "tdnn_dilated_float"])
def test_tflm_arena_in_the_python_interpreter(name):
    """Without the harness, the tflite-micro interpreter measures (every form but ring-buffer): N works,
    N - 16 does not."""
    from xstream.runtimes.tflm_arena import arena_figure
    for model in (xstream.load(zoo_model(name)), xstream.convert(xstream.load(zoo_model(name)), state="variable")):
        data = serialize(model)
        f = arena_figure(data, runtime="tflm")
        n = f["tflm_arena_bytes"]
        assert f["tflm_arena_runtime"] == "tflm" and n % 16 == 0
        assert arena_works_tflm(data, n) and not arena_works_tflm(data, n - 16)


def test_tflm_arena_without_a_runtime_is_null_with_a_reason():
    from xstream.runtimes.tflm_arena import arena_figure
    stream = serialize(xstream.convert(xstream.load(zoo_model("ds_cnn_kws_int8"))))  # RING_BUFFER
    f = arena_figure(stream, runtime="tflm")  # the Python interpreter has no RING_BUFFER kernel
    assert f["tflm_arena_bytes"] is None and f["tflm_arena_runtime"] is None and "tflm:" in f["tflm_arena_note"]
