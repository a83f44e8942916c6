"""Print the op sequence of zoo models and run each once in ai-edge-litert.

    .venv/bin/python models/describe.py [FILE.tflite ...]

Without arguments it covers every models/*.tflite. Needs only ai-edge-litert, numpy and the
`tflite` flatbuffer package (for conv/pool/pad options). Ops are listed from the model itself
(no delegate), each with the shape and dtype of its outputs.
"""

import glob
import os
import sys

import numpy as np
import tflite
from ai_edge_litert.interpreter import Interpreter, OpResolverType

_PADDING = {0: "SAME", 1: "VALID"}


def _options(model, op, interp):
    """A short string with the time-relevant options of one operator."""
    code = model.OperatorCodes(op.OpcodeIndex())
    name = tflite.opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
    table = op.BuiltinOptions()
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        opt = tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
        opt.Init(table.Bytes, table.Pos)
        return (f"{_PADDING[opt.Padding()]} stride=({opt.StrideH()},{opt.StrideW()}) "
                f"dilation=({opt.DilationHFactor()},{opt.DilationWFactor()})")
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        opt = tflite.Pool2DOptions()
        opt.Init(table.Bytes, table.Pos)
        return (f"{_PADDING[opt.Padding()]} filter=({opt.FilterHeight()},{opt.FilterWidth()}) "
                f"stride=({opt.StrideH()},{opt.StrideW()})")
    if name in ("PAD", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"):
        try:
            consts = [interp.get_tensor(op.Inputs(i)).tolist() for i in range(1, op.InputsLength())]
            return " ".join(str(c) for c in consts)
        except ValueError:
            return ""
    return ""


def describe(path):
    with open(path, "rb") as f:
        buf = f.read()
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    interp = Interpreter(
        model_content=buf,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]

    def fmt(t):
        return f"{[int(d) for d in t['shape']]}:{np.dtype(t['dtype']).name}"

    print(f"{os.path.basename(path)}  ({len(buf)} bytes)  in {fmt(inp)} "
          f"signature {[int(d) for d in inp['shape_signature']]} -> out {fmt(out)}")
    for i, op in enumerate(interp._get_ops_details()):
        outs = ", ".join(fmt(tensors[j]) for j in op["outputs"])
        opts = _options(model, graph.Operators(i), interp)
        print(f"  {i:3d} {op['op_name']:<18s} -> {outs}  {opts}".rstrip())

    rng = np.random.default_rng(0)
    if np.issubdtype(inp["dtype"], np.integer):
        info = np.iinfo(inp["dtype"])
        x = rng.integers(info.min, info.max + 1, size=inp["shape"]).astype(inp["dtype"])
    else:
        x = rng.standard_normal(inp["shape"]).astype(inp["dtype"])
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    y = interp.get_tensor(out["index"])
    print(f"  ran ok: output[:4] = {y.ravel()[:4].tolist()}")


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    for path in argv or sorted(glob.glob(os.path.join(here, "*.tflite"))):
        describe(path)


if __name__ == "__main__":
    main(sys.argv[1:])
