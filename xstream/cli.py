"""The `xstream` command line: a thin shell over the Python API; the only module that knows click."""

from __future__ import annotations

import json
import os
import sys
import traceback

import click
import numpy as np

from . import forms, kernel_sources
from .errors import EXIT_CODES, InternalError, UsageError, XstreamError
from .analysis.plan import SAME_PADDING_MODES
from .pipeline import TARGETS, context_reference, convert_with_plan
from .report import text
from .report.conversion import conversion_report
from .report.inspect import stream_summary, summarize
from .runtimes import KERNELS, RUNTIMES
from .targets import esphome
from .tflite.reader import load
from .tflite.writer import same_file, save
from .runtimes.isolation import in_child
from .verify import edge_effect, verify as verify_models
from .version import __version__


EXIT_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code}  {what}" for code, what in EXIT_CODES.items())
_SIGPIPE_EXIT = 141  # 128 + SIGPIPE, what a Unix tool whose reader went away (`| head -1`) ends with


def _error_json(code: int, kind: str, message: str) -> None:
    """With --json, stdout holds exactly one object whatever happens: on an error, this one."""
    click.echo(json.dumps({"error": {"code": code, "kind": kind, "message": message}}, indent=2))


def _quiet_stdout() -> None:
    """The reader of stdout went away: send what is left to /dev/null so that exit does not fail flushing it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class _Group(click.Group):
    """Turns every XstreamError and every usage mistake into one line on stderr (`xstream: error: ...`) and its
    exit code (errors.EXIT_CODES), plus, with --json, one {"error": ...} object on stdout; no traceback unless
    --debug (before or after the command name)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in args
        try:
            try:
                code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except click.UsageError as e:  # click's own parsing: bad option, missing argument, bad choice
                where = e.ctx.command_path if e.ctx is not None else "xstream"
                message = f"{e.format_message()} (see '{where} --help')"
                click.echo(f"xstream: error: {message}", err=True)
                code = UsageError.exit_code
                if as_json:
                    _error_json(code, UsageError.kind, message)
            except click.Abort:
                click.echo("xstream: interrupted; no output written", err=True)
                code = 130
                if as_json:
                    _error_json(code, "interrupted", "interrupted; no output written")
        except BrokenPipeError:
            _quiet_stdout()
            code = _SIGPIPE_EXIT
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InternalError as e:  # a bug xstream caught itself: said as such
            message = f"internal error: {e} (rerun with --debug and report it)"
            self._fail(ctx, e.exit_code, e.kind, message, f"xstream: {message}")
        except XstreamError as e:
            self._fail(ctx, e.exit_code, e.kind, str(e), f"xstream: error: {e}")
        except BrokenPipeError:
            _quiet_stdout()
            ctx.exit(_SIGPIPE_EXIT)
        except KeyboardInterrupt:
            self._fail(ctx, 130, "interrupted", "interrupted; no output written",
                       "xstream: interrupted; no output written")
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:  # an xstream bug: still one line, the traceback only on request
            first = str(e).splitlines()[0] if str(e) else ""
            message = f"internal error: {type(e).__name__}: {first} (rerun with --debug and report it)"
            self._fail(ctx, InternalError.exit_code, InternalError.kind, message, f"xstream: {message}")

    @staticmethod
    def _fail(ctx: click.Context, code: int, kind: str, message: str, line: str) -> None:
        if ctx.params.get("debug") or ctx.meta.get("xstream.debug"):
            traceback.print_exc()
        click.echo(line, err=True)
        if ctx.meta.get("xstream.json"):
            _error_json(code, kind, message)
        ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_HELP)
@click.version_option(__version__, prog_name="xstream")
@click.option("--debug", is_flag=True, help="Show a Python traceback when a command fails.")
def main(debug: bool) -> None:
    """Rewrite non-streaming TFLite time-series models into streaming models with ring-buffer state."""


def _remember(key: str):
    """An option callback that notes a flag in the context tree's shared meta (read by _Group on errors)."""
    def callback(ctx: click.Context, _param, value):
        if value:
            ctx.meta[key] = True
        return value
    return callback


def _common(command):
    """What every command takes besides its own options: --debug (also after the command name)."""
    return click.option("--debug", is_flag=True, expose_value=False, callback=_remember("xstream.debug"),
                        help="Show a Python traceback when the command fails.")(command)


