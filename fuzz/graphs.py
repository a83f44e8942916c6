"""Models built or edited through the IR: random small time-series graphs and semantic mutations of seeds.

Byte mutations mostly die in the reader. These produce well-formed flatbuffers whose *meaning* is random or broken
(a shape dimension of 2**30, a stride of 0, an operator reading its own output, a WHILE that calls its own
subgraph, a RING_BUFFER with garbage options), so they reach validation, analysis, the passes and LiteRT.
"""

from __future__ import annotations

import copy
import random

import numpy as np

from xstream.tflite import schema
from xstream.ir import NUMPY_DTYPES, Buffer, Model, Operator, Quantization, Subgraph, Tensor
from xstream.tflite.writer import serialize

ACTS = [0, 0, 0, 1, 3]  # NONE, RELU, RELU6
INTERESTING = [0, 1, 2, 3, -1, -2, 7, 8, 64, 255, 256, 65535, 65536, 1 << 20, 1 << 24, (1 << 31) - 1, -(1 << 31),
               1 << 30, 1 << 15, -128, 127]


class _Builder:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.n = 0
        self.ops: list[Operator] = []

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def act(self, shape, dtype: str = "float32") -> Tensor:
        return Tensor(self.name("t"), dtype, tuple(int(d) for d in shape))

    def const(self, values, dtype: str = "int32") -> Tensor:
        arr = np.ascontiguousarray(np.asarray(values, dtype=NUMPY_DTYPES[dtype]))
        return Tensor(self.name("c"), dtype, tuple(arr.shape), buffer=Buffer(arr.tobytes()))

    def weights(self, shape) -> Tensor:
        nprng = np.random.default_rng(self.rng.getrandbits(32))
        return self.const(nprng.standard_normal(shape).astype(np.float32) * 0.3, "float32")

    def op(self, type_: str, inputs, out_shape, options_type=None, **options) -> Tensor:
        y = self.act(out_shape)
        self.ops.append(Operator(type_, list(inputs), [y], options=dict(options), options_type=options_type))
        return y

    def reshape(self, x: Tensor, shape) -> Tensor:
        return self.op("RESHAPE", [x, self.const(list(shape))], shape, "ReshapeOptions", new_shape=list(shape))


