"""What the model saw (`fmnist predict --show-input DIR`): each prepared 28×28 input as a PNG in
DIR/images/, a montage DIR/inputs.png of original and input side by side with the prediction, and
DIR/report.html."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fmnist import image_files, images
from fmnist._io import atomic_path
from fmnist.errors import DataError
from fmnist.inference import Prediction, Predictor, input_names
from fmnist.report import html
from fmnist.report.plots import plt, save_figure

MONTAGE_LIMIT = 40  # pairs in the montage; every input still gets its own PNG


def write_inputs(directory: str | Path, predictions: list[Prediction], predictor: Predictor) -> Path:
    """Write `images/<name>.png` (the exact 28×28 input; predicting it again gives the same
    result), `inputs.png` and `report.html` into `directory`; return the report's path."""
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    names = input_names(predictions)
    for name, prediction in zip(names, predictions):
        with atomic_path(directory / "images" / name) as tmp:
            Image.fromarray(prediction.pixels).save(tmp, format="PNG")
    montage = plot_inputs(predictions, directory / "inputs.png")
    rows = [
        (prediction.path or "<image>", name, prediction.label, f"{prediction.probability:.1%}",
         "yes" if (prediction.input or {}).get("inverted") else "no",
         _size(prediction.input))
        for name, prediction in zip(names, predictions)
    ]
    shown = min(len(predictions), MONTAGE_LIMIT)
    sections = [
        ("Model", html.table(["file", "runtime", "classes", "image spec"],
                             [[str(predictor.path), predictor.runtime, ", ".join(predictor.classes),
                               ", ".join(f"{k} {v}" for k, v in predictor.image_spec.to_dict().items())]])),
        ("What the model saw", html.figure(montage, f"Original (left) and the {predictor.image_spec.size}x"
                                                    f"{predictor.image_spec.size} input (right) of the first "
                                                    f"{shown} images, with the prediction")),
        ("Predictions", html.table(["file", "input image (images/)", "predicted", "probability", "inverted",
                                    "original size"], rows)),
    ]
    return html.write_report(directory / "report.html", "fmnist predict: what the model saw", sections)


def _size(info: dict | None) -> str:
    return f"{info['width']}x{info['height']} {info['mode']}" if info else "array"


def plot_inputs(predictions: list[Prediction], path: str | Path) -> Path:
    """Pairs of (original, model input) with the predicted label and probability, 4 pairs a row."""
    shown = predictions[:MONTAGE_LIMIT]
    columns = min(4, len(shown))
    rows = int(np.ceil(len(shown) / columns))
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2 * columns * 1.5, rows * 1.8 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for position, prediction in enumerate(shown):
        row, column = divmod(position, columns)
        original_ax, input_ax = axes[row, 2 * column], axes[row, 2 * column + 1]
        original = _thumbnail(prediction)
        if original is not None:
            original_ax.imshow(original, cmap=None if original.ndim == 3 else "gray", vmin=0, vmax=255)
            name = Path(prediction.path).name if prediction.path not in (None, "-") else "stdin"
            original_ax.set_title(_shorten(name), fontsize=7, parse_math=False)  # "$5 shirt.jpg" is no formula
        input_ax.imshow(prediction.pixels, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        input_ax.set_title(f"{_shorten(prediction.label, 16)} {prediction.probability:.0%}", fontsize=7,
                           color="#1a4f9c", parse_math=False)
    fig.suptitle("What the model saw: original | 28x28 input, with the prediction", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _thumbnail(prediction: Prediction) -> np.ndarray | None:
    """The original file, small, as RGB or grey; None when there is no file to show."""
    if prediction.path in (None, "-"):
        return None
    try:
        image = image_files.open_image(prediction.path).image
    except DataError:
        return None
    image.thumbnail((160, 160))
    if image.mode not in ("RGB", "L"):
        return np.asarray(images.to_grayscale(image)).astype(np.uint8)
    return np.asarray(image)


def _shorten(name: str, limit: int = 22) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
