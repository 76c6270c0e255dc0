"""What every command shares: the app, one-line error handling, console, and option types.

Options are spelled the same in every command (DESIGN.md: the CLI is the contract).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from fmnist.data.dataset import load_dataset
from fmnist.engine.config import DEFAULT_LR, TrainConfig
from fmnist.errors import FmnistError, FmnistWarning, printable

app = typer.Typer(
    name="fmnist",
    help="Train, evaluate and use CNNs on Fashion-MNIST and any MNIST-like image data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain text: "[default: 10]" must not be read as markup and vanish
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
                with warnings.catch_warnings():
                    warnings.showwarning = _show_warning
                    return function(*call_args, **call_kwargs)
            except FmnistError as exc:
                if state["debug"]:
                    raise
                typer.echo(printable(f"fmnist: error: {exc}"), err=True)
                raise typer.Exit(2) from None
            except OSError as exc:  # permission denied, disk full, ...: the user's environment, not a bug
                if state["debug"]:
                    raise
                where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
                typer.echo(printable(f"fmnist: error: {where}{exc.strerror or exc}"), err=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                typer.echo("fmnist: interrupted", err=True)
                raise typer.Exit(130) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorate


_show_python_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """FmnistWarnings as one line on stderr, `fmnist: warning: ...`; others as Python shows them."""
    if issubclass(category, FmnistWarning):
        typer.echo(printable(f"fmnist: warning: {message}"), err=True)
    else:
        _show_python_warning(message, category, filename, lineno, file, line)


def option(kind, flag: str, help: str, *names: str, default: str | None = None):
    """An optional option (None when not given), so config files and defaults can fill it; `default`
    is what --help shows as its default (typer's `[default: …]`)."""
    help = f"{help} [default: {default}]" if default else help
    return Annotated[Optional[kind], typer.Option(flag, *names, help=help, show_default=False)]


DataOption = option(Path, "--data", "Directory with the data: the four IDX files, the Kaggle CSV pair, or "
                    "train/ and test/ image folders. Default: $FMNIST_DATA, the cache, system copies, then a download.")
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Hide progress and notes (never results).")]
OutOption = Annotated[Path, typer.Option("--out", help="Output directory (created if needed).")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto | cpu | cuda.")]


def default_of(name: str) -> str | None:
    """The default of a TrainConfig field as --help shows it, from the dataclass (one source of truth)."""
    if name == "lr":
        return ", ".join(f"{lr:g} for {optimizer}" for optimizer, lr in DEFAULT_LR.items())
    value = {field.name: field.default for field in dataclasses.fields(TrainConfig)}[name]
    if value is None:
        return None
    return "on" if value is True else "off" if value is False else str(value)


def _training_option(kind, flag: str, help: str, *names: str):
    field = flag.lstrip("-").split("/")[0].replace("-", "_")
    return option(kind, flag, help, *names, default=default_of(field))


# Every training option, declared once: `train`, `cv`, `lr-find` (and later commands) take them by name
# with @training_options(...). Each is None unless given, so a config file and the recipe can fill it.
TRAINING_OPTIONS = {
    "model": _training_option(str, "--model", "A registered model (see `fmnist models`)."),
    "spec": option(Path, "--spec", "A CNN spec file (YAML/JSON, write-up 002's parameter dict) instead of --model."),
    "epochs": _training_option(int, "--epochs", "Epochs."),
    "batch_size": _training_option(int, "--batch-size", "Batch size."),
    "optimizer": _training_option(str, "--optimizer", "sgd | adam | adamw."),
    "lr": _training_option(float, "--lr", "Learning rate."),
    "momentum": _training_option(float, "--momentum", "SGD momentum."),
    "nesterov": _training_option(bool, "--nesterov/--no-nesterov", "Nesterov momentum (SGD)."),
    "weight_decay": _training_option(float, "--weight-decay", "Weight decay."),
    "schedule": _training_option(str, "--schedule", "constant | time-decay | step | cosine | onecycle | linear "
                                 "(warm-up, then linear decay to 0)."),
    "warmup_epochs": _training_option(float, "--warmup-epochs", "Warm-up of the linear schedule, in epochs."),
    "label_smoothing": _training_option(float, "--label-smoothing", "Label smoothing."),
    "augment": _training_option(str, "--augment", "none | flip | crop | flip+crop | flip+crop+erase, per batch."),
    "val": _training_option(str, "--val", "test | split:FRACTION | balanced:N_PER_CLASS."),
    "seed": _training_option(int, "--seed", "Random seed."),
    "device": _training_option(str, "--device", "auto | cpu | cuda."),
    "precision": _training_option(str, "--precision", "auto | fp32 | bf16: autocast for training; auto = bf16 "
                                  "where the hardware has it (CUDA, AVX512-BF16/AMX CPUs)."),
    "threads": _training_option(int, "--threads", "CPU threads for torch's operators; 0 = automatic (every core "
                                "this process may use). 1 keeps a shared, busy machine from slowing training."),
    "recipe": option(str, "--recipe", "A named recipe (fast): its values sit under --config and the options; where "
                                      "the run trains in fp32 (no native bf16), its fp32 values (fast: model "
                                      "fast-narrow, lr 0.2)."),
    "limit": option(int, "--limit", "Train on the first N training images only (smoke runs)."),
    "checkpoint": _training_option(str, "--checkpoint", "best | every | none."),
    "early_stop": option(int, "--early-stop", "Stop after this many epochs without a better val_accuracy and "
                         "restore the best weights."),
    "config": option(Path, "--config", "A YAML config (see configs/); options given here override it."),
}


SpecOption = TRAINING_OPTIONS["spec"]


def training_options(*names: str, **replaced):
    """Decorator: add the named TRAINING_OPTIONS (or `replaced` ones) to a command where its
    `options` parameter stands; the command receives them as one dict, `options`."""
    def decorate(function):
        signature = inspect.signature(function, eval_str=True)
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=replaced.get(name, TRAINING_OPTIONS.get(name)))
                 for name in names]
        parameters = []
        for parameter in signature.parameters.values():
            if parameter.name == "options":
                parameters += added
            else:
                parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(function)
        def wrapper(**kwargs):
            options = {name: kwargs.pop(name) for name in names}
            return function(options=options, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=parameters)
        wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return wrapper

    return decorate


def note(quiet: bool):
    """A logger for progress notes on stderr, silent with --quiet."""

    def log(message: str) -> None:
        if not quiet:
            typer.echo(printable(f"fmnist: {message}"), err=True)

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
    return load_dataset(data, log=note(quiet), progress=download_progress(quiet), **kwargs)


def source_line(dataset) -> str:
    check = "official Fashion-MNIST, SHA-256 verified" if dataset.verified else "not the official files"
    return f"{dataset.source.describe()} — {check}"
