"""Broken, hostile and huge models: every check of the reader (xstream/reader.py, xstream/validate.py) with the
exact message it gives, and the CLI contract around them (one stderr line, exit codes, atomic output, OUT == IN,
inputs never changed, Ctrl-C, deterministic output).

Corrupt files are made by editing one field of a valid file through the schema (fuzz/layout.py finds where each
field lives), or by building a small graph with the IR and serializing it with the writer.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from flatbuffers import flexbuffers

import xstream
from xstream.tflite import reader, writer
from xstream.cli import main
from xstream.errors import ModelReadError
from xstream.ir import Buffer, Metadata, Model, Operator, Quantization, SignatureDef, Subgraph, Tensor
from helpers import REPO, ZOO, zoo_model

sys.path.insert(0, str(REPO))
from fuzz.layout import walk  # noqa: E402


# ---------------------------------------------------------------------------------------------------------
# Helpers


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _f32(name: str, shape, **kw) -> Tensor:
    return Tensor(name, "float32", tuple(shape), **kw)


def _const(name: str, values, dtype="float32") -> Tensor:
    arr = np.asarray(values, dtype=dtype)
    return Tensor(name, dtype, arr.shape, buffer=Buffer(arr.tobytes()))


def _relu_model() -> Model:
    """x[1,4,2] -> RELU -> y: tensor 0 is x, tensor 1 is y, one operator code, buffer 0 only."""
    x, y = _f32("x", (1, 4, 2)), _f32("y", (1, 4, 2))
    return Model([Subgraph("main", [x], [y], [Operator("RELU", [x], [y])])])


def _add_model() -> Model:
    """x + c -> y, with AddOptions: tensors x 0, c 1, y 2; buffers: 0 sentinel, 1 for c."""
    x, y = _f32("x", (1, 4, 2)), _f32("y", (1, 4, 2))
    c = _const("c", [1.0, 2.0])
    op = Operator("ADD", [x, c], [y], options={"fused_activation_function": 0}, options_type="AddOptions")
    return Model([Subgraph("main", [x], [y], [op])])


def _bytes(model: Model) -> bytes:
    return xstream.serialize(model)


def _patch(data: bytes, path: str, value) -> bytes:
    """Write `value` over the field at schema path `path` (as fuzz/layout.py names it)."""
    locs = [loc for loc in walk(data) if loc.path == path]
    assert locs, f"no field {path}; have e.g. {[loc.path for loc in walk(data)][:40]}"
    loc = locs[0]
    d = bytearray(data)
    if loc.fmt in ("<f", "<d"):
        d[loc.pos:loc.pos + loc.size] = struct.pack(loc.fmt, value)
    else:
        d[loc.pos:loc.pos + loc.size] = (int(value) & ((1 << (8 * loc.size)) - 1)).to_bytes(loc.size, "little")
    return bytes(d)


def _loc(data: bytes, path: str):
    return next(loc for loc in walk(data) if loc.path == path)


def _refused(data: bytes) -> str:
    """The message of the ModelReadError that reading `data` raises (one line, exit code 2)."""
    with pytest.raises(ModelReadError) as info:
        xstream.load(data)
    msg = str(info.value)
    assert "\n" not in msg
    assert info.value.exit_code == 2
    return msg


N = r"\d+"  # an offset or size that depends on the writer's layout


def _match(pattern: str, msg: str) -> None:
    """`pattern` is the exact message with {N} where a layout-dependent number stands."""
    rx = "^" + re.escape(pattern).replace(re.escape("{N}"), N) + "$"
    assert re.match(rx, msg), f"\n  got:  {msg}\n  want: {pattern}"


def test_helpers_build_valid_models():
    for m in (_relu_model(), _add_model()):
        xstream.load(_bytes(m))


# ---------------------------------------------------------------------------------------------------------
# Flatbuffer structure: offsets, vtables, vector lengths, strings


def test_root_offset_outside_file():
    data = bytearray(_bytes(_relu_model()))
    data[0:4] = struct.pack("<I", len(data) + 100)
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: model: Model table at offset {N} (4 bytes) lies "
           "outside the file ({N} bytes)", _refused(bytes(data)))


def test_vtable_offset_outside_file():
    data = _patch(_bytes(_relu_model()), "model.<vtable offset>", -(1 << 30))
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: model: Model vtable at offset {N} (4 bytes) lies "
           "outside the file ({N} bytes)", _refused(data))


def test_negative_vtable_position():
    # A vtable "before" the start of the file: Python would silently read from the end of the buffer.
    data = _bytes(_relu_model())
    root = _loc(data, "model.<vtable offset>").pos
    data = _patch(data, "model.<vtable offset>", root + 8)
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: model: Model vtable at offset -8 (4 bytes) lies "
           "outside the file ({N} bytes)", _refused(data))


def test_invalid_vtable_size():
    data = _patch(_bytes(_relu_model()), "model.<vtable size>", 5)
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: model: Model vtable at offset {N} has an invalid "
           "size of 5 bytes", _refused(data))


def test_table_size_past_end_of_file():
    data = _patch(_bytes(_relu_model()), "model.<table size>", 0xFFFF)
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: model: Model table at offset {N} (65535 bytes) lies "
           "outside the file ({N} bytes)", _refused(data))


def test_field_past_end_of_its_table():
    data = _patch(_bytes(_relu_model()), "model.subgraphs[0].tensors[0].<buffer slot>", 0xFFF0)
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: subgraph 0 tensor 0: field buffer at table offset "
           "65520 (4 bytes) lies past the end of its {N}-byte Tensor table", _refused(data))


def test_vector_length_past_end_of_file():
    data = _patch(_bytes(_relu_model()), "model.subgraphs[0].tensors.<length>", (1 << 31) - 1)
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: subgraph 0: tensors at offset {N} claims 2147483647 "
           "elements (8589934588 bytes) but only {N} bytes follow", _refused(data))


def test_number_vector_length_past_end_of_file():
    data = _patch(_bytes(_relu_model()), "model.subgraphs[0].tensors[0].shape.<length>", 1 << 28)
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: subgraph 0 tensor 0: shape at offset {N} claims "
           "268435456 elements (1073741824 bytes) but only {N} bytes follow", _refused(data))


def test_string_length_past_end_of_file():
    data = _patch(_bytes(_relu_model()), "model.subgraphs[0].tensors[0].name.<length>", 1_000_000)
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: subgraph 0 tensor 0: name at offset {N} claims "
           "1000000 bytes but only {N} follow", _refused(data))


def test_offset_to_outside_the_file():
    data = _patch(_bytes(_relu_model()), "model.subgraphs[0].tensors[1].<offset>", 1 << 30)
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: subgraph 0 tensor 1: Tensor table at offset {N} "
           "(4 bytes) lies outside the file ({N} bytes)", _refused(data))


def test_name_not_utf8():
    data = _bytes(_relu_model())
    at = _loc(data, "model.subgraphs[0].tensors[0].name.<length>").pos + 4
    data = data[:at] + b"\xff" + data[at + 1:]
    assert _refused(data) == "<bytes>: corrupt or truncated TFLite flatbuffer: subgraph 0 tensor 0: name is not " \
                             "valid UTF-8"


def test_truncated_everywhere_is_refused_cleanly():
    data = zoo_model("residual_tdnn_int8").read_bytes()
    for cut in list(range(0, 64)) + list(range(64, len(data), 397)):
        with pytest.raises(ModelReadError):
            xstream.load(data[:cut])


# ---------------------------------------------------------------------------------------------------------
# Indices


def test_opcode_index_out_of_range():
    m = _relu_model()
    y, z = m.main.outputs[0], _f32("z", (1, 4, 2))
    m.main.operators.append(Operator("TANH", [y], [z]))
    m.main.outputs = [z]
    data = _patch(_bytes(m), "model.subgraphs[0].operators[1].opcode_index", 7)
    assert _refused(data) == "<bytes>: subgraph 0 operator 1: opcode index 7 is out of range (there are 2 " \
                             "operator codes)"


@pytest.mark.parametrize("field, value, message", [
    ("model.subgraphs[0].operators[0].inputs[0]", 5,
     "subgraph 0 operator 0 (RELU): input tensor index 5 is out of range (there are 2 tensors)"),
    ("model.subgraphs[0].operators[0].inputs[0]", -2,
     "subgraph 0 operator 0 (RELU): input tensor index -2 is out of range (there are 2 tensors)"),
    ("model.subgraphs[0].operators[0].outputs[0]", -1,
     "subgraph 0 operator 0 (RELU): output tensor index -1 is out of range (there are 2 tensors)"),
    ("model.subgraphs[0].inputs[0]", 9, "subgraph 0: input tensor index 9 is out of range (there are 2 tensors)"),
    ("model.subgraphs[0].outputs[0]", 1 << 30,
     "subgraph 0: output tensor index 1073741824 is out of range (there are 2 tensors)"),
])
def test_index_out_of_range(field, value, message):
    assert _refused(_patch(_bytes(_relu_model()), field, value)) == f"<bytes>: {message}"


def test_buffer_index_out_of_range():
    data = _patch(_bytes(_add_model()), "model.subgraphs[0].tensors[1].buffer", 99)
    assert _refused(data) == "<bytes>: subgraph 0 tensor 1: buffer index 99 is out of range (there are 2 buffers)"


def _control_flow_model(kind: str) -> Model:
    """Subgraph 0 runs a CALL_ONCE / IF / WHILE on subgraph 1 (an identity)."""
    a, b = _f32("a", (1,)), _f32("b", (1,))
    body = Subgraph("body", [a], [b], [Operator("RELU", [a], [b])])
    x, y = _f32("x", (1,)), _f32("y", (1,))
    if kind == "CALL_ONCE":
        ops = [Operator("CALL_ONCE", [], [], options={"init_subgraph_index": body}, options_type="CallOnceOptions"),
               Operator("RELU", [x], [y])]
    elif kind == "IF":
        cond = _const("cond", [True], "bool")
        ops = [Operator("IF", [cond, x], [y], options={"then_subgraph_index": body, "else_subgraph_index": body},
                        options_type="IfOptions")]
    else:
        ops = [Operator("WHILE", [x], [y], options={"cond_subgraph_index": body, "body_subgraph_index": body},
                        options_type="WhileOptions")]
    return Model([Subgraph("main", [x], [y], ops), body])


@pytest.mark.parametrize("kind, options, field", [
    ("CALL_ONCE", "CallOnceOptions", "init_subgraph_index"),
    ("IF", "IfOptions", "then_subgraph_index"),
    ("IF", "IfOptions", "else_subgraph_index"),
    ("WHILE", "WhileOptions", "cond_subgraph_index"),
    ("WHILE", "WhileOptions", "body_subgraph_index"),
])
def test_control_flow_subgraph_index_out_of_range(kind, options, field):
    data = _bytes(_control_flow_model(kind))
    xstream.load(data)
    data = _patch(data, f"model.subgraphs[0].operators[0].builtin_options.{field}", 5)
    assert _refused(data) == f"<bytes>: subgraph 0 operator 0 ({kind}) {options}: {field} 5 is out of range " \
                             "(there are 2 subgraphs)"


def _signature_model() -> Model:
    m = _control_flow_model("CALL_ONCE")
    sg = m.subgraphs[1]  # a signature on subgraph 1, so that no index is 0 (a default the writer leaves out)
    m.signatures = [SignatureDef("body", sg, [("a", sg.inputs[0])], [("b", sg.outputs[0])])]
    m.metadata = [Metadata("min_runtime_version", Buffer(b"1.5.0\0"))]
    return m


@pytest.mark.parametrize("field, value, message", [
    ("model.signature_defs[0].subgraph_index", 3, "signature def 0: subgraph_index 3 is out of range (there are 2 "
                                                  "subgraphs)"),
    ("model.signature_defs[0].outputs[0].tensor_index", 9,
     "signature def 0 outputs 0: tensor_index 9 is out of range (there are 2 tensors)"),
    ("model.metadata[0].buffer", 50, "metadata 0: buffer index 50 is out of range (there are 2 buffers)"),
])
def test_signature_and_metadata_indices(field, value, message):
    data = _bytes(_signature_model())
    xstream.load(data)
    assert _refused(_patch(data, field, value)) == f"<bytes>: {message}"


def test_unknown_operator_code():
    data = _bytes(_relu_model())
    data = _patch(_patch(data, "model.operator_codes[0].builtin_code", 999),
                  "model.operator_codes[0].deprecated_builtin_code", 0)
    assert _refused(data) == "<bytes>: operator code 0: unknown builtin operator code 999 (newer schema?)"


def test_unknown_tensor_type():
    data = _patch(_bytes(_one_tensor_model((1, 4, 2), "int32")), "model.subgraphs[0].tensors[1].type", 99)
    assert _refused(data) == "<bytes>: subgraph 0 tensor 1: unknown tensor type code 99"


def test_unknown_options_type():
    data = _patch(_bytes(_add_model()), "model.subgraphs[0].operators[0].builtin_options_type", 250)
    assert _refused(data) == "<bytes>: subgraph 0 operator 0 (ADD): unknown builtin options type 250"


def test_model_without_subgraph():
    data = _patch(_bytes(_relu_model()), "model.subgraphs.<length>", 0)
    assert _refused(data) == "<bytes>: model: the model has no subgraph"


# ---------------------------------------------------------------------------------------------------------
# Shapes


def _one_tensor_model(shape, dtype="float32", sig=None) -> Model:
    x = Tensor("x", dtype, tuple(shape), shape_signature=sig)
    y = _f32("y", (1, 4, 2))
    return Model([Subgraph("main", [y], [x], [Operator("RELU", [y], [x])])])


def test_negative_dimension():
    data = _patch(_bytes(_relu_model()), "model.subgraphs[0].tensors[0].shape[1]", -3)
    assert _refused(data) == "<bytes>: subgraph 0 tensor 0: negative dimension in shape [1, -3, 2]"


def test_absurd_shape_does_not_allocate():
    data = _bytes(_one_tensor_model((1, 1 << 20, 1 << 20)))
    tracemalloc.start()
    try:
        msg = _refused(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert msg == "<bytes>: subgraph 0 tensor 1: shape [1, 1048576, 1048576] has 1099511627776 elements (more " \
                  "than 268435456)"
    assert peak < 4 << 20, f"reading allocated {peak} bytes"


def test_shape_product_overflowing_int64_is_refused():
    data = _bytes(_one_tensor_model((1 << 31) - 1 for _ in range(6)))
    assert "elements (more than 268435456)" in _refused(data)


def test_shape_too_many_bytes():
    assert _refused(_bytes(_one_tensor_model((1, 1 << 14, 1 << 14), "float64"))) == \
        "<bytes>: subgraph 0 tensor 1: shape [1, 16384, 16384] of float64 needs 2147483648 bytes (more than " \
        "1073741824)"


def test_rank_too_large():
    assert _refused(_bytes(_one_tensor_model([1] * 17))) == \
        "<bytes>: subgraph 0 tensor 1: shape has 17 dimensions (more than 16)"


def test_shape_signature_rank_mismatch():
    assert _refused(_bytes(_one_tensor_model((1, 4, 2), sig=(-1, 4)))) == \
        "<bytes>: subgraph 0 tensor 1: shape_signature [-1, 4] has 2 dimensions but shape [1, 4, 2] has 3"


def test_shape_signature_value_mismatch():
    assert _refused(_bytes(_one_tensor_model((1, 4, 2), sig=(-1, 5, 2)))) == \
        "<bytes>: subgraph 0 tensor 1: shape_signature [-1, 5, 2] does not match shape [1, 4, 2] (each dimension " \
        "must be equal to the shape's, or -1 for unknown)"


def test_zero_dimension_in_model_input():
    data = _patch(_bytes(_relu_model()), "model.subgraphs[0].tensors[0].shape[1]", 0)
    assert _refused(data) == "<bytes>: subgraph 0: input tensor 0 'x' has shape [1, 0, 2] with a zero dimension " \
                             "(an empty model input)"


def test_activations_too_large_together_do_not_allocate():
    big = (1, 1 << 14, 1 << 14)  # 2**28 float32 elements: 1 GiB, the most one tensor may have
    ts = [_f32(f"t{i}", big) for i in range(5)]
    ops = [Operator("RELU", [a], [b]) for a, b in zip(ts, ts[1:])]
    data = _bytes(Model([Subgraph("main", [ts[0]], [ts[-1]], ops)]))
    tracemalloc.start()
    try:
        msg = _refused(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert msg == "<bytes>: model: the non-constant tensors need 5368709120 bytes together (more than 4294967296)"
    assert peak < 4 << 20


# ---------------------------------------------------------------------------------------------------------
# Buffers


def test_constant_buffer_smaller_than_shape():
    m = _add_model()
    m.main.operators[0].inputs[1].buffer = Buffer(b"\0" * 4)
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0 tensor 1 'c': constant float32[2] needs 8 bytes but its " \
                                  "buffer holds 4"


def test_constant_buffer_larger_than_shape():
    m = _add_model()
    m.main.operators[0].inputs[1].buffer = Buffer(b"\0" * 12)
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0 tensor 1 'c': constant float32[2] needs 8 bytes but its " \
                                  "buffer holds 12"


def _with_external_buffers(monkeypatch, model: Model, offset_size) -> bytes:
    """Serialize with every non-empty buffer written as an (offset, size) reference instead of inline data."""
    FbBuffer = writer.FbBuffer

    def write_buffer(self, buf):
        b = self.b
        FbBuffer.Start(b)
        if buf.data:
            off, size = offset_size
            FbBuffer.AddOffset(b, off)
            FbBuffer.AddSize(b, size)
        return FbBuffer.End(b)

    monkeypatch.setattr(writer._Writer, "_write_buffer", write_buffer)
    return xstream.serialize(model)


def test_external_buffer_outside_file(monkeypatch):
    data = _with_external_buffers(monkeypatch, _add_model(), (1_000_000_000, 8))
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: buffer 1: data at offset 1000000000 (8 bytes) lies "
           "outside the file ({N} bytes)", _refused(data))


def test_overlapping_buffers_claiming_more_than_the_file(monkeypatch):
    m = _add_model()
    for i in range(2, 6):  # more constants, each its own buffer, all pointing at the same bytes
        c = _const(f"c{i}", [float(i), 0.0])
        y = _f32(f"y{i}", (1, 4, 2))
        m.main.operators.append(Operator("ADD", [m.main.outputs[0], c], [y], options={"fused_activation_function": 0},
                                         options_type="AddOptions"))
        m.main.outputs = [y]
    n = len(_with_external_buffers(monkeypatch, m, (16, 8)))
    data = _with_external_buffers(monkeypatch, m, (16, n - 16))
    assert len(data) == n
    _match("<bytes>: corrupt or truncated TFLite flatbuffer: buffers: the buffers claim {N} bytes in total, more "
           "than the whole file ({N} bytes): they overlap", _refused(data))


# ---------------------------------------------------------------------------------------------------------
# The graph: dangling tensors, cycles, order, writers


def test_dangling_tensor():
    x, ghost, y = _f32("x", (1, 4, 2)), _f32("ghost", (1, 4, 2)), _f32("y", (1, 4, 2))
    m = Model([Subgraph("main", [x], [y], [Operator("ADD", [x, ghost], [y])])])
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0 operator 0 (ADD): reads tensor 1 'ghost', which is " \
                                  "dangling: no operator writes it and it is not a subgraph input, a constant or a " \
                                  "variable"


def test_dangling_output():
    x, y, z = _f32("x", (1, 4, 2)), _f32("y", (1, 4, 2)), _f32("z", (1, 4, 2))
    m = Model([Subgraph("main", [x], [y, z], [Operator("RELU", [x], [y])])])
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0: output tensor 2 'z' is dangling: no operator writes it " \
                                  "and it is not a subgraph input, a constant or a variable"


def test_cycle():
    x, t1, t2 = _f32("x", (1, 4, 2)), _f32("t1", (1, 4, 2)), _f32("t2", (1, 4, 2))
    ops = [Operator("ADD", [x, t2], [t1]), Operator("RELU", [t1], [t2])]
    m = Model([Subgraph("main", [x], [t1], ops)])
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0: operators form a cycle: 1 (RELU) -> 0 (ADD) -> 1 (RELU)"


def test_operator_reading_its_own_output():
    x, y = _f32("x", (1, 4, 2)), _f32("y", (1, 4, 2))
    m = Model([Subgraph("main", [x], [y], [Operator("ADD", [x, y], [y])])])
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0: operators form a cycle: 0 (ADD) -> 0 (ADD)"


def test_operators_out_of_order():
    x, t1, t2 = _f32("x", (1, 4, 2)), _f32("t1", (1, 4, 2)), _f32("t2", (1, 4, 2))
    ops = [Operator("RELU", [t1], [t2]), Operator("TANH", [x], [t1])]
    m = Model([Subgraph("main", [x], [t2], ops)])
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0 operator 0 (RELU): reads tensor 1 't1' before operator 1 " \
                                  "(TANH) writes it; operators must be stored in execution order"


def test_two_writers():
    x, y = _f32("x", (1, 4, 2)), _f32("y", (1, 4, 2))
    m = Model([Subgraph("main", [x], [y], [Operator("RELU", [x], [y]), Operator("TANH", [x], [y])])])
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0 operator 1 (TANH): writes tensor 1 'y', which operator 0 " \
                                  "already writes"


def test_writes_a_constant():
    x, c = _f32("x", (2,)), _const("c", [1.0, 2.0])
    m = Model([Subgraph("main", [x], [c], [Operator("RELU", [x], [c])])])
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0 operator 0 (RELU): writes tensor 1 'c', which is a constant"


def test_writes_a_subgraph_input():
    x, y = _f32("x", (2,)), _f32("y", (2,))
    m = Model([Subgraph("main", [x, y], [y], [Operator("RELU", [x], [y])])])
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0 operator 0 (RELU): writes tensor 1 'y', which is an input " \
                                  "of the subgraph"


def test_writes_a_variable():
    x, y = _f32("x", (2,)), _f32("y", (2,), is_variable=True)
    m = Model([Subgraph("main", [x], [y], [Operator("RELU", [x], [y])])])
    assert _refused(_bytes(m)) == "<bytes>: subgraph 0 operator 0 (RELU): writes tensor 1 'y', which is marked as " \
                                  "a variable (builtin operators update variable tensors in place through their " \
                                  "inputs, never as outputs)"


def test_custom_op_may_write_a_variable():
    # TFLite Micro's CIRCULAR_BUFFER keeps its state in its (variable) output tensor.
    x, y = _f32("x", (1, 1, 1, 2)), _f32("y", (1, 4, 1, 2), is_variable=True)
    m = Model([Subgraph("main", [x], [y], [Operator("CUSTOM", [x], [y], custom_code="CIRCULAR_BUFFER")])])
    xstream.load(_bytes(m))


def test_subgraph_calling_itself():
    m = _control_flow_model("CALL_ONCE")
    body = m.subgraphs[1]
    body.operators.insert(0, Operator("WHILE", [body.inputs[0]], [],
                                      options={"cond_subgraph_index": body, "body_subgraph_index": body},
                                      options_type="WhileOptions"))
    assert _refused(_bytes(m)) == "<bytes>: subgraph 1 operator 0 (WHILE): cond_subgraph_index calls subgraph 1, " \
                                  "which is already running: subgraph calls form a cycle 1 -> 1"


def test_subgraph_call_cycle_through_two_subgraphs():
    m = _control_flow_model("CALL_ONCE")
    m.subgraphs[1].operators.insert(0, Operator("CALL_ONCE", [], [], options={"init_subgraph_index": m.main},
                                                options_type="CallOnceOptions"))
    assert _refused(_bytes(m)) == "<bytes>: subgraph 1 operator 0 (CALL_ONCE): init_subgraph_index calls " \
                                  "subgraph 0, which is already running: subgraph calls form a cycle 0 -> 1 -> 0"


def test_subgraph_calls_nested_too_deep():
    sgs = [Subgraph(f"s{i}") for i in range(70)]
    for a, b in zip(sgs, sgs[1:]):
        a.operators.append(Operator("CALL_ONCE", [], [], options={"init_subgraph_index": b},
                                    options_type="CallOnceOptions"))
    x, y = _f32("x", (2,)), _f32("y", (2,))
    sgs[0].inputs, sgs[0].outputs = [x], [y]
    sgs[0].operators.append(Operator("RELU", [x], [y]))
    assert _refused(_bytes(Model(sgs))) == "<bytes>: subgraph 5: subgraph calls nest 65 deep (more than 64)"


# ---------------------------------------------------------------------------------------------------------
# Option values the schema constrains, custom codes


def _conv_model(**options) -> bytes:
    x, y = _f32("x", (1, 1, 8, 2)), _f32("y", (1, 1, 6, 2))
    w, b = _const("w", np.zeros((2, 1, 3, 2))), _const("b", [0.0, 0.0])
    opts = {"padding": 1, "stride_w": 1, "stride_h": 1, "dilation_w_factor": 1, "dilation_h_factor": 1,
            "fused_activation_function": 0} | options
    op = Operator("CONV_2D", [x, w, b], [y], options=opts, options_type="Conv2DOptions")
    return _bytes(Model([Subgraph("main", [x], [y], [op])]))


def test_conv_options_valid():
    xstream.load(_conv_model())


@pytest.mark.parametrize("field, value, message", [
    ("stride_w", 0, "Conv2DOptions stride_w is 0; it must be at least 1"),
    ("stride_h", -2, "Conv2DOptions stride_h is -2; it must be at least 1"),
    ("dilation_w_factor", 0, "Conv2DOptions dilation_w_factor is 0; it must be at least 1"),
    ("padding", 7, "Conv2DOptions padding is 7; it must be one of SAME 0, VALID 1"),
    ("fused_activation_function", 9, "Conv2DOptions fused_activation_function is 9; it must be one of NONE 0, "
                                     "RELU 1, RELU_N1_TO_1 2, RELU6 3, TANH 4, SIGN_BIT 5"),
])
def test_conv_option_out_of_range(field, value, message):
    assert _refused(_conv_model(**{field: value})) == f"<bytes>: subgraph 0 operator 0 (CONV_2D): {message}"


def test_pool_filter_zero():
    x, y = _f32("x", (1, 1, 8, 2)), _f32("y", (1, 1, 8, 2))
    op = Operator("MAX_POOL_2D", [x], [y], options={"padding": 1, "stride_w": 1, "stride_h": 1, "filter_width": 0,
                                                    "filter_height": 1, "fused_activation_function": 0},
                  options_type="Pool2DOptions")
    assert _refused(_bytes(Model([Subgraph("main", [x], [y], [op])]))) == \
        "<bytes>: subgraph 0 operator 0 (MAX_POOL_2D): Pool2DOptions filter_width is 0; it must be at least 1"


def test_custom_code_with_a_newline():
    x, y = _f32("x", (2,)), _f32("y", (2,))
    op = Operator("CUSTOM", [x], [y], custom_code="MY_OP\nxstream: error: forged second line")
    assert _refused(_bytes(Model([Subgraph("main", [x], [y], [op])]))) == \
        "<bytes>: operator code 0: custom code 'MY_OP\\nxstream: error: forged second line' contains control " \
        "characters"


# ---------------------------------------------------------------------------------------------------------
# Quantization


def _quant_model(scale, zero_point, dim, shape=(3, 2)) -> bytes:
    w = Tensor("w", "int8", shape, buffer=Buffer(bytes(int(np.prod(shape)))),
               quantization=Quantization(np.asarray(scale, np.float32), np.asarray(zero_point, np.int64),
                                         quantized_dimension=dim))
    x, y = Tensor("x", "int8", shape), Tensor("y", "int8", shape)
    return _bytes(Model([Subgraph("main", [x], [y], [Operator("ADD", [x, w], [y])])]))


def test_quantization_scale_and_zero_point_counts_differ():
    assert _refused(_quant_model([0.1, 0.2, 0.3], [0, 0], 0)) == \
        "<bytes>: subgraph 0 tensor 1 'w': quantization has 3 scale values and 2 zero points (they must be as many)"


def test_quantized_dimension_out_of_range():
    assert _refused(_quant_model([0.1, 0.2], [0, 0], 3)) == \
        "<bytes>: subgraph 0 tensor 1 'w': quantized_dimension 3 is out of range for shape [3, 2]"


def test_per_channel_scales_do_not_match_the_dimension():
    assert _refused(_quant_model([0.1, 0.2], [0, 0], 0)) == \
        "<bytes>: subgraph 0 tensor 1 'w': quantization has 2 scale values but dimension 0 of shape [3, 2] has 3 " \
        "entries"


def test_valid_per_channel_quantization_reads():
    xstream.load(_quant_model([0.1, 0.2], [0, 0], 1))


# ---------------------------------------------------------------------------------------------------------
# RING_BUFFER (docs/RING_BUFFER.md)


def _ring_buffer_model(options: bytes, x_shape=(1, 1, 2), y_shape=(1, 4, 2), inputs=1) -> bytes:
    x, y = _f32("x", x_shape), _f32("y", y_shape)
    op = Operator("CUSTOM", [x] * inputs, [y], custom_code="RING_BUFFER", custom_options=options)
    return _bytes(Model([Subgraph("main", [x], [y], [op])]))


def _rb_options(**kw) -> bytes:
    return bytes(flexbuffers.Dumps(kw))


def test_ring_buffer_valid():
    xstream.load(_ring_buffer_model(_rb_options(axis=1, frames=4)))


@pytest.mark.parametrize("data, message", [
    (lambda: _ring_buffer_model(b"\x01\x02\x03"),
     "custom options are not a FlexBuffer map with integer axis and frames"),
    (lambda: _ring_buffer_model(_rb_options(axis=1)),
     "custom options are not a FlexBuffer map with integer axis and frames"),
    (lambda: _ring_buffer_model(_rb_options(axis=1, frames="4")),
     "custom options are not a FlexBuffer map with integer axis and frames"),
    (lambda: _ring_buffer_model(_rb_options(axis=5, frames=4)),
     "axis 5 is out of range for input tensor 0 'x' of shape [1, 1, 2]"),
    (lambda: _ring_buffer_model(_rb_options(axis=1, frames=0), y_shape=(1, 0, 2)),
     "frames is 0; it must be at least 1"),
    (lambda: _ring_buffer_model(_rb_options(axis=1, frames=3)),
     "output tensor 1 'y' is float32[1, 4, 2] but input float32[1, 1, 2] with frames=3 on axis 1 gives "
     "float32[1, 3, 2]"),
    (lambda: _ring_buffer_model(_rb_options(axis=1, frames=1 << 30), y_shape=(1, 4, 2)),
     "output tensor 1 'y' is float32[1, 4, 2] but input float32[1, 1, 2] with frames=1073741824 on axis 1 gives "
     "float32[1, 1073741824, 2]"),
    (lambda: _ring_buffer_model(_rb_options(axis=1, frames=4), inputs=2),
     "has 2 input(s) and 1 output(s); RING_BUFFER takes one input and one output"),
    (lambda: _ring_buffer_model(bytes(2000)),
     "custom options are 2000 bytes; a RING_BUFFER's are a small FlexBuffer map"),
])
def test_ring_buffer_refused(data, message):
    assert _refused(data()) == f"<bytes>: subgraph 0 operator 0 ('RING_BUFFER'): {message}"


# ---------------------------------------------------------------------------------------------------------
# Files that are not regular files, or too large


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    with pytest.raises(ModelReadError) as info:
        xstream.load(fifo)
    assert str(info.value) == f"{fifo}: not a regular file; give the path of a .tflite file"


def test_character_device_is_refused():
    with pytest.raises(ModelReadError) as info:
        xstream.load("/dev/zero")
    assert str(info.value) == "/dev/zero: not a regular file; give the path of a .tflite file"


def test_huge_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "huge.tflite"
    with open(big, "wb") as f:
        f.truncate(reader.MAX_FILE_BYTES + 1)  # sparse: costs no disk
    tracemalloc.start()
    try:
        with pytest.raises(ModelReadError) as info:
            xstream.load(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value) == f"{big}: the file is 4294967297 bytes; xstream reads models of up to 4294967296 bytes"
    assert peak < 1 << 20


# ---------------------------------------------------------------------------------------------------------
# The CLI contract: one stderr line, exit 2 unreadable / 1 unstreamable, no traceback unless --debug


def _corrupt_file(tmp_path: Path) -> Path:
    data = _patch(zoo_model("residual_tdnn_float").read_bytes(), "model.subgraphs[0].tensors[16].shape[1]", -7)
    p = tmp_path / "corrupt.tflite"
    p.write_bytes(data)
    return p


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _one_error_line(r, code: int) -> str:
    assert r.exit_code == code, (r.exit_code, r.output)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and r.stderr.endswith("\n"), r.stderr
    assert lines[0].startswith("xstream: error: "), lines[0]
    assert "Traceback" not in r.output
    return lines[0]


@pytest.mark.parametrize("command", ["inspect", "inspect --json", "convert", "convert --state variable", "verify",
                                     "verify as streaming"])
def test_corrupt_input_one_line_exit_2(command, tmp_path):
    bad = _corrupt_file(tmp_path)
    good = zoo_model("residual_tdnn_float")
    out = tmp_path / "out.tflite"
    before = _sha(bad)
    name, *flags = command.split()
    if name == "inspect":
        r = _run("inspect", *flags, bad)
    elif name == "convert":
        r = _run("convert", bad, out, *flags)
    elif command == "verify":
        r = _run("verify", bad, good)
    else:
        streaming = tmp_path / "s.tflite"
        assert _run("convert", good, streaming).exit_code == 0
        r = _run("verify", good, bad)
    line = _one_error_line(r, 2)
    assert line == f"xstream: error: {bad}: subgraph 0 tensor 16: negative dimension in shape [1, -7, 32]"
    assert _sha(bad) == before
    assert not out.exists()
    assert not list(tmp_path.glob(".xstream-*"))


def test_unstreamable_model_one_line_exit_1(tmp_path):
    out = tmp_path / "out.tflite"
    line = _one_error_line(_run("convert", zoo_model("ds_cnn_kws_float").parent / "holdout" / "squeeze_excite_float.tflite", out), 1)
    assert re.fullmatch(r"xstream: error: operator \d+ \(\w+\): combines a value computed from the whole window .*",
                        line), line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_debug_shows_the_traceback(tmp_path):
    bad = _corrupt_file(tmp_path)
    r = CliRunner().invoke(main, ["--debug", "inspect", str(bad)], catch_exceptions=False)
    assert r.exit_code == 2
    assert "Traceback (most recent call last)" in r.stderr
    assert r.stderr.splitlines()[-1] == \
        f"xstream: error: {bad}: subgraph 0 tensor 16: negative dimension in shape [1, -7, 32]"


def test_real_process_corrupt_input(tmp_path):
    bad = _corrupt_file(tmp_path)
    p = subprocess.run([sys.executable, "-m", "xstream", "convert", str(bad), str(tmp_path / "o.tflite")],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr == f"xstream: error: {bad}: subgraph 0 tensor 16: negative dimension in shape [1, -7, 32]\n"


# ---------------------------------------------------------------------------------------------------------
# Atomic output, OUT == IN, Ctrl-C


def test_out_equal_to_in_refused(tmp_path):
    src = tmp_path / "m.tflite"
    src.write_bytes(zoo_model("tdnn_dilated_int8").read_bytes())
    before = _sha(src)
    link = tmp_path / "link.tflite"
    link.symlink_to(src)
    hard = tmp_path / "hard.tflite"
    os.link(src, hard)
    for out in (src, link, hard, Path(str(tmp_path) + "/./m.tflite")):
        line = _one_error_line(_run("convert", src, out), 2)
        assert line == f"xstream: error: {out}: OUT is the input file; choose another path or pass --force"
        assert _sha(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.tflite", "link.tflite", "m.tflite"]


def test_out_equal_to_in_with_force(tmp_path):
    src = tmp_path / "m.tflite"
    original = zoo_model("tdnn_dilated_int8").read_bytes()
    src.write_bytes(original)
    r = _run("convert", src, src, "--force")
    assert r.exit_code == 0, r.output
    assert src.read_bytes() != original
    assert any(op.kind == "RING_BUFFER" for op in xstream.load(src).main.operators)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_failed_convert_keeps_existing_out(tmp_path):
    out = tmp_path / "out.tflite"
    out.write_bytes(b"previous")
    _one_error_line(_run("convert", zoo_model("ds_cnn_kws_float").parent / "holdout" / "squeeze_excite_int8.tflite", out), 1)
    assert out.read_bytes() == b"previous"
    bad = _corrupt_file(tmp_path)
    _one_error_line(_run("convert", bad, out), 2)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.tflite", "out.tflite"]


@pytest.mark.parametrize("where", ["load", "pipeline", "fsync", "replace"])
def test_ctrl_c_leaves_no_partial_file(where, tmp_path, monkeypatch):
    import xstream.cli as cli

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    target = {"load": (cli, "load"), "pipeline": (cli, "convert_with_plan"), "fsync": (writer.os, "fsync"),
              "replace": (writer.os, "replace")}[where]
    monkeypatch.setattr(*target, interrupt)
    out = tmp_path / "out.tflite"
    r = CliRunner().invoke(main, ["convert", str(zoo_model("residual_tdnn_int8")), str(out)])
    assert r.exit_code == 130
    assert r.stderr == "xstream: interrupted; no output written\n"
    assert list(tmp_path.iterdir()) == []


def test_real_sigint_during_write_leaves_no_partial_file(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import xstream.tflite.writer
        from xstream.cli import main
        def fsync(fd):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        xstream.tflite.writer.os.fsync = fsync
        sys.argv = ["xstream", "convert", {str(zoo_model('tdnn_dilated_float'))!r}, {str(tmp_path / 'o.tflite')!r}]
        main()
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 130, p.stderr
    assert p.stderr == "xstream: interrupted; no output written\n"
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# Inputs are never changed; output is deterministic


def test_commands_never_change_their_inputs(tmp_path):
    for path in ZOO:
        src = tmp_path / path.name
        src.write_bytes(path.read_bytes())
        before = _sha(src)
        mtime = src.stat().st_mtime_ns
        _run("inspect", src)
        _run("inspect", "--json", src)
        for state in ("ring-buffer", "variable"):
            out = tmp_path / f"{path.stem}.{state}.tflite"
            if _run("convert", src, out, "--state", state).exit_code == 0 and state == "variable" \
                    and path.stem.endswith("_int8") and "dynbatch" not in path.stem:
                before_out = _sha(out)
                _run("verify", src, out, "--sequences", "1")
                assert _sha(out) == before_out
        assert _sha(src) == before, path.name
        assert src.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob(".xstream-*"))


def _convert_all(tmp_path: Path, tag: str) -> dict[str, str]:
    out = {}
    for path in ZOO:
        for state in ("ring-buffer", "variable", "external"):
            dst = tmp_path / f"{path.stem}.{state}.{tag}.tflite"
            if _run("convert", path, dst, "--state", state).exit_code == 0:
                out[f"{path.stem}.{state}"] = _sha(dst)
    return out


def test_deterministic_in_process(tmp_path):
    a, b = _convert_all(tmp_path, "a"), _convert_all(tmp_path, "b")
    assert len(a) >= 40
    assert a == b


_DIGESTS = """
import hashlib, json, sys, tempfile, os
from pathlib import Path
from click.testing import CliRunner
from xstream.cli import main
out = {}
d = tempfile.mkdtemp()
for path in sorted(Path("models").glob("*.tflite")):
    for state in ("ring-buffer", "variable", "external"):
        dst = os.path.join(d, "o.tflite")
        if CliRunner().invoke(main, ["convert", str(path), dst, "--state", state]).exit_code == 0:
            out[f"{path.stem}.{state}"] = hashlib.sha256(open(dst, "rb").read()).hexdigest()
