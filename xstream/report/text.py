"""Text rendering of every report xstream prints: one place for tables, numbers and words."""

from __future__ import annotations

def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def options(opts: dict) -> str:
    return " ".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in opts.items())


def _fmt_count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _fmt_cost(macs: int | None, other: int | None) -> str:
    return _fmt_count(macs) + (f" +{other:,} other" if other else "")


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


def model_cost(c: dict) -> str:
    lines = [f"activations (planned) {c['arena_bytes']:,} bytes (TFLite Micro greedy plan, 16-byte aligned; "
             f"at least {c['arena_lower_bound_bytes']:,} live at once; no kernel data or scratch)",
             f"compute   {c['macs']:,} MACs per invoke, {c['other_ops']:,} other ops (pool and reduction reads, "
             "element-wise)"]
    if c["states"]:
        where = "inside the arena (model I/O)" if c["state_in_arena"] == c["state_bytes"] else "outside the arena"
        lines.append(f"state     {c['state_bytes']:,} bytes in {len(c['states'])} {c['state_form']} buffer(s), "
                     f"{where}; RAM planned (activations + state) {c['ram_bytes']:,} bytes")
    return "\n".join(lines)


def stream(r: dict) -> str:
    lines = [f"streaming (nothing written): hop {r['hop']} of {r['window']} frames, form {r['form']}, contract "
             f"{r['contract']}, offset D={r['offset']:+d}, warm-up {r['warmup']} step(s)"]

    def frames(a, b):
        return "-" if a is None and b is None else f"{'-' if a is None else a}->{'-' if b is None else b}"

    rows = []
    for o in r["operators"]:
        shared = f" (shared with #{', #'.join(map(str, o['state_shared_with']))})" if o["state_shared_with"] else ""
        rows.append([str(o["index"]), o["op"] + (" (head)" if o["head"] else ""),
                     "-" if o["time_axis"] is None else str(o["time_axis"]),
                     frames(o["frames_in"], o["frames_out"]), frames(o["step_in"], o["step_out"]),
                     f"{o['state_frames']}{shared}", _fmt_count(o["state_bytes"]), _fmt_cost(o["macs"], o["other"]),
                     _fmt_cost(o["step_macs"], o["step_other"]), _fmt_cost(o["min_macs"], o["min_other"])])
    lines.append(table(["#", "op", "time", "frames in->out", "per step", "state frames", "state bytes",
                         "MACs", "MACs/step", "minimum/step"], rows))
    if r["added_ops"]:
        lines.append("added by conversion: " + ", ".join(f"{n} {k}" for k, n in sorted(r["added_ops"].items())))
    b, a, low, q = r["before"], r["after"], r["minimum"], r["after_over_minimum"]
    totals = [
        [f"TFLite Micro arena (measured{', ' + a['tflm_arena_runtime'] if a.get('tflm_arena_runtime') else ''})",
         _fmt_count(b.get("tflm_arena_bytes")), _fmt_count(a.get("tflm_arena_bytes")), "", ""],
        ["activations (planned)", _fmt_count(b["arena_bytes"]), _fmt_count(a["arena_bytes"]),
         _fmt_count(low["arena_bytes"]), _fmt_ratio(q["arena_bytes"])],
        ["state bytes", _fmt_count(b["state_bytes"]), _fmt_count(a["state_bytes"]),
         _fmt_count(low["state_bytes"]), _fmt_ratio(q["state_bytes"])],
        ["RAM planned (activations + state)", _fmt_count(b["ram_bytes"]), _fmt_count(a["ram_bytes"]), "", ""],
        ["weight bytes", _fmt_count(b["weight_bytes"]), _fmt_count(a["weight_bytes"]),
         _fmt_count(low["weight_bytes"]), _fmt_ratio(q["weight_bytes"])],
        ["MACs per step", _fmt_count(b["macs"]), _fmt_count(a["macs"]), _fmt_count(low["macs"]),
         _fmt_ratio(q["macs"])],
        ["other ops per step", _fmt_count(b["other_ops"]), _fmt_count(a["other_ops"]),
         _fmt_count(low["other_ops"]), _fmt_ratio(q["other_ops"])],
    ]
    lines.append("")
    lines.append(table(["", "original", "streaming", "minimum", "streaming/minimum"], totals))
    g = r["gain"]
    ram_words = ("TFLite Micro arena, measured" if g["ram"]["figure"] == "tflm_arena_bytes" else
                 "planned activations + state" + (f"; not measured: {a['tflm_arena_note']}"
                                                  if a.get("tflm_arena_note") else ""))
    lines.append(f"original/streaming: RAM {_fmt_ratio(g['ram']['ratio'])}x ({ram_words}), MACs per step "
                 f"{_fmt_ratio(g['macs']['ratio'])}x (the original recomputes its whole window every hop)")
    if g["message"]:
        lines.append(f"note: {g['message']}")
    lines.append("minimum: state by the contract's rule (docs/CONTRACT.md); MACs with every output frame computed once (ops from the "
                 "head on run once per step); arena: most bytes live at once in the streaming graph; weights: the "
                 "original's")
    return "\n".join(lines)


