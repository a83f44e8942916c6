"""Where the fields of a valid .tflite file live, found by walking it through the schema.

`walk(data)` returns one `Loc` per field value, vector length, offset, vtable entry and string length it meets,
each with a readable path ("subgraphs[0].tensors[3].shape[1]"), so a mutator can edit a field through the schema
(set a shape dimension to 2**30, a tensor index to -1, a vector length past the file) instead of flipping blind bits.
It uses the reader's checked table access, so it only walks seeds that read cleanly.
"""

from __future__ import annotations

import functools
import inspect
import re
import struct
from dataclasses import dataclass

from xstream.tflite import schema
from xstream.tflite.reader import _SCALAR, _U32, _File, _Table, _fields

_TABLE_CLASS = re.compile(r"from tflite\.(\w+) import")
MAX_ELEMS_PER_VECTOR = 24  # numeric vector elements recorded per vector (weights are many; bytes mutators do them)


@dataclass(frozen=True)
class Loc:
    pos: int
    fmt: str  # struct format of the value at pos
    kind: str  # scalar, elem, vlen, strlen, uoffset, soffset, voffset, vtsize, tsize
    path: str
    value: int | float

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)


@functools.lru_cache(maxsize=None)
def _child_kind(table: str, camel: str) -> str | None:
    cls = getattr(schema.module(table), table)
    m = _TABLE_CLASS.search(inspect.getsource(getattr(cls, camel)))
    return m.group(1) if m else None


_UNIONS = {"BuiltinOptions": schema.OPTIONS_BY_CODE, "BuiltinOptions2": schema.OPTIONS2_BY_CODE}


def walk(data: bytes) -> list[Loc]:
    f = _File(data, "seed")
    out: list[Loc] = []
    seen: set[tuple[int, str]] = set()

    def val(fmt: str, pos: int):
        return struct.unpack_from(fmt, data, pos)[0]

    def add(pos: int, fmt: str, kind: str, path: str) -> None:
        if 0 <= pos and pos + struct.calcsize(fmt) <= len(data):
            out.append(Loc(pos, fmt, kind, path, val(fmt, pos)))

    def table(t: _Table, path: str) -> None:
        if (t.pos, t.kind) in seen:
            return
        seen.add((t.pos, t.kind))
        add(t.pos, "<i", "soffset", f"{path}.<vtable offset>")
        add(t.vt, "<H", "vtsize", f"{path}.<vtable size>")
        add(t.vt + 2, "<H", "tsize", f"{path}.<table size>")
        for camel, fld in _fields(t.kind).items():
            if fld.voff + 2 <= t.vt_size:
                add(t.vt + fld.voff, "<H", "voffset", f"{path}.<{fld.name} slot>")
            width = struct.calcsize(_SCALAR[fld.elem]) if fld.kind == "scalar" else 4
            p = t._slot(fld, width)
            if not p:
                continue
            fpath = f"{path}.{fld.name}"
            if fld.kind == "scalar":
                add(p, _SCALAR[fld.elem], "scalar", fpath)
                continue
            add(p, "<I", "uoffset", f"{fpath}.<offset>")
            target = p + _U32.unpack_from(data, p)[0]
            if fld.kind == "vector":
                add(target, "<I", "vlen", f"{fpath}.<length>")
                fmt = _SCALAR[fld.elem]
                n = val("<I", target)
                for k in range(min(n, MAX_ELEMS_PER_VECTOR)):
                    add(target + 4 + k * struct.calcsize(fmt), fmt, "elem", f"{fpath}[{k}]")
            elif fld.kind in ("string", "strings"):
                add(target, "<I", "strlen" if fld.kind == "string" else "vlen", f"{fpath}.<length>")
            elif fld.kind == "tables":
                kind = _child_kind(t.kind, camel)
                add(target, "<I", "vlen", f"{fpath}.<length>")
                for k, sub in enumerate(t.tables(camel, kind, fpath)):
                    add(target + 4 + 4 * k, "<I", "uoffset", f"{fpath}[{k}].<offset>")
                    table(sub, f"{fpath}[{k}]")
            elif fld.kind == "table":
                kind = _child_kind(t.kind, camel)
                if kind is not None:
                    table(_Table(f, target, kind, fpath), fpath)
            elif fld.kind == "union" and camel in _UNIONS:
                code = t.scalar(camel + "Type")
                kind = _UNIONS[camel].get(code)
                if kind and kind != "NONE":
                    table(_Table(f, target, kind, fpath), fpath)

    table(f.root(), "model")
    return out
