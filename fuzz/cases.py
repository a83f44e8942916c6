"""Fuzz cases: a model (a mutated seed or a random graph) and the CLI commands to run on it.

Case `i` of run seed `s` is a pure function of (s, i): every case can be regenerated from its number alone
(`python -m fuzz.run --replay I --seed S`).

Seeds are the zoo models (originals) and their streaming conversions (ring-buffer, variable, external), built in
process from the zoo. Mutations:

  bytes   bit flips, byte sets, truncation, extension, chunk delete/insert/duplicate, splices of two seeds
  field   1-3 edits of fields found by walking the seed through the schema (fuzz/layout.py): shape dimensions,
          tensor/buffer/opcode/subgraph indices, vector lengths, offsets, vtable entries, option values
  graph   1-2 semantic edits through the IR (fuzz/graphs.py): shapes, dtypes, operator order, rewiring,
          option values, op types, subgraph calls, buffer sizes, quantization, RING_BUFFER options
  random  a random small time-series graph (fuzz/graphs.py), sometimes with graph edits on top
"""

from __future__ import annotations

import functools
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

from . import graphs
from .layout import Loc, walk

REPO = Path(__file__).resolve().parents[1]
ZOO = sorted((REPO / "models").glob("*.tflite"))
STATES = ("ring-buffer", "variable", "external", "circular-buffer")


@dataclass
class Command:
    args: list[str]  # with placeholders {IN} {OUT} {OUT2} {ORIG}
    expect: tuple[int, ...]  # acceptable exit codes
    requires: int | None = None  # index of an earlier command that must have exited 0, else skip this one
    same_as: int | None = None  # determinism: OUT of this command must equal OUT of command `same_as`


@dataclass
class Case:
    index: int
    seed: str
    mutation: str
    data: bytes
    original: str | None = None  # zoo stem of the original of a streaming seed (verify ORIG IN)
    commands: list[Command] = field(default_factory=list)
    subprocess: bool = False  # run the commands as real `python -m xstream` processes


@functools.lru_cache(maxsize=1)
def seeds() -> dict[str, tuple[bytes, str | None]]:
    """name -> (bytes, zoo stem of the original if this is a streaming conversion)."""
    import xstream
    from xstream.errors import XstreamError
    from xstream.pipeline import convert_with_plan

    out: dict[str, tuple[bytes, str | None]] = {}
    for p in ZOO:
        data = p.read_bytes()
        out[p.stem] = (data, None)
        model = xstream.load(data)
        for state in STATES:
            try:
                conv = convert_with_plan(model, state=state)
            except XstreamError:
                continue
            except Exception:  # a converter bug: not this harness's business; the seed is just missing
                continue
            out[f"{p.stem}@{state}"] = (xstream.serialize(conv.model), p.stem)
    return out


@functools.lru_cache(maxsize=None)
def layout(name: str) -> list[Loc]:
    return walk(seeds()[name][0])


# ---------------------------------------------------------------------------------------------------------
# Byte mutators

INTERESTING_32 = [0, 1, 2, 3, 4, 7, 8, 15, 16, 255, 256, 1023, 1024, 4096, 65535, 65536, 1 << 20, 1 << 24,
                  (1 << 31) - 1, 1 << 31, (1 << 32) - 1, (1 << 32) - 4, 1 << 30, 1 << 16]
INTERESTING_NEG = [-1, -2, -4, -8, -128, -(1 << 31)]


def _bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _chunk(rng: random.Random, n: int) -> tuple[int, int]:
    a = rng.randrange(n)
    return a, min(n, a + rng.choice([1, 2, 4, 8, 16, 64, 256, 1024]))