def _offset_words(d: int) -> str:
    if d == 0:
        return "at the newest frame fed"
    if d > 0:
        return f"{d} frame(s) after the newest frame fed (the model never reads its last {d} frame(s))"
    return f"{-d} frame(s) before the newest frame fed ({-d} frame(s) of latency)"


def conversion(r: dict) -> str:
    lines = [f"{r['input']} -> {r['output']}"]
    if r["contract"] == "causal":
        lines.append(f"contract  causal: after a reset, step {r['compare_step']} (the one completing the first "
                     "window) equals the original; later steps keep real history where it saw padding")
    elif r["contract"] == "context":
        c = r["context"]
        lines.append(f"contract  context: from step {r['warmup']} on, each output equals the context reference (the "
                     f"original without its padding on time, on {c['window']} frames: {c['before']} before and "
                     f"{c['after']} after the window) — not the original; it stands for the original window ending "
                     f"{_offset_words(r['offset'])}")
    else:
        lines.append(f"contract  window-exact: from step {r['warmup']} on, each output equals the original on the "
                     f"window ending {_offset_words(r['offset'])}")
    delay = f", input delayed {r['input_delay']} frame(s) to align the first window" if r["input_delay"] else ""
    lines.append(f"hop       {r['hop']} frame(s) per step, window {r['window']} frames, offset D={r['offset']:+d}, "
                 f"warm-up {r['warmup']} step(s){delay}")
    slides = ", ".join(f"#{s['index']} {s['op']} k{s['kernel']}" + (f" s{s['stride']}" if s['stride'] > 1 else "")
                       + (f" d{s['dilation']}" if s['dilation'] > 1 else "") for s in r["streamed_ops"])
    lines.append(f"streamed  {len(r['streamed_ops'])} op(s): {slides}" if slides else
                 "streamed  none (no op slides along time; the stream only buffers what the head reads)")
    if r["heads"]:
        lines.append(f"heads     {', '.join(r['heads'])} (read the whole window from a ring buffer)")
    in_place = sum(1 for s in r["states"] if s.get("in_place"))
    held = f"; {in_place} in place: window and state are one buffer, outside the activations" if in_place else ""
    lines.append(f"state     {r['state_bytes']} bytes in {len(r['states'])} buffer(s) (minimum by the contract "
                 f"{r['minimum_state_bytes']}{held}), form {r['state_form']}")
    if r["frames_per_invoke"] != r["hop"]:
        lines.append(f"invokes   {r['frames_per_invoke']} frame(s) per invoke; the outputs of a step are those of "
                     f"its last invoke (every {r['hop'] // r['frames_per_invoke']}th)")
    if r.get("edges"):
        e = r["edges"]
        sides = " and ".join(f"{b['side']} ({b['ops']} ops, {b['macs']:,} MACs" +
                             (f", from a {b['frames']}-frame delay line of the input)" if b["frames"] else
                              ", from the stream's state)") for b in e["branches"])
        lines.append(f"edges     SAME padding on time: the frames that read it are recomputed every step: {sides}")
    if r.get("edge_effect"):
        lines.append("edge      " + edge_effect(r["edge_effect"]))
    if r["target"]:
        lines.append(f"target    {r['target']}: {r['target_note']}")
    return "\n".join(lines)


def edge_effect(e: dict) -> str:
    """How far a context stream is from the original (verify.edge_effect)."""
    if not e.get("windows"):
        return f"effect not measured: {e.get('note', 'no window')}"
    rel = e.get("mean_relative_to_movement")
    parts = [f"vs the original on {e['windows']} windows of {e['source']}: mean abs difference "
             f"{e['mean_abs']:.3g} (max {e['max_abs']:.3g})"]
    if rel is not None:
        parts.append(f"{rel:.2f}x how much the original's output moves from one window to the next")
    if e.get("top1_agreement") is not None:
        parts.append(f"top-1 agreement {100 * e['top1_agreement']:.1f}%")
    return ", ".join(parts)


