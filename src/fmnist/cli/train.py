"""Model and training commands: models, summary, train, cv, lr-find."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fmnist.cli._common import DataOption, QuietOption, command, console, load, option
from fmnist.errors import FmnistError

ModelOption = option(str, "--model", "A registered model (see `fmnist models`). [default: baseline]")
SpecOption = option(Path, "--spec", "A CNN spec file (YAML/JSON, write-up 002's parameter dict) instead of --model.")


def _load_spec(spec: Optional[Path]) -> Optional[dict]:
    from fmnist import models

    return None if spec is None else models.validate_spec(models.load_spec(spec))


@command("models")
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


@command()
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


# Every training option, shared by train and cv (one spelling everywhere).
EpochsOption = option(int, "--epochs", "Epochs. [default: 10]")
BatchSizeOption = option(int, "--batch-size", "Batch size. [default: 32]")
OptimizerOption = option(str, "--optimizer", "sgd | adam | adamw. [default: sgd]")
LrOption = option(float, "--lr", "Learning rate. [default: 0.01 for sgd, 0.001 for adam/adamw]")
MomentumOption = option(float, "--momentum", "SGD momentum. [default: 0.9]")
NesterovOption = option(bool, "--nesterov/--no-nesterov", "Nesterov momentum (SGD). [default: off]")
WeightDecayOption = option(float, "--weight-decay", "Weight decay. [default: 0]")
ScheduleOption = option(str, "--schedule", "constant | time-decay | step | cosine | onecycle | linear (warm-up, "
                        "then linear decay to 0). [default: constant]")
WarmupOption = option(float, "--warmup-epochs", "Warm-up of the linear schedule, in epochs. [default: 0]")
LabelSmoothingOption = option(float, "--label-smoothing", "Label smoothing. [default: 0]")
SeedOption = option(int, "--seed", "Random seed. [default: 1]")
DeviceChoice = option(str, "--device", "auto | cpu | cuda. [default: auto]")
LimitOption = option(int, "--limit", "Train on the first N training images only (smoke runs).")
ConfigOption = option(Path, "--config", "A YAML config (see configs/); options given here override it.")
CheckpointOption = option(str, "--checkpoint", "best | every | none. [default: best]")
RecipeOption = option(str, "--recipe", "A named recipe (fast): its values sit under --config and the options.")
AugmentOption = option(str, "--augment", "none | flip | crop | flip+crop | flip+crop+erase, per batch. [default: none]")
PrecisionOption = option(str, "--precision", "auto | fp32 | bf16: autocast for training; auto = bf16 where the "
                         "hardware has it (CUDA, AVX512-BF16/AMX CPUs). [default: auto]")
EarlyStopOption = option(int, "--early-stop", "Stop after this many epochs without a better val_accuracy "
                         "and restore the best weights.")


def _settings(config, spec, **options):
    from fmnist.engine.config import build_config

    if options.get("data") is not None:
        options["data"] = str(options["data"])
    return build_config(config, spec=_load_spec(spec), **options)


@command()
def train(
    model: ModelOption = None,
    spec: SpecOption = None,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    optimizer: OptimizerOption = None,
    lr: LrOption = None,
    momentum: MomentumOption = None,
    nesterov: NesterovOption = None,
    weight_decay: WeightDecayOption = None,
    schedule: ScheduleOption = None,
    warmup_epochs: WarmupOption = None,
    label_smoothing: LabelSmoothingOption = None,
    augment: AugmentOption = None,
    val: option(str, "--val", "test | split:FRACTION | balanced:N_PER_CLASS. [default: test]") = None,
    seed: SeedOption = None,
    device: DeviceChoice = None,
    precision: PrecisionOption = None,
    recipe: RecipeOption = None,
    limit: LimitOption = None,
    checkpoint: CheckpointOption = None,
    early_stop: EarlyStopOption = None,
    resume: option(Path, "--resume", "Continue the interrupted run in this folder.") = None,
    config: ConfigOption = None,
    out: option(Path, "--out", "Run folder. [default: runs/MODEL-TIMESTAMP]") = None,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a model; evaluate it on the test set; write the run folder with its report.html."""
    from fmnist.engine.progress import make_progress
    from fmnist.engine.run import train as run_training
    from fmnist.engine.trainer import load_run_config

    options = dict(model=model, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
                   nesterov=nesterov, weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs,
                   label_smoothing=label_smoothing, augment=augment, val=val, seed=seed, device=device,
                   precision=precision, recipe=recipe, limit=limit, checkpoint=checkpoint, early_stop=early_stop,
                   data=data)
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
        settings = _settings(config, spec, **options)
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
        progress.close()  # also on errors: never leave a live bar over the error line
    metrics = result.metrics
    console.print(f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}  "
                  f"(best val_accuracy {metrics['best_val_accuracy']:.4f} at epoch {metrics['best_epoch']}, "
                  f"{metrics['epochs_run']} epochs in {metrics['train_seconds']:.1f} s)")
    console.print(f"run folder: {out} (report.html)")


