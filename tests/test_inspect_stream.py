"""`xstream inspect` with RAM and MACs, `--stream` (what convert would give, nothing written) and streaming models."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

import xstream
from xstream.cli import main
from xstream.pipeline import convert_with_plan
from helpers import ZOO, zoo_model

STREAMABLE = [p for p in ZOO if not p.stem.startswith("same_padding")]


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _json(*args: str) -> dict:
    r = _invoke("inspect", "--json", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.mark.parametrize("path", STREAMABLE, ids=[p.stem for p in STREAMABLE])
def test_stream_json_on_zoo(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(path.parent))
    d = _json("--stream", str(path))
    assert sorted(os.listdir(path.parent)) == before and os.listdir(tmp_path) == []  # nothing written
    s = d["stream"]
    assert s["written"] is False and s["form"] == "ring-buffer"
    # Every output frame of every op is computed once per step: streaming MACs are the theoretical minimum.
    assert s["after"]["macs"] == s["minimum"]["macs"] and s["after_over_minimum"]["macs"] == 1.0
    assert s["after"]["other_ops"] == s["minimum"]["other_ops"]
    assert s["after"]["state_bytes"] >= s["minimum"]["state_bytes"] > 0
    assert s["after"]["macs"] < s["before"]["macs"]
    measured = ("tflm_arena_bytes", "tflm_arena_runtime", "tflm_arena_note")
    assert {k: v for k, v in s["before"].items() if k not in measured} == d["cost"]
    assert s["before"]["tflm_arena_bytes"] == d["tflm_arena_bytes"] > 0  # one measurement, in one runtime
    assert s["before"]["tflm_arena_runtime"] == s["after"]["tflm_arena_runtime"] == d["tflm_arena_runtime"]
    # Per-op rows add up to the streaming graph's totals (ops the conversion added cost nothing).
    assert sum(o["step_macs"] or 0 for o in s["operators"]) == s["after"]["macs"]
    assert sum(o["state_bytes"] for o in s["operators"]) == s["after"]["state_bytes"]
    assert sum(o["min_macs"] for o in s["operators"]) == s["minimum"]["macs"]
    assert s["after"]["ram_bytes"] == s["after"]["arena_bytes"] + s["after"]["state_bytes"]
    assert s["added_ops"].get("RING_BUFFER") == len(s["after"]["states"])


def test_stream_text_ds_cnn_kws():
    r = _invoke("inspect", "--stream", str(zoo_model("ds_cnn_kws_int8")))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "streaming (nothing written): hop 4 of 49 frames, form ring-buffer" in out
    assert "added by conversion: 4 RING_BUFFER" in out
    lines = {line.split("  ")[0]: line.split() for line in out.splitlines()}
    assert lines["MACs per step"][-4:] == ["369,472", "48,128", "48,128", "1.00"]
    # no window in place (the planning scratch exceeds the activations); the head reads its window unflattened
    assert lines["state bytes"][-4:] == ["0", "1,520", "1,520", "1.00"]
    assert lines["activations (planned)"][-4:-2] == ["7,360", "1,344"]
    assert lines["RAM planned (activations + state)"][-2:] == ["7,360", "2,864"]
    arena = lines["TFLite Micro arena (measured, tflm-host)"][-2:]
    assert arena == ["11,240", "7,352"]  # the harness's smallest working arena (runtimes/tflm_arena.py)
    assert "original/streaming: RAM 1.53x (TFLite Micro arena, measured), MACs per step 7.68x" in out
    # The plain report is unchanged above it (one totals line with params).
    assert len([line for line in out.splitlines() if "params" in line]) == 1


def test_stream_hop_and_form():
    d = _json("--stream", "--hop", "8", "--state", "variable", str(zoo_model("ds_cnn_kws_int8")))["stream"]
    assert d["hop"] == 8 and d["form"] == "variable" and d["after"]["state_form"] == "variable"
    head = 12 * 768
    assert d["after"]["macs"] == 2 * (48_128 - head) + head  # twice the frames before the head, one head run
    assert d["after"]["macs"] == d["minimum"]["macs"]


@pytest.mark.parametrize("form", ["ring-buffer", "variable", "external"])
def test_inspect_streaming_model(form, tmp_path):
    path = tmp_path / "s.tflite"
    xstream.save(convert_with_plan(xstream.load(zoo_model("ds_cnn_kws_int8")), state=form).model, path)
    c = _json(str(path))["cost"]
    state = 1520  # every form: no window in place on ds_cnn (its planning scratch exceeds its activations)
    assert c["state_bytes"] == state and c["state_form"] == form and c["macs"] == 48_128
    assert c["state_in_arena"] == (1520 if form == "external" else 0)
    assert c["ram_bytes"] == c["arena_bytes"] + (0 if form == "external" else state)
    text = _invoke("inspect", str(path)).stdout
    assert f"state     {state:,} bytes in 4 {form} buffer(s)" in text
    assert f"RAM planned (activations + state) {c['ram_bytes']:,} bytes" in text


def test_stream_refused_is_one_line():
    r = CliRunner().invoke(main, ["inspect", "--stream", str(zoo_model("ds_cnn_kws_int8").parent / "holdout" / "squeeze_excite_int8.tflite")])
    assert r.exit_code != 0
    assert r.stderr.startswith("xstream: error: operator 11 (MUL): combines a value computed from the whole window")
    assert len(r.stderr.strip().splitlines()) == 1


def test_stream_of_streaming_model_is_refused(tmp_path):
    path = tmp_path / "s.tflite"
    xstream.save(convert_with_plan(xstream.load(zoo_model("tdnn_dilated_int8")), state="variable").model, path)
    r = CliRunner().invoke(main, ["inspect", "--stream", str(path)])
    assert r.exit_code != 0 and "already carries state" in r.stderr


def test_stream_options_need_stream():
    r = CliRunner().invoke(main, ["inspect", "--hop", "8", str(zoo_model("ds_cnn_kws_int8"))])
    assert r.exit_code == 2 and r.stderr.strip() == "xstream: error: --hop: only meaningful with --stream or --xcore"
