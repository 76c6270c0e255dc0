"""Every figure fmnist draws: one function per figure, each writing one PNG atomically.

Figures are drawn from arrays and saved files only, never from live training state, so a report
can be redrawn later. matplotlib runs headless (Agg).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fmnist._io import atomic_path  # noqa: E402

DPI = 110


def save_figure(fig, path: str | Path) -> Path:
    """Save as PNG under a temporary name, rename, and free the figure."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def tile_figure(tiles, titles, cols: int, suptitle: str, colors="black", tile: float = 1.6, fontsize: float = 8,
                bold: bool = False, interpolation: str = "nearest"):
    """Grey images in a grid, a title (one or more lines) above each, placed by hand.

    No layout engine runs: with 16 titled images, tight_layout and the constrained layout measured
    every axis and title and took 2.4 s of a 1-epoch run's 14 s of figures on a 2-core CPU; placed
    by hand, a grid draws in a fraction of that. Titles sit on the white page, readable on any image.
    """
    colors = [colors] * len(titles) if isinstance(colors, str) else list(colors)
    rows = max(1, int(np.ceil(len(tiles) / cols)))
    lines = max((str(title).count("\n") + 1 for title in titles), default=1)
    title_height = lines * fontsize / 72 * 1.3 + 0.06  # inches
    pad, head = 0.12, 0.5
    cell_width, cell_height = tile + pad, tile + title_height + pad
    width, height = cols * cell_width + pad, rows * cell_height + head
    fig = plt.figure(figsize=(width, height))
    fig.suptitle(suptitle, fontsize=11, y=1 - 0.18 / height, va="top")
    for position, (image, title, color) in enumerate(zip(tiles, titles, colors)):
        row, col = divmod(position, cols)
        left = pad + col * cell_width
        bottom = height - head - row * cell_height - title_height - tile
        ax = fig.add_axes((left / width, bottom / height, tile / width, tile / height))
        ax.axis("off")
        # vmin/vmax fixed: a dark image stays dark instead of being stretched to full contrast.
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation=interpolation)
        fig.text((left + tile / 2) / width, (bottom + tile + 0.04) / height, title, ha="center", va="bottom",
                 fontsize=fontsize, color=color, fontweight="bold" if bold else "normal")
    return fig


def _image_grid(images, titles, rows: int, cols: int, suptitle: str, cell: float = 1.5):
    return tile_figure(list(images), list(titles), cols, suptitle, tile=cell)


def plot_first_images(images: np.ndarray, labels: np.ndarray, classes, path, count: int = 9) -> Path:
    """The first `count` images (write-up 000's 3x3 look at the data), titled with their class."""
    side = int(np.ceil(np.sqrt(count)))
    titles = [f"#{i}: {classes[int(label)]}" for i, label in enumerate(labels[:count])]
    fig = _image_grid(images[:count], titles, side, side, f"First {count} training images", cell=2.0)
    return save_figure(fig, path)


def plot_class_samples(
    images: np.ndarray, labels: np.ndarray, classes, path, split_name: str, per_class: int = 4, seed: int = 0
) -> Path:
    """`per_class` random images of every class; two classes share a row (5x8 for 10 classes x 4)."""
    rng = np.random.default_rng(seed)
    picked, titles = [], []
    for label, name in enumerate(classes):
        members = np.flatnonzero(labels == label)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
        chosen = list(chosen) + [None] * (per_class - len(chosen))  # keep the grid aligned
        for index in chosen:
            picked.append(np.zeros_like(images[0]) if index is None else images[index])
            titles.append(name if index is not None else f"{name} (none)")
    classes_per_row = 2 if per_class <= 5 else 1
    cols = per_class * classes_per_row
    rows = int(np.ceil(len(classes) / classes_per_row))
    fig = _image_grid(
        picked, titles, rows, cols, f"{per_class} random {split_name} images per class (seed {seed})"
    )
    return save_figure(fig, path)


