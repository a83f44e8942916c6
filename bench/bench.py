"""Benchmark xstream on the model zoo: conversion time, per-step latency against the original, RAM and MACs.

    .venv/bin/python bench/bench.py [--runs 200] [--models ds_cnn_kws_int8 ...] [--json out.json]

For each zoo model that streams:
- conversion time: load (from bytes) + convert + serialize, median of --convert-runs;
- latency: invoke() of the original (one full window: the cost of recomputing the window every hop) against
  invoke() of the streaming model (one hop), in LiteRT (ai-edge-litert), one thread, timed alternately in the
  same loop, median of --runs invokes after warm-up; twice: with the default op resolver (BUILTIN, which applies
  the XNNPACK delegate to float graphs) and with BUILTIN_WITHOUT_DEFAULT_DELEGATES (plain builtin kernels).
  LiteRT has no RING_BUFFER kernel, so the streaming model is timed in its `variable` form (builtin resource
  variables: READ_VARIABLE + CONCATENATION + STRIDED_SLICE + ASSIGN_VARIABLE per state); and, as a bound for
  a native ring-buffer kernel, its "compute-only" form: the ring-buffer form with every RING_BUFFER removed and
  its output fed as a model input (same compute ops and shapes, state handling free; wrong values, right time);
- RAM and MACs from xstream.measure (TFLite Micro greedy arena plan + state; MACs per step) for the
  ring-buffer form, against the theoretical minimum;
- latency in TFLite Micro (`--tflm-runs`, 0 to skip): the ring-buffer form against the original in xstream's
  harness (kernels/harness, `xstream_tflm_host time`: TFLite Micro's reference kernels on the host), the two taking
  turns invoke by invoke, median; the speedup against the MACs ratio (goal >= 0.85x on ds_cnn_kws and the
  openWakeWord-style embedding net);
- MACs per step at hop k x stride (k = 1, 2, 4) against the minimum (every output frame once) and against
  "only what is emitted" (frames outside every window the head reads are never computed).
Then a synthetic ~10 MB float model (a Conv1D stack built in memory with the IR) for conversion time, and the
issue's targets with PASS/MISS.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import xstream  # noqa: E402
from xstream.errors import StreamingRefused, UsageError  # noqa: E402
from xstream.ir import PADDING_VALID, Buffer, Model, Operator, Subgraph, Tensor  # noqa: E402
from xstream.pipeline import convert_with_plan  # noqa: E402
from xstream.forms.ring_buffer import is_ring_buffer  # noqa: E402
from xstream.pipeline import prepare, rewrite  # noqa: E402
from xstream.report.inspect import stream_summary  # noqa: E402
from xstream.report.measure import Cost, minimum_step_cost, op_cost  # noqa: E402

RESOLVERS = ("BUILTIN", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")


def _median_ms(f, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _interpreter(data: bytes, resolver: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=data, num_threads=1,
                     experimental_op_resolver_type=getattr(OpResolverType, resolver))
    it.allocate_tensors()
    return it


def _random(detail: dict, rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    shape = tuple(detail["shape"])
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-128, 128, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def compute_only(streaming: Model) -> Model:
    """The ring-buffer form with its RING_BUFFER ops cut out: their outputs become extra model inputs and their
    inputs extra model outputs (so the ops computing them stay)."""
    model = streaming.copy()
    sg = model.main
    cut = [op for op in sg.operators if is_ring_buffer(op)]
    sg.operators = [op for op in sg.operators if not is_ring_buffer(op)]
    sg.inputs = sg.inputs + [op.outputs[0] for op in cut]
    sg.outputs = sg.outputs + [op.inputs[0] for op in cut if sg.producer(op.inputs[0]) is not None]
    sg.cleanup()
    return model


def invoke_latency(resolver: str, runs: int, *models: bytes, warmup: int = 20) -> list[float]:
    """Median invoke() time in microseconds of each model, timed alternately in one loop."""
    rng = np.random.default_rng(0)
    its = [_interpreter(m, resolver) for m in models]
    samples: list[list[float]] = [[] for _ in its]
    for i in range(warmup + runs):
        for k, it in enumerate(its):
            for d in it.get_input_details():
                it.set_tensor(d["index"], _random(d, rng))
            t0 = time.perf_counter()
            it.invoke()
            dt = time.perf_counter() - t0
            if i >= warmup:
                samples[k].append(dt)
    return [statistics.median(s) * 1e6 for s in samples]


def tflm_latency(original: bytes, streaming: bytes, runs: int) -> tuple[float, float]:
    """Median invoke time in microseconds of both models in xstream's TFLite Micro harness, taking turns."""
    import subprocess
    from xstream.runtimes.tflm_host import tflm_host_binary
    with tempfile.TemporaryDirectory() as d:
        paths = [os.path.join(d, "original.tflite"), os.path.join(d, "streaming.tflite")]
        for path, data in zip(paths, (original, streaming)):
            Path(path).write_bytes(data)
        out = subprocess.run([tflm_host_binary(), "time", *paths, "--runs", str(runs), "--arena", str(4 << 20)],
                             capture_output=True, text=True, check=True).stdout
    medians = {line.split()[1]: int(line.split()[2]) / 1e3 for line in out.splitlines() if line.startswith("time ")}
    return medians[paths[0]], medians[paths[1]]


