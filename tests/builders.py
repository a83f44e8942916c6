"""Small time-series models built in memory with the IR (no TensorFlow), and what streaming them must give.

`conv1d_model` builds a stack of CONV_2D / DEPTHWISE_CONV_2D / AVERAGE_POOL_2D / MAX_POOL_2D layers sliding on
time, in one of two layouts:
  time_on="h": input [1, T, W, C], time on axis 1 (H) everywhere (like ds_cnn_kws);
  time_on="w": input [1, T, C], RESHAPE to [1, 1, T, C] (the batch-1 Keras Conv1D style), time on axis 2 (W).
padding "causal" is an explicit PAD (left, on time) before the layer (for the first layer in "w" layout it
pads the 3-D input before the RESHAPE, as Keras does), "same" is SAME in the options, "valid" VALID.
Heads: "mean" (MEAN over time + FULLY_CONNECTED), "flatten_fc" (RESHAPE + FULLY_CONNECTED), "reduce_max"
(REDUCE_MAX over time), "none" (the per-frame output, RESHAPEd back to [1, L, C] in the "w" layout).

`stream_facts` computes, independently of xstream and from STREAMING.md alone, what a conversion of such a
model must report: refused or not (and why), contract, minimum hop, offset D, warm-up and minimum state bytes.

`mixconv_model` builds a MixConv (split on channels, a depthwise conv per kernel size, concat).

`GraphBuilder` is a tiny helper to write arbitrary float32 graphs op by op (for refusal tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from xstream.ir import PADDING_SAME, PADDING_VALID, Buffer, Model, Operator, Quantization, Subgraph, Tensor

KINDS = ("conv", "depthwise", "avgpool", "maxpool")
PADDINGS = ("valid", "causal", "same")
HEADS = ("mean", "flatten_fc", "reduce_max", "none")

_OP = {"conv": "CONV_2D", "depthwise": "DEPTHWISE_CONV_2D", "avgpool": "AVERAGE_POOL_2D",
       "maxpool": "MAX_POOL_2D"}
_ACT = {None: 0, "relu": 1, "relu6": 3}


class WindowTooShort(ValueError):
    """The layers leave no frame on time (or no frame for the head)."""


# ---------------------------------------------------------------------------------------------------------
# Layer arithmetic (TFLite semantics)


def receptive_field(layer: dict) -> int:
    return layer.get("dilation", 1) * (layer.get("kernel", 1) - 1) + 1


def _norm(layer: dict) -> dict:
    out = {"kind": layer.get("kind", "conv"), "kernel": int(layer.get("kernel", 1)),
           "stride": int(layer.get("stride", 1)), "dilation": int(layer.get("dilation", 1)),
           "padding": layer.get("padding", "valid"), "filters": layer.get("filters"),
           "kernel_w": int(layer.get("kernel_w", 1)), "depth_multiplier": int(layer.get("depth_multiplier", 1)),
           "act": layer.get("act")}
    if out["kind"] not in KINDS:
        raise ValueError(f"unknown layer kind {out['kind']!r}")
    if out["padding"] not in PADDINGS:
        raise ValueError(f"unknown padding {out['padding']!r}")
    if out["kind"] in ("avgpool", "maxpool"):
        out["dilation"] = 1  # pools have no dilation in TFLite
    return out


def same_total_padding(L: int, kernel: int, stride: int, dilation: int) -> int:
    """Frames TFLite's SAME padding adds on an axis of length L (before + after)."""
    rf = dilation * (kernel - 1) + 1
    return max((math.ceil(L / stride) - 1) * stride + rf - L, 0)


# ---------------------------------------------------------------------------------------------------------
# Quantisation helpers


def _act_quant(rng) -> Quantization:
    return Quantization(scale=np.array([rng.uniform(0.05, 0.1)], np.float32),
                        zero_point=np.array([int(rng.integers(-10, 11))], np.int64))


def _copy_q(q: Quantization | None) -> Quantization | None:
    if q is None:
        return None
    return Quantization(scale=None if q.scale is None else q.scale.copy(),
                        zero_point=None if q.zero_point is None else q.zero_point.copy(),
                        quantized_dimension=q.quantized_dimension)


