"""The `xstream` command line: a thin shell over the Python API; the only module that knows click."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import traceback

import click
import numpy as np

from . import __version__
from .errors import InterpreterError, UsageError, XstreamError
from .pipeline import STATE_FORMS, TARGETS, convert_with_plan
from .reader import load
from .report import conversion_report
from .summary import stream_summary, summarize
from .verify import KERNELS, RUNTIMES, verify as verify_models
from .writer import save

EXIT_INTERNAL = 3


class _Group(click.Group):
    """Turns every XstreamError into one line on stderr and its exit code; no traceback unless --debug."""

    def invoke(self, ctx: click.Context):
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except XstreamError as e:
            if debug:
                traceback.print_exc()
            click.echo(f"xstream: error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("xstream: interrupted; no output written", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:  # an xstream bug: still one line, the traceback only on request
            if debug:
                traceback.print_exc()
            first = str(e).splitlines()[0] if str(e) else ""
            click.echo(f"xstream: internal error: {type(e).__name__}: {first} (rerun with --debug and report it)",
                       err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xstream")
@click.option("--debug", is_flag=True, help="Show a Python traceback when a command fails.")
def main(debug: bool) -> None:
    """Rewrite non-streaming TFLite time-series models into streaming models with ring-buffer state."""


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _fmt_options(opts: dict) -> str:
    return " ".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in opts.items())


@main.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for CI).")
@click.option("--stream", is_flag=True, help="Also show what `convert` would give (nothing is written): per op "
                                             "frames, state and MACs per step; RAM and MACs before and after.")
@click.option("--state", type=click.Choice(STATE_FORMS), default="ring-buffer", show_default=True,
              help="With --stream: the state form to measure.")
@click.option("--hop", type=int, default=None,
              help="With --stream or --xcore: input frames per step (default: the smallest).")
@click.option("--time-axis", type=int, default=1, show_default=True,
              help="With --stream or --xcore: axis of the model input that is time.")
@click.option("--xcore", is_flag=True, help="Also compile the model and its streaming form (convert --target xcore) "
                                            "with XMOS xformer (xmos-ai-tools) and show xformer's tensor arena "
                                            "for both, and the state bytes: the RAM saved on xcore.")
def inspect(model: str, as_json: bool, stream: bool, state: str, hop: int | None, time_axis: int,
            xcore: bool) -> None:
    """Show MODEL's operators, shapes, key options, totals, activation RAM and MACs."""
    ctx = click.get_current_context()
    given = [f"--{n.replace('_', '-')}" for n in ("state", "hop", "time_axis")
             if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT]
    if given and not stream and not (xcore and "--state" not in given):  # --hop/--time-axis also fit --xcore
        fits = "--stream" if "--state" in given else "--stream or --xcore"
        raise UsageError(f"{', '.join(given)}: only meaningful with {fits}")
    m = load(model)
    s = summarize(m)
    report = stream_summary(m, state=state, hop=hop, time_axis=time_axis) if stream else None
    xcore_report = None
    if xcore:
        from .xcore import arena_report
        xcore_report = arena_report(m, hop=hop, time_axis=time_axis)
    if as_json:
        d = s.to_dict()
        if report is not None:
            d["stream"] = report
        if xcore_report is not None:
            d["xcore"] = xcore_report.to_dict()
        _emit_json(d)
        return
    rows = [[str(r.index), r.type, ", ".join(r.inputs), ", ".join(r.outputs), _fmt_options(r.options),
             _fmt_cost(r.macs, r.other_ops)] for r in s.operators]
    click.echo(_table(["#", "op", "inputs", "outputs", "options", "MACs"], rows))
    click.echo(f"\ninputs: {', '.join(s.inputs)}   outputs: {', '.join(s.outputs)}")
    click.echo(f"{s.op_count} ops in {s.subgraphs} subgraph(s), {s.params} params, {s.weight_bytes} weight bytes")
    click.echo(_format_cost(s.cost))
    if report is not None:
        click.echo("\n" + _format_stream(report))
    if xcore_report is not None:
        click.echo("\n" + xcore_report.format())


def _fmt_count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _fmt_cost(macs: int | None, other: int | None) -> str:
    return _fmt_count(macs) + (f" +{other:,} other" if other else "")


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


def _format_cost(c: dict) -> str:
    lines = [f"arena     {c['arena_bytes']:,} bytes of activations (TFLite Micro greedy plan, 16-byte aligned; "
             f"at least {c['arena_lower_bound_bytes']:,} live at once)",
             f"compute   {c['macs']:,} MACs per invoke, {c['other_ops']:,} other ops (pool and reduction reads, "
             "element-wise)"]
    if c["states"]:
        where = "inside the arena (model I/O)" if c["state_in_arena"] == c["state_bytes"] else "outside the arena"
        lines.append(f"state     {c['state_bytes']:,} bytes in {len(c['states'])} {c['state_form']} buffer(s), "
                     f"{where}; RAM (arena + state) {c['ram_bytes']:,} bytes")
    return "\n".join(lines)


