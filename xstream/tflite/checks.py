"""Graph-level checks on a freshly read model; the reader calls `check_model` before handing the model out.

The reader has already checked every offset and index; these checks need the whole graph: constant buffers
against shape x dtype, quantization parameters against the shape, operators that write the same tensor or a
constant, dangling tensors (read but never written), operators out of execution order or in a cycle, model
inputs and outputs with an empty dimension, subgraph calls that recurse, and the total size of the activations.
Each failure is a ModelReadError naming the subgraph, operator and tensor (by index and name).
"""

from __future__ import annotations

from ..errors import ModelReadError
from ..ir import NUMPY_DTYPES, Model, Operator, Subgraph, Tensor
from .limits import MAX_ACTIVATION_BYTES, MAX_CALL_DEPTH

# Element types whose constants have a fixed size per element; int4 may be stored packed (two per byte).
_FIXED_BYTES = {name: dt.itemsize for name, dt in NUMPY_DTYPES.items()}
_FIXED_BYTES["bfloat16"] = 2
_PACKED_4BIT = {"int4", "uint4"}
RING_BUFFER = "RING_BUFFER"  # xstream's custom op (docs/RING_BUFFER.md)
# Option fields whose values the schema constrains for every op that has them (not the StableHLO vectors).
_AT_LEAST_ONE = {"stride_h", "stride_w", "stride_d", "dilation_h_factor", "dilation_w_factor", "dilation_d_factor",
                 "filter_height", "filter_width"}
_ENUMS = {"padding": {0: "SAME", 1: "VALID"},
          "fused_activation_function": {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH",
                                        5: "SIGN_BIT"}}
MAX_RING_BUFFER_OPTIONS = 1024


def _elements(t: Tensor) -> int:
    n = 1
    for d in t.shape:
        n *= int(d)
    return n


