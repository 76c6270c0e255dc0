"""`fmnist explore`: the write-ups' first look at the data, as figures, a summary and a report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fmnist._io import write_text_atomic
from fmnist.data.dataset import Dataset
from fmnist.report import html, plots


def summarize(dataset: Dataset) -> dict:
    """Shapes, per-class counts and shares, and pixel statistics of both splits."""
    summary = {"source": dataset.source.describe(), "verified": dataset.verified, "classes": list(dataset.classes)}
    for name, split in (("train", dataset.train), ("test", dataset.test)):
        counts = split.class_counts(dataset.num_classes)
        summary[name] = {
            "images_shape": list(split.images.shape),
            "images_dtype": str(split.images.dtype),
            "labels_shape": list(split.labels.shape),
            "labels_dtype": str(split.labels.dtype),
            "pixel_mean": round(float(split.images.mean(dtype=np.float64)), 4),
            "pixel_std": round(float(split.images.std(dtype=np.float64)), 4),
            "class_counts": [int(c) for c in counts],
            "class_percent": [round(100.0 * float(c) / len(split), 2) for c in counts],
        }
    return summary


def explore(dataset: Dataset, out: str | Path, seed: int = 0) -> dict:
    """Write the figures, `summary.json` and `report.html` into `out`; return the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, test, classes = dataset.train, dataset.test, dataset.classes
    figures = [
        (plots.plot_first_images(train.images, train.labels, classes, out / "first-images.png"),
         "The first 9 training images and their labels"),
        (plots.plot_class_samples(train.images, train.labels, classes, out / "samples-train.png", "training", seed=seed),
         "4 random training images of every class"),
        (plots.plot_class_samples(test.images, test.labels, classes, out / "samples-test.png", "test", seed=seed),
         "4 random test images of every class"),
        (plots.plot_class_distribution(
            {"Training": train.class_counts(len(classes)), "Test": test.class_counts(len(classes))},
            classes, out / "class-distribution.png"),
         "Images per class in each split"),
        (plots.plot_class_means(train.images, train.labels, classes, out / "class-means.png"),
         "The mean training image of every class"),
    ]
    summary = summarize(dataset)
    summary["figures"] = [path.name for path, _ in figures]
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    rows = [
        (name, summary["train"]["class_counts"][i], summary["train"]["class_percent"][i],
         summary["test"]["class_counts"][i], summary["test"]["class_percent"][i])
        for i, name in enumerate(classes)
    ]
    shapes = [
        (split, str(tuple(summary[split]["images_shape"])), summary[split]["images_dtype"],
         str(tuple(summary[split]["labels_shape"])), summary[split]["labels_dtype"],
         summary[split]["pixel_mean"], summary[split]["pixel_std"])
        for split in ("train", "test")
    ]
    html.write_report(
        out / "report.html",
        "fmnist explore",
        [
            ("Data", f"<p>{html.escape(summary['source'])}"
                     f"{' — official Fashion-MNIST, SHA-256 verified' if dataset.verified else ''}</p>"
             + html.table(["split", "images", "dtype", "labels", "dtype", "pixel mean", "pixel std"], shapes)),
            ("Images per class", html.table(["class", "train", "train %", "test", "test %"], rows)),
        ]
        + [(caption, html.figure(path, caption)) for path, caption in figures],
    )
    return summary