def mutate_bytes(data: bytes, rng: random.Random, other: bytes) -> tuple[bytes, str]:
    d = bytearray(data)
    n = len(d)
    if n < 16 or not other:
        return bytes(d) + _bytes(rng, rng.randint(1, 64)), "append random bytes"
    kind = rng.choice(["bitflip", "bitflip", "byteset", "truncate", "extend", "delete", "insert", "duplicate",
                       "splice", "overwrite", "header", "int32"])
    if kind == "bitflip":
        k = rng.choice([1, 1, 2, 4, 8, 32])
        for _ in range(k):
            i = rng.randrange(n)
            d[i] ^= 1 << rng.randrange(8)
        return bytes(d), f"flip {k} bit(s)"
    if kind == "byteset":
        k = rng.choice([1, 2, 4, 16])
        for _ in range(k):
            d[rng.randrange(n)] = rng.choice([0, 0xFF, 0x7F, 0x80, 0x01, rng.getrandbits(8)])
        return bytes(d), f"set {k} byte(s)"
    if kind == "truncate":
        cut = rng.choice([rng.randrange(n), n - rng.randint(1, 16), rng.randint(0, 64)])
        return bytes(d[:max(cut, 0)]), f"truncate to {max(cut, 0)} bytes"
    if kind == "extend":
        extra = rng.choice([bytes(rng.randint(1, 4096)), _bytes(rng, rng.randint(1, 512)), data[:rng.randint(1, n)]])
        return bytes(d) + extra, f"append {len(extra)} bytes"
    if kind == "delete":
        a, b = _chunk(rng, n)
        return bytes(d[:a] + d[b:]), f"delete bytes {a}:{b}"
    if kind == "insert":
        a = rng.randrange(n)
        ins = _bytes(rng, rng.choice([1, 4, 16, 100]))
        return bytes(d[:a] + ins + d[a:]), f"insert {len(ins)} bytes at {a}"
    if kind == "duplicate":
        a, b = _chunk(rng, n)
        c = rng.randrange(n)
        return bytes(d[:c] + d[a:b] + d[c:]), f"copy bytes {a}:{b} to {c}"
    if kind == "splice":
        cut_a, cut_b = rng.randrange(n), rng.randrange(len(other))
        return bytes(d[:cut_a]) + other[cut_b:], f"splice head {cut_a} + other tail from {cut_b}"
    if kind == "overwrite":
        a = rng.randrange(min(n, len(other)))
        b = min(n, len(other), a + rng.choice([4, 16, 64, 512, 4096]))
        d[a:b] = other[a:b]
        return bytes(d), f"overwrite {a}:{b} from other seed"
    if kind == "header":
        i = rng.choice([0, 1, 2, 3, 8, 9, 10, 11, 12])
        d[i] = rng.getrandbits(8)
        return bytes(d), f"header byte {i}"
    # int32: write an interesting 32-bit value at a random 4-aligned position
    i = rng.randrange(0, max(n - 4, 1), 4)
    v = rng.choice(INTERESTING_32 + INTERESTING_NEG)
    d[i:i + 4] = struct.pack("<I", v & 0xFFFFFFFF)
    return bytes(d), f"int32 {v} at {i}"


def _edit_value(loc: Loc, rng: random.Random, data_len: int):
    v = loc.value
    if isinstance(v, float):
        return rng.choice([0.0, -1.0, 1e38, float("nan"), float("inf"), -v, v * 2])
    if loc.kind in ("vlen", "strlen"):
        return rng.choice([0, v + 1, v - 1, v * 2, v + 1000, data_len, data_len // 4, (1 << 31) - 1,
                           (1 << 32) - 1, 1 << 28])
    if loc.kind in ("uoffset", "soffset"):
        return rng.choice([0, v + 4, v - 4, v + 1, -v, data_len, data_len - 2, (1 << 31) - 1, -(1 << 31),
                           rng.randint(-data_len, data_len)])
    if loc.kind in ("voffset", "vtsize", "tsize"):
        return rng.choice([0, 1, 2, 3, v + 2, v + 4, v - 2, 0xFFFF, 0x7FFF, rng.getrandbits(16)])
    return rng.choice([0, 1, -1, 2, v + 1, v - 1, v * 2, -v, 1 << 30, (1 << 31) - 1, -(1 << 31), 1 << 20,
                       1 << 16, 255, 256, 65536, rng.randint(-1000, 1000)])


