"""`fmnist activations`: the feature maps of a model file for chosen test images, as a figure and report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist.data.dataset import Dataset, load_dataset
from fmnist.engine.features import feature_maps
from fmnist.errors import FmnistError
from fmnist.modelfile import load_model
from fmnist.report import diagnostics, html


def draw_activations(model_file: str | Path, out: str | Path, image_ids: list[int], filter_index: int = 1,
                     dataset: Dataset | None = None, data: str | Path | None = None) -> list[tuple[str, np.ndarray]]:
    """Write feature-maps.png and report.html into `out`: one row per test image, one column per
    conv/pool layer, filter `filter_index`. Returns (layer name, maps (N, C, H, W)) per layer."""
    if not image_ids:
        raise FmnistError("--images: give at least one test-image index")
    if filter_index < 0:
        raise FmnistError(f"--filter must be >= 0, got {filter_index}")
    loaded = load_model(model_file)
    dataset = dataset if dataset is not None else load_dataset(data)
    bad = [i for i in image_ids if not 0 <= i < len(dataset.test)]
    if bad:
        raise FmnistError(f"--images: index {bad[0]} is outside 0-{len(dataset.test) - 1}")
    chosen = dataset.test.images[image_ids]
    layers = feature_maps(loaded.model, chosen)
    if not layers:
        raise FmnistError(f"{model_file}: the model has no convolution or pooling layers to show")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = diagnostics.plot_feature_maps(chosen, image_ids, layers, filter_index, out / "feature-maps.png")
    caption = f"Filter {filter_index}, test images {','.join(map(str, image_ids))}"
    html.write_report(out / "report.html", f"fmnist activations: {model_file}",
                      [("Feature maps", html.figure(figure, caption))])
    return layers