def _json_option(what: str):
    return click.option("--json", "as_json", is_flag=True, callback=_remember("xstream.json"),
                        help=f"Print {what} as JSON (for CI); on an error, one {{\"error\": {{\"code\", \"kind\", "
                             "\"message\"}} object.")


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


def _debug() -> bool:
    ctx = click.get_current_context()
    return bool(ctx.find_root().params.get("debug") or ctx.meta.get("xstream.debug"))


@main.command(epilog=EXIT_HELP)
@click.argument("model", type=click.Path())
@_json_option("the report")
@_common
@click.option("--stream", is_flag=True, help="Also show what `convert` would give (nothing is written): per op "
                                             "frames, state and MACs per step; RAM and MACs before and after.")
@click.option("--state", type=click.Choice(forms.NAMES), default=forms.DEFAULT, show_default=True,
              help="With --stream: the state form to measure.")
@click.option("--hop", type=int, default=None,
              help="With --stream or --xcore: input frames per step (default: the smallest).")
@click.option("--time-axis", type=int, default=None,
              help="With --stream or --xcore: axis of the model input that is time (default: found by "
                   "itself).")
@click.option("--xcore", is_flag=True, help="Also compile the model and its streaming form (convert --target xcore) "
                                            "with XMOS xformer (xmos-ai-tools) and show xformer's tensor arena "
                                            "for both, and the state bytes: the RAM saved on xcore.")
@click.option("--same-padding", type=click.Choice(SAME_PADDING_MODES), default="exact", show_default=True,
              help="With --stream: how a model that pads time on both sides streams (as convert's option).")
def inspect(model: str, as_json: bool, stream: bool, state: str, hop: int | None, time_axis: int | None,
            xcore: bool, same_padding: str) -> None:
    """Show MODEL's operators, shapes, key options, totals, activation RAM and MACs."""
    ctx = click.get_current_context()
    given = [f"--{n.replace('_', '-')}" for n in ("state", "hop", "time_axis", "same_padding")
             if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT]
    stream_only = "--state" in given or "--same-padding" in given
    if given and not stream and not (xcore and not stream_only):  # --hop/--time-axis also fit --xcore
        fits = "--stream" if stream_only else "--stream or --xcore"
        raise UsageError(f"{', '.join(given)}: only meaningful with {fits}")
    m = load(model)
    meter = _ArenaMeter()
    report = stream_summary(m, state=state, hop=hop, time_axis=time_axis, arena_meter=meter,
                            same_padding=same_padding) if stream else None
    d = summarize(m).to_dict()
    d.update(meter(m, report["before"]["tflm_arena_runtime"] if report else None))
    xcore_report = None
    if xcore:
        from .targets.xcore import arena_report
        xcore_report = arena_report(m, hop=hop, time_axis=time_axis)
    if as_json:
        if report is not None:
            d["stream"] = report
        if xcore_report is not None:
            d["xcore"] = xcore_report.to_dict()
        _emit_json(d)
        return
    click.echo(text.inspect(d, report, xcore_report))


class _ArenaMeter:
    """TFLite Micro's measured arena of a model (runtimes.tflm_arena.arena_figure), each model and runtime once."""

    def __init__(self):
        self.seen: dict[tuple[bytes, str | None], dict] = {}

    def __call__(self, model, runtime: str | None) -> dict:
        from .runtimes.tflm_arena import arena_figure
        from .tflite.writer import serialize
        data = serialize(model)
        if (data, runtime) not in self.seen:
            self.seen[(data, runtime)] = arena_figure(data, runtime=runtime)
        return self.seen[(data, runtime)]