def _pack(fmt: str, v) -> bytes:
    if fmt in ("<f", "<d"):
        try:
            return struct.pack(fmt, float(v))
        except OverflowError:  # beyond float32: the nearest is infinity
            return struct.pack(fmt, float("inf") if v > 0 else float("-inf"))
    if fmt == "<?":
        return struct.pack("<B", int(v) & 0xFF)
    size = struct.calcsize(fmt)
    return (int(v) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def mutate_fields(name: str, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    locs = layout(name)
    d = bytearray(data)
    notes = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        # favour the fields that matter: shapes, indices, lengths, options
        pool = locs
        r = rng.random()
        if r < 0.25:
            pool = [l for l in locs if ".shape" in l.path or "shape_signature" in l.path] or locs
        elif r < 0.45:
            pool = [l for l in locs if l.path.endswith(("inputs", "outputs", ".buffer", "opcode_index",
                                                         "subgraph_index", "tensor_index", ".type"))
                    or ".inputs[" in l.path or ".outputs[" in l.path] or locs
        elif r < 0.6:
            pool = [l for l in locs if "options" in l.path] or locs
        loc = rng.choice(pool)
        v = _edit_value(loc, rng, len(data))
        d[loc.pos:loc.pos + loc.size] = _pack(loc.fmt, v)
        notes.append(f"{loc.path}={v}")
    return bytes(d), "field " + ", ".join(notes)


def mutate_graph(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    import xstream

    model = xstream.load(data)
    notes = [graphs.mutate_model(model, rng) for _ in range(rng.choice([1, 1, 2]))]
    return xstream.serialize(model), "graph " + "; ".join(notes)


# ---------------------------------------------------------------------------------------------------------
# Cases


def make_case(run_seed: int, index: int, *, subprocess_fraction: float = 0.0, verify_fraction: float = 0.35,
              tflm_fraction: float = 0.0) -> Case:
    rng = random.Random(f"xstream-fuzz:{run_seed}:{index}")
    corpus = seeds()
    names = sorted(corpus)
    r = rng.random()
    if r < 0.12:
        seed_name, original = "random-graph", None
        data = graphs.random_graph(rng)
        mutation = "random graph"
        if rng.random() < 0.3:
            try:
                data, m = mutate_graph(data, rng)
                mutation += "; " + m
            except Exception as e:  # an edit the writer cannot express: keep the unedited graph
                mutation += f"; graph edit skipped ({type(e).__name__})"
    else:
        seed_name = rng.choice(names)
        data, original = corpus[seed_name]
        mutation = "none"
        kind = rng.random()
        if kind < 0.02:
            pass
        elif kind < 0.40:
            other = corpus[rng.choice(names)][0]
            steps = []
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                data, m = mutate_bytes(data, rng, other)
                steps.append(m)
            mutation = "bytes " + "; ".join(steps)
        elif kind < 0.70:
            data, mutation = mutate_fields(seed_name, data, rng)
        else:
            try:
                data, mutation = mutate_graph(data, rng)
            except Exception as e:
                data, mutation = mutate_fields(seed_name, data, rng)
                mutation = f"(graph edit failed: {type(e).__name__}) " + mutation
    case = Case(index, seed_name, mutation, data, original, subprocess=rng.random() < subprocess_fraction)
    cmds = case.commands
    cmds.append(Command(["inspect", "--json", "{IN}"] if rng.random() < 0.5 else ["inspect", "{IN}"], (0, 2)))
    if original is None:
        state = rng.choice(STATES)
        conv = ["convert", "{IN}", "{OUT}", "--state", state]
        if rng.random() < 0.15:
            conv += ["--hop", str(rng.choice([1, 2, 3, 4, 8, 0, -1, 1000]))]
        if rng.random() < 0.1:
            conv += ["--time-axis", str(rng.choice([0, 1, 2, 3, -1, 9]))]
        if rng.random() < 0.5:
            conv.append("--json")
        tflm_target = rng.random() < 0.15  # its own passes (no init subgraph, 1x1 convs as FULLY_CONNECTED)
        if tflm_target:
            conv += ["--target", "tflm"]
        cmds.append(Command(conv, (0, 1, 2)))
        if rng.random() < verify_fraction:
            runtime = ["--runtime", "tflm"] if tflm_target or rng.random() < tflm_fraction else []
            cmds.append(Command(["verify", "{IN}", "{OUT}", "--sequences", "1"] + runtime, (0, 1, 2, 3),
                                requires=1))
        if rng.random() < 0.1:
            cmds.append(Command(["convert", "{IN}", "{OUT2}"] + conv[3:], (0, 1, 2), same_as=1))
        if rng.random() < 0.03:
            cmds.append(Command(["convert", "{IN}", "{IN}"], (2,)))
    else:
        runtime = ["--runtime", "tflm"] if rng.random() < tflm_fraction else []
        cmds.append(Command(["verify", "{ORIG}", "{IN}", "--sequences", "1"] + runtime +
                            (["--json"] if rng.random() < 0.3 else []), (0, 1, 2, 3)))
        if rng.random() < 0.3:
            cmds.append(Command(["convert", "{IN}", "{OUT}", "--state", rng.choice(STATES)], (0, 1, 2)))
    return case