def _dims(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


class _Checker:
    def __init__(self, model: Model, sg_tensors: list[list[Tensor]], name: str):
        self.model = model
        self.sg_tensors = sg_tensors
        self.name = name

    def fail(self, where: str, what: str):
        raise ModelReadError(f"{self.name}: {where}: {what}")

    def run(self) -> None:
        activation_bytes = 0
        for i, (sg, tensors) in enumerate(zip(self.model.subgraphs, self.sg_tensors)):
            index = {id(t): k for k, t in enumerate(tensors)}

            def label(t: Tensor) -> str:
                return f"tensor {index[id(t)]} {t.name!r}"

            for k, t in enumerate(tensors):
                self._tensor(t, f"subgraph {i} tensor {k} {t.name!r}")
                if not t.is_constant:
                    activation_bytes += _elements(t) * _FIXED_BYTES.get(t.dtype, 1)
            self._graph(sg, f"subgraph {i}", label)
            if i == 0:
                for what, ts in (("input", sg.inputs), ("output", sg.outputs)):
                    for t in ts:
                        if any(d == 0 for d in t.shape):
                            self.fail("subgraph 0", f"{what} {label(t)} has shape {_dims(t.shape)} with a zero "
                                                    f"dimension (an empty model {what})")
        if activation_bytes > MAX_ACTIVATION_BYTES:
            self.fail("model", f"the non-constant tensors need {activation_bytes} bytes together (more than "
                               f"{MAX_ACTIVATION_BYTES})")
        self._calls()

    def _tensor(self, t: Tensor, where: str) -> None:
        n = _elements(t)
        if t.is_constant:
            got = len(t.buffer.data)
            if t.dtype in _FIXED_BYTES:
                want = n * _FIXED_BYTES[t.dtype]
                if got != want:
                    self.fail(where, f"constant {t.dtype}{_dims(t.shape)} needs {want} bytes but its buffer "
                                     f"holds {got}")
            elif t.dtype in _PACKED_4BIT:
                if got not in (n, (n + 1) // 2):
                    self.fail(where, f"constant {t.dtype}{_dims(t.shape)} needs {(n + 1) // 2} bytes (packed) or "
                                     f"{n} but its buffer holds {got}")
        q = t.quantization
        if q is None or q.scale is None or q.zero_point is None:
            return
        ns, nz = len(q.scale), len(q.zero_point)
        if ns != nz:
            self.fail(where, f"quantization has {ns} scale values and {nz} zero points (they must be as many)")
        if ns > 1:
            rank = len(t.shape)
            if not 0 <= q.quantized_dimension < rank:
                self.fail(where, f"quantized_dimension {q.quantized_dimension} is out of range for shape "
                                 f"{_dims(t.shape)}")
            if ns != t.shape[q.quantized_dimension]:
                self.fail(where, f"quantization has {ns} scale values but dimension {q.quantized_dimension} of "
                                 f"shape {_dims(t.shape)} has {t.shape[q.quantized_dimension]} entries")

    def _graph(self, sg: Subgraph, where: str, label) -> None:
        writer: dict[int, int] = {}
        sg_inputs = {id(t) for t in sg.inputs}

        def op_where(k: int, op: Operator) -> str:
            return f"{where} operator {k} ({op.kind!r})" if op.type == "CUSTOM" else f"{where} operator {k} ({op.type})"

        for k, op in enumerate(sg.operators):
            for t in op.outputs:
                if id(t) in writer:
                    j = writer[id(t)]
                    if j == k:
                        self.fail(op_where(k, op), f"lists output {label(t)} twice")
                    self.fail(op_where(k, op), f"writes {label(t)}, which operator {j} already writes")
                if id(t) in sg_inputs:
                    self.fail(op_where(k, op), f"writes {label(t)}, which is an input of the subgraph")
                if t.is_constant:
                    self.fail(op_where(k, op), f"writes {label(t)}, which is a constant")
                if t.is_variable and op.type != "CUSTOM":  # custom kernels (TFLM's CIRCULAR_BUFFER) may own one
                    self.fail(op_where(k, op), f"writes {label(t)}, which is marked as a variable (builtin "
                                               "operators update variable tensors in place through their inputs, "
                                               "never as outputs)")
                writer[id(t)] = k
            if op.type == "CUSTOM" and op.custom_code == RING_BUFFER:
                self._ring_buffer(op, op_where(k, op), label)
            if op.type == "GATHER":
                self._gather(op, op_where(k, op), label)
            self._options(op, op_where(k, op))

        def available(t: Tensor) -> bool:
            """Has a value without any operator writing it."""
            return id(t) in sg_inputs or t.is_constant or t.is_variable or _elements(t) == 0

        for k, op in enumerate(sg.operators):
            for t in op.inputs:
                if t is None:
                    continue
                j = writer.get(id(t))
                if j is None:
                    if not available(t):
                        self.fail(op_where(k, op), f"reads {label(t)}, which is dangling: no operator writes it and "
                                                   "it is not a subgraph input, a constant or a variable")
                elif j >= k:
                    cycle = self._cycle(sg, writer)
                    if cycle:
                        self.fail(where, "operators form a cycle: " + " -> ".join(
                            f"{c} ({sg.operators[c].kind})" for c in cycle))
                    self.fail(op_where(k, op), f"reads {label(t)} before operator {j} "
                                               f"({sg.operators[j].kind}) writes it; operators must be stored "
                                               "in execution order")
        for t in sg.outputs:
            if id(t) not in writer and not available(t):
                self.fail(where, f"output {label(t)} is dangling: no operator writes it and it is not a subgraph "
                                 "input, a constant or a variable")

    def _options(self, op: Operator, where: str) -> None:
        for options_type, values in ((op.options_type, op.options), (op.options2_type, op.options2)):
            for key, v in values.items():
                if type(v) is not int:
                    continue
                if key in _AT_LEAST_ONE and v < 1:
                    self.fail(where, f"{options_type} {key} is {v}; it must be at least 1")
                if key in _ENUMS and v not in _ENUMS[key]:
                    allowed = ", ".join(f"{name} {code}" for code, name in _ENUMS[key].items())
                    self.fail(where, f"{options_type} {key} is {v}; it must be one of {allowed}")

    def _gather(self, op: Operator, where: str, label) -> None:
        """Constant indices inside the axis they pick from: LiteRT refuses others at invoke, TFLite Micro reads
        outside the tensor."""
        if len(op.inputs) < 2 or op.inputs[0] is None or op.inputs[1] is None or not op.inputs[1].is_constant:
            return
        x, idx = op.inputs[0], op.inputs[1]
        if idx.dtype not in ("int32", "int64") or not x.shape:
            return
        axis = op.options.get("axis", 0)
        if type(axis) is not int or not -len(x.shape) <= axis < len(x.shape):
            self.fail(where, f"axis {axis} is out of range for input {label(x)} of shape {_dims(x.shape)}")
        size = x.shape[axis]
        bad = [int(v) for v in idx.data.reshape(-1) if not 0 <= int(v) < size] if size > 0 else []
        if bad:
            self.fail(where, f"index {bad[0]} is outside axis {axis} of input {label(x)} of shape "
                             f"{_dims(x.shape)}")

    def _ring_buffer(self, op: Operator, where: str, label) -> None:
        """xstream's own custom op must match docs/RING_BUFFER.md, or lowering and verify would trust garbage."""
        from flatbuffers import flexbuffers

        if len(op.inputs) != 1 or len(op.outputs) != 1 or op.inputs[0] is None:
            self.fail(where, f"has {len(op.inputs)} input(s) and {len(op.outputs)} output(s); RING_BUFFER takes "
                             "one input and one output")
        raw = op.custom_options or b""
        if len(raw) > MAX_RING_BUFFER_OPTIONS:
            self.fail(where, f"custom options are {len(raw)} bytes; a RING_BUFFER's are a small FlexBuffer map")
        try:
            opts = flexbuffers.Loads(raw)
            axis, frames = opts["axis"], opts["frames"]
        except Exception:  # flexbuffers raises many types on garbage
            opts = None
        if opts is None or not isinstance(opts, dict) or type(axis) is not int or type(frames) is not int:
            self.fail(where, "custom options are not a FlexBuffer map with integer axis and frames")
        x, y = op.inputs[0], op.outputs[0]
        if not 0 <= axis < len(x.shape):
            self.fail(where, f"axis {axis} is out of range for input {label(x)} of shape {_dims(x.shape)}")
        if frames < 1:
            self.fail(where, f"frames is {frames}; it must be at least 1")
        want = tuple(frames if i == axis else d for i, d in enumerate(x.shape))
        if tuple(y.shape) != want or y.dtype != x.dtype:
            self.fail(where, f"output {label(y)} is {y.dtype}{_dims(y.shape)} but input {x.dtype}{_dims(x.shape)} "
                             f"with frames={frames} on axis {axis} gives {x.dtype}{_dims(want)}")

    @staticmethod
    def _cycle(sg: Subgraph, writer: dict[int, int]) -> list[int] | None:
        """A cycle of operator indices (first repeated at the end), or None; iterative DFS."""
        ops = sg.operators
        deps = [sorted({writer[id(t)] for t in op.inputs if t is not None and id(t) in writer}) for op in ops]
        state = [0] * len(ops)  # 0 new, 1 on the stack, 2 done
        for root in range(len(ops)):
            if state[root]:
                continue
            stack = [(root, iter(deps[root]))]
            path = [root]
            state[root] = 1
            while stack:
                node, it = stack[-1]
                for d in it:
                    if state[d] == 1:
                        # path holds the chain of readers; reverse it into producer -> consumer order
                        cyc = path[path.index(d):]
                        return list(reversed(cyc)) + [cyc[-1]]
                    if state[d] == 0:
                        state[d] = 1
                        stack.append((d, iter(deps[d])))
                        path.append(d)
                        break
                else:
                    stack.pop()
                    path.pop()
                    state[node] = 2
        return None

    def _calls(self) -> None:
        """Subgraph calls (CALL_ONCE, IF, WHILE, ...) must not recurse and must not nest absurdly deep."""

        sgs = self.model.subgraphs
        sg_index = {id(s): i for i, s in enumerate(sgs)}
        calls: list[list[tuple[int, int, str, str]]] = []  # per subgraph: (callee, op index, op type, field)
        for sg in sgs:
            out = []
            for k, op in enumerate(sg.operators):
                for opts in (op.options, op.options2):
                    for field, v in opts.items():
                        if isinstance(v, Subgraph):
                            out.append((sg_index[id(v)], k, op.type, field))
            calls.append(out)
        if not any(calls):
            return
        depth = [0] * len(sgs)
        state = [0] * len(sgs)
        for root in range(len(sgs)):
            if state[root]:
                continue
            stack = [(root, iter(calls[root]))]
            state[root] = 1
            while stack:
                node, it = stack[-1]
                for callee, k, op_type, field in it:
                    if state[callee] == 1:
                        chain = [s for s, _ in stack]
                        cyc = chain[chain.index(callee):] + [callee]
                        self.fail(f"subgraph {node} operator {k} ({op_type})",
                                  f"{field} calls subgraph {callee}, which is already running: subgraph calls form "
                                  "a cycle " + " -> ".join(map(str, cyc)))
                    if state[callee] == 0:
                        state[callee] = 1
                        stack.append((callee, iter(calls[callee])))
                        break
                else:
                    stack.pop()
                    state[node] = 2
                    depth[node] = 1 + max((depth[c] for c, *_ in calls[node]), default=0)
                    if depth[node] > MAX_CALL_DEPTH:
                        self.fail(f"subgraph {node}", f"subgraph calls nest {depth[node]} deep (more than "
                                                      f"{MAX_CALL_DEPTH})")


def check_model(model: Model, sg_tensors: list[list[Tensor]], name: str) -> None:
    """Raise ModelReadError on the first problem found; `sg_tensors` are each subgraph's tensors in file order."""
    _Checker(model, sg_tensors, name).run()