_ESPHOME_OPTIONS = (  # convert --target esphome: the manifest's user-facing fields (targets/esphome.py)
    click.option("--wake-word", default=None, help="With --target esphome: the phrase, as Home Assistant shows it "
                                                   "(default: OUT's file name, e.g. hey_jarvis -> Hey Jarvis)."),
    click.option("--author", default=None, help=f"With --target esphome: manifest author (default: "
                                                f"{esphome.ManifestFields.author})."),
    click.option("--website", default=None, help="With --target esphome: manifest website, a URL (default: none)."),
    click.option("--trained-languages", default=None,
                 help="With --target esphome: languages the model was trained on, comma-separated, e.g. en,de "
                      "(default: none stated)."),
    click.option("--probability-cutoff", type=float, default=None,
                 help=f"With --target esphome: detect when the mean probability exceeds this, 0-1 (default: "
                      f"{esphome.ManifestFields.probability_cutoff}; tune it on your false accepts)."),
    click.option("--sliding-window-size", type=int, default=None,
                 help=f"With --target esphome: probabilities averaged (default: "
                      f"{esphome.ManifestFields.sliding_window_size})."),
    click.option("--feature-step-size", type=int, default=None,
                 help=f"With --target esphome: ms between feature slices the model was trained on (default: "
                      f"{esphome.ManifestFields.feature_step_size})."),
    click.option("--minimum-esphome-version", default=None,
                 help=f"With --target esphome: oldest ESPHome that runs the model (default: "
                      f"{esphome.ManifestFields.minimum_esphome_version}, the first with this manifest and op "
                      "list)."),
)


def _esphome_options(command):
    for option in reversed(_ESPHOME_OPTIONS):
        command = option(command)
    return command


def _manifest_fields(options: dict, target: str | None):
    """The --target esphome manifest options as ManifestFields (None for another target), checked before any work."""
    given = {k: v for k, v in options.items() if v is not None}
    if target != "esphome":
        if given:
            names = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"{names}: only meaningful with --target esphome")
        return None
    if "trained_languages" in given:
        given["trained_languages"] = tuple(lang.strip() for lang in given["trained_languages"].split(","))
    fields = esphome.ManifestFields(**given)
    fields.check()
    return fields


@main.command(epilog=EXIT_HELP)
@click.argument("input_path", metavar="IN", type=click.Path())
@click.argument("output_path", metavar="OUT", type=click.Path())
@click.option("--state", type=click.Choice(forms.NAMES), default=None,
              help="How state is kept: " + "; ".join(f"{f.name}: {f.summary}" for f in forms.FORMS.values())
                   + f". Default: {forms.DEFAULT}.")
@click.option("--target", type=click.Choice(list(TARGETS)), default=None,
              help="Preset for a runtime: xcore (XMOS xformer), tflm (TFLite Micro; 1x1 convs run "
                   "as FULLY_CONNECTED, per-channel: TFLite Micro from 2024-09 on), litert, esphome "
                   "(micro_wake_word; also writes its manifest OUT.json, tensor_arena_size = "
                   f"{esphome.ARENA_RULE}); picks --state and what else the runtime needs.")
@click.option("--hop", type=int, default=None, help="Input frames per step (default: the smallest exact hop, "
                                                    "the product of the strides along time).")
@click.option("--time-axis", type=int, default=None,
              help="Axis of the model input that is time (default: found by itself, the axis that reaches a "
                   "convolution or pool, e.g. 2 for PyTorch's [batch, channels, time]).")
@click.option("--force", is_flag=True, help="Allow OUT to be the same file as IN. OUT is written atomically; a new "
                                            "OUT gets mode 0666 less the umask (as cp), an existing OUT keeps its "
                                            "mode, and a symlink OUT stays a link: its target is replaced.")
@click.option("--same-padding", type=click.Choice(SAME_PADDING_MODES), default="exact", show_default=True,
              help="Models that pad time on both sides (SAME convs, PAD/MIRROR_PAD around the window): exact "
                   "streams the original window-exact by recomputing the frames that read padding every step; "
                   "context runs every op over real neighbouring frames instead (cheapest, not the original: it "
                   "equals the context reference, and convert estimates how far it is from the original).")
@click.option("--reference", "reference_path", type=click.Path(), default=None,
              help="With --same-padding context: also write the context reference (the model the stream equals) "
                   "to this path, for your own evaluation.")
