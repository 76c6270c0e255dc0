"""One prediction per input, as a record: what `fmnist predict` prints, `--json` writes and the API returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.errors import printable

STDIN = "-"


@dataclass(slots=True)
class Prediction:
    """One input's prediction (or, when it could not be read, its error)."""

    path: str | None  # the file ("-" for stdin); None for an in-memory image or array
    label: str | None  # the predicted class name
    index: int | None  # the predicted class index
    probability: float | None  # softmax probability of that class
    top_k: list[dict] = field(default_factory=list)  # [{label, index, probability}], most probable first
    input: dict | None = None  # how the image was prepared (fmnist.images.PreparedImage.info); None for arrays
    error: str | None = None  # why this input could not be predicted
    error_kind: str | None = None  # DataError.kind of that error: malformed | too large | unsupported
    pixels: np.ndarray | None = field(default=None, repr=False)  # (28, 28) uint8: what the model saw
    duplicate_of: str | None = None  # the same file was reached before under this path: see its record
    mirrored: bool = False  # predicted from the mean of its logits and its mirror image's (predict's `mirror`)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        """The JSON record (`fmnist predict --json`)."""
        record: dict[str, Any] = {"path": self.path}
        if self.error is not None:
            record["error"] = self.error
            return record
        if self.duplicate_of is not None:
            record["duplicate_of"] = self.duplicate_of
            return record
        record.update(label=self.label, index=self.index, probability=self.probability, top_k=self.top_k,
                      mirrored=self.mirrored)
        if self.input is not None:
            record["input"] = self.input
        return record


def format_line(prediction: Prediction) -> str:
    """`shirt.jpg: Pullover (2) 97.3%  top-3: Pullover 97.3%, Shirt 1.9%, Coat 0.4%`, one line: control
    characters in a file name are escaped (fmnist.errors.printable)."""
    name = printable(prediction.path if prediction.path is not None else "<image>")
    if prediction.duplicate_of is not None:
        return f"{name}: the same file as {printable(prediction.duplicate_of)} (predicted once, above)"
    line = f"{name}: {prediction.label} ({prediction.index}) {prediction.probability:.1%}"
    if len(prediction.top_k) > 1:
        ranked = ", ".join(f"{entry['label']} {entry['probability']:.1%}" for entry in prediction.top_k)
        line += f"  top-{len(prediction.top_k)}: {ranked}"
    if (prediction.input or {}).get("empty"):
        line += "  (blank: nothing stands out from the background)"
    return line


def format_error(prediction: Prediction) -> str:
    """`fmnist: error: broken.jpg: truncated or corrupt image (...)`, one line (see format_line)."""
    return printable(f"fmnist: error: {prediction.path}: {prediction.error}")


def input_names(predictions: Iterable[Prediction]) -> list[str]:
    """A distinct PNG name per prediction for `--show-input` (file stem; -2, -3 on collisions)."""
    names, used = [], set()
    for position, prediction in enumerate(predictions):
        if prediction.path == STDIN:
            stem = "stdin"
        elif prediction.path is not None:
            stem = Path(prediction.path).stem or "image"
        else:
            stem = f"input-{position}"
        candidate, counter = stem, 1
        while candidate.lower() in used:
            counter += 1
            candidate = f"{stem}-{counter}"
        used.add(candidate.lower())
        names.append(f"{candidate}.png")
    return names