def plot_class_distribution(counts: dict[str, np.ndarray], classes, path) -> Path:
    """One bar chart per split: images per class, with the share of the split on each bar."""
    fig, axes = plt.subplots(1, len(counts), figsize=(6.5 * len(counts), 4.8), squeeze=False)
    for ax, (split_name, split_counts) in zip(axes.flat, counts.items()):
        total = max(int(split_counts.sum()), 1)
        bars = ax.bar(range(len(classes)), split_counts, color="#4c72b0")
        for bar, count in zip(bars, split_counts):
            ax.annotate(
                f"{100 * count / total:.1f}%",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center", va="bottom", fontsize=8,
            )
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_ylabel("images")
        ax.set_xlabel("class")
        ax.set_title(f"{split_name} set: {total:,} images")
        ax.margins(y=0.12)
    fig.suptitle("Class distribution", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_class_means(images: np.ndarray, labels: np.ndarray, classes, path) -> Path:
    """The mean image of every class: what the model can expect a typical item to look like."""
    means = [
        images[labels == label].mean(axis=0) if np.any(labels == label) else np.zeros(images.shape[1:])
        for label in range(len(classes))
    ]
    cols = min(5, len(classes))
    rows = int(np.ceil(len(classes) / cols))
    fig = _image_grid(means, list(classes), rows, cols, "Mean training image per class", cell=1.8)
    return save_figure(fig, path)


TRAIN_COLOR, VAL_COLOR = "tab:blue", "tab:orange"  # write-up 000: train blue, validation orange


def _train_label(smoothing: float) -> str:
    # With label smoothing the training loss carries its floor (it never reaches 0) and is not the
    # validation loss's measure: the figure says so rather than invite a comparison it cannot bear.
    return f"train (loss with label smoothing {smoothing:g})" if smoothing else "train"


def _epoch_axis(ax, epochs: list[int]) -> None:
    """Epochs are whole numbers: each one a tick while they are few, integer ticks after that."""
    unique = sorted(set(epochs))
    if len(unique) <= 15:
        ax.set_xticks(unique)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(unique) == 1:  # one epoch: give the lone points some room
        ax.set_xlim(unique[0] - 0.5, unique[0] + 0.5)


def plot_learning_curves(histories: list[list[dict]], path, title: str = "Learning curves",
                         validation: str = "validation", smoothing: float = 0.0) -> Path:
    """Write-up 000's two panels, cross-entropy loss and classification accuracy per epoch, for one
    run or every fold of a cross-validation; train blue, `validation` orange (say "test" when the
    test set validated). Points are marked whenever a curve has few of them, so a one-epoch run
    still shows its values."""
    fig, (loss_ax, acc_ax) = plt.subplots(2, 1, figsize=(7.5, 7.5), sharex=True)
    several = len(histories) > 1
    for index, history in enumerate(histories):
        epochs = [row["epoch"] for row in history]
        style = {"alpha": 0.8} if several else {}
        if not several or len(epochs) <= 12:
            style.update(marker="o", ms=3 if len(epochs) > 1 else 6)
        for ax, train_key, val_key, train_label in ((loss_ax, "loss", "val_loss", _train_label(smoothing)),
                                                    (acc_ax, "accuracy", "val_accuracy", "train")):
            ax.plot(epochs, [r[train_key] for r in history], color=TRAIN_COLOR,
                    label=train_label if index == 0 else None, **style)
            ax.plot(epochs, [r[val_key] for r in history], color=VAL_COLOR, label=validation if index == 0 else None,
                    **style)
    folds = f" ({len(histories)} folds)" if several else ""
    loss_ax.set_title(f"Cross-entropy loss{folds}")
    loss_ax.set_ylabel("loss")
    acc_ax.set_title(f"Classification accuracy{folds}")
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_xlabel("epoch")
    _epoch_axis(acc_ax, [row["epoch"] for history in histories for row in history])
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training_summary(history: list[dict], path, title: str = "Training loss and accuracy",
                          validation: str = "val", smoothing: float = 0.0) -> Path:
    """Write-up 001's single plot: train and validation loss and accuracy on one axis."""
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    train_loss = "train_loss" + (f" (label smoothing {smoothing:g})" if smoothing else "")
    # Four distinct colours, as in write-up 001's plot: loss as circles, accuracy as squares.
    for key, label, color, marker in (("loss", train_loss, "tab:red", "o"),
                                      ("val_loss", f"{validation}_loss", "tab:blue", "o"),
                                      ("accuracy", "train_acc", "tab:purple", "s"),
                                      ("val_accuracy", f"{validation}_acc", "tab:gray", "s")):
        ax.plot(epochs, [r[key] for r in history], color=color, marker=marker, ms=3 if len(epochs) > 1 else 6,
                label=label)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / accuracy")
    _epoch_axis(ax, epochs)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion_matrix(matrix, classes, path, title: str = "Confusion matrix") -> Path:
    """Counts per (true, predicted) class, with the per-class recall on the diagonal colour scale."""
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (true, predicted), count in np.ndenumerate(matrix):
        ax.text(predicted, true, str(count), ha="center", va="center", fontsize=8,
                color="white" if shares[true, predicted] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    return save_figure(fig, path)
