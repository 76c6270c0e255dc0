"""Hyperparameter search with Optuna: `fmnist tune` and `fmnist.tune()`.

    tune ─ check the space against the fixed config ─ create or join the study
         ─ K workers: [budget lock → count → ask] → fit(trial config, DIR/trials/NNN) → tell → progress line
         ─ tune.json, best.yaml, figures, report.html ─ (--final) train best.yaml, evaluate on the test set

Trials validate on a hold-out of the training set (`--val`, default balanced:500), never on the test
set; each epoch's value goes to the pruner, which may stop the trial (PRUNED). A trial that fails —
a combination the config refuses, out of memory, any FmnistError — is recorded FAIL with its
one-line reason, and the study goes on.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

from fmnist.data.dataset import Dataset, load_dataset
from fmnist.engine.config import TrainConfig, config_from_dict
from fmnist.engine.progress import NullProgress, Progress, make_progress as progress_for
from fmnist.engine.trainer import fit
from fmnist.engine.training_data import validation_split
from fmnist.errors import FmnistError, printable
from fmnist.runfolder import RunFolder, write_json
from fmnist.tuning.space import SearchSpace, load_space, suggest
from fmnist.tuning.storage import budget_lock, heartbeat_settings, kind_of, open_storage, storage_url
from fmnist.workflows.train_run import train as train_run
from fmnist.workflows.tune_results import budget_state, trial_line, trial_record, write_results

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("hyperband", "median", "none")
METRICS = {"val_accuracy": "maximize", "val_loss": "minimize"}
DEFAULT_VAL = "balanced:500"  # 5,000 training images held out, 500 per class: the same for every trial
# What a failed trial may raise without stopping the study (OOM is a RuntimeError).
CATCH = (FmnistError, RuntimeError, ValueError, MemoryError)


@dataclass
class TuneJob:
    """Everything a worker process needs (picklable: workers are spawned)."""

    space: SearchSpace
    base: TrainConfig  # the fixed part of every trial
    out: Path
    url: str
    study: str
    budget: int  # trials of the whole study, all workers together
    timeout: float | None
    sampler: str
    pruner: str
    metric: str
    quiet: bool
    workers: int = 1
    grid: dict | None = None  # the grid sampler's values of each key


def tune(space, out: str | Path, trials: int, config: TrainConfig | dict | None = None, timeout: float | None = None,
         study: str = "fmnist", storage: str | None = None, workers: int = 1, sampler: str = "tpe",
         pruner: str = "hyperband", metric: str = "val_accuracy", resume: bool = False, final: bool = False,
         quiet: bool = True, dataset: Dataset | None = None,
         make_progress: Callable[[str], Progress] = lambda prefix: NullProgress(),
         report: Callable[[str], None] = lambda line: None) -> dict:
    """Search `space` (a YAML file, a dict or a SearchSpace) for `trials` trials. What every trial
    shares is the space's `fixed:` with `config` over it (a TrainConfig: its values that differ from
    the defaults; a dict: options as build_config takes them, e.g. the command line's). Writes
    DIR/trials/NNN/, tune.json, best.yaml, figures and report.html; returns what tune.json holds.
    `report` receives the result lines."""
    _check_choice("--sampler", sampler, SAMPLERS)
    _check_choice("--pruner", pruner, PRUNERS)
    _check_choice("--metric", metric, tuple(METRICS))
    if trials < 1 or workers < 1:
        raise FmnistError(f"--trials and --workers must be at least 1, got {trials} and {workers}")
    if timeout is not None and timeout <= 0:
        raise FmnistError(f"--timeout must be above 0 seconds, got {timeout:g}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial, not Optuna's log
    space = load_space(space)
    base = space.base_config(config)
    if base.val == "test":  # the default of train; a search never looks at the test set
        base = dataclasses.replace(base, val=DEFAULT_VAL)
    space.check(base)
    url = storage_url(storage, Path(out))
    if kind_of(url) == "sqlite" and workers > 1:
        raise FmnistError(f"--workers {workers}: a SQLite study takes one worker at a time; "
                          "give --storage postgresql://USER@HOST/DB for several")
    grid = space.grid() if sampler == "grid" else None
    if grid is not None:
        trials = min(trials, math.prod(len(values) for values in grid.values()))
    out = Path(out)
    folder = RunFolder(out)
    if not resume and ((out / "tune.json").exists() or (storage is None and (out / "study.db").exists())):
        raise FmnistError(f"{out}: already holds a study; continue it with --resume or choose another --out")
    with folder.locked():
        job = TuneJob(space, base, out, url, study, trials, timeout, sampler, pruner, metric, quiet, workers, grid)
        started = time.perf_counter()
        dataset = dataset if dataset is not None else load_dataset(base.data)
        _check_validation(base, dataset)  # before the study exists: a refused --val leaves no empty study
        optuna_study = _create_or_join(job, resume)
        if workers == 1:
            work(job, 0, None, dataset)
        else:
            _run_workers(job)
        seconds = time.perf_counter() - started
        summary, figures = write_results(optuna_study, job, seconds)  # on disk before --final's training
        _report_summary(summary, report)
        if final and summary.get("best"):
            best = dataclasses.replace(config_from_dict(summary["best"]["config"], origin="best.yaml"), val="test")
            progress = make_progress("final  ")
            try:
                result = train_run(best, out / "final", dataset, progress=progress)
            finally:
                progress.close()
            scores = {key: result.metrics[key] for key in ("test_accuracy", "test_loss", "train_seconds")}
            summary, _ = write_results(optuna_study, job, seconds, final=scores, figures=figures)  # the same figures
            report(f"final model: test accuracy {result.metrics['test_accuracy'] * 100:.3f} "
                   f"({out / 'final' / 'model.safetensors'})")
    return summary


def _check_choice(option: str, value: str, known: tuple[str, ...]) -> None:
    if value not in known:
        raise FmnistError(f"{option}: expected one of {', '.join(known)}, got {value!r}")


def _check_validation(base: TrainConfig, dataset: Dataset) -> None:
    """The hold-out fits the training images (a --limit may leave too few): fail before a trial."""
    count = len(dataset.train) if base.limit is None else min(base.limit, len(dataset.train))
    validation_split(base, dataset, count)


def _create_or_join(job: TuneJob, resume: bool) -> optuna.Study:
    """The study, created or joined; one with another space or metric under this name is refused."""
    storage = open_storage(job.url)
    try:
        storage.get_study_id_from_name(job.study)
        exists = True
    except KeyError:
        exists = False
    if resume and not exists:
        raise FmnistError(f"--resume: there is no study {job.study!r} to continue in this storage")
    study = optuna.create_study(study_name=job.study, storage=storage, direction=METRICS[job.metric],
                                load_if_exists=True)
    identity = {"space": job.space.fingerprint(), "metric": job.metric}
    recorded = study.user_attrs.get("fmnist")
    if recorded is None:
        study.set_user_attr("fmnist", identity)
        study.set_user_attr("fmnist_space", job.space.describe())
    elif recorded != identity:
        what = "search space" if recorded.get("space") != identity["space"] else f"metric ({recorded.get('metric')})"
        raise FmnistError(f"--study {job.study}: exists with another {what}; choose another --study name")
    return study


def _run_workers(job: TuneJob) -> None:
    """K local worker processes, each with 1/K of the CPU threads, on the shared study."""
    threads = max(1, torch.get_num_threads() // job.workers)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch threads or DB connections
    processes = [context.Process(target=_worker_main, args=(job, index, threads), daemon=False)
                 for index in range(job.workers)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        raise
    failed = [str(index + 1) for index, process in enumerate(processes) if process.exitcode != 0]
    if failed:
        raise FmnistError(f"worker{'s' if len(failed) > 1 else ''} {', '.join(failed)} stopped with an error "
                          "(see above); the study keeps every finished trial: continue it with --resume")


def _worker_main(job: TuneJob, index: int, threads: int) -> None:
    try:
        work(job, index, threads)
    except FmnistError as exc:
        print(printable(f"fmnist: error: worker {index + 1}: {exc}"), file=sys.stderr, flush=True)
        sys.exit(2)


def work(job: TuneJob, index: int, threads: int | None, dataset: Dataset | None = None) -> None:
    """One worker: start trials while the study's budget has room, then wait until no trial of the
    study is still running (a killed worker's trial goes stale, is failed and retried here)."""
    if threads:
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial, not Optuna's log
    storage = open_storage(job.url)
    study = optuna.load_study(study_name=job.study, storage=storage, sampler=_sampler(job, index),
                              pruner=_pruner(job))
    progress = progress_for(job.quiet, prefix=f"[worker {index + 1}] " if job.workers > 1 else "")
    try:
        _trials(job, storage, study, Objective(job, dataset if dataset is not None else load_dataset(job.base.data),
                                             progress))
    finally:
        progress.close()


def _trials(job: TuneJob, storage, study: optuna.Study, objective: Objective) -> None:
    """Trial after trial while the budget (and --timeout) allow; then wait for the others' trials."""
    started, interval = time.monotonic(), heartbeat_settings()[0]
    while True:
        timed_out = job.timeout is not None and time.monotonic() - started >= job.timeout
        with budget_lock(storage, job.study) as release:
            used, waiting, running = budget_state(study)
            go = not timed_out and (waiting > 0 or used < job.budget)
            if go:
                objective.release = release  # once the trial exists, the next worker may count
                study.optimize(objective, n_trials=1, catch=CATCH, callbacks=[objective.finished])
        if go:
            continue
        if timed_out or running == 0:
            return
        time.sleep(interval)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: "experimental"
            optuna.storages.fail_stale_trials(study)


def _sampler(job: TuneJob, index: int) -> optuna.samplers.BaseSampler:
    # One process: the config's seed, so a study reruns the same. Shared studies: each worker its own.
    seed = job.base.seed if job.workers == 1 and kind_of(job.url) == "sqlite" else (job.base.seed * 7919 + os.getpid()) % 2**32
    if job.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if job.sampler == "grid":
        return optuna.samplers.GridSampler(job.grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(job: TuneJob) -> optuna.pruners.BasePruner:
    if job.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(job.base.epochs, 1))
    if job.pruner == "median":  # against the median of earlier trials at the same epoch, once 2 have finished
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


class Objective:
    """One trial: its config from the space, fit into DIR/trials/NNN, each epoch reported to the pruner."""

    def __init__(self, job: TuneJob, dataset: Dataset, progress: Progress):
        self.job, self.dataset, self.progress = job, dataset, progress
        self.release: Callable[[], None] = lambda: None

    def __call__(self, trial: optuna.Trial) -> float:
        self.release()
        job = self.job
        folder = job.out / "trials" / f"{trial.number:03d}"
        if folder.exists():  # left by an earlier attempt at this number in this folder (another study)
            shutil.rmtree(folder)
        try:
            config = suggest(trial, job.space, job.base)
            trial.set_user_attr("config", config.to_dict())

            def report_epoch(row: dict) -> None:
                trial.report(row[job.metric], row["epoch"])
                if row["epoch"] < config.epochs and trial.should_prune():  # a finished trial is complete
                    raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")

            result = fit(dataclasses.replace(config, checkpoint="none"), folder, self.dataset,
                         callbacks=[report_epoch])
        except CATCH as exc:
            reason = str(exc) if isinstance(exc, FmnistError) else f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", printable(" ".join(reason.split()))[:300])
            raise
        return result.history[-1][job.metric]

    def finished(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """After each trial: its trial.json, and its progress line."""
        folder = self.job.out / "trials" / f"{trial.number:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "trial.json", trial_record(trial))
        self.progress.note(printable(trial_line(study, trial, self.job.metric)))


def _report_summary(summary: dict, report: Callable[[str], None]) -> None:
    counts = summary["counts"]
    report(f"trials: {summary['finished']} finished ({counts.get('complete', 0)} complete, "
           f"{counts.get('pruned', 0)} pruned, {counts.get('fail', 0)} failed) of a budget of {summary['budget']}")
    best = summary.get("best")
    if best is None:
        report("no trial completed: no best config")
        return
    params = "  ".join(f"{key}={_short(value)}" for key, value in best["params"].items())
    report(f"best trial {best['number']}: {summary['metric']} {best['value']:.4f}  {params}")


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
