"""Parse a .tflite flatbuffer into the IR; the only place that follows schema indices while reading.

The flatbuffers Python package has no verifier: its accessors follow whatever offsets a file holds (a negative
position silently reads from the end of the buffer, a string past the end is silently cut short). So this module
reads the file through its own checked accessors (`_Table`): every offset, vtable, field, vector length and string is
bounds-checked before it is followed, every index (opcode, tensor, buffer, subgraph) is range-checked, and shapes are
checked before anything is sized from them. Graph-level checks (cycles, dangling tensors, buffer sizes) live in
validate.py and run on the result. Every problem raises ModelReadError naming what is wrong and where.

Which fields exist and at which vtable slot is read off the generated `tflite` classes (as schema.py does), so the
reader follows the installed schema without a hand-written table.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import re
import stat
import struct

import numpy as np

from . import checks, schema
from .limits import MAX_ACTIVATION_BYTES, MAX_CALL_DEPTH, MAX_ELEMENTS, MAX_FILE_BYTES, MAX_RANK, MAX_TENSOR_BYTES  # noqa: F401
from ..errors import ModelReadError
from ..ir import Buffer, Metadata, Model, Operator, Quantization, SignatureDef, Subgraph, Tensor

FILE_IDENTIFIER = b"TFL3"
# Limits beyond which a model is treated as corrupt rather than processed. They bound what reading (and anything
# run on the model afterwards) may allocate; real time-series models are orders of magnitude below them.


def load(source: str | os.PathLike | bytes | bytearray) -> Model:
    """Read a model from a path or from the bytes of a .tflite file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return read_bytes(bytes(source), "<bytes>")
    path = os.fspath(source)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below like any non-regular file.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb", closefd=True) as f:
            st = os.fstat(f.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError
            if not stat.S_ISREG(st.st_mode):
                raise ModelReadError(f"{path}: not a regular file; give the path of a .tflite file")
            if st.st_size > MAX_FILE_BYTES:
                raise ModelReadError(f"{path}: the file is {st.st_size} bytes; xstream reads models of up to "
                                     f"{MAX_FILE_BYTES} bytes")
            data = f.read(st.st_size + 1)  # a file that grows while being read is not worth waiting for
            if len(data) > st.st_size:
                raise ModelReadError(f"{path}: the file changed while it was being read")
    except FileNotFoundError:
        raise ModelReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelReadError(f"{path}: is a directory, not a .tflite file") from None
    except OSError as e:
        raise ModelReadError(f"{path}: cannot read: {e.strerror or e}") from None
    return read_bytes(data, path)


def read_bytes(data: bytes, name: str = "<bytes>") -> Model:
    if len(data) < 8:
        raise ModelReadError(f"{name}: not a TFLite model ({len(data)} bytes is too short)")
    if data[4:8] != FILE_IDENTIFIER:
        raise ModelReadError(f"{name}: not a TFLite model (file identifier {bytes(data[4:8])!r}, expected b'TFL3')")
    if len(data) > MAX_FILE_BYTES:
        raise ModelReadError(f"{name}: the model is {len(data)} bytes; xstream reads models of up to "
                             f"{MAX_FILE_BYTES} bytes")

    try:
        reader = _Reader(bytes(data), name)
        model = reader.read()
        checks.check_model(model, reader.sg_tensors, name)
        return model
    except ModelReadError:
        raise
    except RecursionError:
        raise ModelReadError(f"{name}: the model nests too deeply to read") from None
    except MemoryError:
        raise ModelReadError(f"{name}: not enough memory to read the model") from None
    except Exception as e:  # a check this module lacks: still one line and exit 2, but say it is our bug
        first = (str(e).splitlines() or [""])[0][:200]
        raise ModelReadError(f"{name}: cannot read the model ({type(e).__name__}: {first}); this is a reader "
                             "bug, please report it") from None


# ---------------------------------------------------------------------------------------------------------
# Checked flatbuffer access

_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")

# Scalar and vector element types as the generated code names them ("Int32Flags" -> "Int32").
_SCALAR = {"Bool": "<?", "Int8": "<b", "Uint8": "<B", "Int16": "<h", "Uint16": "<H", "Int32": "<i", "Uint32": "<I",
           "Int64": "<q", "Uint64": "<Q", "Float32": "<f", "Float64": "<d"}
_NUMPY = {"Bool": np.dtype(np.bool_), "Int8": np.dtype("<i1"), "Uint8": np.dtype("<u1"), "Int16": np.dtype("<i2"),
          "Uint16": np.dtype("<u2"), "Int32": np.dtype("<i4"), "Uint32": np.dtype("<u4"), "Int64": np.dtype("<i8"),
          "Uint64": np.dtype("<u8"), "Float32": np.dtype("<f4"), "Float64": np.dtype("<f8")}

_VOFF = re.compile(r"self\._tab\.Offset\((\d+)\)")
_SCALAR_GET = re.compile(r"self\._tab\.Get\(flatbuffers\.number_types\.(\w+)Flags, o \+ self\._tab\.Pos\)")
_VECTOR_GET = re.compile(r"self\._tab\.Get\(flatbuffers\.number_types\.(\w+)Flags, a \+")
_RETURN = re.compile(r"\n\s*return (.+?)\s*$")


class _Field:
    """One field of a generated table class: its vtable offset and what it holds."""

    __slots__ = ("name", "camel", "voff", "kind", "elem", "default")

    def __init__(self, camel: str, voff: int, kind: str, elem: str | None = None, default=None):
        self.name = schema.snake(camel)
        self.camel = camel
        self.voff = voff  # byte offset of the field's entry in the vtable
        self.kind = kind  # "scalar", "string", "table", "vector" (of numbers), "tables", "strings", "union"
        self.elem = elem  # element type name ("Int32") of a scalar or number vector
        self.default = default


@functools.lru_cache(maxsize=None)
def _fields(table: str) -> dict[str, _Field]:
    """The fields of the generated class `tflite.<table>` by camel-case name, read off its accessors' source."""
    cls = getattr(schema.module(table), table)
    out: dict[str, _Field] = {}
    for camel, fn in vars(cls).items():
        if camel.startswith("_") or not callable(fn) or camel.endswith(("AsNumpy", "Length", "IsNone")):
            continue
        try:
            src = inspect.getsource(fn)
        except (OSError, TypeError):
            continue
        m = _VOFF.search(src)
        if m is None:
            continue
        voff = int(m.group(1))
        if hasattr(cls, camel + "Length"):
            if "self._tab.Indirect(" in src:
                out[camel] = _Field(camel, voff, "tables")
            elif "self._tab.String(" in src:
                out[camel] = _Field(camel, voff, "strings")
            else:
                v = _VECTOR_GET.search(src)
                out[camel] = _Field(camel, voff, "vector", v.group(1) if v else "Uint8")
        elif "self._tab.String(" in src:
            out[camel] = _Field(camel, voff, "string")
        elif "self._tab.Union(" in src:
            out[camel] = _Field(camel, voff, "union")
        elif "self._tab.Indirect(" in src:
            out[camel] = _Field(camel, voff, "table")
        else:
            s = _SCALAR_GET.search(src)
            if s is None:
                continue
            d = _RETURN.search(src)
            try:
                default = ast.literal_eval(d.group(1)) if d else 0
            except (ValueError, SyntaxError):
                default = 0
            out[camel] = _Field(camel, voff, "scalar", s.group(1), default)
    return out


class _File:
    """The model's bytes, with checked reads; every failure names the model and the place."""

    def __init__(self, data: bytes, name: str):
        self.data = data
        self.n = len(data)
        self.name = name

    def fail(self, where: str, what: str):
        raise ModelReadError(f"{self.name}: corrupt or truncated TFLite flatbuffer: {where}: {what}")

    def need(self, pos: int, size: int, where: str, what: str) -> None:
        if pos < 0 or size < 0 or pos + size > self.n:
            self.fail(where, f"{what} at offset {pos} ({size} bytes) lies outside the file ({self.n} bytes)")

    def u32(self, pos: int, where: str, what: str) -> int:
        self.need(pos, 4, where, what)
        return _U32.unpack_from(self.data, pos)[0]

    def root(self) -> "_Table":
        return _Table(self, self.u32(0, "model", "root offset"), "Model", "model")


class _Table:
    """A flatbuffer table whose header and vtable have been checked to lie inside the file."""

    __slots__ = ("f", "pos", "vt", "vt_size", "size", "kind", "where")

    def __init__(self, f: _File, pos: int, kind: str, where: str):
        self.f, self.pos, self.kind, self.where = f, pos, kind, where
        f.need(pos, 4, where, f"{kind} table")
        vt = pos - _I32.unpack_from(f.data, pos)[0]
        f.need(vt, 4, where, f"{kind} vtable")
        vt_size, size = _U16.unpack_from(f.data, vt)[0], _U16.unpack_from(f.data, vt + 2)[0]
        if vt_size < 4 or vt_size % 2:
            f.fail(where, f"{kind} vtable at offset {vt} has an invalid size of {vt_size} bytes")
        f.need(vt, vt_size, where, f"{kind} vtable")
        if size < 4:
            f.fail(where, f"{kind} table at offset {pos} has an invalid size of {size} bytes")
        f.need(pos, size, where, f"{kind} table")
        self.vt, self.vt_size, self.size = vt, vt_size, size

    def _field(self, camel: str) -> _Field:
        return _fields(self.kind)[camel]

    def _slot(self, fld: _Field, width: int) -> int:
        """Absolute position of the field's value, or 0 if the field is absent."""
        if fld.voff + 2 > self.vt_size:
            return 0
        off = _U16.unpack_from(self.f.data, self.vt + fld.voff)[0]
        if off == 0:
            return 0
        if off + width > self.size:
            self.f.fail(self.where, f"field {fld.name} at table offset {off} ({width} bytes) lies past the end of "
                                    f"its {self.size}-byte {self.kind} table")
        return self.pos + off

    def _ref(self, fld: _Field) -> int | None:
        p = self._slot(fld, 4)
        if not p:
            return None
        return p + _U32.unpack_from(self.f.data, p)[0]

    def has(self, camel: str) -> bool:
        fld = self._field(camel)
        return bool(self._slot(fld, 4 if fld.kind != "scalar" else struct.calcsize(_SCALAR[fld.elem])))

    def scalar(self, camel: str):
        fld = self._field(camel)
        fmt = _SCALAR[fld.elem]
        p = self._slot(fld, struct.calcsize(fmt))
        if not p:
            return fld.default
        v = struct.unpack_from(fmt, self.f.data, p)[0]
        return bool(v) if fld.elem == "Bool" else v

    def _vector(self, fld: _Field, elem_size: int) -> tuple[int, int] | None:
        """(start, count) of a vector whose elements are all inside the file, or None if absent."""
        v = self._ref(fld)
        if v is None:
            return None
        count = self.f.u32(v, self.where, f"length of {fld.name}")
        start = v + 4
        room = self.f.n - start
        if count * elem_size > room:
            self.f.fail(self.where, f"{fld.name} at offset {v} claims {count} elements ({count * elem_size} bytes) "
                                    f"but only {room} bytes follow")
        return start, count

    def span(self, camel: str) -> tuple[int, int] | None:
        """(start, byte length) of a vector of numbers, without copying it."""
        fld = self._field(camel)
        sc = self._vector(fld, _NUMPY[fld.elem].itemsize)
        return None if sc is None else (sc[0], sc[1] * _NUMPY[fld.elem].itemsize)

    def array(self, camel: str) -> np.ndarray | None:
        fld = self._field(camel)
        dt = _NUMPY[fld.elem]
        sc = self._vector(fld, dt.itemsize)
        if sc is None:
            return None
        return np.frombuffer(self.f.data, dtype=dt, count=sc[1], offset=sc[0]).copy()

    def _str_at(self, pos: int, what: str) -> str:
        count = self.f.u32(pos, self.where, f"length of {what}")
        if count > self.f.n - pos - 4:
            self.f.fail(self.where, f"{what} at offset {pos} claims {count} bytes but only "
                                    f"{self.f.n - pos - 4} follow")
        raw = self.f.data[pos + 4:pos + 4 + count]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.f.fail(self.where, f"{what} is not valid UTF-8")

    def string(self, camel: str) -> str | None:
        fld = self._field(camel)
        p = self._ref(fld)
        return None if p is None else self._str_at(p, fld.name)

    def table(self, camel: str, kind: str, where: str | None = None) -> "_Table | None":
        fld = self._field(camel)
        p = self._ref(fld)
        return None if p is None else _Table(self.f, p, kind, where or f"{self.where} {fld.name}")

    def tables(self, camel: str, kind: str, where: str) -> list["_Table"]:
        """The tables of a vector of tables; `where` gets the element index appended."""
        fld = self._field(camel)
        sc = self._vector(fld, 4)
        if sc is None:
            return []
        start, count = sc
        data = self.f.data
        return [_Table(self.f, start + 4 * k + _U32.unpack_from(data, start + 4 * k)[0], kind, f"{where} {k}")
                for k in range(count)]


def _dims(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


# ---------------------------------------------------------------------------------------------------------
# The reader


class _Reader:
    def __init__(self, data: bytes, name: str):
        self.f = _File(data, name)
        self.name = name
        self.sg_tensors: list[list[Tensor]] = []
        self.external_buffers = 0  # buffers stored after the flatbuffer (Buffer.offset)

    def fail(self, where: str, what: str):
        raise ModelReadError(f"{self.name}: {where}: {what}")

    def check_index(self, kind: str, index: int, count: int, where: str, what: str | None = None) -> None:
        if not 0 <= index < count:
            there = f"there is 1 {kind}" if count == 1 else f"there are {count} {kind}s"
            self.fail(where, f"{what or kind + ' index'} {index} is out of range ({there})")

    def read(self) -> Model:
        fb = self.f.root()
        self.buffers = self._buffers(fb)
        self.opcodes = [self._opcode(c) for c in fb.tables("OperatorCodes", "OperatorCode", "operator code")]
        model = Model(version=fb.scalar("Version"), description=fb.string("Description") or "",
                      external_buffers=self.external_buffers)
        fsgs = fb.tables("Subgraphs", "SubGraph", "subgraph")
        if not fsgs:
            self.fail("model", "the model has no subgraph")
        model.subgraphs = [Subgraph() for _ in fsgs]
        for i, fsg in enumerate(fsgs):
            self._subgraph(fsg, model.subgraphs[i], model.subgraphs, i)
        for i, m in enumerate(fb.tables("Metadata", "Metadata", "metadata")):
            b = m.scalar("Buffer")
            self.check_index("buffer", b, len(self.buffers), f"metadata {i}")
            model.metadata.append(Metadata(m.string("Name") or "", self.buffers[b]))
        mdb = fb.array("MetadataBuffer")
        for b in ([] if mdb is None else mdb.tolist()):
            self.check_index("buffer", b, len(self.buffers), "metadata_buffer")
            model.metadata_buffers.append(self.buffers[b])
        for i, s in enumerate(fb.tables("SignatureDefs", "SignatureDef", "signature def")):
            model.signatures.append(self._signature(s, i, model.subgraphs))
        return model

    def _buffers(self, fb: _Table) -> list[Buffer]:
        spans: list[tuple[int, int] | None] = []
        for b in fb.tables("Buffers", "Buffer", "buffer"):
            offset, size = b.scalar("Offset"), b.scalar("Size")
            if offset > 1:
                self.external_buffers += 1
                if offset + size > self.f.n:
                    self.f.fail(b.where, f"data at offset {offset} ({size} bytes) lies outside the file "
                                         f"({self.f.n} bytes)")
                spans.append((offset, size))
            else:
                spans.append(b.span("Data"))
        total = sum(s[1] for s in spans if s is not None)
        if total > self.f.n:
            self.f.fail("buffers", f"the buffers claim {total} bytes in total, more than the whole file "
                                   f"({self.f.n} bytes): they overlap")
        cache: dict[tuple[int, int], bytes] = {}
        out = []
        for s in spans:
            if s is None or s[1] == 0:
                out.append(Buffer())
                continue
            if s not in cache:
                cache[s] = self.f.data[s[0]:s[0] + s[1]]
            out.append(Buffer(cache[s]))
        return out

    def _opcode(self, c: _Table) -> tuple[str, str | None, int]:
        code = max(c.scalar("BuiltinCode"), c.scalar("DeprecatedBuiltinCode"))
        if code not in schema.OPNAME_BY_CODE:
            self.fail(c.where, f"unknown builtin operator code {code} (newer schema?)")
        custom = c.string("CustomCode")
        if custom is not None and any(ch < " " or ch == "\x7f" for ch in custom):
            self.fail(c.where, f"custom code {custom!r} contains control characters")
        return schema.OPNAME_BY_CODE[code], custom, c.scalar("Version")

    def _subgraph(self, fsg: _Table, sg: Subgraph, all_sgs: list[Subgraph], sg_index: int) -> None:
        where = f"subgraph {sg_index}"
        sg.name = fsg.string("Name") or ""
        tensors = [self._tensor(ft) for ft in fsg.tables("Tensors", "Tensor", f"{where} tensor")]
        self.sg_tensors.append(tensors)
        n = len(tensors)

        def refs(table: _Table, camel: str, what: str, optional: bool = False) -> list[Tensor | None]:
            arr = table.array(camel)
            out: list[Tensor | None] = []
            for i in ([] if arr is None else arr.tolist()):
                if optional and i == -1:
                    out.append(None)
                    continue
                self.check_index("tensor", i, n, table.where, f"{what} tensor index")
                out.append(tensors[i])
            return out

        sg.inputs = refs(fsg, "Inputs", "input")
        sg.outputs = refs(fsg, "Outputs", "output")
        for fop in fsg.tables("Operators", "Operator", f"{where} operator"):
            idx = fop.scalar("OpcodeIndex")
            self.check_index("operator code", idx, len(self.opcodes), fop.where, "opcode index")
            type_, custom, version = self.opcodes[idx]
            op = Operator(type=type_, custom_code=custom, version=version)
            fop.where = f"{fop.where} ({op.kind!r})" if type_ == "CUSTOM" else f"{fop.where} ({type_})"
            op.inputs = refs(fop, "Inputs", "input", optional=True)
            op.outputs = refs(fop, "Outputs", "output")
            op.intermediates = refs(fop, "Intermediates", "intermediate")
            op.options_type, op.options = self._options(fop, "BuiltinOptions", schema.OPTIONS_BY_CODE, all_sgs)
            op.options2_type, op.options2 = self._options(fop, "BuiltinOptions2", schema.OPTIONS2_BY_CODE, all_sgs)
            large_size = fop.scalar("LargeCustomOptionsSize")
            if large_size > 0:
                start = fop.scalar("LargeCustomOptionsOffset")
                if start + large_size > self.f.n:
                    self.f.fail(fop.where, f"custom options at offset {start} ({large_size} bytes) lie outside the "
                                           f"file ({self.f.n} bytes)")
                op.custom_options = self.f.data[start:start + large_size]
            else:
                co = fop.span("CustomOptions")
                if co is not None:
                    op.custom_options = self.f.data[co[0]:co[0] + co[1]]
            op.custom_options_format = fop.scalar("CustomOptionsFormat")
            mv = fop.array("MutatingVariableInputs")
            if mv is not None:
                op.mutating_variable_inputs = [bool(x) for x in mv]
            sg.operators.append(op)

    def _tensor(self, ft: _Table) -> Tensor:
        where = ft.where
        arr = ft.array("Shape")
        shape = () if arr is None else tuple(arr.tolist())
        if len(shape) > MAX_RANK:
            self.fail(where, f"shape has {len(shape)} dimensions (more than {MAX_RANK})")
        if any(d < 0 for d in shape):
            self.fail(where, f"negative dimension in shape {_dims(shape)}")
        dtype_code = ft.scalar("Type")
        if dtype_code not in schema.DTYPE_BY_CODE:
            self.fail(where, f"unknown tensor type code {dtype_code}")
        dtype = schema.DTYPE_BY_CODE[dtype_code]
        elements = 1
        for d in shape:
            elements *= d  # exact Python integers: no overflow, and no array is built from the shape
        if elements > MAX_ELEMENTS:
            self.fail(where, f"shape {_dims(shape)} has {elements} elements (more than {MAX_ELEMENTS})")
        from ..ir import itemsize
        if elements * itemsize(dtype) > MAX_TENSOR_BYTES:
            self.fail(where, f"shape {_dims(shape)} of {dtype} needs {elements * itemsize(dtype)} bytes (more than "
                             f"{MAX_TENSOR_BYTES})")
        sig_arr = ft.array("ShapeSignature")
        sig = None if sig_arr is None else tuple(sig_arr.tolist())
        if sig is not None:
            if len(sig) != len(shape):
                self.fail(where, f"shape_signature {_dims(sig)} has {len(sig)} dimensions but shape {_dims(shape)} "
                                 f"has {len(shape)}")
            for s, d in zip(sig, shape):
                if s != d and s != -1:
                    self.fail(where, f"shape_signature {_dims(sig)} does not match shape {_dims(shape)} "
                                     "(each dimension must be equal to the shape's, or -1 for unknown)")
        buf_index = ft.scalar("Buffer")
        self.check_index("buffer", buf_index, max(len(self.buffers), 1), where)
        buf = self.buffers[buf_index] if self.buffers else None
        if ft.has("Sparsity"):
            self.fail(where, "sparse tensors are not supported; densify the model first")
        t = Tensor(
            name=ft.string("Name") or "",
            dtype=dtype,
            shape=shape,
            shape_signature=sig,
            buffer=buf if buf is not None and len(buf.data) > 0 else None,
            is_variable=ft.scalar("IsVariable"),
            has_rank=ft.scalar("HasRank"),
        )
        q = ft.table("Quantization", "QuantizationParameters")
        if q is not None:
            if q.scalar("DetailsType") != 0:
                self.fail(where, "custom quantization details are not supported")
            scale, zp = q.array("Scale"), q.array("ZeroPoint")
            mn, mx = q.array("Min"), q.array("Max")
            t.quantization = Quantization(
                scale=None if scale is None else scale.astype(np.float32),
                zero_point=None if zp is None else zp.astype(np.int64),
                min=None if mn is None else mn.astype(np.float32),
                max=None if mx is None else mx.astype(np.float32),
                quantized_dimension=q.scalar("QuantizedDimension"),
            )
        return t

    def _options(self, fop: _Table, camel: str, names: dict[int, str], all_sgs: list[Subgraph]):
        type_code = fop.scalar(camel + "Type")
        if type_code == 0 or not fop.has(camel):
            return None, {}
        if type_code not in names:
            self.fail(fop.where, f"unknown builtin options type {type_code}")
        options_type = names[type_code]
        table = fop.table(camel, options_type, f"{fop.where} {options_type}")
        fields = _fields(options_type)
        values: dict = {}
        for f in schema.option_fields(options_type):
            fld = fields.get(f.camel)
            if fld is None:
                continue
            if fld.kind == "vector":
                arr = table.array(f.camel)
                if arr is not None:
                    values[f.name] = arr.tolist()
                continue
            if fld.kind == "string":
                v = table.string(f.camel)
                if v is not None:
                    values[f.name] = v
                continue
            if fld.kind != "scalar":
                continue
            v = table.scalar(f.camel)
            if f.name.endswith("subgraph_index") or (options_type == "CallOptions" and f.name == "subgraph"):
                self.check_index("subgraph", v, len(all_sgs), table.where, f"{f.name}")
                v = all_sgs[v]
            values[f.name] = v
        return options_type, values

    def _signature(self, s: _Table, i: int, subgraphs: list[Subgraph]) -> SignatureDef:
        sgi = s.scalar("SubgraphIndex")
        self.check_index("subgraph", sgi, len(subgraphs), s.where, "subgraph_index")
        by_index = self.sg_tensors[sgi]

        def entries(camel: str) -> list:
            out = []
            for m in s.tables(camel, "TensorMap", f"{s.where} {schema.snake(camel)}"):
                ti = m.scalar("TensorIndex")
                self.check_index("tensor", ti, len(by_index), m.where, "tensor_index")
                out.append((m.string("Name") or "", by_index[ti]))
            return out

        return SignatureDef(key=s.string("SignatureKey") or "", subgraph=subgraphs[sgi],
                            inputs=entries("Inputs"), outputs=entries("Outputs"))