def _format_stream(r: dict) -> str:
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
    lines.append(_table(["#", "op", "time", "frames in->out", "per step", "state frames", "state bytes",
                         "MACs", "MACs/step", "minimum/step"], rows))
    if r["added_ops"]:
        lines.append("added by conversion: " + ", ".join(f"{n} {k}" for k, n in sorted(r["added_ops"].items())))
    b, a, low, q = r["before"], r["after"], r["minimum"], r["after_over_minimum"]
    totals = [
        ["arena bytes", _fmt_count(b["arena_bytes"]), _fmt_count(a["arena_bytes"]),
         _fmt_count(low["arena_bytes"]), _fmt_ratio(q["arena_bytes"])],
        ["state bytes", _fmt_count(b["state_bytes"]), _fmt_count(a["state_bytes"]),
         _fmt_count(low["state_bytes"]), _fmt_ratio(q["state_bytes"])],
        ["RAM bytes (arena + state)", _fmt_count(b["ram_bytes"]), _fmt_count(a["ram_bytes"]), "", ""],
        ["weight bytes", _fmt_count(b["weight_bytes"]), _fmt_count(a["weight_bytes"]),
         _fmt_count(low["weight_bytes"]), _fmt_ratio(q["weight_bytes"])],
        ["MACs per step", _fmt_count(b["macs"]), _fmt_count(a["macs"]), _fmt_count(low["macs"]),
         _fmt_ratio(q["macs"])],
        ["other ops per step", _fmt_count(b["other_ops"]), _fmt_count(a["other_ops"]),
         _fmt_count(low["other_ops"]), _fmt_ratio(q["other_ops"])],
    ]
    lines.append("")
    lines.append(_table(["", "original", "streaming", "minimum", "streaming/minimum"], totals))
    g = r["before_over_after"]
    lines.append(f"original/streaming: RAM {_fmt_ratio(g['ram_bytes'])}x, MACs per step {_fmt_ratio(g['macs'])}x "
                 "(the original recomputes its whole window every hop)")
    lines.append("minimum: state by STREAMING.md's rule; MACs with every output frame computed once (ops from the "
                 "head on run once per step); arena: most bytes live at once in the streaming graph; weights: the "
                 "original's")
    return "\n".join(lines)


