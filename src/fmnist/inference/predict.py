"""predict(): inputs in, one `Prediction` per input out, streamed chunk by chunk.

Mirroring: every Fashion-MNIST shoe points left, so a model trained without flips calls a photo of a
right-facing sneaker "Bag" (issue 14). With `mirror` on, a prepared image (a photo, not a 28×28
dataset-like input, which is always predicted exactly as it is) is predicted from the mean of the
logits for it and for its left-right mirror image. `auto` does so only for models trained with flips
and without flip TTA inside. Measured (benchmarks/mirror.py, table in benchmarks/README.md): for a
model trained with flips it gains a little on photos of either orientation (+0.2 and +0.7 points);
for one trained without, no combination of the two views helps: the mean costs 8 points on photos
in the dataset's orientation for the 13 it gains on mirrored ones (the model is confidently wrong on
the mirror view; the mean of probabilities or the surer view are a point better, no more). Such a model needs retraining
with `--augment flip`, not a trick at prediction time; `on` is there for photos known to be mirrored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from fmnist import images
from fmnist.errors import DataError, FmnistError
from fmnist.image_spec import ImageSpec
from fmnist.inference.inputs import CHUNK, InputItem, expand_inputs, prepare_item
from fmnist.inference.records import Prediction
from fmnist.inference.runtimes import load_predictor, softmax

# How long a chunk of decoded files may wait for more before it is predicted: a result shows within
# about this long of its file being read (plus the next file's decoding). Small PNGs (1,000-2,000 a
# second here) still fill chunks of about 1,000: measured on 2,000 PNG files on the shared 2-core
# machine, 1 s cost nothing against chunks of 1,024 alone (2.1 model calls a run against 2.0), while
# 0.5 s and 0.2 s cost 10 % and 40 % (onnxruntime's threads wake slowly on a busy machine).
FLUSH_SECONDS = 1.0
MIRROR_CHOICES = ("auto", "on", "off")


def iter_predictions(
    model,
    inputs,
    top_k: int = 3,
    invert: str = "auto",
    on_error: str = "raise",
    device: str = "auto",
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    mirror: str = "auto",
) -> Iterator[Prediction]:
    """Predictions in input order, streamed chunk by chunk (see `predict`)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise FmnistError(f"top_k must be a positive integer, got {top_k!r}")
    if invert not in images.INVERT_CHOICES:
        raise FmnistError(f"invert must be one of {', '.join(images.INVERT_CHOICES)}, got {invert!r}")
    if on_error not in ("raise", "record"):
        raise FmnistError(f"on_error must be raise or record, got {on_error!r}")
    if mirror not in MIRROR_CHOICES:
        raise FmnistError(f"mirror must be one of {', '.join(MIRROR_CHOICES)}, got {mirror!r}")
    predictor = load_predictor(model, device=device, batch_size=batch_size)
    # auto asks the model only when a prepared image comes (the first chunk holding one)
    mirroring = (lambda: True) if mirror == "on" else (lambda: False) if mirror == "off" else (
        lambda: predictor.trained_with_flips() and not predictor.mirror_symmetric())
    spec = predictor.image_spec
    # Files are decoded one after another: measured on two cores, decoding threads gained nothing on
    # photos (the work holds the GIL more than it releases it) and lost a third on small PNGs.
    pending: list[tuple[InputItem, tuple]] = []
    count, started = 0, 0.0
    for item in expand_inputs(inputs, spec):
        if item.kind != "pause":
            started = started or time.monotonic()  # before the first file is read: it may be the slow one
            pending.append((item, _attempt(item, spec, invert)))
            count += item.count
        # A chunk goes to the model when it is full, when it has waited FLUSH_SECONDS (slow files: each
        # result shows soon after its file is read), or before an input that may be slow to arrive.
        if pending and (count >= CHUNK or item.kind == "pause" or time.monotonic() - started >= FLUSH_SECONDS):
            yield from _predicted(pending, predictor, top_k, on_error, mirroring)
            if progress is not None:
                progress(count)
            pending, count, started = [], 0, 0.0
    if pending:
        yield from _predicted(pending, predictor, top_k, on_error, mirroring)
        if progress is not None:
            progress(count)


