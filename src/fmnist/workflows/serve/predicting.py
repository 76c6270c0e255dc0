"""A request's inputs through one model: each upload prepared (fmnist.images, checked from its header
before it is decoded), every readable one predicted in one batch, one record per input in order: the
records `fmnist predict --json` writes, with the 28×28 input the model saw when asked.

Runs in a worker thread (decoding and onnxruntime release the GIL for most of their work).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import time
from dataclasses import dataclass

import numpy as np

from fmnist import images
from fmnist.errors import FmnistError
from fmnist.inference import Prediction, iter_predictions
from fmnist.workflows.serve.models import ServedModel
from fmnist.workflows.serve.uploads import RequestError, Upload

# The status a request gets when none of its inputs could be predicted, by the kind of the first one's error.
STATUS_BY_KIND = {"unsupported": 415, "too large": 413}  # DataError.kind; any other problem: 422


@dataclass
class Outcome:
    status: int  # 200 when at least one input was predicted
    body: dict
    images: int  # inputs predicted


def predict_uploads(model: ServedModel, uploads: list[Upload], top_k: int, invert: str,
                    show_input: bool) -> Outcome:
    started = time.perf_counter()
    predictor = model.predictor
    if not 1 <= top_k <= len(predictor.classes):
        raise RequestError(422, f"top_k must be between 1 and {len(predictor.classes)}, got {top_k}")
    if invert not in images.INVERT_CHOICES:
        raise RequestError(422, f"invert must be one of {', '.join(images.INVERT_CHOICES)}, got {invert!r}")
    # Every input through fmnist.predict's own path (decoding within limits, passthrough, mirroring,
    # per-input error records), so the records are the ones `fmnist predict --json` writes.
    predicted = _predict(predictor, [upload.data if upload.arrays is None else upload.arrays for upload in uploads],
                         top_k, invert)
    records, failures, row = [], [], 0
    for upload in uploads:
        count = 1 if upload.arrays is None else len(upload.arrays)
        for record in predicted[row : row + count]:
            if upload.arrays is None:
                record = dataclasses.replace(record, path=upload.name)
            if record.error is not None:
                failures.append(record)
            records.append(record)
        row += count
    body = [_as_dict(record, show_input) for record in records]
    seconds = time.perf_counter() - started
    if failures and len(failures) == len(records):
        first = failures[0]
        status = STATUS_BY_KIND.get(first.error_kind, 422)
        return Outcome(status, {"error": f"{first.path}: {first.error}", "records": body}, 0)
    ok = sum(record.ok for record in records)
    return Outcome(200, {"model": model.name, "records": body, "seconds": round(seconds, 6)}, ok)


def _predict(predictor, inputs: list, top_k: int, invert: str) -> list[Prediction]:
    if not inputs:
        return []
    try:
        return list(iter_predictions(predictor, inputs, top_k=top_k, invert=invert, on_error="record"))
    except FmnistError as exc:  # a model that fails on these inputs: the server's problem, said in one line
        raise RequestError(500, f"the model could not run: {exc}") from None


def _as_dict(record: Prediction, show_input: bool) -> dict:
    result = record.as_dict()
    if show_input and record.ok and record.pixels is not None:
        result["input_png"] = png_base64(record.pixels)
    return result


def png_base64(pixels: np.ndarray) -> str:
    """The (S, S) uint8 image as a base64 PNG (what a page puts in `data:image/png;base64,...`)."""
    from PIL import Image  # Pillow on first use, as everywhere in fmnist

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
