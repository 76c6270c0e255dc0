"""The `fmnist` command. Each command parses its options and calls the library; nothing more.

Errors a user can fix (`FmnistError`) print as one line on stderr and exit with status 2;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from fmnist.errors import FmnistError

app = typer.Typer(
    name="fmnist",
    help="Train, evaluate and use CNNs on Fashion-MNIST and any MNIST-like image data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(highlight=False, soft_wrap=True)  # soft wrap: a long line stays one line
_state = {"debug": False}

DataOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data",
        help="Directory with the data: the four IDX files, the Kaggle CSV pair, or train/ and test/ "
        "image folders. Default: $FMNIST_DATA, the cache, system copies, then a download.",
        show_default=False,
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Hide progress and notes (never results).")]
OutOption = Annotated[Path, typer.Option("--out", help="Output directory (created if needed).")]


def _command(*args, **kwargs):
    """`app.command`, plus the one-line error handling every command shares."""

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*call_args, **call_kwargs):
            try:
                return function(*call_args, **call_kwargs)
            except FmnistError as exc:
                if _state["debug"]:
                    raise
                typer.echo(f"fmnist: error: {exc}", err=True)
                raise typer.Exit(2) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorate


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    _state["debug"] = debug


def _note(quiet: bool):
    """A logger for progress notes on stderr, silent with --quiet."""

    def log(message: str) -> None:
        if not quiet:
            typer.echo(f"fmnist: {message}", err=True)

    return log


def _download_progress(quiet: bool):
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


def _load(data: Optional[Path], quiet: bool, **kwargs):
    from fmnist.data.dataset import load_dataset

    return load_dataset(data, log=_note(quiet), progress=_download_progress(quiet), **kwargs)


def _source_line(dataset) -> str:
    check = "official Fashion-MNIST, SHA-256 verified" if dataset.verified else "not the official files"
    return f"{dataset.source.describe()} — {check}"


@_command()
def info(data: DataOption = None, quiet: QuietOption = False) -> None:
    """Load and validate both splits; print the source, counts per split and class, and the device."""
    import torch

    from fmnist.device import describe_device, resolve_device

    dataset = _load(data, quiet)
    console.print(f"source:  {_source_line(dataset)}")
    console.print(f"train:   {len(dataset.train):,} images {tuple(dataset.train.images.shape[1:])}")
    console.print(f"test:    {len(dataset.test):,} images {tuple(dataset.test.images.shape[1:])}")
    table = Table(title="Images per class")
    for column in ("label", "class", "train", "test"):
        table.add_column(column, justify="left" if column == "class" else "right")
    train_counts = dataset.train.class_counts(dataset.num_classes)
    test_counts = dataset.test.class_counts(dataset.num_classes)
    for label, name in enumerate(dataset.classes):
        table.add_row(str(label), name, f"{train_counts[label]:,}", f"{test_counts[label]:,}")
    console.print(table)
    console.print(f"torch:   {torch.__version__}")
    console.print(f"device:  {describe_device(resolve_device('auto'))}")


@_command()
def data(
    data: DataOption = None,
    download: Annotated[
        bool, typer.Option("--download", help="Download into the cache even if a copy exists elsewhere.")
    ] = False,
    mirror: Annotated[
        Optional[list[str]],
        typer.Option("--mirror", help="Base URL to download from (repeatable); default: the official mirrors."),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Locate, verify (or download) the dataset and print where it is."""
    from fmnist.data import sources
    from fmnist.data.dataset import read_source

    mirrors = tuple(mirror) if mirror else sources.MIRRORS
    if download:
        source = sources.download(mirrors=mirrors, progress=_download_progress(quiet), log=_note(quiet))
        dataset = read_source(source)
    else:
        dataset = _load(data, quiet, mirrors=mirrors)
    console.print(f"{dataset.source.directory}")
    if not quiet:
        typer.echo(f"fmnist: {_source_line(dataset)}", err=True)


@_command()
def explore(
    out: OutOption = Path("runs/explore"),
    data: DataOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the random samples per class.")] = 0,
    quiet: QuietOption = False,
) -> None:
    """The first look at the data: sample grids, class distributions, a summary and report.html."""
    from fmnist.report.explore import explore as run_explore

    started = time.perf_counter()
    dataset = _load(data, quiet)
    summary = run_explore(dataset, out, seed=seed)
    console.print(f"source: {_source_line(dataset)}")
    for split in ("train", "test"):
        part = summary[split]
        console.print(
            f"{split:5s}  images {tuple(part['images_shape'])} {part['images_dtype']}, "
            f"labels {tuple(part['labels_shape'])} {part['labels_dtype']}, "
            f"pixel mean {part['pixel_mean']:.2f}, std {part['pixel_std']:.2f}"
        )
    table = Table(title="Images per class")
    for column in ("label", "class", "train", "train %", "test", "test %"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for label, name in enumerate(dataset.classes):
        table.add_row(
            str(label), name,
            f"{summary['train']['class_counts'][label]:,}", f"{summary['train']['class_percent'][label]:.2f}",
            f"{summary['test']['class_counts'][label]:,}", f"{summary['test']['class_percent'][label]:.2f}",
        )
    console.print(table)
    console.print(f"wrote {len(summary['figures'])} figures, summary.json and report.html to {out} "
                  f"in {time.perf_counter() - started:.1f} s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
