#!/usr/bin/env python3
"""Streaming model for XMOS xcore, proven on the host: a script to copy into your CI.

    python examples/xcore/stream_to_xcore.py MODEL.tflite [MODEL.tflite ...] --out build/xcore-models [--generated]

For each model (a non-streaming .tflite as the TFLite converter wrote it):
  1. `xstream convert --target xcore`: the external state form with static reshapes -> OUT/NAME_stream.tflite
  2. XMOS xformer (xmos-ai-tools), one thread, every state S compiled into the same memory as its S_next
     -> OUT/NAME_xcore.tflite and OUT/NAME_xcore.tflite.cpp/.h, what the firmware builds
  3. on the host xcore runtime (xmos-ai-tools' TFLMHostInterpreter: the xcore kernels built for x86), frame by
     frame: the streaming model against the original, both compiled by xformer (docs/CONTRACT.md's contract with the
     same kernels for both): must be bit-exact for int8, within 1e-5 relative for float32
  4. the same stream against the original in LiteRT (the model you evaluated): xcore's kernels round differently
     from LiteRT's, so int8 differs by a few LSB; reported, and a failure only beyond --max-lsb if you give it
  5. with --generated: xformer's .cpp built with g++ against the wheel's host xcore library and run as a firmware
     runs it (the tensor arena of exactly the reported size, state left in place between invokes, no copies):
     must give the outputs of step 3 at every step
  6. xformer's tensor arena for the original and the streaming model, and the state bytes

Prints one line per model and a Markdown table; --json writes OUT/report.json. Exit status 0 if every model
passed, 1 if one failed, 2 for bad arguments or a missing tool (pip install xstream xmos-ai-tools; g++ for
--generated).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import xstream
from xstream.errors import UsageError, XstreamError
from xstream.report.measure import measure
from xstream.pipeline import convert_with_plan
from xstream.verify import verify
from xstream.tflite.writer import serialize
from xstream.runtimes import xcore_host
from xstream.targets import xcore


@dataclass
class ModelResult:
    name: str
    dtype: str
    contract: str = ""
    hop: int = 0
    arena_original: int | None = None
    arena_streaming: int | None = None
    op_data_original: int | None = None  # of the arena: the kernels' persistent op data
    op_data_streaming: int | None = None
    state_bytes: int = 0
    original_note: str = "as given"
    macs_original: int = 0
    macs_streaming: int = 0
    # step 3: streaming vs original, both on xcore
    xcore_equal: bool | None = None
    xcore_bit_exact: bool | None = None
    xcore_max_abs: float | None = None
    steps_compared: int = 0
    # step 4: streaming on xcore vs original in LiteRT
    litert_max_abs: float | None = None
    litert_max_rel: float | None = None
    litert_bit_exact: bool | None = None
    # the original itself: compiled by xformer on xcore vs in LiteRT (xcore's kernels, no streaming involved)
    kernel_max_abs: float | None = None
    kernel_windows_differing: int = 0
    kernel_windows: int = 0
    # step 5
    generated_equal: bool | None = None
    generated_steps: int = 0
    error: str = ""
    passed: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def saved(self) -> int | None:
        if self.arena_original is None or self.arena_streaming is None:
            return None
        return self.arena_original - self.arena_streaming


def generated_matches(streaming_model, steps: int, seed: int) -> tuple[bool, int]:
    """Step 5: xformer's generated C++ (state in place) against the host interpreter (state fed back), on the same
    random hops: every output of every step identical."""
    data = serialize(streaming_model)
    ref = xcore_host.host_runner(data, backend="interpreter")
    gen = xcore_host.host_runner(data, backend="generated", in_place=True)
    rng = np.random.default_rng(seed)
    x0 = ref.inputs[0]
    state = [np.full(tuple(d["shape"]), d["quantization"][1] if np.issubdtype(np.dtype(d["dtype"]), np.integer)
                     else 0, dtype=d["dtype"]) for d in ref.inputs[1:]]
    gen.reset()
    n_out = len(ref.outputs) - len(state)
    for _ in range(steps):
        shape, dtype = tuple(x0["shape"]), np.dtype(x0["dtype"])
        x = (rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max + 1, shape).astype(dtype)
             if np.issubdtype(dtype, np.integer) else rng.standard_normal(shape).astype(dtype))
        want = ref([x] + state)
        got = gen([x] + [np.zeros_like(s) for s in state])  # in place: the state bytes sent are ignored
        state = want[n_out:]
        if not all(np.array_equal(a, b) for a, b in zip(want, got)):
            gen.close()
            return False, steps
    gen.close()
    return True, steps


def run_model(path: str | Path, out: Path | None = None, *, hop: int | None = None, time_axis: int = 1,
              sequences: int = 3, seed: int = 0, generated: bool = False,
              max_lsb: float | None = None) -> ModelResult:
    start = time.monotonic()
    path = Path(path)
    original = xstream.load(path)
    res = ModelResult(path.stem, original.main.inputs[0].dtype)
    try:
        # 1. convert
        conv = convert_with_plan(original, hop=hop, time_axis=time_axis, target="xcore")
        res.contract, res.hop = conv.plan.contract, conv.plan.hop
        res.state_bytes = measure(conv.model).state_bytes
        res.macs_original, res.macs_streaming = measure(original).cost.macs, measure(conv.model).cost.macs
        # 2. xformer (same allocation for every state pair), written where the firmware build finds it
        compiled = xcore.compile_for_xcore(conv.model)
        res.arena_streaming = compiled.arena_bytes
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            xstream.save(conv.model, out / f"{res.name}_stream.tflite")
            compiled.save(out / f"{res.name}_xcore.tflite")
        report = xcore.arena_report(original, hop=hop, time_axis=time_axis)
        res.arena_original, res.original_note = report.original_arena_bytes, report.original_note
        res.op_data_original, res.op_data_streaming = report.original_op_data_bytes, report.streaming_op_data_bytes
        # 3. streaming vs original, both on the host xcore runtime. A causal stream equals the original at one
        #    step per sequence (the one completing the first window), so it gets more sequences.
        if conv.plan.contract == "causal":
            sequences *= 4
        r = verify(original, conv.model, time_axis=time_axis, sequences=sequences, seed=seed, runtime="xcore")
        res.xcore_equal, res.xcore_bit_exact, res.xcore_max_abs = r.equal, r.bit_exact, r.max_abs_error
        res.steps_compared = r.steps_compared
        res.notes += r.notes
        # 4. streaming on xcore vs the original in LiteRT
        r = verify(original, conv.model, time_axis=time_axis, sequences=sequences, seed=seed,
                   runtime="xcore-litert")
        res.litert_max_abs, res.litert_max_rel, res.litert_bit_exact = r.max_abs_error, r.max_rel_error, r.bit_exact
        res.kernel_windows = 8
        res.kernel_max_abs, res.kernel_windows_differing = xcore_host.kernel_deviation(original, windows=8, seed=seed)
        # 5. the generated C++, state in place
        if generated:
            res.generated_equal, res.generated_steps = generated_matches(conv.model, 2 * conv.plan.warmup + 8, seed)
        litert_ok = max_lsb is None or not r.integer or res.litert_max_abs <= max_lsb
        res.passed = bool(res.xcore_equal and litert_ok and res.generated_equal is not False)
    except XstreamError as e:
        res.error = str(e)
    res.seconds = time.monotonic() - start
    return res


def _fmt(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _lsb(r: ModelResult, value: float | None, rel: float | None = None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "bit-exact"
    return f"max {value:.0f} LSB" if r.dtype == "int8" else f"max abs {value:.2g}"


def markdown_table(results: list[ModelResult]) -> str:
    lines = ["| model | xformer arena: original (op data) | streaming (op data) | state, in the arena | change | "
             "MACs per step: original -> streaming | on xcore: streaming vs original | streaming on xcore vs "
             "LiteRT original | original on xcore vs LiteRT |",
             "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for r in results:
        if r.error:
            lines.append(f"| `{r.name}` | {_fmt(r.arena_original)} | - | - | - | - | not reached: {r.error} | | |")
            continue
        change = "-" if r.saved is None else f"{-r.saved:+,} ({100.0 * -r.saved / r.arena_original:+.0f}%)"
        exact = ("bit-exact" if r.xcore_bit_exact else f"{'' if r.xcore_equal else 'DIFFERENT, '}max abs "
                 f"{r.xcore_max_abs:.3g}") + f" ({r.steps_compared} steps)"
        kernel = _lsb(r, r.kernel_max_abs) + (f" ({r.kernel_windows_differing} of {r.kernel_windows} windows)"
                                               if r.kernel_max_abs else "")
        note = "" if r.original_note == "as given" else " *"
        lines.append(f"| `{r.name}` | {_fmt(r.arena_original)} ({_fmt(r.op_data_original)}){note} | "
                     f"{_fmt(r.arena_streaming)} ({_fmt(r.op_data_streaming)}) | "
                     f"{_fmt(r.state_bytes)} | {change} | {_fmt(r.macs_original)} -> {_fmt(r.macs_streaming)} | "
                     f"{exact} | {_lsb(r, r.litert_max_abs)} | {kernel} |")
    if any(r.original_note != "as given" and not r.error for r in results):
        lines.append("")
        lines.append("\\* xformer aborts on the original as TF wrote it (unknown batch: `EXPAND_DIMS`, "
                     "`IsDynamicTensor ... Disabled function`); measured on the same maths with static shapes "
                     "(`xstream.targets.xcore.xformer_ready_original`).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="non-streaming .tflite files")
    p.add_argument("--out", type=Path, default=None, help="write NAME_stream.tflite, NAME_xcore.tflite(.cpp/.h)")
    p.add_argument("--hop", type=int, default=None)
    p.add_argument("--time-axis", type=int, default=1)
    p.add_argument("--sequences", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generated", action="store_true", help="also build and run xformer's C++ (needs g++)")
    p.add_argument("--max-lsb", type=float, default=None,
                   help="fail an int8 model whose streaming output on xcore is further than this from LiteRT")
    p.add_argument("--json", action="store_true", help="write OUT/report.json")
    args = p.parse_args(argv)
    try:
        xcore.xformer_binary()
        xcore_host.host_interpreter_class()
    except UsageError as e:
        print(f"stream_to_xcore: {e}", file=sys.stderr)
        return 2
    results = []
    for m in args.models:
        r = run_model(m, args.out, hop=args.hop, time_axis=args.time_axis, sequences=args.sequences,
                      seed=args.seed, generated=args.generated, max_lsb=args.max_lsb)
        results.append(r)
        status = "PASS" if r.passed else "FAIL"
        detail = r.error or (f"arena {_fmt(r.arena_original)} -> {_fmt(r.arena_streaming)} "
                             f"(state {r.state_bytes}); xcore {'bit-exact' if r.xcore_bit_exact else r.xcore_max_abs}"
                             f"; vs LiteRT max abs {r.litert_max_abs:.3g} (original alone: {r.kernel_max_abs:.3g})"
                             + ("" if r.generated_equal is None else
                                f"; generated C++ {'identical' if r.generated_equal else 'DIFFERENT'}"))
        print(f"{status} {r.name}: {detail} ({r.seconds:.1f}s)")
    print()
    print(markdown_table(results))
    if args.json and args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
