"""Evaluate a model file on the test set: print-ready results, and with an output folder its
evaluation files, figures and report.html."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from fmnist.data.dataset import Dataset, load_dataset
from fmnist.device import resolve_device
from fmnist.engine.evaluate import Evaluation, evaluate_model
from fmnist.errors import FmnistError, FmnistWarning
from fmnist.modelfile import load_model
from fmnist.runfolder import RunFolder, labels_sha256
from fmnist.workflows.redraw import redraw


def evaluate_file(model_file: str | Path, out: str | Path | None = None, dataset: Dataset | None = None,
                  data: str | Path | None = None, device: str = "auto") -> Evaluation:
    """Evaluate `model_file` on the test set of `dataset` (else of `data`, else the normal search);
    with `out`, write evaluation.json, predictions.npz, the figures and report.html there."""
    target = resolve_device(device)
    loaded = load_model(model_file, device=target)
    dataset = dataset if dataset is not None else load_dataset(data)
    if len(loaded.classes) != dataset.num_classes:
        raise FmnistError(f"{model_file}: the model knows {len(loaded.classes)} classes, the data has {dataset.num_classes}")
    evaluation = evaluate_model(loaded.model, dataset.test.images, dataset.test.labels, loaded.classes, target)
    if loaded.finite and not np.isfinite(evaluation.probabilities).all():  # (load_model warned of NaN weights)
        warnings.warn(FmnistWarning(f"{model_file}: the model's outputs are not finite (NaN/inf) on some test "
                                    "images: its scores mean nothing"), stacklevel=2)
    if out is not None:
        write_evaluation(RunFolder(out), evaluation, loaded.classes, dataset.test.labels, str(data) if data else None,
                         str(Path(model_file).resolve()))
        redraw(out, dataset, title=f"fmnist evaluate: {model_file}")
    return evaluation


def write_evaluation(run: RunFolder, evaluation: Evaluation, classes, labels: np.ndarray, data: str | None,
                     model_file: str | None) -> dict:
    """evaluation.json (metrics, report, confusion matrix), classification_report.txt and
    predictions.npz: everything a redraw of the prediction figures needs."""
    record = {
        "model_file": model_file,
        "test_loss": evaluation.loss,
        "test_accuracy": evaluation.accuracy,
        "images": int(len(labels)),
        "labels_sha256": labels_sha256(labels),
        "data": data,
        "classes": list(classes),
        "report_text": evaluation.report_text,
        "report": evaluation.report,
        "confusion_matrix": evaluation.confusion_matrix,
        "most_confused": evaluation.most_confused,
    }
    run.write_evaluation(record, evaluation.report_text, labels, evaluation.predictions, evaluation.probabilities)
    return record
