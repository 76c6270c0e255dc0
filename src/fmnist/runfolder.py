"""The output folders fmnist writes: their file names, and every read and write of their files.

Every file is written atomically (a temporary name, then a rename), so a crash never leaves a
half-written file under its final name. Figures and report.html are drawn by `fmnist.report` into
the same folders; everything else goes through this module.

    train run      config.yaml  history.csv  metrics.json  model.safetensors  checkpoints/
                   evaluation.json  predictions.npz  classification_report.txt  figures  report.html
    cv folder      cv.json  [N-MODEL/]fold-K/ (config.yaml, history.csv)  [N-MODEL/]final/ (a train run)
    evaluate       evaluation.json  predictions.npz  classification_report.txt  figures  report.html
    lr-find        lr_find.json  lr-find.png  report.html
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.bounded import NUMBER, BoundsError, check_shape, parse_json
from fmnist._io import atomic_path, write_text_atomic
from fmnist.errors import FmnistError
from fmnist.limits import MAX_JSON_BYTES

CONFIG = "config.yaml"
HISTORY = "history.csv"
METRICS = "metrics.json"
MODEL = "model.safetensors"
CHECKPOINTS = "checkpoints"
RESUME = "resume.safetensors"  # in checkpoints/: weights, optimizer state and every random generator
EVALUATION = "evaluation.json"
PREDICTIONS = "predictions.npz"
CLASSIFICATION_REPORT = "classification_report.txt"
CV = "cv.json"
LR_FIND = "lr_find.json"
REPORT = "report.html"
LOCK = ".lock"  # held (flock) by the process training the run: a second one is refused
LAUNCH = ".torchrun"  # the torchrun launch (TORCHELASTIC_RUN_ID) that began the run: its restarts continue it
# A folder holding one of these is an fmnist output folder that `fmnist report` can redraw.
OUTPUT_FILES = (HISTORY, CV, EVALUATION, METRICS)
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")

# What a redraw relies on in each file (fmnist.report draws from these without further checks).
_HISTORY_ROW = {"epoch": int, "loss": NUMBER, "accuracy": NUMBER, "val_loss": NUMBER, "val_accuracy": NUMBER}
METRICS_SCHEMA = {"model?": str}
CV_SCHEMA = {
    "folds": int, "stratified": bool, "seed": int, "train_images": int, "folds_sha256": str,
    "models": [{"name": str, "label?": str, "scores": [NUMBER], "mean": NUMBER, "std": NUMBER, "n": int,
                "seconds": NUMBER, "histories": [[_HISTORY_ROW]], "final?": {"test_accuracy": NUMBER}}],
}
EVALUATION_SCHEMA = {
    "model_file?": str, "data?": str, "test_loss": NUMBER, "test_accuracy": NUMBER, "images": int,
    "labels_sha256": str, "classes": [str], "report_text": str, "report": dict, "confusion_matrix": [[int]],
    "most_confused?": [list],
}


def checkpoint_name(model_name: str, epoch: int, val_accuracy: float) -> str:
    """Write-up 002's naming: `{model}-epoch-{NN}-val_acc-{0.xxxx}`."""
    return f"{model_name}-epoch-{epoch:02d}-val_acc-{val_accuracy:.4f}.safetensors"


def labels_sha256(labels: np.ndarray) -> str:
    """A fingerprint of evaluated labels: a redraw checks the test images it finds against it."""
    return hashlib.sha256(np.asarray(labels, dtype=np.int64).tobytes()).hexdigest()