def _const(name: str, arr: np.ndarray, dtype: str, quant: Quantization | None = None) -> Tensor:
    arr = np.ascontiguousarray(arr)
    return Tensor(name, dtype, tuple(int(d) for d in arr.shape), buffer=Buffer(arr.tobytes()), quantization=quant)


def _ints(name: str, values) -> Tensor:
    return _const(name, np.asarray(values, np.int32), "int32")


def _weights(name: str, w: np.ndarray, dtype: str, qdim: int) -> Tensor:
    """float32 weights, or int8 symmetric per-channel along `qdim`."""
    if dtype == "float32":
        return _const(name, w.astype(np.float32), "float32")
    axes = tuple(a for a in range(w.ndim) if a != qdim)
    scale = np.maximum(np.abs(w).max(axis=axes), 1e-6) / 127.0
    shape = [1] * w.ndim
    shape[qdim] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return _const(name, q, "int8", Quantization(scale=scale.astype(np.float32),
                                                 zero_point=np.zeros(len(scale), np.int64),
                                                 quantized_dimension=qdim))


def _bias(name: str, b: np.ndarray, dtype: str, x: Tensor, w: Tensor) -> Tensor:
    if dtype == "float32":
        return _const(name, b.astype(np.float32), "float32")
    in_scale = float(x.quantization.scale[0])
    w_scale = np.asarray(w.quantization.scale, np.float64)  # per-channel (conv) or one scale (FC)
    scale = in_scale * w_scale
    q = np.round(b / np.broadcast_to(scale, b.shape)).astype(np.int32)
    return _const(name, q, "int32", Quantization(scale=scale.astype(np.float32),
                                                  zero_point=np.zeros(len(scale), np.int64),
                                                  quantized_dimension=0))


# ---------------------------------------------------------------------------------------------------------
# The model builder