def no_gain_note(r: dict) -> str | None:
    """The line(s) `convert` prints on stderr when streaming gains nothing (report.gain.gain's message), and when
    the form chosen needs more TFLite Micro arena than the original (measured, with the cheapest form)."""
    g = r.get("no_gain")
    lines = [f"xstream: note: {g['message']} (planned figures)"] if g else []
    arena = r.get("tflm_arena") or {}
    if arena.get("message"):
        lines.append(f"xstream: note: {arena['message']}")
    return "\n".join(lines) or None


def stream_description(info: dict) -> str:
    """What a streaming model says about itself (its "xstream_stream" metadata; report/stream_info.py)."""
    if "unreadable" in info:
        return f"stream    {info['unreadable']}"
    words = (f"causal: step {info['compare_step']} (from 0, after a reset) equals the original"
             if info.get("contract") == "causal" else
             f"{info.get('contract')}: from step {info.get('warmup')} on, each output equals the original on the "
             f"window ending {_offset_words(info.get('offset', 0))}")
    lines = [f"stream    written by xstream {info.get('version')} ({info.get('contract_doc')}): {words}",
             f"          window {info.get('window')} frames, hop {info.get('hop')}, "
             f"offset D={info.get('offset', 0):+d}, "
             f"warm-up {info.get('warmup')} step(s), time axis {info.get('time_axis')}, state "
             f"{info.get('state_bytes', 0):,} bytes in form {info.get('state_form')}"
             + (f", target {info['target']}" if info.get("target") else "")]
    for b in info.get("state_buffers", []):
        lines.append(f"          state {b['frames']} frame(s), {b['bytes']:,} bytes of {b['name']}")
    return "\n".join(lines)


def _why_more(self) -> str:  # self: an ArenaReport
    if None in (self.original_op_data_bytes, self.streaming_op_data_bytes):
        return ""
    op = self.streaming_op_data_bytes - self.original_op_data_bytes
    act = (self.streaming_arena_bytes - self.streaming_op_data_bytes) - \
        (self.original_arena_bytes - self.original_op_data_bytes)
    return (f": op data {op:+,} bytes (each state adds a concat and a slice op), activations and state "
            f"{act:+,} bytes")

def xcore_arena(self) -> str:
    """The table `xstream inspect --xcore` prints for a targets.xcore.ArenaReport."""
    def n(v):
        return "-" if v is None else f"{v:,}"

    ram_note = "" if self.same_allocation else " (arena + a copy of the state kept by the application)"
    rows = [("tensor arena bytes", n(self.original_arena_bytes), n(self.streaming_arena_bytes)),
            ("  of which state (model I/O)", "0", n(self.state_bytes)),
            ("  of which kernels' op data", n(self.original_op_data_bytes), n(self.streaming_op_data_bytes)),
            ("RAM bytes" + ram_note, n(self.original_arena_bytes), n(self.streaming_ram_bytes))]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len("original"), *(len(r[1]) for r in rows))
    lines = [f"xcore     XMOS xformer ({self.xformer}, {self.threads} thread): tensor arena, the RAM the xcore "
             "runtime needs (activations, model I/O, its persistent buffers)",
             f"{'':{w0}}  {'original':{w1}}  streaming ({self.state_form} state)"]
    lines += [f"{a:{w0}}  {b:{w1}}  {c}" for a, b, c in rows]
    if self.saved_bytes is not None:
        pct = 100.0 * self.saved_bytes / self.original_arena_bytes if self.original_arena_bytes else 0.0
        lines.append(f"saved     {self.saved_bytes:,} bytes ({pct:.0f}% of the original's arena)"
                     if self.saved_bytes >= 0 else
                     f"more      the streaming model needs {-self.saved_bytes:,} bytes more ({-pct:.0f}%)"
                     + _why_more(self))
    if self.original_note != "as given":
        lines.append(f"original  {self.original_note}")
    if self.streaming_error:
        lines.append(f"streaming {self.streaming_error}")
    lines += [f"note      {x}" for x in self.notes]
    return "\n".join(lines)


