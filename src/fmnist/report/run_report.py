"""The report of an output folder: every figure drawn from the folder's contents, and report.html.

It draws only what it is handed (`FolderContents`: the folder's files as read, the evaluated test
images, the model's feature maps); `fmnist.workflows.redraw` gathers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.report import diagnostics, html, plots

FEATURE_MAP_IMAGES = (0, 7, 26)  # write-up 003's choice of test images
FEATURE_MAP_FILTER = 1


@dataclass
class FolderContents:
    """What an output folder holds, for its report. Every part is optional."""

    config_text: str | None = None  # config.yaml as written
    metrics: dict | None = None  # metrics.json
    history: list[dict] | None = None  # history.csv rows
    cv: dict | None = None  # cv.json
    evaluation: dict | None = None  # evaluation.json
    predictions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # labels, predictions, probabilities
    test_images: np.ndarray | None = None  # (N, 28, 28) uint8: the images evaluated
    test_images_problem: str | None = None  # why they are missing
    feature_maps: tuple[list[int], list[tuple[str, np.ndarray]]] | None = None  # test-image ids, (layer, maps)
    label_smoothing: float = 0.0  # the run's: its training loss includes it, its validation loss does not


def draw_report(folder: Path, contents: FolderContents, title: str | None = None) -> Path:
    """Draw the folder's figures and write its report.html; returns the report's path."""
    sections: list[tuple[str, str]] = []
    figures: list[tuple[Path, str]] = []
    metrics, cv = contents.metrics, contents.cv
    name = (metrics or {}).get("model") or (cv["models"][0]["name"] if cv else None) or folder.name
    if cv:
        sections.append(("Cross-validation", _cv_section(folder, cv, figures)))
    if metrics:
        sections.append(("Metrics", _metrics_table(metrics)))
    if contents.history:
        # metrics.json says which images validated: with --val test the orange curve is the test set
        validation = "test" if (metrics or {}).get("validation") == "test set" else "validation"
        figures.append((plots.plot_learning_curves([contents.history], folder / "learning-curves.png",
                                                   f"{name}: learning curves", validation=validation,
                                                   smoothing=contents.label_smoothing),
                        "Learning curves: loss and accuracy per epoch (write-up 000)"))
        figures.append((plots.plot_training_summary(contents.history, folder / "training-summary.png",
                                                    f"{name}: training loss and accuracy",
                                                    validation="test" if validation == "test" else "val",
                                                    smoothing=contents.label_smoothing),
                        "Training loss and accuracy in one plot (write-up 001)"))
    if contents.evaluation and contents.predictions is not None:
        _evaluation_section(folder, contents, sections, figures)
    if contents.test_images is not None and contents.feature_maps:
        ids, layers = contents.feature_maps
        if layers:
            figures.append((diagnostics.plot_feature_maps(contents.test_images[ids], ids, layers, FEATURE_MAP_FILTER,
                                                          folder / "feature-maps.png"),
                            f"Feature maps of filter {FEATURE_MAP_FILTER} for test images "
                            f"{', '.join(map(str, ids))} (write-up 003)"))
    if contents.config_text:
        sections.append(("Configuration", html.pre(contents.config_text)))
    sections += [(caption, html.figure(path, caption)) for path, caption in figures]
    return html.write_report(folder / "report.html", title or f"fmnist: {name}", sections)


def _metrics_table(metrics: dict) -> str:
    rows = [(key, f"{value:.4f}" if isinstance(value, float) else str(value)) for key, value in metrics.items()
            if not isinstance(value, (dict, list))]
    return html.table(["metric", "value"], rows)


def _cv_section(folder: Path, cv: dict, figures: list) -> str:
    rows, scores = [], {}
    for entry in cv["models"]:
        label = entry.get("label", entry["name"])
        scores[label] = entry["scores"]
        final = entry.get("final", {})
        rows.append((label, f"{entry['mean'] * 100:.3f}", f"{entry['std'] * 100:.3f}", entry["n"],
                     f"{entry['seconds']:.1f}", f"{final['test_accuracy'] * 100:.3f}" if final else "—"))
        suffix = "" if len(cv["models"]) == 1 else f"-{label}"
        figures.append((plots.plot_learning_curves(entry["histories"], folder / f"cv-learning-curves{suffix}.png",
                                                   f"{label}: {cv['folds']}-fold learning curves",
                                                   smoothing=(entry.get("config") or {}).get("label_smoothing") or 0.0),
                        f"{label}: learning curves of every fold (train blue, validation orange)"))
    figures.insert(0, (diagnostics.plot_score_boxplot(scores, folder / "cv-boxplot.png",
                                                      f"{cv['folds']}-fold cross-validation accuracy"),
                       "Fold accuracies: box and whiskers, mean as a triangle, folds as dots"))
    folds = "stratified " if cv["stratified"] else ""
    intro = html.markup("<p>{} {}folds of {:,} training images, seed {}, fold hash <code>{}</code>.</p>",
                        cv["folds"], folds, cv["train_images"], cv["seed"], cv["folds_sha256"][:16])
    return intro + html.table(["model", "mean %", "std %", "n", "seconds", "final test %"], rows)


def _evaluation_section(folder: Path, contents: FolderContents, sections: list, figures: list) -> None:
    evaluation = contents.evaluation
    labels, predictions, probabilities = contents.predictions
    classes = evaluation["classes"]
    pairs = evaluation.get("most_confused", [])
    body = html.markup("<p>test loss {:.4f}, test accuracy {:.4f} on {:,} images</p>", evaluation["test_loss"],
                       evaluation["test_accuracy"], evaluation["images"]) + html.pre(evaluation["report_text"])
    if pairs:
        body += html.text("Most confused (true → predicted):") + html.table(["true", "predicted", "images"], pairs)
    sections.append(("Test-set evaluation", body))
    figures.append((plots.plot_confusion_matrix(evaluation["confusion_matrix"], classes, folder / "confusion-matrix.png",
                                                f"Confusion matrix (test accuracy {evaluation['test_accuracy']:.2%})"),
                    "Confusion matrix: counts, coloured by the share of each true class"))
    figures.append((diagnostics.plot_class_scores(evaluation["report"], classes, folder / "class-scores.png"),
                    "Precision, recall and F1 per class"))
    images = contents.test_images
    if images is None:
        sections.append(("Note", html.text(contents.test_images_problem or "")))
        return
    figures.append((diagnostics.plot_prediction_montage(images, labels, predictions, classes, folder / "montage.png"),
                    "16 random test images with their predicted class: green right, red wrong (write-up 001)"))
    figures.append((diagnostics.plot_prediction_grid(images, labels, predictions, classes, folder / "correct.png", True),
                    "Correctly classified test images (write-up 004)"))
    figures.append((diagnostics.plot_prediction_grid(images, labels, predictions, classes, folder / "incorrect.png", False),
                    "Incorrectly classified test images (write-up 004)"))
    figures.append((diagnostics.plot_top_losses(images, labels, probabilities, classes, folder / "top-losses.png"),
                    "Top losses: the test images the model is most confidently wrong about"))