class _Builder:
    def __init__(self, dtype: str, seed: int):
        if dtype not in ("float32", "int8"):
            raise ValueError(dtype)
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        self.ops: list[Operator] = []
        self.count = 0
        self.int8 = dtype == "int8"
        self.v = 1 if not self.int8 else None  # op versions: what TF's converter writes for int8

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def act(self, shape, like: Tensor | None = None, new_quant: bool = False, base: str = "t") -> Tensor:
        q = None
        if self.int8:
            q = _act_quant(self.rng) if new_quant or like is None else _copy_q(like.quantization)
        return Tensor(self.name(base), self.dtype, tuple(int(d) for d in shape), quantization=q)

    def add(self, op: Operator, int8_version: int = 1) -> Operator:
        op.version = int8_version if self.int8 else 1
        self.ops.append(op)
        return op

    # -- ops ---------------------------------------------------------------------------------------------
    def reshape(self, x: Tensor, shape) -> Tensor:
        y = self.act(shape, like=x, base="reshape")
        self.add(Operator("RESHAPE", [x, _ints(self.name("shape"), list(shape))], [y],
                          options={"new_shape": [int(d) for d in shape]}, options_type="ReshapeOptions"))
        return y

    def pad_time(self, x: Tensor, axis: int, left: int) -> Tensor:
        rows = np.zeros((len(x.shape), 2), np.int32)
        rows[axis, 0] = left
        shape = list(x.shape)
        shape[axis] += left
        y = self.act(shape, like=x, base="pad")
        self.add(Operator("PAD", [x, _const(self.name("paddings"), rows, "int32")], [y], options={},
                          options_type="PadOptions"), int8_version=2)
        return y

    def layer(self, x: Tensor, layer: dict, axis: int) -> Tensor:
        kind, k, s, d = layer["kind"], layer["kernel"], layer["stride"], layer["dilation"]
        kw = layer["kernel_w"]
        pad = PADDING_SAME if layer["padding"] == "same" else PADDING_VALID
        n, H, W, C = x.shape
        h_time = axis == 1
        kh, kww = (k, kw) if h_time else (1, k)
        sh, sw = (s, 1) if h_time else (1, s)
        dh, dw = (d, 1) if h_time else (1, d)

        def olen(L, kk, ss, dd):
            rf = dd * (kk - 1) + 1
            return math.ceil(L / ss) if pad == PADDING_SAME else (L - rf) // ss + 1

        Ho, Wo = olen(H, kh, sh, dh), olen(W, kww, sw, dw)
        if Ho < 1 or Wo < 1:
            raise WindowTooShort(f"{kind} k{k} s{s} d{d} leaves no frame ({H}x{W} -> {Ho}x{Wo})")
        act = _ACT[layer["act"]]
        if kind in ("avgpool", "maxpool"):
            y = self.act((n, Ho, Wo, C), like=x, base=kind)
            self.add(Operator(_OP[kind], [x], [y], options={
                "padding": pad, "stride_w": sw, "stride_h": sh, "filter_width": kww, "filter_height": kh,
                "fused_activation_function": act}, options_type="Pool2DOptions"), int8_version=2)
            return y
        if kind == "conv":
            O = layer["filters"] or C
            fan_in = kh * kww * C
            w = self.rng.standard_normal((O, kh, kww, C)) / math.sqrt(fan_in)
            wt = _weights(self.name("conv_w"), w, self.dtype, 0)
            bt = _bias(self.name("conv_b"), self.rng.normal(0, 0.1, O), self.dtype, x, wt)
            y = self.act((n, Ho, Wo, O), new_quant=True, base="conv")
            self.add(Operator("CONV_2D", [x, wt, bt], [y], options={
                "padding": pad, "stride_w": sw, "stride_h": sh, "fused_activation_function": act,
                "dilation_w_factor": dw, "dilation_h_factor": dh}, options_type="Conv2DOptions"),
                int8_version=3)
            return y
        m = layer["depth_multiplier"]
        O = C * m
        w = self.rng.standard_normal((1, kh, kww, O)) / math.sqrt(kh * kww)
        wt = _weights(self.name("dw_w"), w, self.dtype, 3)
        bt = _bias(self.name("dw_b"), self.rng.normal(0, 0.1, O), self.dtype, x, wt)
        y = self.act((n, Ho, Wo, O), new_quant=True, base="depthwise")
        self.add(Operator("DEPTHWISE_CONV_2D", [x, wt, bt], [y], options={
            "padding": pad, "stride_w": sw, "stride_h": sh, "depth_multiplier": m,
            "fused_activation_function": act, "dilation_w_factor": dw, "dilation_h_factor": dh},
            options_type="DepthwiseConv2DOptions"), int8_version=3)
        return y

    def reduce(self, op_type: str, x: Tensor, axes: list[int]) -> Tensor:
        shape = [d for i, d in enumerate(x.shape) if i not in axes]
        y = self.act(shape, like=x, base=op_type.lower())
        self.add(Operator(op_type, [x, _ints(self.name("axes"), axes)], [y], options={"keep_dims": False},
                          options_type="ReducerOptions"), int8_version=2)
        return y

    def fully_connected(self, x: Tensor, units: int, name: str | None = None) -> Tensor:
        K = x.shape[-1]
        w = self.rng.standard_normal((units, K)) / math.sqrt(K)
        if self.int8:  # per-tensor weights, like TF's converter for FULLY_CONNECTED
            scale = np.float32(np.abs(w).max() / 127.0)
            wt = _const(self.name("fc_w"), np.clip(np.round(w / scale), -127, 127).astype(np.int8), "int8",
                        Quantization(scale=np.array([scale], np.float32), zero_point=np.array([0], np.int64)))
        else:
            wt = _const(self.name("fc_w"), w.astype(np.float32), "float32")
        bt = _bias(self.name("fc_b"), self.rng.normal(0, 0.1, units), self.dtype, x, wt)
        y = self.act((x.shape[0], units), new_quant=True, base="fc")
        if name:
            y.name = name
        self.add(Operator("FULLY_CONNECTED", [x, wt, bt], [y], options={
            "fused_activation_function": 0, "weights_format": 0, "keep_num_dims": False,
            "asymmetric_quantize_inputs": False}, options_type="FullyConnectedOptions"), int8_version=4)
        return y


