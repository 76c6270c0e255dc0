"""k-fold cross-validation over any registered model or spec (write-up 000's test harness).

Every model meets the same folds: scikit-learn's KFold(n_splits, shuffle=True, random_state=seed)
over the training set (StratifiedKFold when asked). Each fold trains a fresh model and validates on
its held-out part; the fold's score is the final epoch's validation accuracy, as in 000.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmnist.data import splits
from fmnist.data.dataset import Dataset, load_dataset
from fmnist.engine.config import ConfigError, TrainConfig
from fmnist.engine.progress import NullProgress, Progress
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
) -> dict:
    """Cross-validate each config on the same folds; write cv.json, per-fold run folders, the
    figures and report.html. Returns what cv.json holds.

    `report` receives the result lines (`> 91.200`, `Accuracy: mean=… std=…, n=5`), which the CLI
    prints even with --quiet. With `final`, each model is then trained on the whole training set
    and evaluated on the test set (a full run folder under `final/`).
    """
    if folds < 2:
        raise FmnistError(f"--folds must be at least 2, got {folds}")
    if not configs:
        raise FmnistError("cross-validation needs at least one model")
    with RunFolder(out).locked():  # one process per output folder
        return _cross_validate(configs, Path(out), folds, stratified, final, dataset, make_progress, report)


def _cross_validate(configs: list[TrainConfig], out: Path, folds: int, stratified: bool, final: bool,
                    dataset: Dataset | None, make_progress: Callable[[str], Progress],
                    report: Callable[[str], None]) -> dict:
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
    for index, config in enumerate(configs):
        # Two specs (or a repeated --model) share a name: label them by position so none is lost.
        label = config.model_name if names.count(config.model_name) == 1 else f"{index + 1}-{config.model_name}"
        folder = model_dir(out, config, several, index)
        entry = {"name": config.model_name, "label": label, "folder": str(folder.relative_to(out)) if several else ".",
                 "config": config.to_dict(), "scores": [], "fold_seconds": [], "histories": []}
        if several:
            report(f"{label}:")
        for fold, (train_idx, val_idx) in enumerate(fold_indices, start=1):
            # A fresh model per fold, initialised from its own seed (seed + fold - 1), so the spread
            # covers initialisation as well as data; no checkpoints: folds are estimates, not products.
            fold_config = dataclasses.replace(config, checkpoint="none", seed=config.seed + fold - 1)
            progress = make_progress(f"{label} fold {fold}/{folds}  ")
            try:
                result = fit(fold_config, folder / f"fold-{fold}", dataset, progress=progress,
                             split=(train_idx, val_idx))
            finally:
                progress.close()
            score = result.history[-1]["val_accuracy"]
            entry["scores"].append(score)
            entry["fold_seconds"].append(sum(row["seconds"] for row in result.history))
            entry["histories"].append(result.history)
            report(f"> {score * 100:.3f}")
        scores = np.asarray(entry["scores"])
        entry.update(mean=float(scores.mean()), std=float(scores.std()), n=len(scores),
                     seconds=float(sum(entry["fold_seconds"])))
        report(summary_line(entry["scores"]))
        if final:
            progress = make_progress(f"{label} final  ")
            try:
                result = train_run(dataclasses.replace(config, val="test"), folder / "final", dataset, progress=progress)
            finally:
                progress.close()
            entry["final"] = {key: result.metrics[key] for key in ("test_accuracy", "test_loss", "train_seconds")}
            entry["final"]["model_file"] = str((folder / "final" / "model.safetensors").relative_to(out))
            report(f"final model: test accuracy {result.metrics['test_accuracy'] * 100:.3f}")
        summary["models"].append(entry)
        summary["seconds"] = time.perf_counter() - started
        RunFolder(out).write_cv(summary)  # after each model: a partial result survives
    redraw(out, dataset, title=f"fmnist cv: {', '.join(entry['label'] for entry in summary['models'])}")
    return summary
