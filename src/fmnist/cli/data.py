"""Data commands: info, data, explore."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fmnist.data import sources
from fmnist.data.dataset import read_source
from fmnist.cli._common import DataOption, OutOption, QuietOption, command, console, download_progress, load, note, source_line
from fmnist.errors import FmnistError


@command(short_help="Check the data; counts per split and class.")
def info(data: DataOption = None, quiet: QuietOption = False) -> None:
    """Load and validate both splits; print the source, counts per split and class, and the device."""
    # torch is imported by the commands that use it, so that --help and the light commands start fast.
    import torch

    from fmnist.device import describe_device, resolve_device

    dataset = load(data, quiet)
    console.print(f"source:  {source_line(dataset)}")
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


@command(short_help="Find, verify or download the data.")
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
    mirrors = tuple(mirror) if mirror else sources.MIRRORS
    if download and data is not None:
        raise FmnistError("--download fetches the official files into the cache; it does not combine with --data")
    if download:
        source = sources.download(mirrors=mirrors, progress=download_progress(quiet), log=note(quiet))
        dataset = read_source(source)
    else:
        dataset = load(data, quiet, mirrors=mirrors)
    console.print(f"{dataset.source.directory}")
    if not quiet:
        typer.echo(f"fmnist: {source_line(dataset)}", err=True)


@command(short_help="The first look at the data: figures and a report.")
def explore(
    out: OutOption = Path("runs/explore"),
    data: DataOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the random samples per class.")] = 0,
    quiet: QuietOption = False,
) -> None:
    """The first look at the data: sample grids, class distributions, a summary and report.html."""
    from fmnist.workflows.explore import explore as run_explore  # matplotlib: imported when drawing

    started = time.perf_counter()
    dataset = load(data, quiet)
    summary = run_explore(dataset, out, seed=seed)
    console.print(f"source: {source_line(dataset)}")
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
