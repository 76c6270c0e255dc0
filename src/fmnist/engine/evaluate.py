"""From logits to metrics: loss, accuracy, scikit-learn's classification report, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits (N, C) for uint8 images (N, 1, 28, 28) already on the model's device.

    Runs in eval mode (BatchNorm statistics, no dropout) and restores the model's mode after.
    """
    was_training = model.training
    model.eval()
    try:
        # max(…, 1): no images still give a (0, C) tensor
        return torch.cat([model(images[i : i + batch_size]).float()
                          for i in range(0, max(len(images), 1), batch_size)])
    finally:
        model.train(was_training)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean cross-entropy (no label smoothing: the honest number) and accuracy."""
    return {
        "loss": float(F.cross_entropy(logits, labels)),
        "accuracy": float((logits.argmax(dim=1) == labels).float().mean()),
    }


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, classes) -> dict:
    """scikit-learn's report (per class and averages) and confusion matrix, as plain data."""
    # scikit-learn takes over a second to import: a run pays it when it evaluates, not before its first epoch
    from sklearn.metrics import classification_report, confusion_matrix

    label_ids = list(range(len(classes)))
    text = classification_report(labels, predictions, labels=label_ids, target_names=list(classes), digits=4, zero_division=0)
    table = classification_report(
        labels, predictions, labels=label_ids, target_names=list(classes), output_dict=True, zero_division=0
    )
    matrix = confusion_matrix(labels, predictions, labels=label_ids)
    return {"report_text": text, "report": table, "confusion_matrix": matrix.tolist()}


def most_confused(matrix, classes, top: int = 5) -> list[tuple[str, str, int]]:
    """The `top` (true, predicted, count) pairs off the diagonal, largest first."""
    matrix = np.asarray(matrix).copy()
    np.fill_diagonal(matrix, 0)
    order = np.argsort(matrix, axis=None)[::-1][:top]
    pairs = []
    for flat in order:
        true, predicted = np.unravel_index(flat, matrix.shape)
        if matrix[true, predicted] > 0:
            pairs.append((classes[true], classes[predicted], int(matrix[true, predicted])))
    return pairs


@dataclass
class Evaluation:
    """Everything `fmnist evaluate` reports for one model on one labelled set."""

    loss: float  # mean cross-entropy
    accuracy: float
    predictions: np.ndarray  # (N,) int64 class indices
    probabilities: np.ndarray  # (N, C) float32 softmax
    report_text: str  # scikit-learn's classification report, as printed
    report: dict  # the same, as data (output_dict=True)
    confusion_matrix: list[list[int]]  # [true][predicted] counts
    most_confused: list[tuple[str, str, int]]  # (true, predicted, count), largest first


def evaluate_model(model: nn.Module, images: np.ndarray, labels: np.ndarray, classes, device,
                   batch_size: int = 1000) -> Evaluation:
    """Evaluate `model` on uint8 images (N, 28, 28) with their labels."""
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(device)  # (N, 1, 28, 28) uint8
    return evaluate_logits(predict_logits(model, x, batch_size), labels, classes)


def evaluate_logits(logits: torch.Tensor, labels: np.ndarray, classes) -> Evaluation:
    """The evaluation of a model whose logits (N, C) on the labelled images are already known."""
    y = torch.from_numpy(np.ascontiguousarray(labels)).to(logits.device)
    scores = loss_and_accuracy(logits, y)
    predictions = logits.argmax(dim=1).cpu().numpy()
    metrics = classification_metrics(labels, predictions, classes)
    return Evaluation(scores["loss"], scores["accuracy"], predictions, torch.softmax(logits, dim=1).cpu().numpy(),
                      metrics["report_text"], metrics["report"], metrics["confusion_matrix"],
                      most_confused(metrics["confusion_matrix"], classes))
