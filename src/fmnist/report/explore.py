"""`fmnist explore`'s figures and report: the write-ups' first look at the data."""

from __future__ import annotations

from pathlib import Path

from fmnist.data.dataset import Dataset
from fmnist.report import html, plots


def draw_figures(dataset: Dataset, out: Path, seed: int = 0) -> list[tuple[Path, str]]:
    """The explore figures in `out`, as (path, caption)."""
    train, test, classes = dataset.train, dataset.test, dataset.classes
    return [
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


def write_report(out: Path, summary: dict, figures: list[tuple[Path, str]]) -> Path:
    """report.html: the summary's tables and every figure."""
    classes = summary["classes"]
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
    return html.write_report(
        out / "report.html",
        "fmnist explore",
        [
            ("Data", html.text(summary["source"] + (" — official Fashion-MNIST, SHA-256 verified"
                                                    if summary["verified"] else ""))
             + html.table(["split", "images", "dtype", "labels", "dtype", "pixel mean", "pixel std"], shapes)),
            ("Images per class", html.table(["class", "train", "train %", "test", "test %"], rows)),
        ]
        + [(caption, html.figure(path, caption)) for path, caption in figures],
    )
