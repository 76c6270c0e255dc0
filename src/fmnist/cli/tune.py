"""`fmnist tune`: a hyperparameter search with Optuna over a search-space file.

Optuna, SQLAlchemy and torch take seconds to import: the workflow is imported inside the command,
so that `fmnist --help` and the other commands start fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli._common import DataOption, QuietOption, command, console, note, option, training_options
from fmnist.cli.train import TRAINING, given_options
from fmnist.engine.progress import make_progress


@command(short_help="Search hyperparameters with Optuna (SQLite, or PostgreSQL for many workers).")
@training_options(*TRAINING)
def tune(
    space: Annotated[Path, typer.Option("--space", help="Search-space file (YAML): what varies, and an optional "
                                                        "fixed: section (see configs/tune-fast.yaml).")],
    trials: Annotated[int, typer.Option("--trials", help="Trials of the whole study, all workers together.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: trials/, best.yaml, tune.json, report.html.")],
    timeout: option(float, "--timeout", "Start no trial after this many seconds.") = None,
    study: Annotated[str, typer.Option("--study", help="Study name (shared by the workers of one study).")] = "fmnist",
    storage: option(str, "--storage", "sqlite:///PATH (one worker) or postgresql://USER:PASSWORD@HOST:PORT/DB "
                                      "(many workers, many machines).", default="sqlite:///OUT/study.db") = None,
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes, each with 1/K of the CPU "
                                                           "threads (PostgreSQL storage for K > 1).")] = 1,
    sampler: Annotated[str, typer.Option("--sampler", help="tpe | random | grid.")] = "tpe",
    pruner: Annotated[str, typer.Option("--pruner", help="hyperband | median | none: stop hopeless trials "
                                                         "after an epoch.")] = "hyperband",
    metric: Annotated[str, typer.Option("--metric", help="val_accuracy (maximised) | val_loss (minimised).")]
    = "val_accuracy",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the study (same --study and --storage); "
                                                          "a finished one reprints its result.")] = False,
    final: Annotated[bool, typer.Option("--final", help="Then train best.yaml on all training images and "
                                                        "evaluate it on the test set.")] = False,
    options: dict = None,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Hyperparameter search: each trial trains on the training set and validates on a hold-out of it
    (--val, default balanced:500), never the test set. The training options are the fixed part."""
    note(quiet)("loading PyTorch and Optuna")
    from fmnist.workflows.tune import tune as run_tune  # optuna, SQLAlchemy, torch: seconds; only when tuning

    summary = run_tune(space, out, trials, config=given_options(options, data), timeout=timeout, study=study,
                       storage=storage, workers=workers, sampler=sampler, pruner=pruner, metric=metric,
                       resume=resume, final=final, quiet=quiet,
                       make_progress=lambda prefix: make_progress(quiet, prefix),
                       report=lambda line: console.print(line))
    written = "tune.json, best.yaml, report.html" if summary.get("best") else "tune.json, report.html"
    console.print(f"output folder: {out} ({written})")


__all__ = ["tune"]