def verify_result(r) -> str:
    """What `xstream verify` prints for a verify.VerifyResult."""
    verdict = "EQUAL" if r.equal else "DIFFERENT"
    exact = "bit-exact" if r.bit_exact else f"max abs error {r.max_abs_error:.3g} (rel {r.max_rel_error:.3g})"
    lines = [f"{verdict}: {r.steps_compared} step(s) compared over {r.sequences} sequence(s), {exact}",
             f"contract {r.contract}, hop {r.hop}, offset D={r.offset:+d}, warm-up {r.warmup}, form {r.form}, "
             f"runtime {r.runtime}"]
    t = r.tolerance
    if t is not None:
        noise = (f"{t['noise_factor']} x the noise floor of LiteRT builtin vs reference kernels on the original, "
                 f"{t['noise_factor']} x {t['noise_floor_rel']:.2g} rel" if t["noise_floor_rel"] is not None else "")
        why = (noise if t["rel"] > t["floor_rel"] else
               f"the {t['floor_rel']:g} floor" + (f"; {noise}, is below it" if noise else "; no noise floor measured"))
        lines.append(f"tolerance {t['rel']:.2g} rel = {t['abs']:.2g} abs at the largest output ({why})")
    else:
        lines.append("tolerance none: integer outputs must be bit-exact")
    if r.first_mismatch:
        m = r.first_mismatch
        lines.append(f"first mismatch: sequence {m['sequence']}, step {m['step']}, output {m['output']}, "
                     f"abs error {m['abs_error']:.3g}")
    if getattr(r, "edge_effect", None):
        lines.append(f"edge effect (the context stream {edge_effect(r.edge_effect)})")
    lines += [f"note: {note}" for note in r.notes]
    return "\n".join(lines)


def inspect(s: dict, stream_report: dict | None, xcore_report) -> str:
    """What `xstream inspect` prints: a model summary (report.inspect.ModelSummary.to_dict()) and the optional
    streaming and xcore reports."""
    def op_table(operators: list[dict]) -> str:
        return table(["#", "op", "inputs", "outputs", "options", "MACs"],
                     [[str(r["index"]), r["type"], ", ".join(r["inputs"]), ", ".join(r["outputs"]),
                       options(r["options"]), _fmt_cost(r["macs"], r["other_ops"])] for r in operators])

    lines = [op_table(s["operators"])]
    for sub in s.get("subgraph_operators", []):
        lines.append(f"\nsubgraph {sub['index']}{' ' + repr(sub['name']) if sub['name'] else ''}:")
        lines.append(op_table(sub["operators"]))
    lines += [f"\ninputs: {', '.join(s['inputs'])}   outputs: {', '.join(s['outputs'])}",
              f"{s['op_count']} ops in {s['subgraphs']} subgraph(s), {s['params']} params, {s['weight_bytes']} "
              "weight bytes"]
    lines += [f"warning: {w}" for w in s.get("warnings", [])]
    if "tflm_arena_bytes" in s:
        lines.append(f"tflm arena {s['tflm_arena_bytes']:,} bytes: the smallest tensor_arena_size TFLite Micro "
                     f"({s['tflm_arena_runtime']}) allocates and invokes the model with (measured)"
                     if s["tflm_arena_bytes"] is not None else
                     f"tflm arena not measured: {s['tflm_arena_note']}")
    lines.append(model_cost(s["cost"]))
    if s.get("stream"):
        lines.append(stream_description(s["stream"]))
    if stream_report is not None:
        lines.append("\n" + stream(stream_report))
    if xcore_report is not None:
        lines.append("\n" + xcore_arena(xcore_report))
    return "\n".join(lines)


def esphome(r: dict) -> str:
    """What `convert --target esphome` adds: the manifest it wrote (targets/esphome.EsphomeFiles.to_dict())."""
    m = r["contents"]
    micro = m["micro"]
    return "\n".join([
        f"manifest  {r['manifest']} (ESPHome micro_wake_word v2, followed {r['esphome_version']}): wake word "
        f"{m['wake_word']!r}, probability_cutoff {micro['probability_cutoff']}, sliding_window_size "
        f"{micro['sliding_window_size']}, feature_step_size {micro['feature_step_size']} ms, minimum ESPHome "
        f"{micro['minimum_esphome_version']}",
        f"arena     tensor_arena_size {r['tensor_arena_size']:,} bytes ({r['arena_rule']}: measured "
        f"{r['measured_arena_bytes']:,}); state in {r['resource_variables']} of 20 resource variables",
    ])
