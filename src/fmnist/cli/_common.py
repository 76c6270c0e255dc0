"""What every command shares: the app, one-line error handling, console, and option types.

Options are spelled the same in every command (DESIGN.md: the CLI is the contract).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from fmnist.errors import FmnistError

app = typer.Typer(
    name="fmnist",
    help="Train, evaluate and use CNNs on Fashion-MNIST and any MNIST-like image data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# soft wrap: a long line stays one line; no markup: paths and class names are printed as they are
console = Console(highlight=False, soft_wrap=True, markup=False)
state = {"debug": False}


def command(*args, **kwargs):
    """`app.command`, plus the one-line error handling every command shares."""

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*call_args, **call_kwargs):
            try:
                return function(*call_args, **call_kwargs)
            except FmnistError as exc:
                if state["debug"]:
                    raise
                typer.echo(f"fmnist: error: {exc}", err=True)
                raise typer.Exit(2) from None
            except OSError as exc:  # permission denied, disk full, ...: the user's environment, not a bug
                if state["debug"]:
                    raise
                where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
                typer.echo(f"fmnist: error: {where}{exc.strerror or exc}", err=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                typer.echo("fmnist: interrupted", err=True)
                raise typer.Exit(130) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorate


def option(kind, flag: str, help: str, *names: str):
    """An optional option (None when not given), so config files and defaults can fill it."""
    return Annotated[Optional[kind], typer.Option(flag, *names, help=help, show_default=False)]


DataOption = option(Path, "--data", "Directory with the data: the four IDX files, the Kaggle CSV pair, or "
                    "train/ and test/ image folders. Default: $FMNIST_DATA, the cache, system copies, then a download.")
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Hide progress and notes (never results).")]
OutOption = Annotated[Path, typer.Option("--out", help="Output directory (created if needed).")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto | cpu | cuda.")]


def note(quiet: bool):
    """A logger for progress notes on stderr, silent with --quiet."""

    def log(message: str) -> None:
        if not quiet:
            typer.echo(f"fmnist: {message}", err=True)

    return log


def download_progress(quiet: bool):
    """Per-file download progress: a live byte count on a terminal, one line per file otherwise."""
    if quiet:
        return None
    interactive = sys.stderr.isatty()
    reported: set[str] = set()

    def progress(name: str, done: int, total: int | None) -> None:
        if interactive:
            size = f"/{total / 2**20:.1f}" if total else ""
            sys.stderr.write(f"\rdownloading {name}: {done / 2**20:.1f}{size} MiB")
            if total and done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif total and done >= total and name not in reported:
            reported.add(name)
            typer.echo(f"fmnist: downloaded {name} ({total / 2**20:.1f} MiB)", err=True)

    return progress


def load(data: Optional[Path], quiet: bool, **kwargs):
    from fmnist.data.dataset import load_dataset

    return load_dataset(data, log=note(quiet), progress=download_progress(quiet), **kwargs)


def source_line(dataset) -> str:
    check = "official Fashion-MNIST, SHA-256 verified" if dataset.verified else "not the official files"
    return f"{dataset.source.describe()} — {check}"
