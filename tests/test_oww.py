"""The openWakeWord-style embedding net (models/oww): a conv stack over 76 mel frames x 32 bins down to one 96-d
embedding per window, openWakeWord's step of 8 frames. It streams exactly at hop 8 and at multiples of it, and a
longer hop costs only the per-frame layers' frames it brings (the finding of issue 15 on `--hop k x stride`)."""

from __future__ import annotations

from pathlib import Path

import pytest

import xstream
from xstream.pipeline import convert_with_plan, prepare, rewrite
from xstream.report.measure import minimum_step_cost, op_cost
from xstream.verify import verify

OWW = Path(__file__).resolve().parents[1] / "models" / "oww"


def _load(kind: str) -> xstream.Model:
    return xstream.load(str(OWW / f"oww_embedding_{kind}.tflite"))


def test_files_small():
    for kind in ("float", "int8"):
        assert (OWW / f"oww_embedding_{kind}.tflite").stat().st_size < 400_000


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_streams_window_exact_at_state_minimum(kind):
    model = _load(kind)
    c = convert_with_plan(model)
    p = c.plan
    assert (p.contract, p.window, p.hop, p.offset) == ("window-exact", 76, 8, 4)
    assert p.state_bytes == p.minimum_state_bytes == (3456 if kind == "int8" else 4 * 3456)
    assert tuple(c.model.main.outputs[0].shape) == (1, 96)
    r = verify(model, c.model)
    assert r.steps_compared > 0 and r.equal
    if kind == "int8":
        assert r.bit_exact


def _step_macs(hop: int) -> tuple[int, int, int]:
    """(stream MACs per step, minimum, the head's MACs) at `hop`."""
    work, plan = prepare(_load("int8"), hop=hop)
    low = minimum_step_cost(work, plan).macs
    head = sum(op_cost(op).macs for op in plan.heads)
    stream = sum(op_cost(op).macs for op in rewrite(work, plan).model.main.operators)
    return stream, low, head


def test_longer_hop_costs_only_the_frames_it_brings():
    """At hop 8k every layer before the head gains k x the frames and the head runs once: the stream's MACs per
    step are the minimum, and k x those of hop 8 less the head's (k - 1) extra runs. No frame is computed that no
    window reads (every layer's window spans more than 16 frames), so `--hop 16` wastes nothing: it buys fewer
    invokes, not less work per input frame."""
    s8, low8, head = _step_macs(8)
    s16, low16, head16 = _step_macs(16)
    assert (s8, s16) == (low8, low16) and head == head16 > 0
    assert s16 - head == 2 * (s8 - head)
    assert s16 / 16 < s8 / 8  # per input frame, a longer hop is never dearer (the head is shared)
    c = convert_with_plan(_load("int8"), hop=16)
    r = verify(_load("int8"), c.model)
    assert r.steps_compared > 0 and r.bit_exact