def _in_child(fn, runtime: str, debug: bool = False):
    """Run `fn` in a forked child: an interpreter that crashes natively (SIGSEGV on a model that is invalid for
    it) ends the child, not xstream, and the crash becomes one error line. Results and XstreamErrors come back
    through a pipe."""
    if not hasattr(os, "fork"):
        return fn()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        if not debug:  # interpreters log their own errors to stderr; xstream's one line says what failed
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
        try:
            try:
                payload = ("ok", fn())
            except BaseException as e:  # everything goes back to the parent, which decides
                payload = ("err", e if isinstance(e, XstreamError) else
                           RuntimeError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
            with os.fdopen(write_fd, "wb") as f:
                pickle.dump(payload, f)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        raise InterpreterError(f"{runtime} crashed ({sig}) running the models; one of them is not valid for it")
    try:
        kind, value = pickle.loads(data)
    except Exception:
        raise InterpreterError(f"{runtime} ended without a result running the models") from None
    if kind == "err":
        raise value
    return value


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


@main.command()
@click.argument("input_path", metavar="IN", type=click.Path())
@click.argument("output_path", metavar="OUT", type=click.Path())
@click.option("--state", type=click.Choice(STATE_FORMS), default=None,
              help="How state is kept: RING_BUFFER custom ops (default), builtin resource variables, extra model "
                   "I/O, or TFLite Micro's CIRCULAR_BUFFER (int8).")
@click.option("--target", type=click.Choice(list(TARGETS)), default=None,
              help="Preset for a runtime: xcore (XMOS xformer), tflm (TFLite Micro), litert; picks --state and "
                   "what else the runtime needs.")
@click.option("--hop", type=int, default=None, help="Input frames per step (default: the smallest exact hop, "
                                                    "the product of the strides along time).")
@click.option("--time-axis", type=int, default=1, show_default=True, help="Axis of the model input that is time.")
@click.option("--force", is_flag=True, help="Allow OUT to be the same file as IN.")
@click.option("--json", "as_json", is_flag=True, help="Print the conversion summary as JSON (for CI).")
def convert(input_path: str, output_path: str, state: str | None, target: str | None, hop: int | None,
            time_axis: int, force: bool, as_json: bool) -> None:
    """Rewrite IN into a streaming model OUT that takes one hop of frames per invoke."""
    if _same_file(input_path, output_path) and not force:
        raise UsageError(f"{output_path}: OUT is the input file; choose another path or pass --force")
    model = load(input_path)
    result = convert_with_plan(model, state=state, hop=hop, time_axis=time_axis, target=target)
    save(result.model, output_path)
    report = conversion_report(input_path, output_path, model, result)
    if as_json:
        _emit_json(report)
        return
    click.echo(_format_conversion(report))


def _offset_words(d: int) -> str:
    if d == 0:
        return "at the newest frame fed"
    if d > 0:
        return f"{d} frame(s) after the newest frame fed (the model never reads its last {d} frame(s))"
    return f"{-d} frame(s) before the newest frame fed ({-d} frame(s) of latency)"


def _format_conversion(r: dict) -> str:
    lines = [f"{r['input']} -> {r['output']}"]
    if r["contract"] == "causal":
        lines.append(f"contract  causal: after a reset, step {r['compare_step']} (the one completing the first "
                     "window) equals the original; later steps keep real history where it saw padding")
    else:
        lines.append(f"contract  window-exact: from step {r['warmup']} on, each output equals the original on the "
                     f"window ending {_offset_words(r['offset'])}")
    delay = f", input delayed {r['input_delay']} frame(s) to align the first window" if r["input_delay"] else ""
    lines.append(f"hop       {r['hop']} frame(s) per step, window {r['window']} frames, offset D={r['offset']:+d}, "
                 f"warm-up {r['warmup']} step(s){delay}")
    slides = ", ".join(f"#{s['index']} {s['op']} k{s['kernel']}" + (f" s{s['stride']}" if s['stride'] > 1 else "")
                       + (f" d{s['dilation']}" if s['dilation'] > 1 else "") for s in r["streamed_ops"])
    lines.append(f"streamed  {len(r['streamed_ops'])} op(s): {slides}")
    if r["heads"]:
        lines.append(f"heads     {', '.join(r['heads'])} (read the whole window from a ring buffer)")
    lines.append(f"state     {r['state_bytes']} bytes in {len(r['states'])} buffer(s) (minimum by STREAMING.md "
                 f"{r['minimum_state_bytes']}), form {r['state_form']}")
    if r["frames_per_invoke"] != r["hop"]:
        lines.append(f"invokes   {r['frames_per_invoke']} frame(s) per invoke; the outputs of a step are those of "
                     f"its last invoke (every {r['hop'] // r['frames_per_invoke']}th)")
    if r["target"]:
        lines.append(f"target    {r['target']}: {r['target_note']}")
    return "\n".join(lines)


@main.command()
@click.argument("original", type=click.Path())
@click.argument("streaming", type=click.Path())
@click.option("--runtime", type=click.Choice(RUNTIMES), default="litert", show_default=True,
              help="Where to run: litert; tflm (the tflite-micro Python interpreter); tflm-host (xstream's C++ "
                   "TFLite Micro harness with the RING_BUFFER kernel); xcore (both models through xformer on the host "
                   "xcore runtime); xcore-litert (the stream on xcore, the original in LiteRT).")
@click.option("--kernels", type=click.Choice(KERNELS), default="builtin", show_default=True,
              help="LiteRT kernels: builtin (optimised, no XNNPACK) or reference.")
@click.option("--steps", type=int, default=None, help="Steps per sequence (default: warm-up plus two windows).")
@click.option("--sequences", type=int, default=3, show_default=True, help="Random sequences, state reset between.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random frames.")
@click.option("--input", "input_npy", type=click.Path(), default=None,
              help="A .npy of frames (the model input with any length on the time axis) instead of random ones.")
@click.option("--time-axis", type=int, default=1, show_default=True, help="Axis of the model input that is time.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for CI).")
def verify(original: str, streaming: str, runtime: str, kernels: str, steps: int | None, sequences: int, seed: int,
           input_npy: str | None, time_axis: int, as_json: bool) -> None:
    """Check STREAMING against ORIGINAL frame by frame; exit 0 if equal, 1 if not."""
    frames = None
    if input_npy is not None:
        try:
            frames = np.load(input_npy, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"{input_npy}: cannot read frames: {e}") from None
    if steps is not None and steps < 1 or sequences < 1:
        raise UsageError("--steps and --sequences must be at least 1")
    orig_model, strm_model = load(original), load(streaming)
    r = _in_child(lambda: verify_models(orig_model, strm_model, time_axis=time_axis, steps=steps,
                                        sequences=sequences, seed=seed, frames=frames, runtime=runtime,
                                        kernels=kernels), runtime,
                  debug=bool(click.get_current_context().find_root().params.get("debug")))
    if as_json:
        _emit_json(r.to_dict())
    else:
        verdict = "EQUAL" if r.equal else "DIFFERENT"
        exact = "bit-exact" if r.bit_exact else f"max abs error {r.max_abs_error:.3g} (rel {r.max_rel_error:.3g})"
        click.echo(f"{verdict}: {r.steps_compared} step(s) compared over {r.sequences} sequence(s), {exact}")
        click.echo(f"contract {r.contract}, hop {r.hop}, offset D={r.offset:+d}, warm-up {r.warmup}, "
                   f"form {r.form}, runtime {r.runtime}")
        if r.first_mismatch:
            m = r.first_mismatch
            click.echo(f"first mismatch: sequence {m['sequence']}, step {m['step']}, output {m['output']}, "
                       f"abs error {m['abs_error']:.3g}")
        for note in r.notes:
            click.echo(f"note: {note}")
    if not r.equal:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