def _emitted_only(model: Model, plan) -> Cost:
    """Per step, each time tensor cut to min(frames it gains per step, its frames in one window): what a stream
    computes if frames outside every window the head reads (hop longer than a layer's window) are skipped."""
    total = Cost()
    for op in model.main.operators:
        def cut(t):
            info = plan.time_info(t)
            if info is None:
                return None
            return [min(plan.frames(t), info.length) * info.frame if k == info.axis else d
                    for k, d in enumerate(t.shape)]
        total = total + (op_cost(op) if not op.outputs or plan.time_info(op.outputs[0]) is None else
                         op_cost(op, [cut(t) for t in op.inputs], [cut(t) for t in op.outputs]))
    return total


def hop_macs(data: bytes, multiples=(1, 2, 4)) -> list[dict]:
    """MACs per step of the ring-buffer form at hop k x the smallest hop, against the minimum and the emitted-only
    cost."""
    rows = []
    smallest = prepare(xstream.load(data))[1].hop
    for k in multiples:
        try:
            work, plan = prepare(xstream.load(data), hop=k * smallest)
        except UsageError:
            break  # longer than the window
        low, emitted = minimum_step_cost(work, plan).macs, _emitted_only(work, plan).macs
        stream = sum(op_cost(op).macs for op in rewrite(work, plan).model.main.operators)
        rows.append({"hop": k * smallest, "macs": stream, "minimum": low, "emitted_only": emitted})
    return rows


def bench_model(path: Path, runs: int, convert_runs: int, tflm_runs: int = 0) -> dict:
    data = path.read_bytes()
    row: dict = {"model": path.stem, "bytes": len(data)}
    try:
        report = stream_summary(xstream.load(data))
    except StreamingRefused as e:
        row["refused"] = str(e)
        return row
    row["convert_ms"] = _median_ms(lambda: xstream.serialize(convert_with_plan(xstream.load(data)).model),
                                   convert_runs)
    streaming = xstream.serialize(convert_with_plan(xstream.load(data), state="variable").model)
    bound = xstream.serialize(compute_only(convert_with_plan(xstream.load(data)).model))
    for resolver in RESOLVERS:
        orig_us, step_us, bound_us = invoke_latency(resolver, runs, data, streaming, bound)
        row[resolver] = {"original_us": orig_us, "step_us": step_us, "speedup": orig_us / step_us,
                         "compute_only_us": bound_us, "compute_only_speedup": orig_us / bound_us}
    b, a, low = report["before"], report["after"], report["minimum"]
    if tflm_runs:
        orig_us, step_us = tflm_latency(data, xstream.serialize(convert_with_plan(xstream.load(data)).model),
                                        tflm_runs)
        row["tflm"] = {"original_us": orig_us, "step_us": step_us, "speedup": orig_us / step_us,
                       "macs_ratio": b["macs"] / a["macs"], "speedup_over_macs": orig_us / step_us / (b["macs"] / a["macs"])}
    row["hop_macs"] = hop_macs(data)
    row.update(hop=report["hop"], window=report["window"], macs_before=b["macs"], macs_after=a["macs"],
               macs_minimum=low["macs"], macs_over_minimum=report["after_over_minimum"]["macs"],
               state_bytes=a["state_bytes"], state_minimum=low["state_bytes"],
               state_over_minimum=report["after_over_minimum"]["state_bytes"],
               ram_before=b["ram_bytes"], ram_after=a["ram_bytes"], arena_after=a["arena_bytes"],
               ram_gain=report["before_over_after"]["ram_bytes"])
    return row


