"""Commands on trained models and output folders: evaluate, report, activations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fmnist.cli._common import DataOption, DeviceOption, QuietOption, command, console, load
from fmnist.errors import FmnistError

@command()
def evaluate(
    model_file: Annotated[Path, typer.Argument(help="A model file (.safetensors) written by fmnist.")],
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write evaluation files, figures and report.html here.", show_default=False)] = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Test loss and accuracy, the classification report, the most-confused pairs; figures with --out."""
    from fmnist.device import resolve_device
    from fmnist.engine.evaluate import evaluate_model, most_confused
    from fmnist.engine.run import write_evaluation
    from fmnist.modelfile import load_model
    from fmnist.report.run_report import redraw

    target = resolve_device(device)
    loaded = load_model(model_file, device=target)
    dataset = load(data, quiet)
    if len(loaded.classes) != dataset.num_classes:
        raise FmnistError(f"{model_file}: the model knows {len(loaded.classes)} classes, the data has {dataset.num_classes}")
    result = evaluate_model(loaded.model, dataset.test.images, dataset.test.labels, loaded.classes, target)
    console.print(f"test loss {result['loss']:.4f}  test accuracy {result['accuracy']:.4f}  ({len(dataset.test):,} images)")
    console.print(result["report_text"])
    pairs = most_confused(result["confusion_matrix"], loaded.classes)
    if pairs:
        console.print("most confused: " + "; ".join(f"{t} → {p} ({n})" for t, p, n in pairs))
    if out is not None:
        write_evaluation(out, result, loaded.classes, dataset.test.labels, str(data) if data else None,
                         str(Path(model_file).resolve()))
        redraw(out, dataset, title=f"fmnist evaluate: {model_file}")
        console.print(f"wrote evaluation.json, predictions.npz, figures and report.html to {out}")


@command()
def report(
    folder: Annotated[Path, typer.Argument(help="An output folder of train, cv or evaluate.")],
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Redraw every figure of an output folder from its saved files and rewrite its report.html."""
    from fmnist.report.run_report import redraw

    if not folder.is_dir():
        raise FmnistError(f"{folder}: no such directory")
    known = ("history.csv", "cv.json", "evaluation.json", "metrics.json")
    if not any((folder / name).is_file() for name in known):
        raise FmnistError(f"{folder}: not an fmnist output folder (none of {', '.join(known)})")
    dataset = load(data, quiet) if data is not None else None
    path = redraw(folder, dataset)
    console.print(f"wrote {path}")


@command()
def activations(
    model_file: Annotated[Path, typer.Argument(help="A model file (.safetensors) written by fmnist.")],
    images: Annotated[str, typer.Option("--images", help="Comma-separated test-image indices.")] = "0,7,26",
    filter_index: Annotated[int, typer.Option("--filter", help="Which filter (channel) of each layer to show.")] = 1,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/activations"),
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Feature maps (write-up 003): one row per test image, one column per conv/pool layer."""
    from fmnist.engine.inspect import feature_maps
    from fmnist.modelfile import load_model
    from fmnist.report import diagnostics, html

    try:
        ids = [int(part) for part in images.split(",") if part.strip()]
    except ValueError:
        raise FmnistError(f"--images: expected comma-separated integers, got {images!r}") from None
    if not ids:
        raise FmnistError("--images: give at least one test-image index")
    if filter_index < 0:
        raise FmnistError(f"--filter must be >= 0, got {filter_index}")
    loaded = load_model(model_file)
    dataset = load(data, quiet)
    bad = [i for i in ids if not 0 <= i < len(dataset.test)]
    if bad:
        raise FmnistError(f"--images: index {bad[0]} is outside 0-{len(dataset.test) - 1}")
    chosen = dataset.test.images[ids]
    layers = feature_maps(loaded.model, chosen)
    if not layers:
        raise FmnistError(f"{model_file}: the model has no convolution or pooling layers to show")
    out.mkdir(parents=True, exist_ok=True)
    figure = diagnostics.plot_feature_maps(chosen, ids, layers, filter_index, out / "feature-maps.png")
    html.write_report(out / "report.html", f"fmnist activations: {model_file}",
                      [("Feature maps", html.figure(figure, f"Filter {filter_index}, test images {images}"))])
    for name, maps in layers:
        console.print(f"{name:24s} {tuple(maps.shape[1:])}")
    console.print(f"wrote feature-maps.png and report.html to {out}")
