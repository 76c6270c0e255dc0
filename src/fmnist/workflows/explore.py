"""`fmnist explore`: shapes, per-class counts and pixel statistics of both splits (summary.json), the
write-ups' first figures and report.html."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fmnist._io import write_text_atomic
from fmnist.data.dataset import Dataset
from fmnist.report import explore as explore_report


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
    figures = explore_report.draw_figures(dataset, out, seed)
    summary = summarize(dataset)
    summary["figures"] = [path.name for path, _ in figures]
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    explore_report.write_report(out, summary, figures)
    return summary
