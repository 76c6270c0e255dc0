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


ModelOption = Annotated[Optional[str], typer.Option("--model", help="A registered model (see `fmnist models`). [default: baseline]", show_default=False)]
SpecOption = Annotated[Optional[Path], typer.Option("--spec", help="A CNN spec file (YAML/JSON, write-up 002's parameter dict) instead of --model.", show_default=False)]


def _load_spec(spec: Optional[Path]) -> Optional[dict]:
    from fmnist import models

    return None if spec is None else models.validate_spec(models.load_spec(spec))


@_command("models")
def list_models() -> None:
    """List the registered models with their parameter counts (Keras-style)."""
    from fmnist import models

    table = Table(title="Registered models")
    for column in ("name", "params", "trainable", "description"):
        table.add_column(column, justify="right" if column in ("params", "trainable") else "left")
    for name in models.names():
        total, trainable, _ = models.keras_param_counts(models.create(name))
        table.add_row(name, f"{total:,}", f"{trainable:,}", models.describe(name))
    console.print(table)


@_command()
def summary(
    name: Annotated[Optional[str], typer.Argument(help="A registered model name, or a spec file (.yaml/.json).", show_default=False)] = None,
    spec: SpecOption = None,
) -> None:
    """A Keras-style layer table: layer, type, output shape, params; totals."""
    from fmnist import models

    if name is not None and spec is None and (name.endswith((".yaml", ".yml", ".json")) or Path(name).is_file()):
        spec, name = Path(name), None
    if (name is None) == (spec is None):
        raise FmnistError("give one model name or one spec file")
    architecture = models.architecture_for(name=name, spec=_load_spec(spec))
    title = name or str(spec)
    typer.echo(models.format_summary(models.summarize(models.build(architecture)), title))


@_command()
def train(
    model: ModelOption = None,
    spec: SpecOption = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs. [default: 10]", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Batch size. [default: 32]", show_default=False)] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="sgd | adam | adamw. [default: sgd]", show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate. [default: 0.01 for sgd, 0.001 for adam/adamw]", show_default=False)] = None,
    momentum: Annotated[Optional[float], typer.Option("--momentum", help="SGD momentum. [default: 0.9]", show_default=False)] = None,
    nesterov: Annotated[Optional[bool], typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum (SGD). [default: off]", show_default=False)] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help="Weight decay. [default: 0]", show_default=False)] = None,
    schedule: Annotated[Optional[str], typer.Option("--schedule", help="constant | time-decay | step | cosine | onecycle. [default: constant]", show_default=False)] = None,
    label_smoothing: Annotated[Optional[float], typer.Option("--label-smoothing", help="Label smoothing. [default: 0]", show_default=False)] = None,
    val: Annotated[Optional[str], typer.Option("--val", help="test | split:FRACTION | balanced:N_PER_CLASS. [default: test]", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed. [default: 1]", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda. [default: auto]", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Train on the first N training images only (smoke runs).", show_default=False)] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="best | every | none. [default: best]", show_default=False)] = None,
    early_stop: Annotated[Optional[int], typer.Option("--early-stop", help="Stop after this many epochs without a better val_accuracy.", show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the interrupted run in this folder.", show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="A YAML config (see configs/); options given here override it.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run folder. [default: runs/MODEL-TIMESTAMP]", show_default=False)] = None,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a model; evaluate it on the test set; write the run folder."""
    from fmnist.engine.config import build_config
    from fmnist.engine.progress import make_progress
    from fmnist.engine.run import train as run_training
    from fmnist.engine.trainer import load_run_config

    options = dict(model=model, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
                   nesterov=nesterov, weight_decay=weight_decay, schedule=schedule, label_smoothing=label_smoothing,
                   val=val, seed=seed, device=device, limit=limit, checkpoint=checkpoint, early_stop=early_stop,
                   data=str(data) if data else None)
    if resume is not None:
        given = sorted(key for key, value in options.items() if value is not None and key != "device")
        if given or spec or config or out:
            raise FmnistError(f"--resume continues the run as configured in {resume}/config.yaml; "
                              f"drop {', '.join('--' + g.replace('_', '-') for g in given) or 'the other options'}")
        settings = load_run_config(resume)
        if device:
            settings.device = device
        out = resume
    else:
        settings = build_config(config, spec=_load_spec(spec), **options)
        if out is None:
            out = Path("runs") / f"{settings.model_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    progress = make_progress(quiet)
    try:
        result = run_training(settings, out, progress=progress, resume=resume is not None)
    except KeyboardInterrupt:
        progress.close()
        typer.echo(f"fmnist: interrupted; continue with: fmnist train --resume {out}", err=True)
        raise typer.Exit(130) from None
    finally:
        progress.close()
    metrics = result.metrics
    console.print(f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}  "
                  f"(best val_accuracy {metrics['best_val_accuracy']:.4f} at epoch {metrics['best_epoch']}, "
                  f"{metrics['epochs_run']} epochs in {metrics['train_seconds']:.1f} s)")
    console.print(f"run folder: {out}")


@_command()
def evaluate(
    model_file: Annotated[Path, typer.Argument(help="A model file (.safetensors) written by fmnist.")],
    data: DataOption = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write metrics.json, the report and figures here.", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda.")] = "auto",
    quiet: QuietOption = False,
) -> None:
    """Test loss and accuracy, the classification report, and a confusion-matrix figure."""
    from fmnist.device import resolve_device
    from fmnist.engine import state as run_state
    from fmnist.engine.evaluate import evaluate_model, most_confused
    from fmnist.engine.run import write_evaluation
    from fmnist.modelfile import load_model

    target = resolve_device(device)
    loaded = load_model(model_file, device=target)
    dataset = _load(data, quiet)
    if len(loaded.classes) != dataset.num_classes:
        raise FmnistError(f"{model_file}: the model knows {len(loaded.classes)} classes, the data has {dataset.num_classes}")
    result = evaluate_model(loaded.model, dataset.test.images, dataset.test.labels, loaded.classes, target)
    console.print(f"test loss {result['loss']:.4f}  test accuracy {result['accuracy']:.4f}  ({len(dataset.test):,} images)")
    console.print(result["report_text"])
    pairs = most_confused(result["confusion_matrix"], loaded.classes)
    if pairs:
        console.print("most confused: " + "; ".join(f"{t} → {p} ({n})" for t, p, n in pairs))
    if out is not None:
        write_evaluation(out, result, loaded.classes)
        run_state.write_json(out / "metrics.json", {"model_file": str(model_file), "test_loss": result["loss"],
                                                     "test_accuracy": result["accuracy"], "report": result["report"],
                                                     "confusion_matrix": result["confusion_matrix"]})
        console.print(f"wrote metrics.json, classification_report.txt, confusion-matrix.png to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
