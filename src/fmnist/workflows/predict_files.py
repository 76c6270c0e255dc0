"""`fmnist predict`: every input predicted in order, each record handed on as it is ready, and with
`show_input` the 28×28 images the model saw written beside a montage and report.html."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fmnist.errors import FmnistError
from fmnist.images import INVERT_CHOICES
from fmnist.inference import MIRROR_CHOICES, STDIN, Prediction, iter_predictions, load_predictor


@dataclass
class PredictSummary:
    kept: list[Prediction] = field(default_factory=list)  # the successful records, when asked to keep them
    failed: int = 0  # inputs that could not be predicted (each had its record with `error`)
    report: Path | None = None  # show_input's report.html


def predict_files(model_file: str | Path, paths: list[str], on_record: Callable[[Prediction], None],
                  top_k: int = 3, invert: str = "auto", device: str = "auto", batch_size: int | None = None,
                  keep: bool = False, show_input: str | Path | None = None,
                  progress: Callable[[int], None] | None = None, mirror: str = "auto") -> PredictSummary:
    """Predict `paths` (files, folders, "-") with `model_file`; `on_record` gets each record in order.

    Every input that cannot be read is a record with `error`, and the others are still predicted."""
    if invert not in INVERT_CHOICES:
        raise FmnistError(f"--invert: expected one of {', '.join(INVERT_CHOICES)}, got {invert!r}")
    if mirror not in MIRROR_CHOICES:
        raise FmnistError(f"--mirror: expected one of {', '.join(MIRROR_CHOICES)}, got {mirror!r}")
    if top_k < 1:
        raise FmnistError(f"--top-k must be at least 1, got {top_k}")
    if batch_size is not None and batch_size < 1:
        raise FmnistError(f"--batch-size must be at least 1, got {batch_size}")
    if paths.count(STDIN) > 1:
        raise FmnistError("- (standard input) can be given once")
    predictor = load_predictor(model_file, device=device, batch_size=batch_size)
    summary = PredictSummary()
    for prediction in iter_predictions(predictor, paths, top_k=top_k, invert=invert, on_error="record",
                                       progress=progress, mirror=mirror):
        on_record(prediction)
        if not prediction.ok:
            summary.failed += 1
        elif keep or show_input is not None:
            summary.kept.append(prediction)
    seen = [prediction for prediction in summary.kept if prediction.pixels is not None]  # not duplicates
    if show_input is not None and seen:
        from fmnist.report.predictions import write_inputs  # matplotlib: only when figures are asked for

        summary.report = write_inputs(show_input, seen, predictor)
    return summary
