"""k-fold cross-validation over any registered model or spec (write-up 000's test harness).

Every model meets the same folds: scikit-learn's KFold(n_splits, shuffle=True, random_state=seed)
over the training set (StratifiedKFold when asked). Each fold trains a fresh model and validates on
its held-out part; the fold's score is the final epoch's validation accuracy, as in 000.

The folds of a model can train together as one stacked model (engine/stacked.py, `parallel_folds`); by
default only where that is faster: on a GPU, or on a CPU where a few timed steps say so.

Under torchrun (`world`) the folds are dealt to the processes, round robin over every model's folds;
each trains its folds (stacked when it pays), and rank 0 gathers their results and writes every file — cv.json, the
fold folders, figures, report — as one process writes them. `--final` then trains data-parallel over
all the processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from fmnist.data import splits
from fmnist.data.dataset import Dataset, load_dataset
from fmnist.engine import distributed
from fmnist.engine.config import ConfigError, TrainConfig, dump_config
from fmnist.engine.distributed import World
from fmnist.engine.progress import NullProgress, Progress
from fmnist.engine.stack_size import auto_stack_size
from fmnist.engine.stacked import CannotStack, fit_stacked
from fmnist.engine.trainer import fit
from fmnist.errors import FmnistError
from fmnist.runfolder import RunFolder
from fmnist.workflows.redraw import redraw
from fmnist.workflows.train_run import train as train_run


def make_folds(labels: np.ndarray, folds: int, seed: int, stratified: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    if stratified:
        return splits.stratified_kfold(labels, folds, seed)
    return splits.kfold(len(labels), folds, seed)


def folds_sha256(folds: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """A fingerprint of the fold assignment: equal hashes mean the same folds."""
    digest = hashlib.sha256()
    for _, val in folds:
        digest.update(np.asarray(val, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def summary_line(scores: list[float]) -> str:
    """Write-up 000's summary: population std (numpy's default), scores in percent."""
    values = np.asarray(scores) * 100
    return f"Accuracy: mean={values.mean():.3f} std={values.std():.3f}, n={len(values)}"


def model_dir(out: Path, config: TrainConfig, several: bool, index: int) -> Path:
    return out / f"{index + 1}-{config.model_name}" if several else out


def cross_validate(
    configs: list[TrainConfig],
    out: str | Path,
    folds: int = 5,
    stratified: bool = False,
    final: bool = False,
    dataset: Dataset | None = None,
    make_progress: Callable[[str], Progress] = lambda prefix: NullProgress(),
    report: Callable[[str], None] = lambda line: None,
    world: World | None = None,
    parallel_folds: int | str = "auto",
) -> dict:
    """Cross-validate each config on the same folds; write cv.json, per-fold run folders, the
    figures and report.html. Returns what cv.json holds.

    `report` receives the result lines (`> 91.200`, `Accuracy: mean=… std=…, n=5`), which the CLI
    prints even with --quiet. With `final`, each model is then trained on the whole training set
    and evaluated on the test set (a full run folder under `final/`). `world`: torchrun's processes
    share the folds (every rank calls this; rank 0 writes, reports, and every rank returns the summary).
    `parallel_folds`: how many folds train at once, stacked as one model (engine/stacked.py): "auto"
    (on a GPU as many as fit its memory; on a CPU all of them if that is timed faster, else 1), a
    number, or 1 (one after another).
    """
    if folds < 2:
        raise FmnistError(f"--folds must be at least 2, got {folds}")
    if parallel_folds != "auto" and (isinstance(parallel_folds, bool) or not isinstance(parallel_folds, int)
                                     or parallel_folds < 1):
        raise FmnistError(f"--parallel-folds must be auto or a whole number of at least 1, got {parallel_folds!r}")
    if not configs:
        raise FmnistError("cross-validation needs at least one model")
    world = world if world is not None and world.size > 1 else None
    with ExitStack() as stack:

        def lock() -> None:  # one process per output folder; under torchrun rank 0 holds the lock
            stack.enter_context(RunFolder(out).locked())

        distributed.on_main(world, lock)
        summary = _cross_validate(configs, Path(out), folds, stratified, final, dataset, make_progress, report,
                                  world, parallel_folds)
    return distributed.broadcast(world, summary)


def _cross_validate(configs: list[TrainConfig], out: Path, folds: int, stratified: bool, final: bool,
                    dataset: Dataset | None, make_progress: Callable[[str], Progress],
                    report: Callable[[str], None], world: World | None, parallel_folds: int | str) -> dict | None:
    main = world is None or world.main
    dataset = dataset if dataset is not None else load_dataset(configs[0].data)
    first = configs[0]
    train_count = len(dataset.train) if first.limit is None else min(first.limit, len(dataset.train))
    try:
        fold_indices = make_folds(dataset.train.labels[:train_count], folds, first.seed, stratified)
    except ValueError as exc:  # more folds than images, or than members of the smallest class
        raise ConfigError(f"--folds {folds}: {exc}") from None
    started = time.perf_counter()
    summary = {
        "folds": folds, "stratified": stratified, "seed": first.seed, "train_images": train_count,
        "folds_sha256": folds_sha256(fold_indices), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "models": [],
    }
    several = len(configs) > 1
    names = [config.model_name for config in configs]
    dealt = 0  # folds dealt so far, over every model: the next one goes to rank dealt % size
    with tempfile.TemporaryDirectory(prefix="fmnist-cv-") as scratch:  # the fold folders of ranks other than 0
        for index, config in enumerate(configs):
            # Two specs (or a repeated --model) share a name: label them by position so none is lost.
            label = config.model_name if names.count(config.model_name) == 1 else f"{index + 1}-{config.model_name}"
            folder = model_dir(out, config, several, index)
            entry = {"name": config.model_name, "label": label,
                     "folder": str(folder.relative_to(out)) if several else ".",
                     "config": config.to_dict(), "scores": [], "fold_seconds": [], "histories": []}
            if several:
                report(f"{label}:")
            ours = []  # the folds this process trains: all of them, or under torchrun those dealt to its rank
            for fold in range(1, folds + 1):
                dealt += 1
                if world is None or (dealt - 1) % world.size == world.rank:
                    ours.append(fold)
            # A fresh model per fold, initialised from its own seed (seed + fold - 1), so the spread
            # covers initialisation as well as data; no checkpoints: folds are estimates, not products.
            runs = [_FoldRun(fold, dataclasses.replace(config, checkpoint="none", seed=config.seed + fold - 1),
                             folder / f"fold-{fold}" if main else Path(scratch) / f"{index}-fold-{fold}",
                             fold_indices[fold - 1]) for fold in ours]
            stack, why = _stack_size(runs, parallel_folds, dataset)
            if main:
                entry["parallel_folds"], entry["stacking"] = stack, why
            mine = []
            try:
                for run, result in _fold_results(runs, stack, dataset, folds, label, make_progress):
                    mine.append({"fold": run.fold, "history": result.history, "config": dump_config(run.config)})
                    if world is None:
                        _add_fold(entry, mine[-1], report)
            except FmnistError as exc:
                if world is None:
                    raise
                done = {outcome["fold"] for outcome in mine}  # rank 0 raises it on every rank
                mine.append({"fold": next(run.fold for run in runs if run.fold not in done), "error": str(exc)})
            if world is not None:
                outcomes = distributed.gather(world, mine)
                distributed.on_main(world, lambda: _take_folds(entry, outcomes, folder, report))
            if main:
                scores = np.asarray(entry["scores"])
                entry.update(mean=float(scores.mean()), std=float(scores.std()), n=len(scores),
                             seconds=float(sum(entry["fold_seconds"])))
                report(summary_line(entry["scores"]))
            if final:  # every rank: the processes train it together
                _train_final(config, folder, out, dataset, make_progress if main else _quiet, report, entry, world)
            if main:
                summary["models"].append(entry)
                summary["seconds"] = time.perf_counter() - started
                RunFolder(out).write_cv(summary)  # after each model: a partial result survives
    if main:
        redraw(out, dataset, title=f"fmnist cv: {', '.join(entry['label'] for entry in summary['models'])}")
    return summary if main else None


@dataclasses.dataclass
class _FoldRun:
    fold: int  # 1-based
    config: TrainConfig
    out: Path
    split: tuple[np.ndarray, np.ndarray]  # (train indices, validation indices)


def _stack_size(runs: list[_FoldRun], parallel_folds: int | str, dataset: Dataset) -> tuple[int, str]:
    """How many of `runs` train at once, stacked, and why (in words, for cv.json)."""
    if len(runs) < 2:
        return 1, "one fold"
    if parallel_folds == "auto":
        return auto_stack_size([run.config for run in runs], dataset, [run.split for run in runs])
    return min(parallel_folds, len(runs)), f"--parallel-folds {parallel_folds}"


def _fold_results(runs: list[_FoldRun], stack: int, dataset: Dataset, folds: int, label: str,
                  make_progress: Callable[[str], Progress]):
    """(run, FitResult) for each run, in order: `stack` runs trained together (stacked), or one by one when
    stack is 1 or the model cannot be stacked (said once, in one line)."""
    at = 0
    while at < len(runs):
        chunk = runs[at : at + stack]
        if len(chunk) > 1:
            live = make_progress(f"{label} folds {','.join(str(run.fold) for run in chunk)}/{folds}  ")
            progresses = [make_progress(f"{label} fold {run.fold}/{folds}  ") for run in chunk]
            try:
                results = fit_stacked([run.config for run in chunk], [run.out for run in chunk], dataset,
                                      [run.split for run in chunk], progresses, live)
            except CannotStack as exc:
                live.note(f"note: {label}: {exc}; training the folds one after another")
                stack = 1
                continue
            finally:
                live.close()
                for progress in progresses:
                    progress.close()
            yield from zip(chunk, results)
            at += len(chunk)
            continue
        run = runs[at]
        progress = make_progress(f"{label} fold {run.fold}/{folds}  ")
        try:
            yield run, fit(run.config, run.out, dataset, progress=progress, split=run.split)
        finally:
            progress.close()
        at += 1


def _quiet(prefix: str) -> Progress:
    return NullProgress()


def _add_fold(entry: dict, outcome: dict, report: Callable[[str], None]) -> None:
    history = outcome["history"]
    score = history[-1]["val_accuracy"]
    entry["scores"].append(score)
    entry["fold_seconds"].append(sum(row["seconds"] for row in history))
    entry["histories"].append(history)
    report(f"> {score * 100:.3f}")


def _take_folds(entry: dict, outcomes: list[list[dict]], folder: Path, report: Callable[[str], None]) -> None:
    """Rank 0: every rank's folds into `entry`, in fold order; the other ranks' fold folders written here."""
    for rank, outcome in sorted(((rank, outcome) for rank, mine in enumerate(outcomes) for outcome in mine),
                                key=lambda item: item[1]["fold"]):
        if "error" in outcome:
            raise FmnistError(f"fold {outcome['fold']} (rank {rank}): {outcome['error']}")
        if rank != 0:  # what fit wrote there: config.yaml and history.csv (folds keep no checkpoints)
            run = RunFolder(folder / f"fold-{outcome['fold']}")
            run.start(outcome["config"])
            run.write_history(outcome["history"])
        _add_fold(entry, outcome, report)


def _train_final(config: TrainConfig, folder: Path, out: Path, dataset: Dataset,
                 make_progress: Callable[[str], Progress], report: Callable[[str], None], entry: dict,
                 world: World | None) -> None:
    progress = make_progress(f"{entry['label']} final  ")
    try:
        result = train_run(dataclasses.replace(config, val="test"), folder / "final", dataset, progress=progress,
                           world=world)
    finally:
        progress.close()
    if result is None:  # a rank other than 0
        return
    entry["final"] = {key: result.metrics[key] for key in ("test_accuracy", "test_loss", "train_seconds")}
    entry["final"]["model_file"] = str((folder / "final" / "model.safetensors").relative_to(out))
    report(f"final model: test accuracy {result.metrics['test_accuracy'] * 100:.3f}")