@_json_option("the conversion summary")
@_common
@_esphome_options
def convert(input_path: str, output_path: str, state: str | None, target: str | None, hop: int | None,
            time_axis: int | None, force: bool, same_padding: str, reference_path: str | None, as_json: bool,
            **manifest) -> None:
    """Rewrite IN into a streaming model OUT that takes one hop of frames per invoke."""
    if same_file(input_path, output_path) and not force:
        raise UsageError(f"{output_path}: OUT is the input file; choose another path or pass --force")
    fields = _manifest_fields(manifest, target)
    if reference_path is not None and same_padding != "context":
        raise UsageError("--reference goes with --same-padding context (an exact stream's reference is the original)")
    model = load(input_path)
    result = convert_with_plan(model, state=state, hop=hop, time_axis=time_axis, target=target,
                               same_padding=same_padding)
    effect = reference = None
    if result.plan.context is not None:
        reference, plan = context_reference(model, time_axis)
        effect = in_child(lambda: edge_effect(model, reference, plan), "litert", quiet=not _debug())
    if fields is None:
        save(result.model, output_path)
    else:  # OUT and its manifest OUT.json, both or neither
        written = esphome.save(result.model, output_path, fields, avoid=(input_path,))
    if reference_path is not None and reference is not None:
        save(reference, reference_path)
    # A builtin form on TFLite Micro: measure its arena against the original's (it pays per op and per tensor).
    meter = _ArenaMeter() if result.state != forms.DEFAULT and target in (None, "tflm") else None
    report = conversion_report(input_path, output_path, model, result, effect, arena_meter=meter)
    if fields is not None:
        report["esphome"] = written.to_dict()
    note = text.no_gain_note(report)
    if note:
        click.echo(note, err=True)
    if as_json:
        _emit_json(report)
        return
    click.echo(text.conversion(report))
    if fields is not None:
        click.echo(text.esphome(report["esphome"]))


@main.command(epilog=EXIT_HELP)
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
@click.option("--time-axis", type=int, default=None,
              help="Axis of the model input that is time (default: found by itself, the axis that reaches a "
                   "convolution or pool, e.g. 2 for PyTorch's [batch, channels, time]).")
@click.option("--against", type=click.Choice(["reference", "original"]), default=None,
              help="A --same-padding context stream is proven against its context reference (default), with its "
                   "edge effect on the original measured; 'original' compares it with the original itself.")
@_json_option("the result")
@_common
def verify(original: str, streaming: str, runtime: str, kernels: str, steps: int | None, sequences: int, seed: int,
           input_npy: str | None, time_axis: int | None, against: str | None, as_json: bool) -> None:
    """Check STREAMING against ORIGINAL frame by frame; exit 0 if equal, 1 if not (integer outputs bit-exact, float
    within the tolerance it prints: docs/CONTRACT.md)."""
    frames = None if input_npy is None else _load_frames(input_npy)
    if steps is not None and steps < 1 or sequences < 1:
        raise UsageError("--steps and --sequences must be at least 1")
    r = verify_models(load(original), load(streaming), time_axis=time_axis, steps=steps, sequences=sequences,
                      seed=seed, frames=frames, runtime=runtime, kernels=kernels, quiet=not _debug(),
                      against=against)
    if as_json:
        _emit_json(r.to_dict())
    else:
        click.echo(text.verify_result(r))
    if not r.equal:
        sys.exit(1)


def _load_frames(path: str) -> np.ndarray:
    """The frames of `verify --input`: one array saved by numpy.save, or a one-line usage error."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise UsageError(f"{path}: cannot read frames: {e.strerror or e}") from None
    if magic != b"\x93NUMPY":
        raise UsageError(f"{path}: not a .npy file; save the frames with numpy.save(path, array)")
    try:
        frames = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"{path}: cannot read frames from this .npy ({first}); save a numeric array with "
                         "numpy.save") from None
    if not isinstance(frames, np.ndarray) or frames.dtype.kind not in "biuf":
        raise UsageError(f"{path}: the frames must be a numeric array (this one is {frames.dtype})")
    return frames



@main.command(epilog=EXIT_HELP)
@_json_option("the folder and its files")
@_common
def kernels(as_json: bool) -> None:
    """Print the folder with the RING_BUFFER kernel (ring_buffer/ring_buffer.cc, .h) and the TFLite Micro host
    harness sources, to copy into a firmware or add to its build: kernels/ in a checkout, installed with the
    package otherwise."""
    folder = kernel_sources.kernels_dir()
    missing = [f for f in kernel_sources.KERNEL_FILES if not (folder / f).is_file()]
    if missing:
        raise UsageError(f"{folder}: the kernel sources are missing ({', '.join(missing)}); reinstall xstream from "
                         "a wheel or a checkout")
    if as_json:
        _emit_json({"path": str(folder), "files": kernel_sources.listing(folder)})
        return
    click.echo(str(folder))

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
