"""Draw every figure of an output folder from its saved files, then write its report.html.

Used at the end of `train`, `cv` and `evaluate`, and by `fmnist report DIR` to redraw a folder
later without retraining. Inputs (whichever exist): config.yaml, metrics.json, history.csv,
cv.json, evaluation.json + predictions.npz (+ the test images, reloaded and checked against the
recorded labels), model.safetensors (for feature maps).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from fmnist.report import diagnostics, html, plots

FEATURE_MAP_IMAGES = (0, 7, 26)  # write-up 003's choice of test images
FEATURE_MAP_FILTER = 1


def labels_sha256(labels: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(labels, dtype=np.int64).tobytes()).hexdigest()


def _read_json(path: Path):
    from fmnist.errors import FmnistError

    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FmnistError(f"{path}: not valid JSON ({exc})") from None


def _metrics_table(metrics: dict) -> str:
    rows = [(key, f"{value:.4f}" if isinstance(value, float) else str(value)) for key, value in metrics.items()
            if not isinstance(value, (dict, list))]
    return html.table(["metric", "value"], rows)


def _test_images(evaluation: dict, dataset):
    """The evaluated test images, or None (with the reason) if they cannot be matched."""
    if dataset is None:
        from fmnist.data.dataset import load_dataset
        from fmnist.errors import FmnistError

        try:
            dataset = load_dataset(evaluation.get("data"), download=False)
        except FmnistError as exc:
            return None, f"test images unavailable ({exc})"
    count = evaluation["images"]
    images, labels = dataset.test.images[:count], dataset.test.labels[:count]
    if len(labels) != count or labels_sha256(labels) != evaluation["labels_sha256"]:
        return None, "the test images found now are not the ones evaluated; image figures skipped"
    return images, None


def redraw(folder: str | Path, dataset=None, title: str | None = None) -> Path:
    """(Re)draw the folder's figures and write report.html; returns the report's path."""
    folder = Path(folder)
    sections: list[tuple[str, str]] = []
    figures: list[tuple[Path, str]] = []
    config_text = (folder / "config.yaml").read_text(encoding="utf-8") if (folder / "config.yaml").is_file() else None
    metrics = _read_json(folder / "metrics.json")
    cv = _read_json(folder / "cv.json")
    evaluation = _read_json(folder / "evaluation.json")
    name = (metrics or {}).get("model") or (cv["models"][0]["name"] if cv else None) or folder.name

    if cv:
        sections.append(("Cross-validation", _cv_section(folder, cv, figures)))
    if metrics:
        sections.append(("Metrics", _metrics_table(metrics)))
    if (folder / "history.csv").is_file():
        from fmnist.engine.state import read_history

        history = read_history(folder / "history.csv")
        if history:
            figures.append((plots.plot_learning_curves([history], folder / "learning-curves.png", f"{name}: learning curves"),
                            "Learning curves: loss and accuracy per epoch (write-up 000)"))
            figures.append((plots.plot_training_summary(history, folder / "training-summary.png",
                                                        f"{name}: training loss and accuracy"),
                            "Training loss and accuracy in one plot (write-up 001)"))
    images = None
    if evaluation and (folder / "predictions.npz").is_file():
        images = _evaluation_section(folder, evaluation, dataset, sections, figures)
    model_file = _model_file(folder, evaluation)
    if images is not None and model_file is not None:
        _feature_maps(folder, model_file, images, figures)
    if config_text:
        sections.append(("Configuration", f"<pre>{html.escape(config_text)}</pre>"))
    sections += [(caption, html.figure(path, caption)) for path, caption in figures]
    return html.write_report(folder / "report.html", title or f"fmnist: {name}", sections)


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
                                                   f"{label}: {cv['folds']}-fold learning curves"),
                        f"{label}: learning curves of every fold (train blue, validation orange)"))
    figures.insert(0, (diagnostics.plot_score_boxplot(scores, folder / "cv-boxplot.png",
                                                      f"{cv['folds']}-fold cross-validation accuracy"),
                       "Fold accuracies: box and whiskers, mean as a triangle, folds as dots"))
    folds = "stratified " if cv["stratified"] else ""
    intro = (f"<p>{cv['folds']} {folds}folds of {cv['train_images']:,} training images, seed {cv['seed']}, "
             f"fold hash <code>{cv['folds_sha256'][:16]}</code>.</p>")
    return intro + html.table(["model", "mean %", "std %", "n", "seconds", "final test %"], rows)


def _evaluation_section(folder: Path, evaluation: dict, dataset, sections: list, figures: list):
    from fmnist.engine.evaluate import most_confused

    classes = evaluation["classes"]
    with np.load(folder / "predictions.npz", allow_pickle=False) as saved:
        labels, predictions, probabilities = saved["labels"], saved["predictions"], saved["probabilities"]
    pairs = most_confused(evaluation["confusion_matrix"], classes)
    body = (f"<p>test loss {evaluation['test_loss']:.4f}, test accuracy {evaluation['test_accuracy']:.4f} "
            f"on {evaluation['images']:,} images</p><pre>{html.escape(evaluation['report_text'])}</pre>")
    if pairs:
        body += "<p>Most confused (true → predicted):</p>" + html.table(["true", "predicted", "images"], pairs)
    sections.append(("Test-set evaluation", body))
    figures.append((plots.plot_confusion_matrix(evaluation["confusion_matrix"], classes, folder / "confusion-matrix.png",
                                                f"Confusion matrix (test accuracy {evaluation['test_accuracy']:.2%})"),
                    "Confusion matrix: counts, coloured by the share of each true class"))
    figures.append((diagnostics.plot_class_scores(evaluation["report"], classes, folder / "class-scores.png"),
                    "Precision, recall and F1 per class"))
    images, problem = _test_images(evaluation, dataset)
    if images is None:
        sections.append(("Note", f"<p>{html.escape(problem)}</p>"))
        return None
    figures.append((diagnostics.plot_prediction_montage(images, labels, predictions, classes, folder / "montage.png"),
                    "16 random test images with their predicted class: green right, red wrong (write-up 001)"))
    figures.append((diagnostics.plot_prediction_grid(images, labels, predictions, classes, folder / "correct.png", True),
                    "Correctly classified test images (write-up 004)"))
    figures.append((diagnostics.plot_prediction_grid(images, labels, predictions, classes, folder / "incorrect.png", False),
                    "Incorrectly classified test images (write-up 004)"))
    figures.append((diagnostics.plot_top_losses(images, labels, probabilities, classes, folder / "top-losses.png"),
                    "Top losses: the test images the model is most confidently wrong about"))
    return images


def _model_file(folder: Path, evaluation: dict | None) -> Path | None:
    """The evaluated model: the run's own model.safetensors, or the file `evaluate` recorded."""
    if (folder / "model.safetensors").is_file():
        return folder / "model.safetensors"
    recorded = (evaluation or {}).get("model_file")
    return Path(recorded) if recorded and Path(recorded).is_file() else None


def _feature_maps(folder: Path, model_file: Path, images: np.ndarray, figures: list) -> None:
    from fmnist.engine.inspect import feature_maps
    from fmnist.modelfile import load_model

    ids = [i for i in FEATURE_MAP_IMAGES if i < len(images)]
    model = load_model(model_file).model
    layers = feature_maps(model, images[ids])
    if layers:
        figures.append((diagnostics.plot_feature_maps(images[ids], ids, layers, FEATURE_MAP_FILTER, folder / "feature-maps.png"),
                        f"Feature maps of filter {FEATURE_MAP_FILTER} for test images {', '.join(map(str, ids))} (write-up 003)"))
