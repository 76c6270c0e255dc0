"""Model and training commands: models, summary, train, cv, lr-find.

The models and the workflows import torch (seconds on a small machine): each command imports them
itself, so that `fmnist --help` and the commands that need no torch start fast.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fmnist.engine.config import build_config, load_run_config
from fmnist.engine.progress import make_progress
from fmnist.cli._common import (
    SpecOption,
    DataOption,
    QuietOption,
    command,
    console,
    load,
    option,
    training_options,
)
from fmnist.errors import FmnistError
from fmnist.runfolder import RunFolder

# Every option a training run takes, in the order --help lists them.
TRAINING = ("model", "spec", "epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
            "schedule", "warmup_epochs", "label_smoothing", "augment", "val", "seed", "device", "precision", "threads",
            "recipe", "limit", "checkpoint", "early_stop", "config")


def _load_spec(spec: Optional[Path]) -> Optional[dict]:
    from fmnist import models  # torch: imported when a command needs it, so that --help starts fast

    return None if spec is None else models.validate_spec(models.load_spec(spec))


def given_options(options: dict, data: Optional[Path] = None, **overrides) -> dict:
    """The options given, as build_config takes them: the `config` file, the values (the spec file
    read), the data folder; `overrides` replace options."""
    values = {**options, **overrides}
    values["spec"] = _load_spec(values.pop("spec", None))
    values["data"] = str(data) if data is not None else None
    return values


def _settings(options: dict, data: Optional[Path] = None, **overrides):
    """A TrainConfig from the options given (config file < options); `overrides` replace options."""
    values = given_options(options, data, **overrides)
    return build_config(values.pop("config", None), **values)


@command("models", short_help="The registered models and their sizes.")
def list_models() -> None:
    """List the registered models with their parameter counts (Keras-style)."""
    from fmnist import models  # torch: imported when a command needs it, so that --help starts fast

    table = Table(title="Registered models")
    for column in ("name", "params", "trainable", "description"):
        table.add_column(column, justify="right" if column in ("params", "trainable") else "left")
    for name in models.names():
        total, trainable, _ = models.keras_param_counts(models.create(name))
        table.add_row(name, f"{total:,}", f"{trainable:,}", models.describe(name))
    console.print(table)


@command(short_help="A Keras-style layer table of a model.")
def summary(
    name: Annotated[Optional[str], typer.Argument(help="A registered model name, or a spec file (.yaml/.json).",
                                                  show_default=False)] = None,
    spec: SpecOption = None,
) -> None:
    """A Keras-style layer table: layer, type, output shape, params; totals."""
    from fmnist import models  # torch: imported when a command needs it, so that --help starts fast

    if name is not None and spec is None and (name.endswith((".yaml", ".yml", ".json")) or Path(name).is_file()):
        spec, name = Path(name), None
    if (name is None) == (spec is None):
        raise FmnistError("give one model name or one spec file")
    architecture = models.architecture_for(name=name, spec=_load_spec(spec))
    title = name or str(spec)
    typer.echo(models.format_summary(models.summarize(models.build(architecture)), title))


@command(short_help="Train a model and write its run folder.")
@training_options(*TRAINING)
def train(
    options: dict,
    resume: option(Path, "--resume", "Continue the interrupted run in this folder.") = None,
    out: option(Path, "--out", "Run folder.", default="runs/MODEL-TIMESTAMP") = None,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a model; evaluate it on the test set; write the run folder with its report.html.

    Under torchrun (`torchrun --nproc-per-node N -m fmnist train …`) the processes train together,
    data-parallel, and rank 0 writes the run folder; --batch-size is the global batch."""
    settings = None
    if resume is not None:
        given = sorted(key for key, value in {**options, "data": data}.items()
                       if value is not None and key not in ("device", "threads", "config", "spec"))
        if given or options["spec"] or options["config"] or out:
            dropped = ", ".join("--" + key.replace("_", "-") for key in given) or "the other options"
            raise FmnistError(f"--resume continues the run as configured in {resume}/config.yaml; drop {dropped}")
    else:
        settings = _settings(options, data)  # a refused option costs no torch import
    from fmnist.engine import distributed  # torch: imported when a command needs it

    world = distributed.start()  # torchrun's processes, or None
    try:
        _train(world, settings, options, resume, out, quiet)
    finally:
        distributed.leave()