def _predicted(chunk: list[tuple[InputItem, tuple]], predictor, top_k: int, on_error: str,
               mirroring: Callable[[], bool]) -> Iterator[Prediction]:
    """The records of a chunk of prepared items, in order: every readable input's pixels stacked once
    (M, S, S) and predicted together (a lone array slice is used as it is); the prepared ones among
    them mirrored too when `mirroring()` says so, in one more forward pass."""
    parts = [pixels if item.kind == "batch" else pixels[None] for item, (pixels, _, _) in chunk if pixels is not None]
    stacked = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else None
    prepared: list[bool] = []  # per row: an image prepared by fmnist.images, not an input used as it is
    for item, (pixels, info, _) in chunk:
        if pixels is not None:
            prepared += [False] * len(pixels) if item.kind == "batch" else [not info["passthrough"]]
    mirrored = np.array(prepared, dtype=bool) if any(prepared) and mirroring() else np.zeros(len(prepared), bool)
    ranked = _rank(softmax(_logits(predictor, stacked, mirrored)), top_k) if parts else None
    row = 0
    for item, (pixels, info, error) in chunk:
        if item.kind == "duplicate":
            yield Prediction(item.name, None, None, None, duplicate_of=item.source)
        elif error is not None:
            if on_error == "raise":
                raise error
            yield Prediction(item.name, None, None, None, error=error.problem, error_kind=error.kind)
        elif item.kind == "batch":
            for image in pixels:
                yield _record(None, ranked, row, predictor.classes, None, image, False)
                row += 1
        else:
            yield _record(item.name, ranked, row, predictor.classes, info, pixels, bool(mirrored[row]))
            row += 1


def _logits(predictor, stacked: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """(M, C) logits; for the rows `mirrored` says, the mean of the image's and its mirror image's.
    The mirror images go through the model on their own, so every other row's logits stay exactly
    what they are without mirroring (the batches they are run in do not change)."""
    logits = predictor.logits(stacked)
    if mirrored.any():
        flipped = predictor.logits(np.ascontiguousarray(stacked[mirrored][:, :, ::-1]))
        logits[mirrored] = 0.5 * (logits[mirrored] + flipped)
    return logits


def predict(model, inputs, top_k: int = 3, invert: str = "auto", on_error: str = "raise",
            device: str = "auto", batch_size: int | None = None, mirror: str = "auto") -> list[Prediction]:
    """Predict the class of every input; one `Prediction` per input, in order.

    model: a `.safetensors` or `.onnx` path, a `ModelFile` (fmnist.load_model) or a `Predictor`
    (load_predictor: reuse it across calls to skip loading).
    inputs: image file paths, directories (searched recursively for image files), "-" (stdin),
    PIL images, encoded image bytes, or numpy uint8 arrays: (N, 28, 28) and (28, 28) arrays are the
    model's input as they are (like the dataset's arrays); other shapes, (H, W) or (H, W, 3|4), are
    images to prepare. A single path, image or array needs no list.
    invert: auto (invert when the border is lighter than the object) | always | never.
    on_error: raise the first unreadable input's DataError, or record it in its Prediction.error.
    mirror: on: predict each prepared image (not a dataset-like 28x28 input, used exactly as it is)
    from the mean of its logits and its mirror image's; auto: on for models trained with flips and
    without flip TTA inside (it helps them; it hurts models trained without flips); off.
    Prediction.mirrored says which were.
    """
    return list(iter_predictions(model, inputs, top_k=top_k, invert=invert, on_error=on_error,
                                 device=device, batch_size=batch_size, mirror=mirror))


def _attempt(item: InputItem, spec: ImageSpec, invert: str):
    if item.kind == "duplicate":
        return None, None, None
    try:
        pixels, info = prepare_item(item, spec, invert)
        return pixels, info, None
    except DataError as exc:
        return None, None, exc


def _rank(probabilities: np.ndarray, top_k: int) -> tuple[list, list, list]:
    """Per row: the top-k class indices (most probable first, ties by index), their probabilities,
    and whether every output was finite — computed for the whole chunk at once."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
    top = np.take_along_axis(probabilities, order, axis=1).astype(np.float64)
    return order.tolist(), top.tolist(), np.isfinite(probabilities).all(axis=1).tolist()


def _record(name, ranked: tuple[list, list, list], row: int, classes: list[str], info, pixels,
            mirrored: bool) -> Prediction:
    indices, probabilities, finite = ranked[0][row], ranked[1][row], ranked[2][row]
    if not finite:
        return Prediction(name, None, None, None, error="the model's output is not finite (NaN or infinite)")
    top = [{"label": classes[i], "index": i, "probability": p} for i, p in zip(indices, probabilities)]
    return Prediction(name, classes[indices[0]], indices[0], probabilities[0], top, info, pixels=pixels,
                      mirrored=mirrored)

