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

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from fmnist._io import atomic_path, write_text_atomic
from fmnist.errors import FmnistError

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
# A folder holding one of these is an fmnist output folder that `fmnist report` can redraw.
OUTPUT_FILES = (HISTORY, CV, EVALUATION, METRICS)
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def checkpoint_name(model_name: str, epoch: int, val_accuracy: float) -> str:
    """Write-up 002's naming: `{model}-epoch-{NN}-val_acc-{0.xxxx}`."""
    return f"{model_name}-epoch-{epoch:02d}-val_acc-{val_accuracy:.4f}.safetensors"


def labels_sha256(labels: np.ndarray) -> str:
    """A fingerprint of evaluated labels: a redraw checks the test images it finds against it."""
    return hashlib.sha256(np.asarray(labels, dtype=np.int64).tobytes()).hexdigest()


def write_json(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file's value; None when the file does not exist; one-line error when it is damaged."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FmnistError(f"{path}: not valid JSON ({exc})") from None


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
        if self.config.exists():
            raise FmnistError(f"{self.path}: already holds a run; continue it with --resume or choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.config, config_text)

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
        with open(path, newline="", encoding="utf-8") as handle:
            return [
                {key: (int(value) if key == "epoch" else float(value)) for key, value in row.items() if value != ""}
                for row in csv.DictReader(handle)
            ]

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)

    def read_metrics(self) -> dict | None:
        return read_json(self.path / METRICS)

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
        return read_json(self.path / EVALUATION)

    def read_predictions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(labels, predictions, probabilities) from predictions.npz; None when there is none."""
        path = self.path / PREDICTIONS
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as saved:
            return saved["labels"], saved["predictions"], saved["probabilities"]

    # ------------------------------------------------------------------ cross-validation, lr-find

    def write_cv(self, summary: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / CV, summary)

    def read_cv(self) -> dict | None:
        return read_json(self.path / CV)

    def write_lr_find(self, result: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / LR_FIND, result)