def _train(world, settings, options: dict, resume: Optional[Path], out: Optional[Path], quiet: bool) -> None:
    from fmnist.engine import distributed  # torch: imported when a command needs it
    from fmnist.workflows.train_run import train as train_run

    if resume is not None:

        def read_config():
            settings = load_run_config(resume)
            if options["device"]:
                settings.device = options["device"]
            if options["threads"] is not None:  # like --device, a setting of this machine, not of the run
                settings.threads = options["threads"]
                settings.validate()
            return settings

        settings = distributed.on_main(world, read_config)  # rank 0's folder: other machines need no copy
        out = resume
    else:
        settings = _rank_zeros(world, [settings])[0]
    if out is None:  # under torchrun: one folder for every rank and every restart
        stamp = f"torchrun-{world.run_id}" if world is not None and world.run_id else time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{settings.model_name}-{stamp}"
    resuming = resume is not None
    if world is not None and world.run_id and not resuming:  # a restart (--max-restarts) continues the run
        # Rank 0 decides from the folder, every rank alike: TORCHELASTIC_RESTART_COUNT is each machine's own count.
        resuming = distributed.on_main(world, lambda: RunFolder(out).begun_by(world.run_id))
    main = world is None or world.main
    progress = make_progress(quiet or not main)
    try:
        result = train_run(settings, out, progress=progress, resume=resuming, world=world)
    except KeyboardInterrupt:
        progress.close()
        # --resume continues from the last checkpoint, or begins again when there is none; it needs
        # the run's config.yaml, which is not there when the run was stopped before it started.
        hint = f"; continue with: fmnist train --resume {out}" if RunFolder(out).config.is_file() else ""
        typer.echo(f"fmnist: interrupted{hint}", err=True)
        raise typer.Exit(130) from None
    finally:
        progress.close()  # also on errors: never leave a live bar over the error line
    if result is None:  # a rank other than 0: rank 0 prints the results
        return
    metrics = result.metrics
    console.print(f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}  "
                  f"(best val_accuracy {metrics['best_val_accuracy']:.4f} at epoch {metrics['best_epoch']}, "
                  f"{metrics['epochs_run']} epochs in {metrics['train_seconds']:.1f} s)")
    console.print(f"run folder: {out} (report.html)")


def _rank_zeros(world, configs: list) -> list:
    """Rank 0's configs on every rank, each with this machine's own device, threads and data folder: a recipe
    picks its values by the hardware (engine/recipes.py), and machines that differ must train the same model."""
    if world is None:
        return configs
    from fmnist.engine import distributed  # torch: imported when a command needs it

    return [replace(theirs, device=ours.device, threads=ours.threads, data=ours.data)
            for theirs, ours in zip(distributed.broadcast(world, configs), configs)]


@command(short_help="k-fold cross-validation of one or more models.")
@training_options(*(name for name in TRAINING if name != "val"),
                  model=Annotated[Optional[list[str]], typer.Option(
                      "--model", help="A registered model; repeat to compare several on the same folds. "
                                      "[default: baseline]", show_default=False)],
                  spec=Annotated[Optional[list[Path]], typer.Option(
                      "--spec", help="A CNN spec file; repeatable, alongside --model.", show_default=False)],
                  checkpoint=option(str, "--checkpoint", "best | every | none, for the --final model (folds keep "
                                                         "none).", default="best"))
