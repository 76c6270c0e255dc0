"""Commands on trained models and output folders: evaluate, report, activations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fmnist.cli._common import DataOption, DeviceOption, QuietOption, command, console, load
from fmnist.errors import FmnistError
from fmnist.runfolder import OUTPUT_FILES, RunFolder


@command(short_help="Test scores of a model file, with figures.")
def evaluate(
    model_file: Annotated[Path, typer.Argument(help="A model file (.safetensors) written by fmnist.")],
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write evaluation files, figures and report.html here.",
                                                show_default=False)] = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Test loss and accuracy, the classification report, the most-confused pairs; figures with --out."""
    from fmnist.workflows.evaluate_file import evaluate_file  # loads torch: not at the top, for a fast --help

    dataset = load(data, quiet)
    result = evaluate_file(model_file, out=out, dataset=dataset, data=data, device=device)
    console.print(f"test loss {result.loss:.4f}  test accuracy {result.accuracy:.4f}  ({len(dataset.test):,} images)")
    console.print(result.report_text)
    if result.most_confused:
        console.print("most confused: " + "; ".join(f"{t} → {p} ({n})" for t, p, n in result.most_confused))
    if out is not None:
        console.print(f"wrote evaluation.json, predictions.npz, figures and report.html to {out}")


@command(short_help="Redraw an output folder's figures and report.")
def report(
    folder: Annotated[Path, typer.Argument(help="An output folder of train, cv or evaluate.")],
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Redraw every figure of an output folder from its saved files and rewrite its report.html."""
    from fmnist.workflows.redraw import redraw  # the workflows load torch: imported by the commands that run them

    if not folder.is_dir():
        raise FmnistError(f"{folder}: no such directory")
    if not RunFolder(folder).is_output_folder():
        raise FmnistError(f"{folder}: not an fmnist output folder (none of {', '.join(OUTPUT_FILES)})")
    path = redraw(folder, load(data, quiet) if data is not None else None)
    console.print(f"wrote {path}")


@command(short_help="Feature maps of a model file.")
def activations(
    model_file: Annotated[Path, typer.Argument(help="A model file (.safetensors) written by fmnist.")],
    images: Annotated[str, typer.Option("--images", help="Comma-separated test-image indices.")] = "0,7,26",
    filter_index: Annotated[int, typer.Option("--filter", help="Which filter (channel) of each layer to show.")] = 1,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/activations"),
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Feature maps (write-up 003): one row per test image, one column per conv/pool layer."""
    from fmnist.workflows.activations import draw_activations  # loads torch: not at the top, for a fast --help

    try:
        ids = [int(part) for part in images.split(",") if part.strip()]
    except ValueError:
        raise FmnistError(f"--images: expected comma-separated integers, got {images!r}") from None
    layers = draw_activations(model_file, out, ids, filter_index, dataset=load(data, quiet))
    for name, maps in layers:
        console.print(f"{name:24s} {tuple(maps.shape[1:])}")
    console.print(f"wrote feature-maps.png and report.html to {out}")
