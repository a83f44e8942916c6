"""Parse a .tflite flatbuffer into the IR; the only place that follows schema indices while reading."""

from __future__ import annotations

import os
import struct

import numpy as np
from tflite.Model import Model as FbModel

from . import schema
from .errors import ModelReadError
from .ir import Buffer, Metadata, Model, Operator, Quantization, SignatureDef, Subgraph, Tensor

FILE_IDENTIFIER = b"TFL3"
# Above this many elements a tensor shape is treated as corrupt rather than allocated.
MAX_ELEMENTS = 1 << 31


def load(source: str | os.PathLike | bytes | bytearray) -> Model:
    """Read a model from a path or from the bytes of a .tflite file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return read_bytes(bytes(source), "<bytes>")
    path = os.fspath(source)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ModelReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelReadError(f"{path}: is a directory, not a .tflite file") from None
    except OSError as e:
        raise ModelReadError(f"{path}: cannot read: {e.strerror}") from None
    return read_bytes(data, path)


def read_bytes(data: bytes, name: str = "<bytes>") -> Model:
    if len(data) < 8:
        raise ModelReadError(f"{name}: not a TFLite model ({len(data)} bytes is too short)")
    if data[4:8] != FILE_IDENTIFIER:
        raise ModelReadError(f"{name}: not a TFLite model (file identifier {data[4:8]!r}, expected b'TFL3')")
    try:
        return _Reader(data, name).read()
    except ModelReadError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError,
            KeyError, AttributeError, MemoryError) as e:
        raise ModelReadError(f"{name}: corrupt or truncated TFLite flatbuffer ({type(e).__name__}: {e})") from None


def _check_index(kind: str, index: int, count: int, where: str) -> None:
    if not 0 <= index < count:
        raise ModelReadError(f"{where}: {kind} index {index} is out of range (model has {count})")


class _Reader:
    def __init__(self, data: bytes, name: str):
        self.data = data
        self.name = name
        self.fb = FbModel.GetRootAs(data, 0)
        self.sg_tensors: dict[int, list[Tensor]] = {}

    def read(self) -> Model:
        fb = self.fb
        self.buffers = [self._buffer(fb.Buffers(i), i) for i in range(fb.BuffersLength())]
        self.opcodes = [self._opcode(fb.OperatorCodes(i)) for i in range(fb.OperatorCodesLength())]
        model = Model(version=fb.Version(), description=_str(fb.Description()))
        model.subgraphs = [Subgraph() for _ in range(fb.SubgraphsLength())]
        if not model.subgraphs:
            raise ModelReadError(f"{self.name}: the model has no subgraph")
        for i, sg in enumerate(model.subgraphs):
            self._subgraph(fb.Subgraphs(i), sg, model.subgraphs, i)
        for i in range(fb.MetadataLength()):
            m = fb.Metadata(i)
            _check_index("buffer", m.Buffer(), len(self.buffers), f"{self.name}: metadata {i}")
            model.metadata.append(Metadata(_str(m.Name()), self.buffers[m.Buffer()]))
        if not fb.MetadataBufferIsNone():
            for b in fb.MetadataBufferAsNumpy():
                _check_index("buffer", int(b), len(self.buffers), f"{self.name}: metadata_buffer")
                model.metadata_buffers.append(self.buffers[int(b)])
        for i in range(fb.SignatureDefsLength()):
            model.signatures.append(self._signature(fb.SignatureDefs(i), model.subgraphs))
        return model

    def _buffer(self, b, i: int) -> Buffer:
        if b is None:
            return Buffer()
        if b.Offset() > 1:
            end = b.Offset() + b.Size()
            if end > len(self.data):
                raise ModelReadError(f"{self.name}: buffer {i} lies past the end of the file "
                                     f"(offset {b.Offset()} + size {b.Size()} > {len(self.data)} bytes)")
            return Buffer(bytes(self.data[b.Offset():end]))
        if b.DataIsNone():
            return Buffer()
        return Buffer(b.DataAsNumpy().tobytes())

    def _opcode(self, c) -> tuple[str, str | None, int]:
        code = max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
        if code not in schema.OPNAME_BY_CODE:
            raise ModelReadError(f"{self.name}: unknown builtin operator code {code} (newer schema?)")
        custom = c.CustomCode()
        return schema.OPNAME_BY_CODE[code], custom.decode("utf-8") if custom is not None else None, c.Version()

    def _subgraph(self, fsg, sg: Subgraph, all_sgs: list[Subgraph], sg_index: int) -> None:
        where = f"{self.name}: subgraph {sg_index}"
        sg.name = _str(fsg.Name())
        tensors = [self._tensor(fsg.Tensors(i), f"{where} tensor {i}") for i in range(fsg.TensorsLength())]
        self.sg_tensors[sg_index] = tensors

        def tensor_at(idx: int, what: str) -> Tensor:
            _check_index("tensor", idx, len(tensors), f"{where} {what}")
            return tensors[idx]

        sg.inputs = [tensor_at(int(i), "input") for i in _ints(fsg, "Inputs")]
        sg.outputs = [tensor_at(int(i), "output") for i in _ints(fsg, "Outputs")]
        for k in range(fsg.OperatorsLength()):
            fop = fsg.Operators(k)
            what = f"operator {k}"
            _check_index("opcode", fop.OpcodeIndex(), len(self.opcodes), f"{where} {what}")
            type_, custom, version = self.opcodes[fop.OpcodeIndex()]
            op = Operator(type=type_, custom_code=custom, version=version)
            op.inputs = [None if int(i) < 0 else tensor_at(int(i), what) for i in _ints(fop, "Inputs")]
            op.outputs = [tensor_at(int(i), what) for i in _ints(fop, "Outputs")]
            op.intermediates = [tensor_at(int(i), what) for i in _ints(fop, "Intermediates")]
            op.options_type, op.options = self._options(
                fop.BuiltinOptionsType(), fop.BuiltinOptions(), schema.OPTIONS_BY_CODE, all_sgs, f"{where} {what}")
            op.options2_type, op.options2 = self._options(
                fop.BuiltinOptions2Type(), fop.BuiltinOptions2(), schema.OPTIONS2_BY_CODE, all_sgs, f"{where} {what}")
            if fop.LargeCustomOptionsSize() > 0:
                start, size = fop.LargeCustomOptionsOffset(), fop.LargeCustomOptionsSize()
                if start + size > len(self.data):
                    raise ModelReadError(f"{where} {what}: custom options lie past the end of the file")
                op.custom_options = bytes(self.data[start:start + size])
            elif not fop.CustomOptionsIsNone():
                op.custom_options = fop.CustomOptionsAsNumpy().tobytes()
            op.custom_options_format = fop.CustomOptionsFormat()
            if not fop.MutatingVariableInputsIsNone():
                op.mutating_variable_inputs = [bool(x) for x in fop.MutatingVariableInputsAsNumpy()]
            sg.operators.append(op)

    def _tensor(self, ft, where: str) -> Tensor:
        shape = tuple(int(x) for x in _ints(ft, "Shape"))
        if any(d < -1 for d in shape):
            raise ModelReadError(f"{where}: negative dimension in shape {list(shape)}")
        if int(np.prod([max(d, 0) for d in shape], dtype=np.float64)) > MAX_ELEMENTS:
            raise ModelReadError(f"{where}: shape {list(shape)} has more than 2**31 elements")
        dtype_code = ft.Type()
        if dtype_code not in schema.DTYPE_BY_CODE:
            raise ModelReadError(f"{where}: unknown tensor type code {dtype_code}")
        _check_index("buffer", ft.Buffer(), max(len(self.buffers), 1), where)
        buf = self.buffers[ft.Buffer()] if self.buffers else None
        if ft.Sparsity() is not None:
            raise ModelReadError(f"{where}: sparse tensors are not supported; densify the model first")
        t = Tensor(
            name=_str(ft.Name()),
            dtype=schema.DTYPE_BY_CODE[dtype_code],
            shape=shape,
            shape_signature=None if ft.ShapeSignatureIsNone() else tuple(int(x) for x in ft.ShapeSignatureAsNumpy()),
            buffer=buf if buf is not None and len(buf.data) > 0 else None,
            is_variable=bool(ft.IsVariable()),
            has_rank=bool(ft.HasRank()),
        )
        q = ft.Quantization()
        if q is not None:
            t.quantization = Quantization(
                scale=None if q.ScaleIsNone() else q.ScaleAsNumpy().astype(np.float32),
                zero_point=None if q.ZeroPointIsNone() else q.ZeroPointAsNumpy().astype(np.int64),
                min=None if q.MinIsNone() else q.MinAsNumpy().astype(np.float32),
                max=None if q.MaxIsNone() else q.MaxAsNumpy().astype(np.float32),
                quantized_dimension=q.QuantizedDimension(),
            )
            if q.DetailsType() != 0:
                raise ModelReadError(f"{where}: custom quantization details are not supported")
        return t

    def _options(self, type_code: int, table, names: dict[int, str], all_sgs: list[Subgraph], where: str):
        if type_code == 0 or table is None:
            return None, {}
        if type_code not in names:
            raise ModelReadError(f"{where}: unknown builtin options type {type_code}")
        options_type = names[type_code]
        cls = getattr(schema.module(options_type), options_type)
        obj = cls()
        obj.Init(table.Bytes, table.Pos)
        values: dict = {}
        for f in schema.option_fields(options_type):
            if f.vector_of is not None:
                if getattr(obj, f.camel + "IsNone")():
                    continue
                values[f.name] = getattr(obj, f.camel + "AsNumpy")().tolist()
                continue
            v = getattr(obj, f.camel)()
            if v is None:
                continue
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            if f.name.endswith("subgraph_index"):
                _check_index("subgraph", v, len(all_sgs), where)
                v = all_sgs[v]
            values[f.name] = v
        return options_type, values

    def _signature(self, s, subgraphs: list[Subgraph]) -> SignatureDef:
        _check_index("subgraph", s.SubgraphIndex(), len(subgraphs), f"{self.name}: signature def")
        sg = subgraphs[s.SubgraphIndex()]
        by_index = self.sg_tensors[s.SubgraphIndex()]
        count = len(by_index)

        def entries(n: int, get) -> list:
            out = []
            for i in range(n):
                m = get(i)
                _check_index("tensor", m.TensorIndex(), count, f"{self.name}: signature def")
                out.append((_str(m.Name()), by_index[m.TensorIndex()]))
            return out

        return SignatureDef(
            key=_str(s.SignatureKey()), subgraph=sg,
            inputs=entries(s.InputsLength(), s.Inputs), outputs=entries(s.OutputsLength(), s.Outputs))


def _ints(table, field: str) -> np.ndarray:
    if getattr(table, field + "IsNone")():
        return np.zeros(0, dtype=np.int32)
    return getattr(table, field + "AsNumpy")()


def _str(b: bytes | None) -> str:
    return b.decode("utf-8") if b is not None else ""

