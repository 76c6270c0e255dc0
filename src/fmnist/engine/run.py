"""A training run end to end: fit, evaluate on the test set, and write the run folder.

Run folder: config.yaml, history.csv, metrics.json, model.safetensors, checkpoints/,
evaluation.json, predictions.npz, classification_report.txt, the figures and report.html.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist._io import write_text_atomic
from fmnist.data.dataset import Dataset, load_dataset
from fmnist.engine import state as run_state
from fmnist.engine.config import TrainConfig
from fmnist.engine.evaluate import evaluate_model, most_confused
from fmnist.engine.progress import NullProgress
from fmnist.engine.trainer import TrainResult, fit
from fmnist.modelfile import save_model
from fmnist.report.run_report import redraw


def train(
    config: TrainConfig,
    out: str | Path,
    dataset: Dataset | None = None,
    progress: NullProgress | None = None,
    callbacks=(),
    resume: bool = False,
) -> TrainResult:
    """Train, then evaluate the final model on the test set and write every run file."""
    out = Path(out)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    result = fit(config, out, dataset, progress=progress, callbacks=callbacks, resume=resume)
    device = next(result.model.parameters()).device
    test = evaluate_model(result.model, dataset.test.images, dataset.test.labels, dataset.classes, device,
                          config.eval_batch_size)
    history = result.history
    restored = result.extra["restored_best"]
    final = next(r for r in history if r["epoch"] == _best_epoch(history)) if restored else history[-1]
    metrics = {
        "model": config.model_name,
        "epochs_run": len(history),
        "stopped_early": result.stopped_early,
        "restored_best_epoch": restored,
        "val_loss": final["val_loss"],
        "val_accuracy": final["val_accuracy"],
        "best_epoch": _best_epoch(history),
        "best_val_accuracy": max(r["val_accuracy"] for r in history),
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "train_seconds": sum(r["seconds"] for r in history),
        "train_images": result.extra["train_images"],
        "validation": result.extra["val_name"],
        "device": result.extra["device"],
        "precision": result.extra["precision"],  # what --precision auto chose on this machine
    }
    result.metrics = metrics
    save_model(out / "model.safetensors", result.model, result.architecture, dataset.classes,
               config=config.to_dict(), metrics=metrics, image_spec=result.extra["image_spec"])
    run_state.write_json(out / "metrics.json", metrics)
    write_evaluation(out, test, dataset.classes, dataset.test.labels, config.data, str((out / "model.safetensors").resolve()))
    redraw(out, dataset)
    return result


def _best_epoch(history: list[dict]) -> int:
    return max(history, key=lambda r: r["val_accuracy"])["epoch"]


def write_evaluation(out: Path, evaluation: dict, classes, labels: np.ndarray, data: str | None,
                     model_file: str | None = None) -> dict:
    """evaluation.json (metrics, report, confusion matrix) and predictions.npz, the inputs of every
    prediction figure; `fmnist report` redraws from them."""
    from fmnist._io import atomic_path
    from fmnist.report.run_report import labels_sha256

    out.mkdir(parents=True, exist_ok=True)
    record = {
        "model_file": model_file,
        "test_loss": evaluation["loss"],
        "test_accuracy": evaluation["accuracy"],
        "images": int(len(labels)),
        "labels_sha256": labels_sha256(labels),
        "data": data,
        "classes": list(classes),
        "report_text": evaluation["report_text"],
        "report": evaluation["report"],
        "confusion_matrix": evaluation["confusion_matrix"],
        "most_confused": most_confused(evaluation["confusion_matrix"], classes),
    }
    run_state.write_json(out / "evaluation.json", record)
    write_text_atomic(out / "classification_report.txt", evaluation["report_text"])
    with atomic_path(out / "predictions.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, labels=np.asarray(labels, dtype=np.int64),
                                predictions=evaluation["predictions"].astype(np.int64),
                                probabilities=evaluation["probabilities"].astype(np.float32))
    return record
