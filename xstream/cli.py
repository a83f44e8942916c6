"""The `xstream` command line: a thin shell over the Python API; the only module that knows click."""

from __future__ import annotations

import json
import os
import sys
import traceback

import click
import numpy as np

from . import forms
from .errors import InternalError, UsageError, XstreamError
from .pipeline import TARGETS, convert_with_plan
from .report import text
from .report.conversion import conversion_report
from .report.inspect import stream_summary, summarize
from .runtimes import KERNELS, RUNTIMES
from .tflite.reader import load
from .tflite.writer import save
from .verify import verify as verify_models
from .version import __version__


class _Group(click.Group):
    """Turns every XstreamError and every usage mistake into one line on stderr (`xstream: error: ...`) and its
    exit code; no traceback unless --debug."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:  # click's own parsing: bad option, missing argument, bad choice
            where = e.ctx.command_path if e.ctx is not None else "xstream"
            click.echo(f"xstream: error: {e.format_message()} (see '{where} --help')", err=True)
            code = UsageError.exit_code
        except click.Abort:
            click.echo("xstream: interrupted; no output written", err=True)
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

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
            ctx.exit(InternalError.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xstream")
@click.option("--debug", is_flag=True, help="Show a Python traceback when a command fails.")
def main(debug: bool) -> None:
    """Rewrite non-streaming TFLite time-series models into streaming models with ring-buffer state."""


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


def _debug() -> bool:
    return bool(click.get_current_context().find_root().params.get("debug"))


@main.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for CI).")
@click.option("--stream", is_flag=True, help="Also show what `convert` would give (nothing is written): per op "
                                             "frames, state and MACs per step; RAM and MACs before and after.")
@click.option("--state", type=click.Choice(forms.NAMES), default=forms.DEFAULT, show_default=True,
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
        from .targets.xcore import arena_report
        xcore_report = arena_report(m, hop=hop, time_axis=time_axis)
    if as_json:
        d = s.to_dict()
        if report is not None:
            d["stream"] = report
        if xcore_report is not None:
            d["xcore"] = xcore_report.to_dict()
        _emit_json(d)
        return
    click.echo(text.inspect(s.to_dict(), report, xcore_report))


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


@main.command()
@click.argument("input_path", metavar="IN", type=click.Path())
@click.argument("output_path", metavar="OUT", type=click.Path())
@click.option("--state", type=click.Choice(forms.NAMES), default=None,
              help="How state is kept: " + "; ".join(f"{f.name}: {f.summary}" for f in forms.FORMS.values())
                   + f". Default: {forms.DEFAULT}.")
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
    click.echo(text.conversion(report))


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
    r = verify_models(load(original), load(streaming), time_axis=time_axis, steps=steps, sequences=sequences,
                      seed=seed, frames=frames, runtime=runtime, kernels=kernels, quiet=not _debug())
    if as_json:
        _emit_json(r.to_dict())
    else:
        click.echo(text.verify_result(r))
    if not r.equal:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
