"""Whether streaming gains anything: the stream's RAM and MACs per step against the original's, in one rule that
`convert`, `inspect --stream` and every other report use."""

from __future__ import annotations


def _ram(d: dict) -> tuple[int | None, str]:
    """The RAM figure of a cost dict: TFLite Micro's measured arena where there is one, else the planned RAM."""
    if d.get("tflm_arena_bytes") is not None:
        return d["tflm_arena_bytes"], "tflm_arena_bytes"
    return d.get("ram_bytes"), "ram_bytes"


def gain(before: dict, after: dict) -> dict:
    """What the stream (`after`) saves against the original (`before`): each a dict with "ram_bytes" (planned
    arena + state), "macs" (per step) and optionally "tflm_arena_bytes" (measured; used for RAM when both have
    it). Returns {"ram": {...}, "macs": {...}, "nothing": [what is not lower], "message": str | None}; the message
    is set when streaming gains nothing on RAM or on MACs per step."""
    (rb, kb), (ra, ka) = _ram(before), _ram(after)
    if kb != ka:  # compare like with like: the planned figure on both sides
        (rb, kb), (ra, ka) = (before.get("ram_bytes"), "ram_bytes"), (after.get("ram_bytes"), "ram_bytes")
    out: dict = {"ram": {"before": rb, "after": ra, "figure": kb},
                 "macs": {"before": before.get("macs"), "after": after.get("macs"), "figure": "macs per step"},
                 "nothing": []}
    words = []
    for key, what in (("ram", "RAM"), ("macs", "MACs per step")):
        b, a = out[key]["before"], out[key]["after"]
        out[key]["ratio"] = round(b / a, 3) if b is not None and a else None
        if b is not None and a is not None and a >= b:
            out["nothing"].append(key)
            unit = " bytes" if key == "ram" else ""
            words.append(f"{what} {a:,}{unit} streaming vs {b:,}{unit} original")
    out["message"] = ("streaming gains nothing here: " + "; ".join(words)) if words else None
    return out
