"""Replay every saved crash repro (fuzz/crashes/) and say which still fail.

    .venv/bin/python -m fuzz.repro

A repro is fixed when its command exits 0, 1, 2 or 3 with at most one `xstream: error:` line on stderr (exit 1
with DIFFERENT counts as still failing for the correctness repro); still failing on exit 4 (an internal error), a
signal, or a traceback.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
C = "fuzz/crashes/"
M = "models/"

# name -> list of commands ({OUT} is a temporary path); the last command is the one judged.
REPROS: dict[str, list[list[str]]] = {
    "inspect-conv-weights-rank": [["inspect", C + "inspect-conv-weights-rank.tflite"]],
    "inspect-measure-depthwise-weights": [["inspect", C + "inspect-measure-depthwise-weights.tflite"]],
    "inspect-reshape-shape-rank": [["inspect", C + "inspect-reshape-shape-rank.tflite"]],
    "inspect-measure-model-state": [["inspect", C + "inspect-measure-model-state.tflite"]],
    "inspect-string-constant": [["inspect", C + "inspect-string-constant.tflite"]],
    "convert-conv-scalar-input": [["convert", C + "convert-conv-scalar-input.tflite", "{OUT}"]],
    "convert-float-axis-nan": [["convert", C + "convert-float-axis-nan.tflite", "{OUT}"]],
    "convert-pad-paddings-shape": [["convert", C + "convert-pad-paddings-shape.tflite", "{OUT}"]],
    "convert-strided-slice-missing-inputs": [["convert", C + "convert-strided-slice-missing-inputs.tflite", "{OUT}"]],
    "convert-fold-dilated-omitted-weights": [["convert", C + "convert-fold-dilated-omitted-weights.tflite", "{OUT}"]],
    "convert-resolve-shapes-omitted-input": [["convert", C + "convert-resolve-shapes-omitted-input.tflite", "{OUT}",
                                              "--state", "variable"]],
    "convert-variant-dtype": [["convert", C + "convert-variant-dtype.tflite", "{OUT}", "--state", "variable"]],
    "convert-empty-input-vector": [["convert", C + "convert-empty-input-vector.tflite", "{OUT}"]],
    "verify-litert-invoke-error": [["verify", M + "separable_maxpool_dynbatch_float.tflite",
                                    C + "verify-litert-invoke-error.tflite"]],
    "verify-set-tensor-shape-mismatch": [["verify", M + "tdnn_dilated_int8.tflite",
                                          C + "verify-set-tensor-shape-mismatch.tflite"]],
    "verify-fewer-outputs": [["verify", M + "causal_mean_float.tflite", C + "verify-fewer-outputs.tflite"]],
    "verify-string-output": [["verify", M + "tdnn_dilated_dynbatch_float.tflite", C + "verify-string-output.tflite",
                              "--sequences", "1"]],
    "verify-sigsegv-strided-slice-omitted-end": [["verify", M + "residual_tdnn_dynbatch_float.tflite",
                                                  C + "verify-sigsegv-strided-slice-omitted-end.tflite",
                                                  "--sequences", "1"]],
    "verify-sigsegv-depthwise-two-inputs": [["verify", M + "separable_maxpool_dynbatch_float.tflite",
                                             C + "verify-sigsegv-depthwise-two-inputs.tflite", "--sequences", "1"]],
    "verify-heap-corruption-int16-input": [
        ["convert", C + "verify-heap-corruption-int16-input.tflite", "{OUT}", "--state", "variable"],
        ["verify", C + "verify-heap-corruption-int16-input.tflite", "{OUT}", "--sequences", "1"]],
    "verify-tflm-sigfpe": [["verify", M + "residual_tdnn_dynbatch_float.tflite", C + "verify-tflm-sigfpe.tflite",
                            "--sequences", "1", "--runtime", "tflm"]],
    "verify-tflm-sigabrt": [["verify", M + "separable_maxpool_int8.tflite", C + "verify-tflm-sigabrt.tflite",
                             "--sequences", "1", "--runtime", "tflm"]],
    "verify-tflm-sigsegv-concat-axis": [["verify", M + "ds_cnn_kws_dynbatch_int8.tflite",
                                         C + "verify-tflm-sigsegv-concat-axis.tflite", "--sequences", "1",
                                         "--runtime", "tflm"]],
    "verify-different-pad-wider-than-kernel": [
        ["convert", C + "verify-different-pad-wider-than-kernel.tflite", "{OUT}"],
        ["verify", C + "verify-different-pad-wider-than-kernel.tflite", "{OUT}"]],
    "convert-shape-without-outputs": [["convert", C + "convert-shape-without-outputs.tflite", "{OUT}"]],
    "verify-different-options-of-another-op": [
        ["convert", C + "verify-different-options-of-another-op.tflite", "{OUT}", "--state", "external"],
        ["verify", C + "verify-different-options-of-another-op.tflite", "{OUT}"]],
    "verify-no-outputs": [["verify", C + "verify-no-outputs.tflite", C + "verify-no-outputs.tflite"]],
    "convert-split-missing-inputs": [["convert", C + "convert-split-missing-inputs.tflite", "{OUT}", "--state",
                                      "variable"]],
    "inspect-stream-metadata-malformed": [["inspect", C + "inspect-stream-metadata-malformed.tflite"]],
    "convert-empty-dimension": [["convert", C + "convert-empty-dimension.tflite", "{OUT}"]],
    "convert-gather-output-rank": [["convert", C + "convert-gather-output-rank.tflite", "{OUT}"]],
}


def judge(p: subprocess.CompletedProcess) -> str:
    lines = p.stderr.splitlines()
    if p.returncode < 0 or p.returncode >= 128:
        return f"FAILS (signal, exit {p.returncode})"
    if p.returncode == 4 or "Traceback" in p.stderr:
        return f"FAILS (exit {p.returncode}: {lines[-1][:120] if lines else ''})"
    if p.returncode == 1 and p.stdout.startswith("DIFFERENT"):
        return "FAILS (DIFFERENT)"
    own = [ln for ln in lines if ln.startswith("xstream:")]
    if len(lines) > 1 or (p.returncode != 0 and len(own) != 1):
        return f"FAILS (stderr has {len(lines)} lines)"
    return f"ok (exit {p.returncode}{': ' + lines[0][:100] if lines else ''})"


def main() -> int:
    failing = 0
    with tempfile.TemporaryDirectory() as d:
        for name, commands in REPROS.items():
            out = str(Path(d) / f"{name}.out.tflite")
            for cmd in commands:
                args = [a.replace("{OUT}", out) for a in cmd]
                p = subprocess.run([sys.executable, "-m", "xstream", *args], capture_output=True, text=True,
                                   cwd=REPO, timeout=120)
            verdict = judge(p)
            failing += verdict.startswith("FAILS")
            print(f"{verdict:60.60s}  {name}")
    print(f"{failing} of {len(REPROS)} repros still fail")
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