def conv1d_model(T: int, C_in: int, layers: list[dict], head: str = "mean", dtype: str = "float32",
                 time_on: str = "h", seed: int = 0, width: int = 1, units: int = 4,
                 input_name: str = "frames", output_name: str = "scores", validate: bool = True) -> Model:
    """A streaming-candidate model (see the module docstring). Raises WindowTooShort if no frame is left.

    With `validate` the model is serialised and invoked once in LiteRT (AssertionError if it does not run or its
    output shape is not the one built)."""
    if time_on not in ("h", "w"):
        raise ValueError(time_on)
    if head not in HEADS:
        raise ValueError(head)
    if time_on == "w" and width != 1:
        raise ValueError("width is for time_on='h' only")
    layers = [_norm(l) for l in layers]
    if time_on == "w" and any(l["kernel_w"] != 1 for l in layers):
        raise ValueError("kernel_w is for time_on='h' only (in 'w' the kernel runs along time)")
    b = _Builder(dtype, seed)
    if time_on == "h":
        x_in = b.act((1, T, width, C_in), new_quant=True, base="in")
        axis = 1
        cur = x_in
    else:
        x_in = b.act((1, T, C_in), new_quant=True, base="in")
        axis = 2
        cur = x_in
    x_in.name = input_name
    for i, layer in enumerate(layers):
        p = receptive_field(layer) - 1 if layer["padding"] == "causal" else 0
        if time_on == "w" and i == 0:
            if p:  # Keras: PAD the [1, T, C] input, then RESHAPE to [1, 1, T + p, C]
                cur = b.pad_time(cur, 1, p)
            cur = b.reshape(cur, (1, 1, cur.shape[1], cur.shape[2]))
        elif p:
            cur = b.pad_time(cur, axis, p)
        cur = b.layer(cur, layer, axis)
    if time_on == "w" and not layers:
        cur = b.reshape(cur, (1, 1, cur.shape[1], cur.shape[2]))
    if head == "mean":
        out = b.fully_connected(b.reduce("MEAN", cur, [1, 2]), units, output_name)
    elif head == "reduce_max":
        out = b.reduce("REDUCE_MAX", cur, [1, 2])
        out.name = output_name
    elif head == "flatten_fc":
        flat = b.reshape(cur, (1, int(np.prod(cur.shape[1:]))))
        out = b.fully_connected(flat, units, output_name)
    else:
        out = b.reshape(cur, (1, cur.shape[2], cur.shape[3])) if time_on == "w" else cur
        out.name = output_name
    sg = Subgraph(name="main", inputs=[x_in], outputs=[out], operators=b.ops)
    model = Model(subgraphs=[sg], description="tests/builders.py")
    if validate:
        assert_runs(model)
    return model