def synthetic_model(T: int = 64, channels: int = 256, layers: int = 13, kernel: int = 3) -> Model:
    """A float32 Conv1D stack (batch-1 Keras layout: RESHAPE to [1,1,T,C], CONV_2D on W), MEAN over time, FC.
    13 layers of 3x256x256 float32 weights: about 10 MB."""
    rng = np.random.default_rng(0)

    def const(name, arr, dtype="float32"):
        arr = np.ascontiguousarray(arr)
        return Tensor(name, dtype, tuple(arr.shape), buffer=Buffer(arr.tobytes()))

    x = Tensor("frames", "float32", (1, T, channels))
    h = Tensor("frames4", "float32", (1, 1, T, channels))
    ops = [Operator("RESHAPE", [x, const("shape4", np.array([1, 1, T, channels], np.int32), "int32")], [h],
                    options={"new_shape": [1, 1, T, channels]}, options_type="ReshapeOptions")]
    L = T
    for i in range(layers):
        L -= kernel - 1
        y = Tensor(f"conv{i}", "float32", (1, 1, L, channels))
        w = (rng.standard_normal((channels, 1, kernel, channels)) / np.sqrt(kernel * channels)).astype(np.float32)
        ops.append(Operator("CONV_2D", [h, const(f"conv{i}/w", w), const(f"conv{i}/b", np.zeros(channels,
                                                                                                  np.float32))],
                            [y], options={"padding": PADDING_VALID, "stride_w": 1, "stride_h": 1,
                                          "dilation_w_factor": 1, "dilation_h_factor": 1,
                                          "fused_activation_function": 1}, options_type="Conv2DOptions"))
        h = y
    flat = Tensor("seq", "float32", (1, L, channels))
    mean = Tensor("mean", "float32", (1, channels))
    out = Tensor("logits", "float32", (1, 10))
    ops += [Operator("RESHAPE", [h, const("shape3", np.array([1, L, channels], np.int32), "int32")], [flat],
                     options={"new_shape": [1, L, channels]}, options_type="ReshapeOptions"),
            Operator("MEAN", [flat, const("axis", np.array([1], np.int32), "int32")], [mean],
                     options={"keep_dims": False}, options_type="ReducerOptions"),
            Operator("FULLY_CONNECTED", [mean, const("fc/w", rng.standard_normal((10, channels)).astype(np.float32)),
                                         const("fc/b", np.zeros(10, np.float32))], [out],
                     options={"fused_activation_function": 0, "keep_num_dims": False},
                     options_type="FullyConnectedOptions")]
    return Model([Subgraph("main", [x], [out], ops)], description="xstream bench synthetic conv1d stack")


def bench_synthetic(runs: int) -> dict:
    data = xstream.serialize(synthetic_model())
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "synthetic.tflite", Path(tmp) / "synthetic_stream.tflite"
        src.write_bytes(data)
        stages = {"load": [], "convert": [], "save": [], "total": []}
        for _ in range(runs):
            t0 = time.perf_counter()
            model = xstream.load(src)
            t1 = time.perf_counter()
            result = convert_with_plan(model)
            t2 = time.perf_counter()
            xstream.save(result.model, dst)
            t3 = time.perf_counter()
            for k, dt in (("load", t1 - t0), ("convert", t2 - t1), ("save", t3 - t2), ("total", t3 - t0)):
                stages[k].append(dt)
        out_bytes = dst.stat().st_size
    return {"bytes": len(data), "out_bytes": out_bytes,
            **{f"{k}_ms": statistics.median(v) * 1e3 for k, v in stages.items()}}


