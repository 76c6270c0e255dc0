"""Figures about a model's behaviour: cross-validation, per-class scores, predictions, features.

Like plots.py, each function draws one PNG from plain arrays (read from a run's saved files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.report.plots import TRAIN_COLOR, plt, save_figure, tile_figure

RIGHT, WRONG = "#1a9641", "#d7191c"  # green when right, red when wrong (write-up 001)


def plot_score_boxplot(scores: dict[str, list[float]], path, title: str = "Cross-validation accuracy") -> Path:
    """Box-and-whisker plot of fold accuracies (%), one box per model, the folds as dots."""
    names = list(scores)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(names) + 2), 5))
    data = [np.asarray(scores[name]) * 100 for name in names]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names)
    for position, values in enumerate(data, start=1):
        ax.scatter(np.full(len(values), position), values, color="black", s=12, zorder=3, alpha=0.7)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_xlabel("model")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_class_scores(report: dict, classes, path, title: str = "Per-class precision, recall and F1") -> Path:
    """Grouped bars from scikit-learn's classification report (output_dict=True)."""
    fig, ax = plt.subplots(figsize=(10, 4.8))
    positions = np.arange(len(classes))
    width = 0.27
    for offset, (metric, color) in enumerate((("precision", "#4c72b0"), ("recall", "#dd8452"), ("f1-score", "#55a868"))):
        values = [report[name][metric] for name in classes]
        ax.bar(positions + (offset - 1) * width, values, width, label=metric, color=color)
    ax.set_xticks(positions, classes, rotation=45, ha="right")
    low = min(min(report[name][m] for m in ("precision", "recall", "f1-score")) for name in classes)
    ax.set_ylim(max(0.0, low - 0.1), 1.1)  # headroom above 1.0 for the legend
    ax.set_ylabel("score")
    ax.set_xlabel("class")
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_prediction_montage(images, labels, predictions, classes, path, count: int = 16, seed: int = 0) -> Path:
    """Write-up 001's montage: random test images upscaled to 96x96 in a 4x4 grid, each with its
    predicted class above it, green when right; a wrong one in red with its true class below the
    prediction. The labels sit on the white page, not on the image, so they read on any garment."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=min(count, len(images)), replace=False)
    tiles = [np.asarray(Image.fromarray(images[i]).resize((96, 96), Image.Resampling.BILINEAR)) for i in chosen]
    right = [predictions[i] == labels[i] for i in chosen]
    titles = [classes[predictions[i]] if ok else f"{classes[predictions[i]]}\n(true: {classes[labels[i]]})"
              for i, ok in zip(chosen, right)]
    wrong = len(right) - sum(right)
    fig = tile_figure(tiles, titles, int(np.ceil(np.sqrt(len(chosen)))),
                      f"Predictions on {len(chosen)} random test images ({wrong} wrong, in red with the true class)",
                      colors=[RIGHT if ok else WRONG for ok in right], tile=1.8, fontsize=9, bold=True,
                      interpolation="antialiased")
    return save_figure(fig, path)


def plot_prediction_grid(images, labels, predictions, classes, path, correct: bool, count: int = 16, seed: int = 0) -> Path:
    """Write-up 004's grids of correctly / incorrectly classified images, 'True: X  Pred: Y'."""
    pool = np.flatnonzero((predictions == labels) if correct else (predictions != labels))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(pool, size=min(count, len(pool)), replace=False) if len(pool) else np.array([], int)
    kind = "correctly" if correct else "incorrectly"
    return _titled_grid(images, chosen, [f"True: {classes[labels[i]]}\nPred: {classes[predictions[i]]}" for i in chosen],
                        path, f"{len(chosen)} {kind} classified test images (of {len(pool):,})",
                        RIGHT if correct else WRONG)


def plot_top_losses(images, labels, probabilities, classes, path, count: int = 16) -> Path:
    """The test images the model is most wrong about (highest cross-entropy), with its confidence."""
    eps = 1e-12
    losses = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], eps, 1.0))
    chosen = np.argsort(losses)[::-1][:count]
    predictions = probabilities.argmax(axis=1)
    titles = [f"{classes[predictions[i]]} {probabilities[i, predictions[i]]:.0%}\ntrue {classes[labels[i]]}, loss {losses[i]:.1f}"
              for i in chosen]
    return _titled_grid(images, chosen, titles, path, "Top losses: predicted (confidence) / true class", WRONG)


def _titled_grid(images, indices, titles, path, suptitle: str, color: str) -> Path:
    if len(indices) == 0:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=14)
        fig.suptitle(suptitle, fontsize=11)
        return save_figure(fig, path)
    fig = tile_figure([images[i] for i in indices], titles, int(np.ceil(np.sqrt(len(indices)))), suptitle,
                      colors=color, tile=1.9, fontsize=7.5)
    return save_figure(fig, path)


def plot_feature_maps(images, image_ids, layers: list[tuple[str, np.ndarray]], filter_index: int, path) -> Path:
    """Write-up 003's feature maps: one row per image, one column per conv/pool layer (inferno)."""
    columns = len(layers) + 1
    fig, axes = plt.subplots(len(image_ids), columns, figsize=(1.9 * columns, 2.0 * len(image_ids)), squeeze=False)
    for row, image_id in enumerate(image_ids):
        axes[row, 0].imshow(images[row], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(f"test image {image_id}", fontsize=8)
        for col, (name, maps) in enumerate(layers, start=1):
            channel = min(filter_index, maps.shape[1] - 1)
            axes[row, col].imshow(maps[row, channel], cmap="inferno")
            if row == 0:
                axes[row, col].set_title(f"{name}\nfilter {channel}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Feature maps per conv/pool layer (filter {filter_index}, or a layer's last)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_lr_finder(lrs, losses, suggestion: float, path, title: str = "Learning-rate finder", raw_losses=None,
                   lowest: float | None = None) -> Path:
    """Training loss against learning rate (log scale): each step's loss faintly, the smoothed loss,
    the rate of the lowest smoothed loss and the suggested rate."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if raw_losses is not None:
        ax.plot(lrs, raw_losses, color=TRAIN_COLOR, alpha=0.25, lw=0.8, label="loss of each step")
    ax.plot(lrs, losses, color=TRAIN_COLOR, lw=2, label="smoothed training loss")
    if lowest is not None:
        ax.axvline(lowest, color="0.5", linestyle=":", label=f"lowest loss at {lowest:.2g}")
    ax.axvline(suggestion, color=WRONG, linestyle="--", label=f"suggested lr {suggestion:.2g} (lowest ÷ 10)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
