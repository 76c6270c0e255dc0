"""Redraw every figure of an output folder from its saved files, and rewrite its report.html.

Used at the end of `train`, `cv` and `evaluate`, and by `fmnist report DIR` to redraw a folder later
without retraining. It gathers what the report shows — the folder's files, the evaluated test images
(reloaded and checked against the recorded labels) and the model's feature maps — and hands it to
`fmnist.report.run_report`, which only draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist.data.dataset import Dataset, load_dataset
from fmnist.engine.config import load_config_file
from fmnist.engine.features import feature_maps
from fmnist.errors import FmnistError
from fmnist.modelfile import load_model
from fmnist.report.run_report import FEATURE_MAP_IMAGES, FolderContents, draw_report
from fmnist.runfolder import RunFolder, labels_sha256


def redraw(folder: str | Path, dataset: Dataset | None = None, title: str | None = None) -> Path:
    """(Re)draw the folder's figures and write report.html; returns the report's path."""
    run = RunFolder(folder)
    contents = FolderContents(config_text=run.read_config_text(), metrics=run.read_metrics(),
                              history=run.read_history(), cv=run.read_cv(), evaluation=run.read_evaluation())
    if contents.config_text is not None:
        smoothing = load_config_file(run.config).get("label_smoothing")
        contents.label_smoothing = smoothing if isinstance(smoothing, (int, float)) and smoothing > 0 else 0.0
    if contents.evaluation:
        contents.predictions = run.read_predictions(contents.evaluation["images"], len(contents.evaluation["classes"]))
    if contents.predictions is not None:
        contents.test_images, contents.test_images_problem = _test_images(contents.evaluation, dataset)
    model_file = _model_file(run, contents.evaluation)
    if contents.test_images is not None and model_file is not None:
        ids = [i for i in FEATURE_MAP_IMAGES if i < len(contents.test_images)]
        contents.feature_maps = (ids, feature_maps(load_model(model_file).model, contents.test_images[ids]))
    return draw_report(run.path, contents, title)


def _test_images(evaluation: dict, dataset: Dataset | None) -> tuple[np.ndarray | None, str | None]:
    """The evaluated test images, or None and the reason when they cannot be matched."""
    if dataset is None:
        try:
            dataset = load_dataset(evaluation.get("data"), download=False)
        except FmnistError as exc:
            return None, f"test images unavailable ({exc})"
    count = evaluation["images"]
    images, labels = dataset.test.images[:count], dataset.test.labels[:count]
    if len(labels) != count or labels_sha256(labels) != evaluation["labels_sha256"]:
        return None, "the test images found now are not the ones evaluated; image figures skipped"
    return images, None


def _model_file(run: RunFolder, evaluation: dict | None) -> Path | None:
    """The evaluated model: the run's own model.safetensors, or the file `evaluate` recorded."""
    if run.model.is_file():
        return run.model
    recorded = (evaluation or {}).get("model_file")
    return Path(recorded) if recorded and Path(recorded).is_file() else None