def _f(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def print_tables(rows: list[dict], synth: dict | None, runs: int) -> list[str]:
    out = []
    for resolver, what in (("BUILTIN", "default resolver (XNNPACK delegate on float graphs)"),
                           ("BUILTIN_WITHOUT_DEFAULT_DELEGATES", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")):
        out.append(f"### Latency, {what}: invoke() medians over {runs} runs, LiteRT, 1 thread")
        out.append("")
        out.append("| model | hop/window | convert ms | original us | streaming step us (variable form) | speedup "
                   "| compute-only step us | speedup bound |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            if "refused" in r:
                out.append(f"| {r['model']} | refused | | | | | | |")
                continue
            d = r[resolver]
            out.append(f"| {r['model']} | {r['hop']}/{r['window']} | {_f(r['convert_ms'])} | {_f(d['original_us'])} "
                       f"| {_f(d['step_us'])} | {_f(d['speedup'], 2)}x | {_f(d['compute_only_us'])} "
                       f"| {_f(d['compute_only_speedup'], 2)}x |")
        out.append("")
    out.append("### RAM and MACs per step (ring-buffer form; TFLite Micro greedy arena plan + state)")
    out.append("")
    out.append("| model | MACs original | MACs streaming | streaming/minimum | state bytes | state/minimum "
               "| RAM original | RAM streaming (arena + state) | RAM original/streaming |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "refused" in r:
            continue
        out.append(f"| {r['model']} | {r['macs_before']:,} | {r['macs_after']:,} | {r['macs_over_minimum']:.2f} "
                   f"| {r['state_bytes']:,} | {r['state_over_minimum']:.2f} | {r['ram_before']:,} "
                   f"| {r['ram_after']:,} ({r['arena_after']:,} + {r['state_bytes']:,}) | {r['ram_gain']:.2f}x |")
    out.append("")
    timed = [r for r in rows if "tflm" in r]
    if timed:
        out.append(f"### Latency in TFLite Micro: invoke() medians over {timed[0]['tflm_runs']} runs, xstream's harness "
                   "(reference kernels, host), ring-buffer form")
        out.append("")
        out.append("| model | hop/window | original us | streaming step us | speedup | MACs ratio | speedup / MACs ratio |")
        out.append("|---|---|---:|---:|---:|---:|---:|")
        for r in timed:
            d = r["tflm"]
            out.append(f"| {r['model']} | {r['hop']}/{r['window']} | {_f(d['original_us'])} | {_f(d['step_us'])} "
                       f"| {_f(d['speedup'], 2)}x | {_f(d['macs_ratio'], 2)}x | {_f(d['speedup_over_macs'], 2)} |")
        out.append("")
    out.append("### MACs per step at hop k x the smallest hop (ring-buffer form)")
    out.append("")
    out.append("| model | hop | MACs per step | minimum | emitted only | MACs per input frame |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        for h in r.get("hop_macs", []):
            out.append(f"| {r['model']} | {h['hop']} | {h['macs']:,} | {h['minimum']:,} | {h['emitted_only']:,} "
                       f"| {h['macs'] / h['hop']:,.0f} |")
    if synth is None:  # --synthetic-runs 0
        return out
    out.append("")
    out.append(f"### Synthetic model: {synth['bytes'] / 1e6:.1f} MB float32 Conv1D stack (13 x 3x256x256), "
               "medians")
    out.append("")
    out.append("| load ms | convert ms | save ms | total ms |")
    out.append("|---:|---:|---:|---:|")
    out.append(f"| {_f(synth['load_ms'])} | {_f(synth['convert_ms'])} | {_f(synth['save_ms'])} "
               f"| {_f(synth['total_ms'])} |")
    return out


def targets(rows: list[dict], synth: dict | None) -> list[str]:
    by = {r["model"]: r for r in rows if "refused" not in r}
    lines = ["### Targets", ""]

    def mark(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    if synth is not None:
        lines.append(f"- conversion of a {synth['bytes'] / 1e6:.1f} MB model under 1 s: {synth['total_ms']:.0f} ms "
                     f"(load + convert + save) -> {mark(synth['total_ms'] < 1000)}")
    for name in ("ds_cnn_kws_int8", "ds_cnn_kws_float"):
        if name in by:
            r = by[name]
            d, n = r["BUILTIN"]["speedup"], r["BUILTIN_WITHOUT_DEFAULT_DELEGATES"]["speedup"]
            bd = r["BUILTIN"]["compute_only_speedup"]
            bn = r["BUILTIN_WITHOUT_DEFAULT_DELEGATES"]["compute_only_speedup"]
            lines.append(f"- {name} per-step latency at hop {r['hop']} >= 10x lower: {d:.2f}x (default resolver), "
                         f"{n:.2f}x (no delegates) -> {mark(min(d, n) >= 10)}; compute-only bound {bd:.2f}x / "
                         f"{bn:.2f}x; MACs alone give {r['macs_before'] / r['macs_after']:.2f}x")
    for name in ("ds_cnn_kws_int8", "oww_embedding_int8"):
        if name in by and "tflm" in by[name]:
            d = by[name]["tflm"]
            lines.append(f"- {name} TFLite Micro step latency >= 0.85 x the MACs ratio: {d['speedup']:.2f}x vs "
                         f"{d['macs_ratio']:.2f}x = {d['speedup_over_macs']:.2f} -> {mark(d['speedup_over_macs'] >= 0.85)}")
    worst = max((r["macs_over_minimum"] for r in by.values()), default=1.0)
    lines.append(f"- streaming MACs per step / theoretical = 1.00 on every zoo model: worst {worst:.2f} "
                 f"-> {mark(abs(worst - 1.0) < 1e-9)}")
    for name in ("ds_cnn_kws_int8", "ds_cnn_kws_float"):
        if name in by:
            r = by[name]
            floor = r["ram_before"] / r["state_minimum"]
            lines.append(f"- {name} peak RAM (arena + state) >= 5x lower: {r['ram_before']:,} -> {r['ram_after']:,} "
                         f"= {r['ram_gain']:.2f}x -> {mark(r['ram_gain'] >= 5)}; the minimum state alone "
                         f"({r['state_minimum']:,} bytes by the contract) caps the gain at {floor:.2f}x")
    return lines


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cpus)"
    except OSError:
        pass
    return platform.machine()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="invokes per model and resolver (median)")
    ap.add_argument("--convert-runs", type=int, default=5, help="conversions per model (median)")
    ap.add_argument("--synthetic-runs", type=int, default=5, help="load+convert+save of the 10 MB model (0: skip)")
    ap.add_argument("--tflm-runs", type=int, default=300, help="invokes per model in the TFLite Micro harness "
                    "(median; 0: skip)")
    ap.add_argument("--models", nargs="*", help="zoo stems (default: all)")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    paths = sorted((REPO / "models").glob("*.tflite")) + sorted((REPO / "models" / "oww").glob("*.tflite"))
    if args.models:
        paths = [p for p in paths if p.stem in args.models]
    rows = []
    for p in paths:
        print(f"... {p.stem}", file=sys.stderr)
        rows.append(bench_model(p, args.runs, args.convert_runs, args.tflm_runs))
        if "tflm" in rows[-1]:
            rows[-1]["tflm_runs"] = args.tflm_runs
    synth = None
    if args.synthetic_runs > 0:
        print("... synthetic", file=sys.stderr)
        synth = bench_synthetic(args.synthetic_runs)
    lines = print_tables(rows, synth, args.runs) + [""] + targets(rows, synth)
    lines += ["", f"Machine: {_cpu()}, Python {platform.python_version()}, ai-edge-litert {_version('ai-edge-litert')}"]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"models": rows, "synthetic": synth}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
