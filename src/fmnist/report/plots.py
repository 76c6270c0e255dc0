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


def _image_grid(images, titles, rows: int, cols: int, suptitle: str, cell: float = 1.5):
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell, rows * cell * 1.12), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        # vmin/vmax fixed: a dark image stays dark instead of being stretched to full contrast.
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    fig.suptitle(suptitle, fontsize=12)
    fig.tight_layout()
    return fig


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
