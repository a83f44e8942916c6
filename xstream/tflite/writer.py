"""Serialise the IR to a .tflite flatbuffer; the only place that assigns indices and builds flatbuffers."""

from __future__ import annotations

import os
import secrets
import stat

import flatbuffers
import numpy as np

from . import schema
from ..errors import UsageError, XstreamError
from ..ir import Buffer, Model, Operator, Subgraph, Tensor

FbBuffer = schema.module("Buffer")
FbMetadata = schema.module("Metadata")
FbModel = schema.module("Model")
FbOperator = schema.module("Operator")
FbOperatorCode = schema.module("OperatorCode")
FbQuant = schema.module("QuantizationParameters")
FbSignatureDef = schema.module("SignatureDef")
FbSubGraph = schema.module("SubGraph")
FbTensor = schema.module("Tensor")
FbTensorMap = schema.module("TensorMap")

SCHEMA_VERSION = 3
DATA_ALIGNMENT = 16


def save(model: Model, path: str | os.PathLike) -> None:
    """Write atomically: a temp file in the target folder, fsync, then rename over `path`.

    Modes as `cp` gives them: a new file gets 0666 less the umask; an existing file keeps its mode (and an input
    overwritten with --force stays what it was); a symlink stays a link and the file it points to is replaced."""
    write_files({path: lambda: serialize(model)})