def _out_len(length: int, k: int, s: int, d: int, same: bool) -> int:
    if same:
        return -(-length // s)
    return (length - (d * (k - 1) + 1)) // s + 1


def random_graph(rng: random.Random) -> bytes:
    """A small float32 model over time (axis 1): Conv1D-style stacks, pools, pads, crops, residuals, a head."""
    b = _Builder(rng)
    T = rng.randint(8, 64)
    C = rng.choice([1, 2, 3, 4, 8])
    two_d = rng.random() < 0.25
    if two_d:  # [1, T, F, 1] like the KWS model: 2-D kernels, time on axis 1
        F = rng.randint(3, 10)
        x_in = b.act([1, T, F, 1])
        x = x_in
        L, width, ch = T, F, 1
        for _ in range(rng.randint(1, 3)):
            k, s = rng.randint(1, min(4, L)), rng.choice([1, 1, 2])
            kf = rng.randint(1, width)
            cout = rng.choice([2, 4, 8])
            same = rng.random() < 0.15
            nl = _out_len(L, k, s, 1, same)
            nw = width if same else width - kf + 1
            if nl < 1 or nw < 1:
                break
            if rng.random() < 0.5:
                x = b.op("CONV_2D", [x, b.weights([cout, k, kf, ch]), b.weights([cout])], [1, nl, nw, cout],
                         "Conv2DOptions", padding=0 if same else 1, stride_h=s, stride_w=1, dilation_h_factor=1,
                         dilation_w_factor=1, fused_activation_function=rng.choice(ACTS))
                ch = cout
            else:
                x = b.op("DEPTHWISE_CONV_2D", [x, b.weights([1, k, kf, ch]), b.weights([ch])], [1, nl, nw, ch],
                         "DepthwiseConv2DOptions", padding=0 if same else 1, stride_h=s, stride_w=1,
                         depth_multiplier=1, dilation_h_factor=1, dilation_w_factor=1,
                         fused_activation_function=rng.choice(ACTS))
            L, width = nl, nw
        flat = L * width * ch
        x = b.reshape(x, [1, flat])
        units = rng.choice([2, 4, 8])
        y = b.op("FULLY_CONNECTED", [x, b.weights([units, flat]), b.weights([units])], [1, units],
                 "FullyConnectedOptions", fused_activation_function=0)
        return _finish(b, x_in, y)

    x_in = b.act([1, T, C])
    x = x_in
    L = T
    for _ in range(rng.randint(1, 5)):
        kind = rng.choice(["conv", "conv", "dw", "pool", "pad", "crop", "residual", "unary", "mul"])
        if kind in ("conv", "dw", "pool"):
            k = rng.randint(1, 5)
            s = rng.choice([1, 1, 1, 2])
            d = rng.choice([1, 1, 2, 3]) if kind != "pool" else 1
            same = rng.random() < 0.1
            nl = _out_len(L, k, s, d, same)
            if nl < 1:
                continue
            x4 = b.reshape(x, [1, 1, L, C])
            if kind == "conv":
                cout = rng.choice([2, 4, 8])
                y4 = b.op("CONV_2D", [x4, b.weights([cout, 1, k, C]), b.weights([cout])], [1, 1, nl, cout],
                          "Conv2DOptions", padding=0 if same else 1, stride_h=1, stride_w=s, dilation_h_factor=1,
                          dilation_w_factor=d, fused_activation_function=rng.choice(ACTS))
                C = cout
            elif kind == "dw":
                y4 = b.op("DEPTHWISE_CONV_2D", [x4, b.weights([1, 1, k, C]), b.weights([C])], [1, 1, nl, C],
                          "DepthwiseConv2DOptions", padding=0 if same else 1, stride_h=1, stride_w=s,
                          depth_multiplier=1, dilation_h_factor=1, dilation_w_factor=d,
                          fused_activation_function=rng.choice(ACTS))
            else:
                y4 = b.op(rng.choice(["AVERAGE_POOL_2D", "MAX_POOL_2D"]), [x4], [1, 1, nl, C], "Pool2DOptions",
                          padding=0 if same else 1, stride_h=1, stride_w=s, filter_height=1, filter_width=k,
                          fused_activation_function=0)
            L = nl
            x = b.reshape(y4, [1, L, C])
        elif kind == "pad":
            p = rng.randint(1, 4)
            x = b.op("PAD", [x, b.const([[0, 0], [p, 0], [0, 0]])], [1, L + p, C])
            L += p
        elif kind == "crop" and L > 2:
            lo, hi = rng.randint(0, 1), rng.randint(0, 1)
            x = b.op("STRIDED_SLICE", [x, b.const([0, lo, 0]), b.const([1, L - hi, C]), b.const([1, 1, 1])],
                     [1, L - lo - hi, C], "StridedSliceOptions", begin_mask=0, end_mask=0, ellipsis_mask=0,
                     new_axis_mask=0, shrink_axis_mask=0, offset=False)
            L -= lo + hi
        elif kind == "residual" and L > 2:
            # branch: Conv1D k3 valid; skip: crop 1:-1; ADD
            x4 = b.reshape(x, [1, 1, L, C])
            y4 = b.op("CONV_2D", [x4, b.weights([C, 1, 3, C]), b.weights([C])], [1, 1, L - 2, C], "Conv2DOptions",
                      padding=1, stride_h=1, stride_w=1, dilation_h_factor=1, dilation_w_factor=1,
                      fused_activation_function=0)
            y = b.reshape(y4, [1, L - 2, C])
            skip = b.op("STRIDED_SLICE", [x, b.const([0, 1, 0]), b.const([1, L - 1, C]), b.const([1, 1, 1])],
                        [1, L - 2, C], "StridedSliceOptions", begin_mask=0, end_mask=0, ellipsis_mask=0,
                        new_axis_mask=0, shrink_axis_mask=0, offset=False)
            L -= 2
            x = b.op("ADD", [y, skip], [1, L, C], "AddOptions", fused_activation_function=rng.choice(ACTS))
        elif kind == "unary":
            x = b.op(rng.choice(["RELU", "TANH", "LOGISTIC"]), [x], [1, L, C])
        elif kind == "mul":
            x = b.op("MUL", [x, b.weights([C])], [1, L, C], "MulOptions", fused_activation_function=0)
    head = rng.choice(["frames", "mean", "max", "flatten"])
    if head == "frames":
        return _finish(b, x_in, x)
    if head in ("mean", "max"):
        x = b.op("MEAN" if head == "mean" else "REDUCE_MAX", [x, b.const(1)], [1, C], "ReducerOptions",
                 keep_dims=False)
        flat = C
    else:
        flat = L * C
        x = b.reshape(x, [1, flat])
    units = rng.choice([2, 4])
    y = b.op("FULLY_CONNECTED", [x, b.weights([units, flat]), b.weights([units])], [1, units],
             "FullyConnectedOptions", fused_activation_function=0)
    return _finish(b, x_in, y)


def _finish(b: _Builder, x: Tensor, y: Tensor) -> bytes:
    sg = Subgraph("main", [x], [y], b.ops)
    return serialize(Model([sg], description="xstream fuzz random graph"))


# ---------------------------------------------------------------------------------------------------------
# Semantic mutations of a loaded seed


def _pick_int(rng: random.Random, old: int | None = None) -> int:
    r = rng.random()
    if old is not None and r < 0.3:
        return old + rng.choice([-2, -1, 1, 2, old, -old])
    if r < 0.8:
        return rng.choice(INTERESTING)
    return rng.randint(-(1 << 20), 1 << 20)


def _tensors(sg: Subgraph) -> list[Tensor]:
    return sg.tensors()


def mutate_model(model: Model, rng: random.Random) -> str:
    """Apply one semantic edit in place; returns its description."""
    sgs = model.subgraphs
    sg = rng.choice(sgs)
    ops = sg.operators
    tensors = _tensors(sg)
    choice = rng.choice(["shape", "shape", "dtype", "swap", "delete", "duplicate", "rewire_in", "rewire_out",
                         "option", "option", "option", "optype", "io", "buffer", "quant", "signature_shape",
                         "call", "custom_options", "variable", "const_values"])
    if choice == "shape" and tensors:
        t = rng.choice(tensors)
        if t.shape and rng.random() < 0.8:
            i = rng.randrange(len(t.shape))
            shape = list(t.shape)
            shape[i] = max(0, _pick_int(rng, shape[i])) if rng.random() < 0.7 else _pick_int(rng, shape[i])
            t.shape = tuple(shape)
        else:
            t.shape = tuple(rng.choice([1, 2, 3, 49]) for _ in range(rng.choice([0, 1, 2, 5, 9])))
        return f"shape of {t.name!r} -> {list(t.shape)}"
    if choice == "dtype" and tensors:
        t = rng.choice(tensors)
        t.dtype = rng.choice(sorted(schema.DTYPE_CODE))
        return f"dtype of {t.name!r} -> {t.dtype}"
    if choice == "swap" and len(ops) > 1:
        i, j = rng.sample(range(len(ops)), 2)
        ops[i], ops[j] = ops[j], ops[i]
        return f"swap operators {i} and {j}"
    if choice == "delete" and ops:
        i = rng.randrange(len(ops))
        del ops[i]
        return f"delete operator {i}"
    if choice == "duplicate" and ops:
        i = rng.randrange(len(ops))
        ops.insert(rng.randrange(len(ops) + 1), copy.copy(ops[i]))
        return f"duplicate operator {i}"
    if choice == "rewire_in" and ops and tensors:
        op = rng.choice(ops)
        if op.inputs:
            k = rng.randrange(len(op.inputs))
            op.inputs[k] = rng.choice(tensors + [None])
            return f"{op.type} input {k} -> another tensor"
    if choice == "rewire_out" and ops and tensors:
        op = rng.choice(ops)
        if op.outputs:
            op.outputs[0] = rng.choice(tensors)
            return f"{op.type} output -> another tensor"
    if choice == "option" and ops:
        op = rng.choice(ops)
        if op.options:
            key = rng.choice(sorted(op.options))
            v = op.options[key]
            if isinstance(v, bool):
                op.options[key] = not v
            elif isinstance(v, int):
                op.options[key] = _pick_int(rng, v)
            elif isinstance(v, float):
                op.options[key] = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])
            elif isinstance(v, list):
                op.options[key] = [_pick_int(rng) for _ in range(rng.randint(0, 6))]
            elif isinstance(v, Subgraph):
                op.options[key] = rng.choice(sgs)
            return f"{op.type} option {key} -> {op.options[key]!r}"
    if choice == "optype" and ops:
        op = rng.choice(ops)
        op.type = rng.choice(["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE", "ADD",
                              "MEAN", "PAD", "STRIDED_SLICE", "FULLY_CONNECTED", "CONCATENATION", "SQUEEZE",
                              "EXPAND_DIMS", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "SHAPE", "PACK",
                              "TRANSPOSE", "SOFTMAX", "CALL_ONCE", "WHILE", "IF", "VAR_HANDLE", "READ_VARIABLE",
                              "ASSIGN_VARIABLE", "SPLIT", "GATHER", "REDUCE_MAX", "TANH", "CUSTOM"])
        if op.type == "CUSTOM":
            op.custom_code = rng.choice(["RING_BUFFER", "Unknown", "RING_BUFFER\nsecond line"])
        return f"operator type -> {op.kind!r}"
    if choice == "io":
        which = rng.choice(["inputs", "outputs"])
        lst = getattr(sg, which)
        r = rng.random()
        if r < 0.3 and lst:
            lst.pop(rng.randrange(len(lst)))
        elif r < 0.6 and tensors:
            lst.append(rng.choice(tensors))
        elif lst and tensors:
            lst[rng.randrange(len(lst))] = rng.choice(tensors)
        return f"subgraph {which} edited"
    if choice == "buffer":
        consts = [t for t in tensors if t.is_constant]
        if consts:
            t = rng.choice(consts)
            data = t.buffer.data
            r = rng.random()
            if r < 0.4:
                t.buffer = Buffer(data[: rng.randrange(len(data) + 1)])
            elif r < 0.7:
                t.buffer = Buffer(data + bytes(rng.randint(1, 64)))
            else:
                t.buffer = None
            return f"buffer of {t.name!r} resized"
    if choice == "quant":
        qs = [t for t in tensors if t.quantization is not None]
        if qs:
            t = rng.choice(qs)
            q = t.quantization
            r = rng.random()
            if r < 0.3:
                q.quantized_dimension = _pick_int(rng, q.quantized_dimension)
            elif r < 0.6 and q.scale is not None:
                q.scale = np.resize(q.scale, rng.randint(0, 5)).astype(np.float32)
            elif r < 0.8 and q.zero_point is not None:
                q.zero_point = np.full(len(q.zero_point), _pick_int(rng), dtype=np.int64)
            elif q.scale is not None:
                q.scale = np.full(len(q.scale), rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e-30]),
                                  dtype=np.float32)
            return f"quantization of {t.name!r} edited"
        t = rng.choice(tensors) if tensors else None
        if t is not None:
            t.quantization = Quantization(np.ones(rng.randint(1, 3), np.float32), np.zeros(rng.randint(1, 3),
                                                                                           np.int64))
            return f"quantization added to {t.name!r}"
    if choice == "signature_shape" and tensors:
        t = rng.choice(tensors)
        t.shape_signature = tuple(rng.choice([-1, -1, 1, 0, -5, 7]) for _ in range(len(t.shape) + rng.choice(
            [0, 0, 1, -1])))
        return f"shape_signature of {t.name!r} -> {list(t.shape_signature)}"
    if choice == "call":
        target = rng.choice(sgs + [Subgraph("extra", [], [], [])])
        if target not in sgs:
            sgs.append(target)
        kind = rng.choice(["CALL_ONCE", "WHILE", "IF"])
        opts = {"CALL_ONCE": ("CallOnceOptions", {"init_subgraph_index": target}),
                "WHILE": ("WhileOptions", {"cond_subgraph_index": target, "body_subgraph_index": target}),
                "IF": ("IfOptions", {"then_subgraph_index": target, "else_subgraph_index": target})}[kind]
        ins = [] if kind == "CALL_ONCE" else [rng.choice(tensors)] if tensors else []
        ops.insert(rng.randrange(len(ops) + 1), Operator(kind, ins, [], options=opts[1], options_type=opts[0]))
        return f"{kind} calling subgraph {sgs.index(target)} inserted into subgraph {sgs.index(sg)}"
    if choice == "custom_options":
        customs = [op for op in ops if op.type == "CUSTOM"]
        if customs:
            op = rng.choice(customs)
            from flatbuffers import flexbuffers
            r = rng.random()
            if r < 0.4:
                op.custom_options = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 24)))
            else:
                d = {"axis": _pick_int(rng), "frames": _pick_int(rng)}
                if rng.random() < 0.2:
                    d.pop(rng.choice(["axis", "frames"]))
                op.custom_options = bytes(flexbuffers.Dumps(d))
            return "custom options of a CUSTOM op replaced"
    if choice == "variable" and tensors:
        t = rng.choice(tensors)
        t.is_variable = not t.is_variable
        return f"is_variable of {t.name!r} flipped"
    if choice == "const_values":
        consts = [t for t in tensors if t.is_constant and t.dtype in ("int32", "int64")]
        if consts:
            t = rng.choice(consts)
            arr = t.data.copy()
            if arr.size:
                arr.flat[rng.randrange(arr.size)] = _pick_int(rng)
                t.buffer = Buffer(arr.tobytes())
                return f"a value of int constant {t.name!r} edited"
    return "no-op"
