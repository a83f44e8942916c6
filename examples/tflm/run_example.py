#!/usr/bin/env python3
"""Build examples/tflm (stream_tflm, C++ on TensorFlow Lite Micro) and prove it on a zoo model.

    python examples/tflm/run_example.py [--model models/ds_cnn_kws_int8.tflite] [--work build/tflm/example]
                                        [--sequences 3] [--steps N] [--seed 0]

  1. `xstream convert MODEL --json` (the CLI) for the contract: window T, hop H, offset D, warm-up;
  2. xstream.load / xstream.convert / xstream.save: the model in forms ring-buffer, variable and external;
  3. random int8 frames, S sequences (sequence 2 repeats sequence 0, so a reset that forgets nothing shows), as
     WORK/frames.npy shaped [S, 1, L, ...];
  4. cmake -S examples/tflm -B build/tflm && cmake --build build/tflm;
  5. stream_tflm for every form -> WORK/out_FORM.npy;
  6. the ORIGINAL model window by window, step k's window being frames [(k+1)H - T + D, (k+1)H + D) for every
     k >= warm-up: in stream_tflm itself (the same TFLite Micro build and kernels as the stream: docs/CONTRACT.md's
     contract), in LiteRT (builtin kernels, no XNNPACK) and in TFLite Micro's own Python package (tflite-micro,
     if installed). The runtimes round some int8 kernels differently, so only the first is the contract; the
     other two are reported (max LSB), and fail the run only beyond --max-lsb if given.
  7. the reset check: sequence 3 repeats sequence 1's frames after a reset and must repeat every output.

Exit status 0 if every form equals the original in the same runtime bit for bit at every compared step and
passes the reset check, 1 if not, 2 for a missing tool (cmake, g++, xmos-ai-tools, ai-edge-litert) or a model
that is not window-exact.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import xstream

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FORMS = ("ring-buffer", "variable", "external")


def die(message: str, status: int = 2) -> None:
    print(f"run_example: {message}", file=sys.stderr)
    sys.exit(status)


def contract(model_path: Path) -> dict:
    """The numbers `xstream convert --json` reports (T, H, D, warm-up) for the default conversion."""
    cli = Path(sys.executable).with_name("xstream")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "xstream.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(command + ["convert", str(model_path), str(Path(tmp) / "m.tflite"), "--json"],
                              capture_output=True, text=True)
    if done.returncode != 0:
        die(f"xstream convert failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def build() -> Path:
    if shutil.which("cmake") is None:
        die("cmake is not installed")
    build_dir = REPO / "build" / "tflm"
    for command in (["cmake", "-S", str(HERE), "-B", str(build_dir), f"-DPython3_EXECUTABLE={sys.executable}"],
                    ["cmake", "--build", str(build_dir), "-j1"]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            die(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return build_dir / "stream_tflm"


class LiteRT:
    name = "LiteRT"

    def __init__(self, model_path: Path):
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            die("ai-edge-litert is not installed (pip install ai-edge-litert)")
        self.it = Interpreter(model_path=str(model_path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = self.it.get_output_details()[0]["index"]

    def __call__(self, window: np.ndarray) -> np.ndarray:
        self.it.set_tensor(self.inp, window)
        self.it.invoke()
        return self.it.get_tensor(self.out).copy()


class TFLM:
    name = "tflite-micro"

    def __init__(self, model_path: Path):
        from tflite_micro.python.tflite_micro import runtime  # ImportError: skipped by the caller
        self.it = runtime.Interpreter.from_bytes(model_path.read_bytes())

    def __call__(self, window: np.ndarray) -> np.ndarray:
        self.it.set_input(window, 0)
        self.it.invoke()
        return self.it.get_output(0).copy()


def stream_in_tflite_micro(path: Path, frames: np.ndarray, hop: int) -> np.ndarray:
    """The variable or external form in tflite-micro's Python interpreter: [S, steps, *output 0]."""
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(path.read_bytes())
    inputs = it.get_input_details
    names = LiteRT(path).it  # tflite-micro reports no tensor names; input S is fed by the output named S_next
    in_names = [d["name"] for d in names.get_input_details()]
    out_names = [d["name"] for d in names.get_output_details()]
    feedback = [out_names.index(name + "_next") for name in in_names[1:]]
    n_in = len(in_names)
    result = []
    for seq in frames:
        it.reset()
        state = [np.full(inputs(i)["shape"], inputs(i)["quantization_parameters"]["zero_points"][0]
                         if len(inputs(i)["quantization_parameters"]["zero_points"]) else 0,
                         dtype=inputs(i)["dtype"]) for i in range(1, n_in)]
        steps = []
        for k in range(seq.shape[1] // hop):
            it.set_input(seq[:, k * hop:(k + 1) * hop], 0)
            for i, x in enumerate(state, start=1):
                it.set_input(x, i)
            it.invoke()
            state = [it.get_output(j).copy() for j in feedback]
            steps.append(it.get_output(0).copy())
        result.append(steps)
    return np.array(result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "ds_cnn_kws_int8.tflite")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "tflm" / "example")
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="steps per sequence (default: warm-up + 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-lsb", type=int, default=None,
                        help="also fail if LiteRT's or tflite-micro's original differs by more than this")
    args = parser.parse_args()
    if args.sequences < 1:
        die("--sequences must be at least 1")
    args.work.mkdir(parents=True, exist_ok=True)

    # 1. The contract.
    c = contract(args.model)
    if c["contract"] != "window-exact":
        die(f"{args.model.name} is {c['contract']}, this example checks window-exact models")
    T, H, D, warmup = c["window"], c["hop"], c["offset"], c["warmup"]
    print(f"{args.model.name}: {c['contract']}, window T={T}, hop H={H}, offset D={D:+d}, warm-up {warmup} steps")

    # 2. The three forms.
    original = xstream.load(args.model)
    paths = {}
    for form in FORMS:
        paths[form] = args.work / f"{args.model.stem}_{form}.tflite"
        xstream.save(xstream.convert(original, state=form, hop=H), paths[form])

    # 3. Frames: [S, 1, L, ...] like the original's input with L frames on axis 1.
    probe = LiteRT(args.model)
    detail = probe.it.get_input_details()[0]
    in_shape, dtype = [int(d) for d in detail["shape"]], np.dtype(detail["dtype"])
    steps = args.steps if args.steps is not None else warmup + 12
    length = steps * H + max(D, 0)
    rng = np.random.default_rng(args.seed)
    info = np.iinfo(dtype)
    frames = rng.integers(info.min, info.max + 1, size=[args.sequences] + in_shape[:1] + [length] +
                          in_shape[2:]).astype(dtype)
    if args.sequences >= 3:
        frames[2] = frames[0]  # the reset check: the same frames after a reset give the same outputs
    frames_path = args.work / "frames.npy"
    np.save(frames_path, frames)

    # 4-5. Build and run the C++ program.
    binary = build()
    streamed = {}
    for form in FORMS:
        out_path = args.work / f"out_{form}.npy"
        done = subprocess.run([str(binary), str(paths[form]), str(frames_path), "--out", str(out_path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            die(f"stream_tflm failed on the {form} form:\n{done.stdout[-2000:]}{done.stderr}", 1)
        lines = done.stdout.splitlines()
        print(f"\n$ stream_tflm {paths[form].name} frames.npy --out {out_path.name}")
        print("\n".join(lines[:5] + ["..."] + lines[-1:]))
        streamed[form] = np.load(out_path)  # [S, steps, *output shape]

    # 6. The original, window by window: the compared windows one after another, one window per invoke.
    keys = [(s, k) for s in range(args.sequences) for k in range(warmup, steps) if (k + 1) * H - T + D >= 0]
    windows = [frames[s, :, (k + 1) * H - T + D:(k + 1) * H + D] for s, k in keys]
    windows_path = args.work / "windows.npy"
    np.save(windows_path, np.concatenate(windows, axis=1))
    done = subprocess.run([str(binary), str(args.model), str(windows_path), "--out", str(args.work / "out_original.npy"),
                           "--quiet"], capture_output=True, text=True)
    if done.returncode != 0:
        die(f"stream_tflm failed on the original:\n{done.stdout[-2000:]}{done.stderr}", 1)
    print(f"\n$ stream_tflm {args.model.name} windows.npy --out out_original.npy --quiet")
    print(done.stdout.rstrip())
    expected = {"stream_tflm": dict(zip(keys, np.load(args.work / "out_original.npy")[0]))}
    references = [probe]
    try:
        references.append(TFLM(args.model))
    except ImportError:
        print("\nnote: tflite-micro is not installed; the original runs in stream_tflm and LiteRT only")
    for r in references:
        expected[r.name] = {key: r(window) for key, window in zip(keys, windows)}

    # The builtin forms in tflite-micro's Python interpreter too (its kernels round like LiteRT's).
    extra = {}
    if any(r.name == "tflite-micro" for r in references):
        for form in ("variable", "external"):
            got = stream_in_tflite_micro(paths[form], frames, H)
            extra[form] = max(int(np.max(np.abs(got[s, k].astype(np.int64) - w.astype(np.int64))))
                              for (s, k), w in expected["tflite-micro"].items())

    failed = False
    print()
    for form in FORMS:
        got = streamed[form]
        for name, want in expected.items():
            diffs = [int(np.max(np.abs(got[s, k].astype(np.int64) - w.astype(np.int64)))) for (s, k), w in want.items()]
            contract_check = name == "stream_tflm"
            label = "original in stream_tflm (same runtime)" if contract_check else f"original in {name}"
            print(f"{form:12s} {'vs ' + label:43s}: {len(diffs)} step(s), "
                  + ("bit-exact" if max(diffs) == 0 else f"{sum(d > 0 for d in diffs)} differ, max {max(diffs)} LSB"))
            if contract_check and max(diffs) > 0:
                failed = True
            if not contract_check and args.max_lsb is not None and max(diffs) > args.max_lsb:
                failed = True
        if form in extra:
            print(f"{form:12s} {'in tflite-micro vs original in tflite-micro':43s}: {len(expected['tflite-micro'])} step(s), "
                  + ("bit-exact" if extra[form] == 0 else f"max {extra[form]} LSB"))
            failed = failed or extra[form] > 0
        if args.sequences >= 3:
            reset_ok = np.array_equal(got[2], got[0])
            print(f"{form:12s} reset: sequence 3 (sequence 1's frames after a reset) "
                  + ("repeats every output" if reset_ok else "DIFFERS from sequence 1"))
            failed = failed or not reset_ok
    same = all(np.array_equal(streamed[f], streamed[FORMS[0]]) for f in FORMS)
    print(f"all forms give identical outputs at every step (warm-up included): {same}")
    print("FAILED" if failed else "PASSED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