def write_files(files: dict) -> None:
    """Write each path -> bytes (or a function giving them, called after the paths are checked) as `save` writes
    one, all or none: every file goes to a temp file first, and on any failure (Ctrl-C included) the temp files
    and the files already renamed are removed again, so a failed run leaves no output."""
    targets = []
    for path, data in files.items():
        path = os.path.realpath(os.fspath(path)) if os.path.islink(os.fspath(path)) else os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.exists(path) and not os.path.isfile(path):
            raise UsageError(f"{path}: exists and is not a regular file; choose a file path for the output")
        if not os.path.isdir(folder):
            raise UsageError(f"{path}: folder {folder} does not exist")
        targets.append((path, folder, data))
    temps: list[tuple[str, str]] = []
    done: list[str] = []
    try:
        for path, folder, data in targets:
            data = data() if callable(data) else data
            try:
                keep_mode = stat.S_IMODE(os.stat(path).st_mode)
            except FileNotFoundError:
                keep_mode = None
            try:
                fd, tmp = _create_temp(folder)
            except OSError as e:
                raise UsageError(f"{path}: cannot write in {folder}: {e.strerror or e}") from None
            temps.append((path, tmp))
            try:
                with os.fdopen(fd, "wb") as f:
                    if keep_mode is not None:
                        os.fchmod(f.fileno(), keep_mode)
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise UsageError(f"{path}: cannot write: {e.strerror or e}") from None
        for path, tmp in temps:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise UsageError(f"{path}: cannot write: {e.strerror or e}") from None
            done.append(path)
    except BaseException:  # Ctrl-C included: never leave a partial file
        for _, tmp in temps:
            _remove(tmp)
        for path in done:
            _remove(path)
        raise


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Do two paths name one file (through links too)?"""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _create_temp(folder: str) -> tuple[int, str]:
    """A new file `.xstream-*.tmp` in `folder`, created with mode 0666 so that the umask decides (mkstemp would
    make it 0600)."""
    for _ in range(100):
        tmp = os.path.join(folder, f".xstream-{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def serialize(model: Model) -> bytes:
    return _Writer(model).build()


class _Writer:
    def __init__(self, model: Model):
        self.model = model
        self.b = flatbuffers.Builder(1 << 16)
        self.buffer_index: dict[int, int] = {}
        self.buffers: list[Buffer] = [Buffer()]  # index 0: the empty sentinel
        self.opcode_index: dict[tuple, int] = {}
        self.opcodes: list[tuple[str, str | None, int]] = []
        self.subgraph_index = {id(sg): i for i, sg in enumerate(model.subgraphs)}
        self.tensor_index: list[dict[int, int]] = []

    def _buffer(self, buf: Buffer | None) -> int:
        if buf is None:
            return 0
        if id(buf) not in self.buffer_index:
            self.buffer_index[id(buf)] = len(self.buffers)
            self.buffers.append(buf)
        return self.buffer_index[id(buf)]

    def _opcode(self, op: Operator) -> int:
        key = (op.type, op.custom_code if op.type == "CUSTOM" else None, op.version)
        if key not in self.opcode_index:
            if op.type not in schema.OPCODE_BY_NAME:
                raise XstreamError(f"operator type {op.type!r} is not a TFLite builtin; use CUSTOM with custom_code")
            self.opcode_index[key] = len(self.opcodes)
            self.opcodes.append(key)
        return self.opcode_index[key]

    def build(self) -> bytes:
        m, b = self.model, self.b
        # Assign indices first (tensors in traversal order, buffers in order of first use).
        layouts = []
        for sg in m.subgraphs:
            tensors = sg.tensors()
            for sig in m.signatures:
                if sig.subgraph is sg:
                    for _, t in sig.inputs + sig.outputs:
                        if all(t is not x for x in tensors):
                            tensors.append(t)
            self.tensor_index.append({id(t): i for i, t in enumerate(tensors)})
            tensor_buffers = [self._buffer(t.buffer) if t.is_constant else 0 for t in tensors]
            for op in sg.operators:
                self._opcode(op)
            layouts.append((sg, tensors, tensor_buffers))
        metadata = [(md.name, self._buffer(md.buffer)) for md in m.metadata]
        metadata_buffers = [self._buffer(buf) for buf in m.metadata_buffers]

        # Build bottom-up: the flatbuffer builder writes children before parents.
        buffer_offsets = [self._write_buffer(buf) for buf in self.buffers]
        subgraph_offsets = [self._write_subgraph(i, *lay) for i, lay in enumerate(layouts)]
        opcode_offsets = [self._write_opcode(*key) for key in self.opcodes]
        metadata_offsets = []
        for name, idx in metadata:
            n = b.CreateString(name)
            FbMetadata.Start(b)
            FbMetadata.AddName(b, n)
            FbMetadata.AddBuffer(b, idx)
            metadata_offsets.append(FbMetadata.End(b))
        signature_offsets = [self._write_signature(sig) for sig in m.signatures]
        description = b.CreateString(m.description) if m.description else None

        opcodes_vec = self._table_vector(FbModel.StartOperatorCodesVector, opcode_offsets)
        subgraphs_vec = self._table_vector(FbModel.StartSubgraphsVector, subgraph_offsets)
        buffers_vec = self._table_vector(FbModel.StartBuffersVector, buffer_offsets)
        metadata_vec = self._table_vector(FbModel.StartMetadataVector, metadata_offsets) if metadata_offsets else None
        sig_vec = self._table_vector(FbModel.StartSignatureDefsVector, signature_offsets) if signature_offsets else None
        mdbuf_vec = b.CreateNumpyVector(np.array(metadata_buffers, dtype=np.int32)) if metadata_buffers else None

        FbModel.Start(b)
        FbModel.AddVersion(b, m.version or SCHEMA_VERSION)
        FbModel.AddOperatorCodes(b, opcodes_vec)
        FbModel.AddSubgraphs(b, subgraphs_vec)
        if description is not None:
            FbModel.AddDescription(b, description)
        FbModel.AddBuffers(b, buffers_vec)
        if mdbuf_vec is not None:
            FbModel.AddMetadataBuffer(b, mdbuf_vec)
        if metadata_vec is not None:
            FbModel.AddMetadata(b, metadata_vec)
        if sig_vec is not None:
            FbModel.AddSignatureDefs(b, sig_vec)
        b.Finish(FbModel.End(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def _table_vector(self, start, offsets: list[int]) -> int:
        start(self.b, len(offsets))
        for off in reversed(offsets):
            self.b.PrependUOffsetTRelative(off)
        return self.b.EndVector()

    def _aligned_bytes(self, data: bytes) -> int:
        b = self.b
        b.StartVector(1, len(data), DATA_ALIGNMENT)
        b.head = b.head - len(data)
        b.Bytes[b.head:b.head + len(data)] = data
        return b.EndVector()

    def _write_buffer(self, buf: Buffer) -> int:
        b = self.b
        data = self._aligned_bytes(buf.data) if buf.data else None
        FbBuffer.Start(b)
        if data is not None:
            FbBuffer.AddData(b, data)
        return FbBuffer.End(b)

    def _write_opcode(self, type_: str, custom: str | None, version: int) -> int:
        b = self.b
        code = schema.OPCODE_BY_NAME[type_]
        custom_off = b.CreateString(custom) if custom is not None else None
        FbOperatorCode.Start(b)
        FbOperatorCode.AddDeprecatedBuiltinCode(b, min(code, 127))
        FbOperatorCode.AddBuiltinCode(b, code)
        if custom_off is not None:
            FbOperatorCode.AddCustomCode(b, custom_off)
        FbOperatorCode.AddVersion(b, version)
        return FbOperatorCode.End(b)

    def _ints(self, values) -> int:
        return self.b.CreateNumpyVector(np.asarray(list(values), dtype=np.int32))

    def _write_subgraph(self, sg_i: int, sg: Subgraph, tensors: list[Tensor], tensor_buffers: list[int]) -> int:
        b = self.b
        index = self.tensor_index[sg_i]

        def idx(t: Tensor | None) -> int:
            return -1 if t is None else index[id(t)]

        tensor_offsets = [self._write_tensor(t, buf) for t, buf in zip(tensors, tensor_buffers)]
        op_offsets = [self._write_operator(op, idx) for op in sg.operators]
        tensors_vec = self._table_vector(FbSubGraph.StartTensorsVector, tensor_offsets)
        ops_vec = self._table_vector(FbSubGraph.StartOperatorsVector, op_offsets)
        inputs = self._ints(idx(t) for t in sg.inputs)
        outputs = self._ints(idx(t) for t in sg.outputs)
        name = b.CreateString(sg.name) if sg.name else None
        FbSubGraph.Start(b)
        FbSubGraph.AddTensors(b, tensors_vec)
        FbSubGraph.AddInputs(b, inputs)
        FbSubGraph.AddOutputs(b, outputs)
        FbSubGraph.AddOperators(b, ops_vec)
        if name is not None:
            FbSubGraph.AddName(b, name)
        return FbSubGraph.End(b)

    def _write_tensor(self, t: Tensor, buffer_idx: int) -> int:
        b = self.b
        shape = self._ints(t.shape)
        sig = self._ints(t.shape_signature) if t.shape_signature is not None else None
        name = b.CreateString(t.name)
        quant = self._write_quant(t) if t.quantization is not None else None
        FbTensor.Start(b)
        FbTensor.AddShape(b, shape)
        FbTensor.AddType(b, schema.DTYPE_CODE[t.dtype])
        FbTensor.AddBuffer(b, buffer_idx)
        FbTensor.AddName(b, name)
        if quant is not None:
            FbTensor.AddQuantization(b, quant)
        FbTensor.AddIsVariable(b, t.is_variable)
        if sig is not None:
            FbTensor.AddShapeSignature(b, sig)
        FbTensor.AddHasRank(b, t.has_rank)
        return FbTensor.End(b)

    def _write_quant(self, t: Tensor) -> int:
        b, q = self.b, t.quantization
        vecs = {}
        for name, arr, dt in (("min", q.min, np.float32), ("max", q.max, np.float32),
                              ("scale", q.scale, np.float32), ("zero_point", q.zero_point, np.int64)):
            if arr is not None:
                vecs[name] = b.CreateNumpyVector(np.asarray(arr, dtype=dt))
        FbQuant.Start(b)
        if "min" in vecs:
            FbQuant.AddMin(b, vecs["min"])
        if "max" in vecs:
            FbQuant.AddMax(b, vecs["max"])
        if "scale" in vecs:
            FbQuant.AddScale(b, vecs["scale"])
        if "zero_point" in vecs:
            FbQuant.AddZeroPoint(b, vecs["zero_point"])
        FbQuant.AddQuantizedDimension(b, q.quantized_dimension)
        return FbQuant.End(b)

    def _write_options(self, options_type: str, values: dict, where: Operator) -> int:
        b = self.b
        mod = schema.module(options_type)
        fields = {f.name: f for f in schema.option_fields(options_type)}
        prepared = {}
        for key, v in values.items():
            f = fields.get(key)
            if f is None:
                raise XstreamError(f"{where.kind}: {options_type} has no field {key!r}")
            if f.vector_of is not None:
                getattr(mod, f"{options_type}Start{f.camel}Vector")(b, len(v))
                prepend = getattr(b, "Prepend" + f.vector_of)
                for x in reversed(list(v)):
                    prepend(x)
                prepared[key] = b.EndVector()
            elif isinstance(v, str):
                prepared[key] = b.CreateString(v)
            elif isinstance(v, Subgraph):
                prepared[key] = self.subgraph_index[id(v)]
            else:
                prepared[key] = v
        getattr(mod, f"{options_type}Start")(b)
        for key, v in prepared.items():
            getattr(mod, f"{options_type}Add{fields[key].camel}")(b, v)
        return getattr(mod, f"{options_type}End")(b)

    def _write_operator(self, op: Operator, idx) -> int:
        b = self.b
        inputs = self._ints(idx(t) for t in op.inputs)
        outputs = self._ints(idx(t) for t in op.outputs)
        intermediates = self._ints(idx(t) for t in op.intermediates) if op.intermediates else None
        opts = self._write_options(op.options_type, op.options, op) if op.options_type else None
        opts2 = self._write_options(op.options2_type, op.options2, op) if op.options2_type else None
        custom = b.CreateNumpyVector(np.frombuffer(op.custom_options, dtype=np.uint8)) \
            if op.custom_options is not None else None
        mutating = b.CreateNumpyVector(np.asarray(op.mutating_variable_inputs, dtype=np.bool_)) \
            if op.mutating_variable_inputs is not None else None
        FbOperator.Start(b)
        FbOperator.AddOpcodeIndex(b, self.opcode_index[(op.type, op.custom_code if op.type == "CUSTOM" else None,
                                                        op.version)])
        FbOperator.AddInputs(b, inputs)
        FbOperator.AddOutputs(b, outputs)
        if opts is not None:
            FbOperator.AddBuiltinOptionsType(b, schema.OPTIONS_CODE[op.options_type])
            FbOperator.AddBuiltinOptions(b, opts)
        if opts2 is not None:
            FbOperator.AddBuiltinOptions2Type(b, schema.OPTIONS2_CODE[op.options2_type])
            FbOperator.AddBuiltinOptions2(b, opts2)
        if custom is not None:
            FbOperator.AddCustomOptions(b, custom)
        FbOperator.AddCustomOptionsFormat(b, op.custom_options_format)
        if mutating is not None:
            FbOperator.AddMutatingVariableInputs(b, mutating)
        if intermediates is not None:
            FbOperator.AddIntermediates(b, intermediates)
        return FbOperator.End(b)

    def _write_signature(self, sig) -> int:
        b = self.b
        sg_i = self.subgraph_index[id(sig.subgraph)]
        index = self.tensor_index[sg_i]

        def maps(entries, start) -> int:
            offs = []
            for name, t in entries:
                n = b.CreateString(name)
                FbTensorMap.Start(b)
                FbTensorMap.AddName(b, n)
                FbTensorMap.AddTensorIndex(b, index[id(t)])
                offs.append(FbTensorMap.End(b))
            return self._table_vector(start, offs)

        ins = maps(sig.inputs, FbSignatureDef.StartInputsVector)
        outs = maps(sig.outputs, FbSignatureDef.StartOutputsVector)
        key = b.CreateString(sig.key)
        FbSignatureDef.Start(b)
        FbSignatureDef.AddInputs(b, ins)
        FbSignatureDef.AddOutputs(b, outs)
        FbSignatureDef.AddSignatureKey(b, key)
        FbSignatureDef.AddSubgraphIndex(b, sg_i)
        return FbSignatureDef.End(b)