def cv(
    folds: Annotated[int, typer.Option("--folds", help="Number of folds.")] = 5,
    stratified: Annotated[bool, typer.Option("--stratified", help="StratifiedKFold instead of KFold.")] = False,
    final: Annotated[bool, typer.Option("--final", help="Then train on the whole training set and evaluate on the "
                                                        "test set.")] = False,
    parallel_folds: Annotated[str, typer.Option(
        "--parallel-folds", help="auto | K | 1: how many folds train at once as one stacked model (auto: on a GPU as "
                                 "many as fit, on a CPU all if timed faster, else 1).")] = "auto",
    options: dict = None,
    out: option(Path, "--out", "Output folder.", default="runs/cv-TIMESTAMP") = None,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """k-fold cross-validation (write-up 000): fold scores, mean ± std, learning curves, box plot.

    Under torchrun the processes share the folds and rank 0 writes the output folder."""
    if folds < 2:
        raise FmnistError(f"--folds must be at least 2, got {folds}")
    if parallel_folds != "auto" and not (parallel_folds.isdigit() and int(parallel_folds) >= 1):
        raise FmnistError(f"--parallel-folds must be auto or a whole number of at least 1, got {parallel_folds!r}")
    models, specs = options.pop("model") or [], options.pop("spec") or []
    configs = [_settings(options, data, model=name) for name in models]
    configs += [_settings(options, data, spec=path) for path in specs]
    configs = configs or [_settings(options, data)]
    from fmnist.engine import distributed  # torch: imported when a command needs it
    from fmnist.engine.progress import PlainProgress
    from fmnist.workflows.crossval import cross_validate

    world = distributed.start()  # torchrun's processes, or None
    main = world is None or world.main
    configs = _rank_zeros(world, configs)
    if out is None:  # under torchrun: the same folder on every rank
        stamp = f"torchrun-{world.run_id}" if world is not None and world.run_id else time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"cv-{stamp}"

    def progress(prefix: str):  # ranks other than 0 write plain lines, each line saying whose it is
        return make_progress(quiet, prefix) if main or quiet else PlainProgress(prefix=f"rank {world.rank}: {prefix}")

    try:
        summary = cross_validate(configs, out, folds=folds, stratified=stratified, final=final,
                                 dataset=load(data, quiet or not main), make_progress=progress,
                                 report=lambda line: console.print(line), world=world,
                                 parallel_folds=parallel_folds if parallel_folds == "auto" else int(parallel_folds))
    finally:
        distributed.leave()
    if not main:
        return
    if len(summary["models"]) > 1:
        table = Table(title=f"{folds}-fold cross-validation")
        for column in ("model", "mean %", "std %", "n", "seconds"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for entry in summary["models"]:
            table.add_row(entry["label"], f"{entry['mean'] * 100:.3f}", f"{entry['std'] * 100:.3f}", str(entry["n"]),
                          f"{entry['seconds']:.1f}")
        console.print(table)
    console.print(f"output folder: {out} (cv.json, report.html)")


@command("lr-find", short_help="A learning-rate sweep and a suggested rate.")
@training_options("model", "spec", "batch_size", "optimizer", "momentum", "seed", "device", "threads", "limit",
                  "config")
def lr_find(
    options: dict,
    start_lr: Annotated[float, typer.Option("--start-lr", help="First learning rate of the sweep.")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr", help="Last learning rate of the sweep.")] = 10.0,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps in the sweep.")] = 100,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/lr-find"),
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Learning-rate finder: loss against learning rate over one short sweep, and a suggested rate."""
    from fmnist.workflows.lr_find import find_lr  # torch: imported when a command needs it

    settings = _settings(options, data)
    result = find_lr(settings, out, load(data, quiet), start=start_lr, end=end_lr, steps=steps)
    console.print(f"suggested learning rate: {result['suggestion']:.3g} (lowest loss at {result['min_loss_lr']:.3g}; "
                  f"{result['steps']} steps)")
    console.print(f"wrote lr_find.json, lr-find.png and report.html to {out}")