def write_json(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path, schema: Any = None) -> Any:
    """A JSON file's value, checked against `schema` (fmnist._checks); None when the file does not
    exist; a one-line error when it is damaged, too big or not shaped as fmnist writes it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        value = parse_json(path.read_text(encoding="utf-8"), MAX_JSON_BYTES)
    except BoundsError as exc:
        raise FmnistError(f"{path}: {exc}") from None
    except UnicodeDecodeError:
        raise FmnistError(f"{path}: not valid JSON (not UTF-8 text)") from None
    return value if schema is None else check_shape(path, value, schema)


class RunFolder:
    """One output folder: paths of its files, and their reading and writing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def resume_state(self) -> Path:
        return self.checkpoints / RESUME

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / name

    def is_output_folder(self) -> bool:
        return any((self.path / name).is_file() for name in OUTPUT_FILES)

    # ------------------------------------------------------------------ a training run

    def start(self, config_text: str) -> None:
        """Begin a new run here: refuse a folder that already holds one, then write config.yaml."""
        self.refuse_reuse()
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.config, config_text)

    def refuse_reuse(self) -> None:
        if self.config.exists():
            raise FmnistError(f"{self.path}: already holds a run; continue it with --resume or choose another --out")

    def mark_launch(self, run_id: str) -> None:
        """Record that torchrun's launch `run_id` began the run here (see `begun_by`)."""
        write_text_atomic(self.path / LAUNCH, run_id + "\n")

    def begun_by(self, run_id: str) -> bool:
        """Whether torchrun's launch `run_id` began the run here and saved its config: a process that
        launch restarts continues it. A run another launch (or no launch) began is not this one's."""
        try:
            with open(self.path / LAUNCH, encoding="utf-8", errors="replace") as handle:
                return handle.read(1024).strip() == run_id and self.config.is_file()
        except OSError:
            return False

    def discard_progress(self) -> None:
        """Forget an abandoned attempt's history and checkpoints (its config.yaml stays): the run
        starts again from its first epoch."""
        (self.path / HISTORY).unlink(missing_ok=True)
        if self.checkpoints.is_dir():
            for path in self.checkpoints.iterdir():
                if path.is_file():
                    path.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock while working on it: a second process training or resuming the same
        folder is refused. The lock is the kernel's (flock): it dies with its process, never stale.
        A folder this call created is removed again if the work fails before writing anything in it."""
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / LOCK, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise FmnistError(f"{self.path}: another fmnist process{f' (pid {holder})' if holder.isdigit() else ''} "
                              "is working on this run; wait for it to finish or stop it") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        except BaseException:
            if created and {entry.name for entry in self.path.iterdir()} <= {LOCK, LAUNCH}:
                for name in (LOCK, LAUNCH):
                    (self.path / name).unlink(missing_ok=True)
                self.path.rmdir()
            raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def remove_stale_parts(self) -> list[Path]:
        """Delete the temporary files of writes a killed process never finished (`.NAME.XXXX.part`);
        only while holding the lock, so that no live writer's file goes."""
        stale = [path for path in self.path.rglob(".*.part") if path.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def write_history(self, rows: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})
        write_text_atomic(self.path / HISTORY, buffer.getvalue())

    def read_history(self) -> list[dict] | None:
        path = self.path / HISTORY
        if not path.is_file():
            return None
        rows = []
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = [column for column in _HISTORY_ROW if column not in (reader.fieldnames or [])]
                if missing:
                    raise FmnistError(f"{path}: not a history file fmnist wrote (no column {', '.join(missing)})")
                for line, row in enumerate(reader, start=2):
                    try:
                        rows.append({key: (int(value) if key == "epoch" else float(value))
                                     for key, value in row.items() if key in HISTORY_COLUMNS and value not in ("", None)})
                    except ValueError as exc:
                        raise FmnistError(f"{path}: line {line}: {exc}") from None
                    if any(key not in rows[-1] for key in _HISTORY_ROW):
                        raise FmnistError(f"{path}: line {line}: a value is missing")
        except UnicodeDecodeError:
            raise FmnistError(f"{path}: not a text file") from None
        return rows

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)

    def read_metrics(self) -> dict | None:
        return read_json(self.path / METRICS, METRICS_SCHEMA)

    def read_config_text(self) -> str | None:
        return self.config.read_text(encoding="utf-8") if self.config.is_file() else None

    # ------------------------------------------------------------------ an evaluation

    def write_evaluation(self, record: dict, report_text: str, labels: np.ndarray, predictions: np.ndarray,
                         probabilities: np.ndarray) -> None:
        """evaluation.json, classification_report.txt and predictions.npz: the inputs of every
        prediction figure (`fmnist report` redraws from them)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / EVALUATION, record)
        write_text_atomic(self.path / CLASSIFICATION_REPORT, report_text)
        with atomic_path(self.path / PREDICTIONS) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, labels=np.asarray(labels, dtype=np.int64),
                                    predictions=np.asarray(predictions).astype(np.int64),
                                    probabilities=np.asarray(probabilities).astype(np.float32))

    def read_evaluation(self) -> dict | None:
        evaluation = read_json(self.path / EVALUATION, EVALUATION_SCHEMA)
        if evaluation is not None:
            classes, matrix = evaluation["classes"], evaluation["confusion_matrix"]
            if len(matrix) != len(classes) or any(len(row) != len(classes) for row in matrix):
                raise FmnistError(f"{self.path / EVALUATION}: the confusion matrix is not {len(classes)}×{len(classes)}")
            for name in classes:  # the per-class scores every report draws
                check_shape(self.path / EVALUATION, evaluation["report"].get(name),
                            {"precision": NUMBER, "recall": NUMBER, "f1-score": NUMBER}, f"report.{name}")
        return evaluation

    def read_predictions(self, images: int, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(labels (N,), predictions (N,), probabilities (N, C)) from predictions.npz, checked against
        the evaluation's N images and C classes; None when there is none."""
        path = self.path / PREDICTIONS
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                labels, predictions, probabilities = saved["labels"], saved["predictions"], saved["probabilities"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise FmnistError(f"{path}: damaged or not written by fmnist ({str(exc).splitlines()[0][:200]})") from None
        if (labels.shape != (images,) or predictions.shape != (images,) or probabilities.shape != (images, classes)
                or labels.dtype.kind not in "iu" or predictions.dtype.kind not in "iu"
                or not ((0 <= labels) & (labels < classes) & (0 <= predictions) & (predictions < classes)).all()):
            raise FmnistError(f"{path}: does not match evaluation.json ({images:,} images of {classes} classes)")
        return labels, predictions, probabilities

    # ------------------------------------------------------------------ cross-validation, lr-find

    def write_cv(self, summary: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / CV, summary)

    def read_cv(self) -> dict | None:
        return read_json(self.path / CV, CV_SCHEMA)

    def write_lr_find(self, result: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / LR_FIND, result)
