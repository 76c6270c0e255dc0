"""The `fmnist` command. Each command parses its options, calls one workflow and prints; nothing more.

Errors a user can fix (`FmnistError`) print as one line on stderr and exit with status 2, and so do
usage errors (an unknown option, a missing argument); `--debug` shows the traceback instead.
Ctrl-C exits with status 130.
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from fmnist import __version__

try:  # typer 0.2x carries its own copy of click (typer._click), whose exceptions the parser raises
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # older typer runs on click itself
    from click.exceptions import ClickException, UsageError

from fmnist.cli import data, train, evaluate, predict, tune, serve  # noqa: F401, I001  (each registers its commands, in this order)
from fmnist.cli._common import app, state


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fmnist {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print fmnist's version and exit.")] = False,
) -> None:
    state["debug"] = debug


def main(args: list[str] | None = None) -> None:
    """Run the command line; usage errors become one line (click prints a usage block and a boxed
    message otherwise)."""
    try:
        _run(args)
    except SystemExit as exc:
        _end_if_joined(exc.code)
        raise
    except BaseException:  # an error not turned into a status (e.g. gloo's, or --debug's traceback)
        _end_if_joined(1, error=True)
        raise


def _end_if_joined(code, error: bool = False) -> None:
    """In a process that joined a torchrun group, end it now (distributed.exit_if_joined), printing the error's
    traceback first (it would not get printed otherwise); elsewhere nothing."""
    distributed = sys.modules.get("fmnist.engine.distributed")  # imported by the commands torchrun starts
    if distributed is not None and distributed.joined():
        if error:
            traceback.print_exc()
        distributed.exit_if_joined(code)


def _run(args: list[str] | None) -> None:
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="fmnist", standalone_mode=False)
    except UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "fmnist"
        typer.echo(f"fmnist: error: {exc.format_message()} (see: {where} --help)", err=True)
        sys.exit(2)
    except ClickException as exc:
        typer.echo(f"fmnist: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("fmnist: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