def assert_runs(model: Model) -> None:
    """LiteRT loads, allocates and invokes `model` on zeros, and gives the outputs the shapes the IR says."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    import xstream
    it = Interpreter(model_content=xstream.serialize(model),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    for d, t in zip(it.get_input_details(), model.main.inputs):
        it.set_tensor(d["index"], np.zeros(t.shape, np.dtype(t.dtype)))
    it.invoke()
    got = [tuple(int(v) for v in it.get_tensor(d["index"]).shape) for d in it.get_output_details()]
    assert got == [tuple(t.shape) for t in model.main.outputs], (got, [t.shape for t in model.main.outputs])


# ---------------------------------------------------------------------------------------------------------
# What STREAMING.md says a conversion of conv1d_model(...) must report, computed independently of xstream


@dataclass
class StreamFacts:
    """STREAMING.md applied by hand to a conv1d_model; the hop-dependent parts are methods."""

    window: int
    contract: str = "window-exact"
    min_hop: int = 1
    window_offset: int = 0  # D before any input delay: T - 1 - (input frame the last output frame ends on)
    same_op: int | None = None  # first operator with SAME padding that pads time
    edges: bool = False  # the model pads time on both sides: every padding is a window edge, recomputed
    avg_same_op: int | None = None  # an average pool that pads time and its other axis SAME (refused)
    pads: list[tuple] = field(default_factory=list)  # causal PADs: (op index, on the raw input?, first_end, S)
    layer_lengths: list[int] = field(default_factory=list)
    input_frame_bytes: int = 0
    global_head: bool = False  # a layer with one output frame read the whole axis: nothing after it has time
    head: str = "mean"

    @property
    def per_frame_output(self) -> bool:
        """The model output still has time (head "none"): the streaming output has hop / stride frames."""
        return self.head == "none" and not self.global_head
    # one entry per buffered tensor: (history frames a slider keeps or None for a head, bytes per frame,
    # cumulative stride of the tensor, whole length L for a head, reads the model input?)
    needs: list[tuple] = field(default_factory=list)

    def shift(self, hop: int) -> int:
        """Causal: frames of delay that put the end of the first window on a step boundary."""
        return -(self.window - self.window_offset) % hop if self.contract == "causal" else 0

    def _late(self, hop: int) -> list[tuple]:
        """Causal PADs an input delay cannot serve: zeros stand for the original's padding only where the padded
        frames are the (delayed) input's, or where the stream's frames line up with the original's."""
        return [p for p in self.pads if not p[1] and p[2] != p[3] - 1 - self.shift(hop)]

    def delay(self, hop: int) -> int:
        """Input frames of delay (0 where the heads are delayed instead: a PAD on a computed tensor)."""
        return 0 if self._late(hop) else self.shift(hop)

    def head_delay(self, hop: int) -> int:
        return self.shift(hop) if self._late(hop) else 0

    def offset(self, hop: int) -> int:
        return self.window_offset - self.shift(hop)

    def refusal(self, hop: int) -> tuple[str, int | None] | None:
        """(message fragment, operator index) of the refusal STREAMING.md requires at this hop, or None."""
        if self.avg_same_op is not None:
            return "pads both time and its other axis SAME", self.avg_same_op
        if self.edges:
            return None  # edge recompute streams every SAME or padded stack exactly
        late = self._late(hop)
        for index, raw, first_end, S in late:
            if first_end != S - 1:
                return "causal padding after a strided or valid op", index
        if late:  # the heads read their window `shift` frames back; a per-frame output cannot
            if self.per_frame_output or any(L is not None and self.shift(hop) % S_head
                                            for _, _, S_head, L, _ in self.needs):
                return "the first window", late[0][0]
        return None

    def warmup(self, hop: int) -> int:
        D = self.offset(hop)
        if self.contract == "causal":
            return (self.window - D) // hop - 1
        return max(0, -(-(self.window - D) // hop) - 1)

    def minimum_state_bytes(self, hop: int) -> int:
        """Sliders keep receptive_field - stride frames, heads L - n (STREAMING.md, "State")."""
        total = 0
        for keep, frame_bytes, S, L, _ in self.needs:
            k = keep if L is None else L - hop // S
            total += max(k, 0) * frame_bytes
        return total

    def state_bytes(self, hop: int) -> int:
        """The minimum plus the input delay, which lengthens the model input's buffer."""
        total = 0
        reads_input = False
        for keep, frame_bytes, S, L, on_input in self.needs:
            k = keep if L is None else L - hop // S + self.head_delay(hop) // S
            if on_input:
                k += self.delay(hop)
                reads_input = True
            total += max(k, 0) * frame_bytes
        if not reads_input:
            total += self.delay(hop) * self.input_frame_bytes
        return total


def stream_facts(T: int, C_in: int, layers: list[dict], head: str = "mean", dtype: str = "float32",
                 time_on: str = "h", width: int = 1) -> StreamFacts:
    """What converting conv1d_model(same arguments) must report; raises WindowTooShort like the builder."""
    layers = [_norm(l) for l in layers]
    item = 1 if dtype == "int8" else 4
    L, S, fe = T, 1, 0  # length, cumulative stride, input frame on which frame 0's receptive field ends
    a = b = 0  # frames at the window's front / end that depend on padding (edges)
    W, C = width, C_in
    facts = StreamFacts(T, input_frame_bytes=W * C * item, head=head)
    op_index = 0
    for i, layer in enumerate(layers):
        k, s, d = layer["kernel"], layer["stride"], layer["dilation"]
        rf = d * (k - 1) + 1
        frame_bytes = W * C * item
        has_pad = layer["padding"] == "causal" and rf > 1
        pad_op = None
        if time_on == "w" and i == 0:
            pad_op = 0 if has_pad else None
            op_index += 1 + has_pad  # [PAD] RESHAPE
        elif has_pad:
            pad_op = op_index
            op_index += 1
        pad_left = rf - 1 if has_pad else 0
        if has_pad:
            facts.contract = "causal"
            facts.pads.append((pad_op, i == 0, fe, S))
        total = same_total_padding(L, k, s, d) if layer["padding"] == "same" else 0
        if total and facts.same_op is None:
            facts.same_op = op_index
            facts.edges = True
        if total and layer["kind"] == "avgpool" and time_on == "h" and layer["kernel_w"] > 1 \
                and facts.avg_same_op is None:
            facts.avg_same_op = op_index  # averages over SAME padding on its other axis too: refused
        p = total // 2  # TF's SAME: the smaller half before
        if layer["padding"] == "same":
            Lo = math.ceil(L / s)
        else:
            Lo = (L + pad_left - rf) // s + 1 if L + pad_left >= rf else 0
        if Lo < 1:
            raise WindowTooShort(f"layer {i} leaves no frame")
        Wo = W if layer["padding"] == "same" else W - layer["kernel_w"] + 1
        if Wo < 1:
            raise WindowTooShort(f"layer {i} leaves no column")
        Co = (layer["filters"] or C) if layer["kind"] == "conv" else \
            C * layer["depth_multiplier"] if layer["kind"] == "depthwise" else C
        # Does this slider read the model input itself? (not through the "w" layout's RESHAPE or a causal PAD)
        on_input = i == 0 and not has_pad and time_on == "h"
        if Lo == 1 and not total and (not pad_left or facts.edges):
            # One output frame from the whole input: a global pool written as a pool, i.e. a head that reads
            # all L frames (with edges, of the padded input). Later layers see no time (but must still fit
            # their one frame).
            facts.needs.append((None, frame_bytes, S, L, on_input))
            facts.layer_lengths.append(1)
            L_head, fe_head = L + pad_left, fe - pad_left * S
            facts.window_offset = _edge_offset(facts, T - 1 - fe_head - (L_head - 1 - b) * S, b, S)
            facts.min_hop = S
            facts.global_head = True
            for rest in layers[i + 1:]:
                if rest["padding"] == "valid" and receptive_field(rest) > 1:
                    raise WindowTooShort("a layer after the global pool has no frame to slide over")
                if rest["padding"] != "same" and Wo - rest["kernel_w"] + 1 < 1:
                    raise WindowTooShort("no column")
                Wo = Wo if rest["padding"] == "same" else Wo - rest["kernel_w"] + 1
            return _edge_contract(facts)
        facts.needs.append((rf - s, frame_bytes, S, None, on_input))
        # Output frame j reads padded-input frames j*s - p ... j*s - p + rf - 1; a causal PAD is a left edge too.
        a_in, L_in = a + pad_left, L + pad_left
        a = min(Lo, -(-(a_in + p) // s)) if a_in + p > 0 else 0
        b = max(0, Lo - max(-(-(L_in - b - rf + 1 + p) // s), 0))
        L, S, fe = Lo, S * s, fe - pad_left * S + (rf - 1 - p) * S
        W, C = Wo, Co
        facts.layer_lengths.append(L)
        op_index += 1
    if head in ("mean", "reduce_max", "flatten_fc"):
        facts.needs.append((None, W * C * item, S, L, not layers and time_on == "h"))
    facts.window_offset = _edge_offset(facts, T - 1 - fe - (L - 1 - b) * S, b, S)
    facts.min_hop = S
    return _edge_contract(facts)


def _edge_contract(facts: StreamFacts) -> StreamFacts:
    """With edges, causal PADs are left edges too: the contract is window-exact and nothing is delayed."""
    if facts.edges:
        facts.contract, facts.pads = "window-exact", []
    return facts


def _edge_offset(facts: StreamFacts, last_interior: int, right: int, S: int) -> int:
    """D: the window ends where the last frame read ends (VALID, causal); with a right edge it may not end after
    the newest frame fed, so it moves back by whole frames of the tensor read (the stream's grid)."""
    if facts.edges and right and last_interior > 0:
        return last_interior - S * -(-last_interior // S)
    return last_interior


# ---------------------------------------------------------------------------------------------------------
# Free-form float32 graphs for refusal tests


def mixconv_model(kernels=(3, 7), channels=(8, 8), dtype="int8", T=24, crop="newest", per_tensor=False,
             stride=1, dilation=1, bias=True, concat_order=None, act=0, head="mean", seed=0) -> Model:
    """x [1, T, 1, C] -> SPLIT_V on channels -> DEPTHWISE_CONV_2D k_i (VALID on time) -> crop to the shortest ->
    CONCATENATION on channels -> MEAN over time (head "mean") or nothing (head "none": every frame is an output). `crop`: which frames the crops keep ("newest" or "oldest")."""
    rng = np.random.default_rng(seed)
    C = sum(channels)
    q = (lambda: _act_quant(rng)) if dtype == "int8" else (lambda: None)
    x = Tensor("x", dtype, (1, T, 1, C), quantization=q())
    ops, outs = [], []
    parts = [Tensor(f"part{i}", dtype, (1, T, 1, c), quantization=x.quantization) for i, c in enumerate(channels)]
    ops.append(Operator("SPLIT_V", [x, _ints("sizes", list(channels)), _ints("axis", 3)], parts,
                        options={"num_splits": len(channels)}, options_type="SplitVOptions"))
    y_q = q()
    lengths = [(T - dilation * (k - 1) - 1) // stride + 1 for k in kernels]
    L = min(lengths)
    for i, (k, c, part) in enumerate(zip(kernels, channels, parts)):
        w = _weights(f"w{i}", rng.standard_normal((1, k, 1, c)).astype(np.float32), dtype, 3)
        if per_tensor and dtype == "int8":
            w.quantization.scale = np.array([w.quantization.scale.max()], np.float32)
            w.quantization.zero_point = np.zeros(1, np.int64)
            w.quantization.quantized_dimension = 0
        inputs = [part, w, _bias(f"b{i}", rng.normal(0, 0.1, c).astype(np.float32), dtype, part, w) if bias else None]
        d = Tensor(f"dw{i}", dtype, (1, lengths[i], 1, c), quantization=y_q)
        ops.append(Operator("DEPTHWISE_CONV_2D", inputs, [d], options_type="DepthwiseConv2DOptions", options={
            "padding": PADDING_VALID, "stride_h": stride, "stride_w": 1, "depth_multiplier": 1,
            "dilation_h_factor": dilation, "dilation_w_factor": 1, "fused_activation_function": act}))
        if lengths[i] != L:
            begin = {"newest": lengths[i] - L, "oldest": 0}.get(crop, crop)
            c_out = Tensor(f"crop{i}", dtype, (1, L, 1, c), quantization=y_q)
            ops.append(Operator("STRIDED_SLICE", [d, _ints(f"cb{i}", [0, begin, 0, 0]),
                                                  _ints(f"ce{i}", [1, begin + L, 1, c]), _ints(f"cs{i}", [1] * 4)],
                                [c_out], options={}, options_type="StridedSliceOptions"))
            d = c_out
        outs.append(d)
    order = concat_order or list(range(len(outs)))
    cat = Tensor("cat", dtype, (1, L, 1, sum(channels[i] for i in order)), quantization=y_q)
    ops.append(Operator("CONCATENATION", [outs[i] for i in order], [cat],
                        options={"axis": 3, "fused_activation_function": 0}, options_type="ConcatenationOptions"))
    y = cat
    if head == "mean":
        y = Tensor("y", dtype, (1, cat.shape[3]), quantization=q())
        ops.append(Operator("MEAN", [cat, _ints("mean_axes", [1, 2])], [y], options={"keep_dims": False},
                            options_type="ReducerOptions"))
    sg = Subgraph(name="main", inputs=[x], outputs=[y], operators=ops)
    return Model(subgraphs=[sg], description="tests/test_merge_depthwise.py")


class GraphBuilder:
    """Write a float32 graph op by op: g.op("ADD", [a, b], shape) returns the output tensor."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.ops: list[Operator] = []
        self.inputs: list[Tensor] = []
        self.n = 0

    def _name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def input(self, shape, name: str = "frames", dtype: str = "float32", signature=None) -> Tensor:
        t = Tensor(name, dtype, tuple(shape), shape_signature=None if signature is None else tuple(signature))
        self.inputs.append(t)
        return t

    def const(self, values, dtype: str = "float32", name: str = "c") -> Tensor:
        from xstream.ir import NUMPY_DTYPES
        return _const(self._name(name), np.asarray(values, NUMPY_DTYPES[dtype]), dtype)

    def ints(self, values) -> Tensor:
        return _ints(self._name("ints"), values)

    def random(self, shape) -> Tensor:
        return self.const(self.rng.standard_normal(shape).astype(np.float32) / math.sqrt(np.prod(shape[1:])),
                          name="w")

    def op(self, type_: str, inputs, shape, options=None, options_type=None, dtype: str = "float32",
           outputs: int = 1):
        outs = [Tensor(self._name(type_.lower()), dtype, tuple(shape)) for _ in range(outputs)]
        self.ops.append(Operator(type_, list(inputs), outs, options=dict(options or {}), options_type=options_type))
        return outs[0] if outputs == 1 else outs

    def conv(self, x: Tensor, kernel: int, filters: int | None = None, axis: int = 2, padding: str = "valid",
             stride: int = 1, dilation: int = 1) -> Tensor:
        """CONV_2D sliding on axis 1 (H) or 2 (W) of an NHWC tensor."""
        n, H, W, C = x.shape
        O = filters or C
        kh, kw = (kernel, 1) if axis == 1 else (1, kernel)
        rf = dilation * (kernel - 1) + 1
        L = x.shape[axis]
        Lo = math.ceil(L / stride) if padding == "same" else (L - rf) // stride + 1
        shape = [n, H, W, O]
        shape[axis] = Lo
        w = self.random((O, kh, kw, C))
        b = self.const(self.rng.normal(0, 0.1, O).astype(np.float32), name="b")
        opts = {"padding": PADDING_SAME if padding == "same" else PADDING_VALID,
                "stride_h": stride if axis == 1 else 1, "stride_w": stride if axis == 2 else 1,
                "dilation_h_factor": dilation if axis == 1 else 1, "dilation_w_factor": dilation if axis == 2 else 1,
                "fused_activation_function": 0}
        return self.op("CONV_2D", [x, w, b], shape, opts, "Conv2DOptions")

    def reshape(self, x: Tensor, shape) -> Tensor:
        return self.op("RESHAPE", [x, self.ints(list(shape))], shape, {"new_shape": list(shape)}, "ReshapeOptions")

    def reduce(self, type_: str, x: Tensor, axes, keep_dims: bool = False) -> Tensor:
        shape = [1 if i in axes else d for i, d in enumerate(x.shape)] if keep_dims else \
            [d for i, d in enumerate(x.shape) if i not in axes]
        return self.op(type_, [x, self.ints(list(axes))], shape, {"keep_dims": keep_dims}, "ReducerOptions")

    def fc(self, x: Tensor, units: int) -> Tensor:
        w = self.random((units, x.shape[-1]))
        b = self.const(np.zeros(units, np.float32), name="b")
        return self.op("FULLY_CONNECTED", [x, w, b], (x.shape[0], units),
                       {"fused_activation_function": 0, "keep_num_dims": False}, "FullyConnectedOptions")

    def model(self, outputs) -> Model:
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        sg = Subgraph(name="main", inputs=list(self.inputs), outputs=list(outputs), operators=list(self.ops))
        return Model(subgraphs=[sg], description="tests/builders.py GraphBuilder")
