"""The `xstream` command line: a thin shell over the Python API; the only module that knows click."""

from __future__ import annotations

import json
import sys
import traceback

import click

from . import __version__
from .errors import XstreamError
from .reader import load
from .summary import summarize

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
def inspect(model: str, as_json: bool) -> None:
    """Show MODEL's operators, shapes, key options and totals."""
    s = summarize(load(model))
    if as_json:
        _emit_json(s.to_dict())
        return
    rows = [[str(r.index), r.type, ", ".join(r.inputs), ", ".join(r.outputs), _fmt_options(r.options)]
            for r in s.operators]
    click.echo(_table(["#", "op", "inputs", "outputs", "options"], rows))
    click.echo(f"\ninputs: {', '.join(s.inputs)}   outputs: {', '.join(s.outputs)}")
    click.echo(f"{s.op_count} ops in {s.subgraphs} subgraph(s), {s.params} params, {s.weight_bytes} weight bytes")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
