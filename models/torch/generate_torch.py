"""Regenerate the PyTorch model zoo (models/torch/*.tflite) with litert-torch and onnx2tf.

Three environments are involved, none of them xstream's (torch, litert-torch and onnx2tf are NOT
xstream dependencies; the .tflite files are committed):

  LITERT_PY   Python 3.11 venv with torch 2.13.0 (CPU) + litert-torch 0.10.0 + onnx
              (default /work/venvs/litert/bin/python): litert-torch float and int8 export, ONNX
              export (torch.onnx.export, opset 17, dynamo=False), calibration data, torch reference
              outputs.
  ONNX2TF_PY  Python 3.12 venv with onnx2tf 1.29.24 and its pinned dependencies
              (default /work/venvs/onnx2tf/bin/python): ONNX -> TFLite, float32 and full-integer int8.
  CHECK_PY    xstream's own venv with ai-edge-litert (default /work/main/.venv/bin/python): loads
              and runs every file, compares with the torch reference, checks sizes.

Usage, from anywhere (each step can also be run alone, with the right interpreter):

    python3 models/torch/generate_torch.py                 # all steps, each in its venv
    $LITERT_PY  models/torch/generate_torch.py litert      # litert-torch files + ONNX + calibration
    $ONNX2TF_PY models/torch/generate_torch.py onnx2tf     # onnx2tf files from the ONNX files
    $CHECK_PY   models/torch/generate_torch.py check       # run every file in ai-edge-litert

Intermediate files (ONNX, calibration .npy, onnx2tf output folders, torch references) go to
--work (default /tmp/xstream_torch_build), never into the repository.

Files written next to this script: <arch>_<litert|onnx2tf>_<float|int8>.tflite.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the repository
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WORK = "/tmp/xstream_torch_build"
LITERT_PY = os.environ.get("LITERT_PY", "/work/venvs/litert/bin/python")
ONNX2TF_PY = os.environ.get("ONNX2TF_PY", "/work/venvs/onnx2tf/bin/python")
CHECK_PY = os.environ.get("CHECK_PY", os.path.join(HERE, "..", "..", ".venv", "bin", "python"))
MAX_BYTES = 150 * 1024

# Models whose int8 export is not attempted / known to fail, with the reason (see README.md).
NO_INT8 = {
    # PT2EQuantizer only annotates a GRU's inputs/outputs (_annotate_gru_io_only): IndexError with
    # no explicit h0, AssertionError unless both GRU outputs are used, and even then the model keeps
    # a float input and float gates (int8 only at the output): no full-integer model.
    "litert": {"gru": "litert-torch PT2E annotates a GRU's I/O only (_annotate_gru_io_only): "
                      "no full-integer GRU"},
    "onnx2tf": {},
}

# Files written although they do not match torch (kept as structural test inputs; see README.md).
KNOWN_WRONG = {
    "gru_onnx2tf_float": "onnx2tf lowers the ONNX GRU to a WHILE loop whose output differs from "
                         "torch and onnxruntime (max 0.27 on outputs of size 0.29; not explained "
                         "by linear_before_reset alone)",
}


# The models of torch_models.MODELS, listed here so that the onnx2tf and check steps need no torch.
NAMES = ["tdnn", "tdnn_same", "tc_resnet", "ds_cnn2d", "tcn_fpad", "tcn_chomp", "per_frame_linear",
         "time_last_input", "gru", "flat_input", "channel_matmul"]


# --------------------------------------------------------------------------- litert (torch venv)
def step_litert(work, only):
    import numpy as np
    import torch
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    sys.path.insert(0, HERE)
    from torch_models import MODELS, build, calibration
    assert list(MODELS) == NAMES, "keep NAMES in step with torch_models.MODELS"

    os.makedirs(work, exist_ok=True)
    failures = {}
    for name in only:
        model, shape = build(name)
        sample = torch.zeros(shape)
        # torch reference on one seeded input, for `check`
        x_ref = torch.randn(shape, generator=torch.Generator().manual_seed(99))
        with torch.no_grad():
            y_ref = model(x_ref)
        np.savez(os.path.join(work, f"{name}_ref.npz"), x=x_ref.numpy(), y=y_ref.numpy())
        calib = calibration(shape)
        np.save(os.path.join(work, f"{name}_calib_torch_layout.npy"), calib.numpy())

        # float
        edge = litert_torch.convert(model, (sample,))
        edge.export(os.path.join(HERE, f"{name}_litert_float.tflite"))

        # full-integer int8: PT2E static quantization, per-channel symmetric weights,
        # int8 activations calibrated on `calib`; litert-torch emits int8 input and output.
        if name in NO_INT8["litert"]:
            failures[f"{name}_litert_int8"] = NO_INT8["litert"][name] + " (skipped)"
        else:
            try:
                gm = torch.export.export(model, (sample,)).module()
                quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
                    pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
                gm = quantize_pt2e.prepare_pt2e(gm, quantizer)
                with torch.no_grad():
                    for c in calib:
                        gm(c[None])
                gm = quantize_pt2e.convert_pt2e(gm, fold_quantize=False)
                edge_q = litert_torch.convert(
                    gm, (sample,), quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
                edge_q.export(os.path.join(HERE, f"{name}_litert_int8.tflite"))
            except Exception as err:  # noqa: BLE001 - report and go on
                failures[f"{name}_litert_int8"] = f"{type(err).__name__}: {err}"[:300]

        # ONNX for onnx2tf (legacy TorchScript exporter, opset 17)
        torch.onnx.export(model, (sample,), os.path.join(work, f"{name}.onnx"),
                          input_names=["x"], output_names=["y"], opset_version=17,
                          dynamo=False, do_constant_folding=True)
    _write_failures(work, "litert", failures)


# --------------------------------------------------------------------------- onnx2tf (3.12 venv)
def _tf_layout(arr):
    """onnx2tf's input layout: channels moved last for 3-D and 4-D inputs ([N,C,T] -> [N,T,C],
    [N,C,H,W] -> [N,H,W,C]); other ranks unchanged."""
    import numpy as np
    if arr.ndim == 3:
        return np.ascontiguousarray(arr.transpose(0, 2, 1))
    if arr.ndim == 4:
        return np.ascontiguousarray(arr.transpose(0, 2, 3, 1))
    return arr


def step_onnx2tf(work, only):
    import numpy as np

    exe = os.path.join(os.path.dirname(sys.executable), "onnx2tf")
    failures = {}
    for name in only:
        onnx_path = os.path.join(work, f"{name}.onnx")
        out_dir = os.path.join(work, f"onnx2tf_{name}")
        shutil.rmtree(out_dir, ignore_errors=True)
        calib = np.load(os.path.join(work, f"{name}_calib_torch_layout.npy")).astype(np.float32)
        calib_path = os.path.join(work, f"{name}_calib_tf_layout.npy")
        np.save(calib_path, _tf_layout(calib))
        int8 = name not in NO_INT8["onnx2tf"]
        cmd = [exe, "-i", onnx_path, "-o", out_dir, "-n"]
        if int8:
            # -oiqt: integer-quantized variants; -cind: calibration data (NAME FILE MEAN STD),
            # given in onnx2tf's (channels-last) input layout; mean 0, std 1 = use as is.
            cmd += ["-oiqt", "-cind", "x", calib_path, "0.0", "1.0"]
        log = os.path.join(work, f"onnx2tf_{name}.log")
        with open(log, "w") as f:
            # onnx2tf runs `onnxsim` (and other tools) as commands found on PATH, and silently
            # goes on without them: the venv's bin/ must be on PATH (without onnxsim, a causal
            # F.pad comes out as a PAD on the batch axis).
            env = dict(os.environ)
            env["PATH"] = os.path.dirname(exe) + os.pathsep + env.get("PATH", "")
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=work, env=env)
        src_float = os.path.join(out_dir, f"{name}_float32.tflite")
        if os.path.exists(src_float):
            shutil.copyfile(src_float, os.path.join(HERE, f"{name}_onnx2tf_float.tflite"))
        else:
            failures[f"{name}_onnx2tf_float"] = f"onnx2tf exit {rc}, see {log}"
        if int8:
            src_int8 = os.path.join(out_dir, f"{name}_full_integer_quant.tflite")
            if os.path.exists(src_int8):
                shutil.copyfile(src_int8, os.path.join(HERE, f"{name}_onnx2tf_int8.tflite"))
            else:
                failures[f"{name}_onnx2tf_int8"] = f"onnx2tf exit {rc}, see {log}"
        else:
            failures[f"{name}_onnx2tf_int8"] = NO_INT8["onnx2tf"][name] + " (skipped)"
    _write_failures(work, "onnx2tf", failures)


# --------------------------------------------------------------------------- check (xstream venv)
def step_check(work, only):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    bad = 0
    for name in only:
        ref_path = os.path.join(work, f"{name}_ref.npz")
        ref = np.load(ref_path) if os.path.exists(ref_path) else None
        for path in sorted(glob.glob(os.path.join(HERE, f"{name}_*.tflite"))):
            arch_exp = os.path.basename(path)[len(name) + 1:]
            if arch_exp.count("_") != 1:      # e.g. tdnn_* also matches tdnn_same_*
                continue
            size = os.path.getsize(path)
            interp = Interpreter(model_path=path, experimental_op_resolver_type=(
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
            interp.allocate_tensors()
            inp = interp.get_input_details()[0]
            out = interp.get_output_details()[0]
            msg = ""
            if ref is not None:
                x = ref["x"]
                if tuple(inp["shape"]) != x.shape:
                    x = _tf_layout(x)
                if tuple(inp["shape"]) != x.shape:
                    msg = f"input shape {list(inp['shape'])} matches neither layout"
                else:
                    if inp["dtype"] == np.float32:
                        interp.set_tensor(inp["index"], x.astype(np.float32))
                    else:
                        s, z = inp["quantization"]
                        q = np.clip(np.round(x / s) + z, -128, 127).astype(inp["dtype"])
                        interp.set_tensor(inp["index"], q)
                    interp.invoke()
                    y = interp.get_tensor(out["index"])
                    if out["dtype"] != np.float32:
                        s, z = out["quantization"]
                        y = (y.astype(np.float32) - z) * s
                    if y.shape != ref["y"].shape:
                        msg = f"output shape {list(y.shape)} != torch {list(ref['y'].shape)}  "
                        y = np.full(ref["y"].shape, np.inf, np.float32)
                    err = float(np.abs(y - ref["y"]).max())
                    scale = float(np.abs(ref["y"]).max())
                    tol = 1e-4 if out["dtype"] == np.float32 else 0.25 * scale + 1e-3
                    msg += f"max|tflite - torch| = {err:.3g} (|y| max {scale:.3g})"
                    key = os.path.basename(path)[:-len(".tflite")]
                    if err > tol and key in KNOWN_WRONG:
                        msg += f"  KNOWN WRONG: {KNOWN_WRONG[key]}"
                    elif err > tol:
                        msg += "  MISMATCH"
                        bad += 1
            if path.endswith("_int8.tflite") and inp["dtype"] == np.float32:
                msg += "  (not full-integer: float input)"
            if size > MAX_BYTES:
                msg += "  TOO BIG"
                bad += 1
            print(f"{os.path.basename(path):42s} {size:7d} B  in {list(inp['shape'])}:"
                  f"{np.dtype(inp['dtype']).name}  {msg}")
    for fail in sorted(glob.glob(os.path.join(work, "failures_*.json"))):
        with open(fail) as f:
            for key, why in json.load(f).items():
                print(f"NOT WRITTEN {key}: {why}")
    return bad


def _write_failures(work, step, failures):
    with open(os.path.join(work, f"failures_{step}.json"), "w") as f:
        json.dump(failures, f, indent=1)
    for key, why in failures.items():
        print(f"FAILED {key}: {why}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", nargs="?", default="all", choices=["all", "litert", "onnx2tf", "check"])
    ap.add_argument("--work", default=DEFAULT_WORK, help="folder for intermediate files")
    ap.add_argument("--only", nargs="*", help="model names (default: all)")
    args = ap.parse_args()
    only = args.only or NAMES
    if args.step == "litert":
        step_litert(args.work, only)
    elif args.step == "onnx2tf":
        step_onnx2tf(args.work, only)
    elif args.step == "check":
        sys.exit(1 if step_check(args.work, only) else 0)
    else:
        me = os.path.abspath(__file__)
        extra = ["--work", args.work] + (["--only", *args.only] if args.only else [])
        for py, step in ((LITERT_PY, "litert"), (ONNX2TF_PY, "onnx2tf"), (CHECK_PY, "check")):
            print(f"== {step}: {py}", flush=True)
            rc = subprocess.call([py, me, step, *extra])
            if rc:
                sys.exit(rc)


if __name__ == "__main__":
    main()