print(json.dumps(out))
"""


def test_deterministic_across_fresh_processes(tmp_path):
    import json

    runs = []
    for hashseed in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        p = subprocess.run([sys.executable, "-c", _DIGESTS], capture_output=True, text=True, cwd=REPO, env=env,
                           timeout=300)
        assert p.returncode == 0, p.stderr
        runs.append(json.loads(p.stdout))
    assert runs[0] == runs[1]
    assert runs[0] == _convert_all(tmp_path, "in-process")


# ---------------------------------------------------------------------------------------------------------
# Output paths that cannot take the file: a usage error naming the path, and nothing replaced


def test_out_in_missing_folder_is_a_usage_error(tmp_path):
    out = tmp_path / "no" / "such" / "dir" / "o.tflite"
    line = _one_error_line(_run("convert", zoo_model("residual_tdnn_int8"), out), 2)
    assert str(out) in line


def test_out_is_a_directory_is_a_usage_error(tmp_path):
    out = tmp_path / "adir"
    out.mkdir()
    line = _one_error_line(CliRunner().invoke(main, ["convert", str(zoo_model("residual_tdnn_int8")), str(out)]),
                           2)
    assert str(out) in line


def test_out_is_not_a_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = CliRunner().invoke(main, ["convert", str(zoo_model("residual_tdnn_int8")), str(fifo)])
    assert r.exit_code == 2
    assert fifo.is_fifo()


@pytest.mark.parametrize("index,ok", [(3, True), (4, False), (-1, False)])
def test_gather_indices_outside_their_axis_are_refused(index, ok):
    """LiteRT refuses such a GATHER at invoke; TFLite Micro reads outside the tensor (the fuzzer found inspect
    spending seconds on one): the reader says which index is wrong."""
    x = _f32("x", (1, 4, 2))
    y = _f32("y", (1, 2, 2))
    op = Operator("GATHER", [x, _const("i", [0, index], "int32")], [y], options={"axis": 1, "batch_dims": 0},
                  options_type="GatherOptions")
    data = _bytes(Model(subgraphs=[Subgraph(inputs=[x], outputs=[y], operators=[op])]))
    if ok:
        assert xstream.load(data).main.operators[0].type == "GATHER"
    else:
        assert _refused(data) == (f"<bytes>: subgraph 0 operator 0 (GATHER): index {index} is outside axis 1 of "
                                  "input tensor 0 'x' of shape [1, 4, 2]")