@command()
def cv(
    model: Annotated[Optional[list[str]], typer.Option("--model", help="A registered model; repeat to compare several on the same folds. [default: baseline]", show_default=False)] = None,
    spec: Annotated[Optional[list[Path]], typer.Option("--spec", help="A CNN spec file; repeatable, alongside --model.", show_default=False)] = None,
    folds: Annotated[int, typer.Option("--folds", help="Number of folds.")] = 5,
    stratified: Annotated[bool, typer.Option("--stratified", help="StratifiedKFold instead of KFold.")] = False,
    final: Annotated[bool, typer.Option("--final", help="Then train on the whole training set and evaluate on the test set.")] = False,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    optimizer: OptimizerOption = None,
    lr: LrOption = None,
    momentum: MomentumOption = None,
    nesterov: NesterovOption = None,
    weight_decay: WeightDecayOption = None,
    schedule: ScheduleOption = None,
    warmup_epochs: WarmupOption = None,
    label_smoothing: LabelSmoothingOption = None,
    augment: AugmentOption = None,
    seed: SeedOption = None,
    device: DeviceChoice = None,
    precision: PrecisionOption = None,
    recipe: RecipeOption = None,
    limit: LimitOption = None,
    checkpoint: option(str, "--checkpoint", "best | every | none, for the --final model (folds keep none). [default: best]") = None,
    early_stop: EarlyStopOption = None,
    config: ConfigOption = None,
    out: option(Path, "--out", "Output folder. [default: runs/cv-TIMESTAMP]") = None,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """k-fold cross-validation (write-up 000): fold scores, mean ± std, learning curves, box plot."""
    from fmnist.engine.crossval import cross_validate
    from fmnist.engine.progress import make_progress
    from fmnist.report.run_report import redraw

    if folds < 2:
        raise FmnistError(f"--folds must be at least 2, got {folds}")
    options = dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
                   nesterov=nesterov, weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs,
                   label_smoothing=label_smoothing, augment=augment, seed=seed, device=device, precision=precision,
                   recipe=recipe, limit=limit, checkpoint=checkpoint, early_stop=early_stop, data=data)
    configs = [_settings(config, None, model=name, **options) for name in (model or [])]
    configs += [_settings(config, path, **options) for path in (spec or [])]
    if not configs:
        configs = [_settings(config, None, **options)]
    out = out or Path("runs") / f"cv-{time.strftime('%Y%m%d-%H%M%S')}"
    dataset = load(data, quiet)
    summary = cross_validate(configs, out, folds=folds, stratified=stratified, final=final, dataset=dataset,
                             make_progress=lambda prefix: make_progress(quiet, prefix),
                             report=lambda line: console.print(line))
    redraw(out, title=f"fmnist cv: {', '.join(entry['label'] for entry in summary['models'])}")
    if len(summary["models"]) > 1:
        table = Table(title=f"{folds}-fold cross-validation")
        for column in ("model", "mean %", "std %", "n", "seconds"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for entry in summary["models"]:
            table.add_row(entry["label"], f"{entry['mean'] * 100:.3f}", f"{entry['std'] * 100:.3f}", str(entry["n"]),
                          f"{entry['seconds']:.1f}")
        console.print(table)
    console.print(f"output folder: {out} (cv.json, report.html)")


@command("lr-find")
def lr_find(
    model: ModelOption = None,
    spec: SpecOption = None,
    batch_size: BatchSizeOption = None,
    optimizer: OptimizerOption = None,
    momentum: MomentumOption = None,
    seed: SeedOption = None,
    device: DeviceChoice = None,
    limit: LimitOption = None,
    config: ConfigOption = None,
    start_lr: Annotated[float, typer.Option("--start-lr", help="First learning rate of the sweep.")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr", help="Last learning rate of the sweep.")] = 10.0,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps in the sweep.")] = 100,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/lr-find"),
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Learning-rate finder: loss against learning rate over one short sweep, and a suggested rate."""
    from fmnist.engine import state as run_state
    from fmnist.engine.inspect import lr_find as sweep
    from fmnist.report import diagnostics, html

    settings = _settings(config, spec, model=model, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                         seed=seed, device=device, limit=limit, data=data)
    if steps < 10:
        raise FmnistError(f"--steps must be at least 10, got {steps}")
    try:
        result = sweep(settings, load(data, quiet), start=start_lr, end=end_lr, steps=steps)
    except ValueError as exc:
        raise FmnistError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    run_state.write_json(out / "lr_find.json", {"model": settings.model_name, "optimizer": settings.optimizer, **result})
    figure = diagnostics.plot_lr_finder(result["lrs"], result["losses"], result["suggestion"], out / "lr-find.png",
                                        f"Learning-rate finder: {settings.model_name}, {settings.optimizer}")
    html.write_report(out / "report.html", f"fmnist lr-find: {settings.model_name}",
                      [("Learning-rate finder", html.figure(figure, "Smoothed loss against learning rate"))])
    console.print(f"suggested learning rate: {result['suggestion']:.3g} (lowest loss at {result['min_loss_lr']:.3g}; "
                  f"{result['steps']} steps)")
    console.print(f"wrote lr_find.json, lr-find.png and report.html to {out}")
