"""What each operator does, in one table: how it treats time, its output shape, its cost, its side effects.

Every module that asks "what kind of op is this?" asks here (analysis, shape resolution, folding passes, cost,
inspect, cleanup). Teaching xstream a new op is one row below; a new cost formula is one function in COST_RULES.

Families (how an op treats the time axis; the analysis has one handler per family):
- `slide`: slides a window along its spatial axes (convolutions, pools): needs history in a stream;
- `unary`: element by element, one input on the time path (activations, casts, quantize);
- `binary`: element by element over broadcast inputs (merges of branches, residual adds);
- `last_axis`: normalises over the last axis (softmax): per frame unless time is the last axis;
- `reduce`: reduces over constant axes (MEAN...): a head when time is among them;
- `reshape`: reshapes (time stays an axis, or is flattened into a head);
- `state`: keeps state across invokes (resource variables, streaming custom ops): the model already streams;
- `control`: calls subgraphs;
- any other family names one handler of its own (`pad`, `crop`, `concat`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SLIDE = "slide"
UNARY = "unary"
BINARY = "binary"
LAST_AXIS = "last_axis"
REDUCE = "reduce"
RESHAPE = "reshape"
STATE = "state"
CONTROL = "control"


@dataclass(frozen=True)
class OpInfo:
    name: str
    family: str  # how it treats time (module doc); "" for ops xstream cannot follow time through
    shape: str | None = None  # shape rule: "same" (as input 0) or "broadcast" (of all inputs); None: op-specific
    cost: str | None = None  # key of COST_RULES; None: data movement, counted as nothing
    per_row: bool = False  # acts on each row of a leading axis alone (folds unrolled per-frame loops)
    side_effects: bool = False  # keep even when nothing reads its outputs
    kernel: str | None = None  # slide: where the window comes from: "weights" (shape of input 1) or "filter"
    calls: tuple[str, ...] = ()  # control: the options that name called subgraphs


TABLE: dict[str, OpInfo] = {}


def _rows(names: str, family: str, **kw) -> None:
    for name in names.split():
        TABLE[name] = OpInfo(name, family, **kw)


_rows("CONV_2D", SLIDE, kernel="weights", cost="conv_2d")
_rows("DEPTHWISE_CONV_2D", SLIDE, kernel="weights", cost="depthwise_conv_2d")
_rows("AVERAGE_POOL_2D MAX_POOL_2D L2_POOL_2D", SLIDE, kernel="filter", cost="pool")
_rows("RELU RELU6 RELU_N1_TO_1 RELU_0_TO_1 LOGISTIC TANH HARD_SWISH LEAKY_RELU ELU GELU QUANTIZE DEQUANTIZE CAST "
      "ABS NEG SQRT RSQRT EXP LOG SQUARE SIN COS FLOOR CEIL ROUND SIGN LOGICAL_NOT ZEROS_LIKE ONES_LIKE",
      UNARY, shape="same", cost="elementwise", per_row=True)
_rows("ADD SUB MUL DIV MAXIMUM MINIMUM SQUARED_DIFFERENCE POW PRELU FLOOR_DIV FLOOR_MOD LESS GREATER EQUAL "
      "NOT_EQUAL LESS_EQUAL GREATER_EQUAL LOGICAL_AND LOGICAL_OR SELECT SELECT_V2 ADD_N",
      BINARY, shape="broadcast", cost="elementwise", per_row=True)
_rows("SOFTMAX LOG_SOFTMAX L2_NORMALIZATION", LAST_AXIS, shape="same", cost="elementwise", per_row=True)
_rows("MEAN SUM REDUCE_MAX REDUCE_MIN REDUCE_PROD REDUCE_ANY REDUCE_ALL", REDUCE, cost="reduce")
_rows("RESHAPE EXPAND_DIMS SQUEEZE", RESHAPE)
_rows("VAR_HANDLE", STATE, side_effects=True)
_rows("READ_VARIABLE", STATE)
_rows("ASSIGN_VARIABLE", STATE, side_effects=True)
_rows("RING_BUFFER CIRCULAR_BUFFER", STATE, side_effects=True)  # custom ops, by custom code
_rows("CALL_ONCE", CONTROL, side_effects=True, calls=("init_subgraph_index",))
_rows("IF", CONTROL, side_effects=True, calls=("then_subgraph_index", "else_subgraph_index"))
_rows("WHILE", CONTROL, side_effects=True, calls=("cond_subgraph_index", "body_subgraph_index"))
_rows("CALL", CONTROL, side_effects=True, calls=("subgraph",))
_rows("FULLY_CONNECTED", "fully_connected", cost="fully_connected", per_row=True)
_rows("BATCH_MATMUL", "batch_matmul", cost="batch_matmul")
_rows("SHAPE", "shape")
_rows("CONCATENATION", "concatenation")
_rows("PACK", "pack")
_rows("TRANSPOSE", "transpose")
_rows("PAD PADV2 MIRROR_PAD", "pad")
_rows("STRIDED_SLICE", "strided_slice")
_rows("SLICE", "slice")
_rows("SPLIT SPLIT_V UNPACK", "split")
_rows("GATHER", "gather")
_rows("CONV_3D", "", cost="conv_3d")
_rows("TRANSPOSE_CONV", "", cost="transpose_conv")
_rows("SPACE_TO_BATCH_ND BATCH_TO_SPACE_ND", "")

_UNKNOWN = OpInfo("", "")


def info(op) -> OpInfo:
    """The row of an Operator (a custom op by its custom code), or an empty row for ops not in the table."""
    key = op.custom_code if op.type == "CUSTOM" and op.custom_code else op.type
    row = TABLE.get(key)
    if row is None and op.type == "CUSTOM":
        return OpInfo(key, "", side_effects=True)  # an unknown custom op may keep state
    return row or _UNKNOWN


def family(op) -> str:
    return info(op).family


def names(family_: str) -> frozenset[str]:
    """Every op type of a family."""
    return frozenset(n for n, row in TABLE.items() if row.family == family_)


def is_pool(op) -> bool:
    return info(op).kernel == "filter"


# -- cost rules: one invoke of the op, from its input and output shapes ---------------------------------------


def _elems(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _weights(ins, rank: int):
    w = ins[1] if len(ins) > 1 else None
    return w if w is not None and len(w) == rank else None  # another rank: a malformed model, count nothing


def _conv_2d(op, ins, outs):
    w = _weights(ins, 4)
    return (_elems(outs[0]) * w[1] * w[2] * w[3], 0) if w else (0, 0)


def _depthwise(op, ins, outs):
    w = _weights(ins, 4)
    return (_elems(outs[0]) * w[1] * w[2], 0) if w else (0, 0)


def _conv_3d(op, ins, outs):
    w = _weights(ins, 5)
    return (_elems(outs[0]) * w[0] * w[1] * w[2] * w[3], 0) if w else (0, 0)


def _fully_connected(op, ins, outs):
    w = ins[1] if len(ins) > 1 else None
    return (_elems(outs[0]) * w[-1], 0) if w is not None and len(w) >= 1 else (0, 0)


def _transpose_conv(op, ins, outs):
    if len(ins) > 2 and ins[1] is not None and ins[2] is not None and len(ins[1]) == 4:
        w = ins[1]
        return _elems(ins[2]) * w[1] * w[2] * w[0], 0
    return 0, 0


def _batch_matmul(op, ins, outs):
    if ins[0] is None or len(ins[0]) < 2:
        return 0, 0
    k = ins[0][-2] if op.options.get("adj_x", False) else ins[0][-1]
    return _elems(outs[0]) * k, 0


def _pool(op, ins, outs):
    return 0, _elems(outs[0]) * op.options.get("filter_height", 1) * op.options.get("filter_width", 1)


def _reduce(op, ins, outs):
    return (0, _elems(ins[0])) if ins and ins[0] is not None else (0, 0)


def _elementwise(op, ins, outs):
    return 0, _elems(outs[0])


COST_RULES: dict[str, Callable] = {
    "conv_2d": _conv_2d, "depthwise_conv_2d": _depthwise, "conv_3d": _conv_3d, "fully_connected": _fully_connected,
    "transpose_conv": _transpose_conv, "batch_matmul": _batch_matmul, "pool": _pool, "reduce": _reduce,
    "elementwise": _elementwise,
}
COST_NOTES = ("MACs: CONV_2D out_elems*kh*kw*cin; DEPTHWISE_CONV_2D out_elems*kh*kw; FULLY_CONNECTED out_rows*units*in; "
              "BATCH_MATMUL out_elems*k; TRANSPOSE_CONV in_elems*kh*kw*cout; CONV_3D out_elems*kd*kh*kw*cin. Other "
              "ops: pools one per window element read, reductions one per input element, element-wise ops one per "
              "output element. Data movement counts nothing; fused activations and bias adds are not counted.")


def cost(op, ins: list, outs: list) -> tuple[int, int]:
    """(MACs, other ops) of one invoke of `op` with these input and output shapes (None for an omitted input)."""
    rule = COST_RULES.get(info(op).cost or "")
    if rule is None or not outs:
        return 0, 0
    return rule(op, ins, outs)


# -- options a user reads --------------------------------------------------------------------------------------

PADDING_NAMES = {0: "SAME", 1: "VALID"}


def key_options(op) -> dict:
    """The options that say how an op moves along its axes (kernel, stride, dilation, padding, axis)."""
    o = op.options
    out: dict = {}
    row = info(op)
    if row.kernel == "weights" and len(op.inputs) > 1 and op.inputs[1] is not None \
            and len(op.inputs[1].shape) == 4:
        w = op.inputs[1].shape
        out["kernel"] = [int(w[1]), int(w[2])]
    if row.kernel == "filter":
        out["kernel"] = [o.get("filter_height", 1), o.get("filter_width", 1)]
    if "stride_h" in o:
        out["stride"] = [o["stride_h"], o.get("stride_w", 1)]
    if "dilation_h_factor" in o:
        out["dilation"] = [o["dilation_h_factor"], o.get("dilation_w_factor", 1)]
    if "padding" in o:
        out["padding"] = PADDING_NAMES.get(o["padding"], o["padding"])
    if row.family == REDUCE and len(op.inputs) > 1 and op.inputs[1] is not None and op.inputs[1].is_constant:
        out["axis"] = np.atleast_1d(op.inputs[1].data).tolist()
    if op.type == "CUSTOM" and op.custom_options is not None:
        out["custom_options_bytes"] = len(op.custom_options)
    return out


_SPLIT_SLOTS = {"SPLIT": (1, 0), "SPLIT_V": (0, 2)}  # (data, axis) input slots


def split_slots(op) -> tuple[int, int] | None:
    """(data slot, axis slot) of a SPLIT or SPLIT_V with both inputs present; None for any other op."""
    slots = _SPLIT_SLOTS.get(op.type)
    if slots is None or len(op.inputs) <= max(slots) or any(op.inputs[k] is None for k in slots):
        return None
    return slots
