"""Predict with a saved model: image files, PIL images or uint8 arrays → one record per input.

    import fmnist
    fmnist.predict("runs/b/model.safetensors", ["shirt.jpg", "photos/"])   # files and directories
    fmnist.predict(loaded_model_file, test_images[:100])                     # uint8 (N, 28, 28), as they are

Two runtimes behind one interface. A `.safetensors` model file runs in PyTorch; an `.onnx` file
written by `fmnist export` runs in onnxruntime, and then torch is never imported (importing it
alone takes seconds on a small machine). Images go through `fmnist.images.prepare`, driven by the
ImageSpec the model file records.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist import image_files, images
from fmnist.errors import DataError, FmnistError, ModelFileError
from fmnist.images import FASHION_SPEC, ImageSpec

ONNX_FORMAT = "fmnist.onnx"  # the `format` metadata of an ONNX file written by `fmnist export`
ONNX_INPUT, ONNX_LOGITS, ONNX_PROBABILITIES = "pixels", "logits", "probabilities"
STDIN = "-"
CHUNK = 1024  # images decoded and predicted together; results stream out chunk by chunk


# --------------------------------------------------------------------------- records


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
    pixels: np.ndarray | None = field(default=None, repr=False)  # (28, 28) uint8: what the model saw

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        """The JSON record (`fmnist predict --json`)."""
        record: dict[str, Any] = {"path": self.path}
        if self.error is not None:
            record["error"] = self.error
            return record
        record.update(label=self.label, index=self.index, probability=self.probability, top_k=self.top_k)
        if self.input is not None:
            record["input"] = self.input
        return record


# --------------------------------------------------------------------------- runtimes


class Predictor:
    """A model ready to predict: class names, the ImageSpec its inputs must match, and logits."""

    runtime = "none"
    classes: list[str]
    image_spec: ImageSpec
    path: Path | None
    batch_size: int

    def _run(self, pixels: np.ndarray) -> np.ndarray:  # (B, S, S) uint8 → (B, C) float32
        raise NotImplementedError

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """(N, C) float32 logits for uint8 images (N, S, S), in batches."""
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        if not len(pixels):
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate([self._run(pixels[i : i + self.batch_size]) for i in range(0, len(pixels), self.batch_size)])

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, C) softmax probabilities (float64 arithmetic, float32 result)."""
        return softmax(self.logits(pixels))

    def describe(self) -> str:
        return f"{self.path or 'model'} ({self.runtime})"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class TorchPredictor(Predictor):
    """A `.safetensors` model in PyTorch, run through a copy rewritten for inference
    (fmnist.engine.fast_inference: channels-last, in-place activations, cheaper pooling and
    flattening); the caller's model is untouched."""

    runtime = "torch"

    def __init__(self, model_file, device: str = "auto", batch_size: int | None = None):
        import torch

        from fmnist.device import resolve_device
        from fmnist.engine.fast_inference import inference_copy

        self.model_file = model_file
        self.classes = list(model_file.classes)
        self.image_spec = model_file.image_spec
        self.path = model_file.path
        self.device = resolve_device(device)
        self.batch_size = batch_size or (128 if self.device.type == "cpu" else 2048)  # CPU: measured best of 64-1024
        self.model = inference_copy(model_file.model, self.device, input_size=self.image_spec.size)
        self._torch = torch

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        torch = self._torch
        if not pixels.flags.writeable:  # a read-only array (np.load with mmap_mode="r"): torch wants its own
            pixels = pixels.copy()
        with torch.inference_mode():
            x = torch.from_numpy(pixels).unsqueeze(1).to(self.device)  # (B, 1, S, S) uint8
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()


class OnnxPredictor(Predictor):
    """An `.onnx` file written by `fmnist export`, run by onnxruntime (torch is not imported)."""

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "auto", batch_size: int | None = None):
        path = ModelFileError.require_file(path)
        try:
            import onnxruntime
        except ImportError:
            raise FmnistError(f"{path}: running an ONNX model needs onnxruntime (pip install 'fmnist[onnx]')") from None
        # No usage telemetry from a command-line tool; and errors only on stderr: otherwise every run
        # with a read-only home directory warns that the telemetry ID could not be saved.
        onnxruntime.disable_telemetry_events()
        onnxruntime.set_default_logger_severity(3)
        providers = _onnx_providers(onnxruntime, device)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelFileError(path, f"not a valid ONNX model ({message[:200]})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if metadata.get("format") != ONNX_FORMAT:
            raise ModelFileError(path, "no fmnist metadata: not an ONNX file written by `fmnist export`")
        try:
            self.classes = json.loads(metadata["classes"])
            preprocessing = json.loads(metadata.get("preprocessing", "{}"))
            self.image_spec = ImageSpec.from_dict(preprocessing["image"]) if "image" in preprocessing else FASHION_SPEC
            self.metadata = {key: json.loads(value) if key in ("architecture", "config", "metrics") else value
                             for key, value in metadata.items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(path, f"fmnist metadata is incomplete or invalid ({exc})") from None
        if not (isinstance(self.classes, list) and len(self.classes) >= 2 and all(isinstance(c, str) for c in self.classes)):
            raise ModelFileError(path, "metadata 'classes' must be a list of at least two names")
        inputs = {item.name: item for item in self.session.get_inputs()}
        if ONNX_INPUT not in inputs or inputs[ONNX_INPUT].type != "tensor(uint8)":
            raise ModelFileError(path, f"expected a uint8 input named {ONNX_INPUT!r}")
        self.path = path
        self.device = "cuda" if providers[0].startswith("CUDA") else "cpu"
        self.batch_size = batch_size or 64  # measured: small batches stay in cache (52k images/s at 64, 37k at 1024)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        logits = self.session.run([ONNX_LOGITS], {ONNX_INPUT: pixels[:, None]})[0]  # (B, 1, S, S) → (B, C)
        return np.asarray(logits, dtype=np.float32)


def _onnx_providers(onnxruntime, device: str) -> list[str]:
    available = onnxruntime.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise FmnistError(f"--device {device}: this onnxruntime has no CUDA support (install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise FmnistError(f"--device {device}: expected one of auto, cpu, cuda")
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def load_predictor(model, device: str = "auto", batch_size: int | None = None) -> Predictor:
    """A Predictor for a model path (`.onnx` → onnxruntime, else a `.safetensors` model file), a
    loaded `ModelFile`, or a Predictor (returned as it is)."""
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix.lower() == ".onnx":
            return OnnxPredictor(path, device=device, batch_size=batch_size)
        from fmnist.modelfile import load_model

        return TorchPredictor(load_model(path), device=device, batch_size=batch_size)
    if type(model).__name__ == "ModelFile" and hasattr(model, "model") and hasattr(model, "classes"):
        return TorchPredictor(model, device=device, batch_size=batch_size)
    raise TypeError(f"model: expected a path (.safetensors or .onnx), a ModelFile (fmnist.load_model) or a "
                    f"Predictor, got {type(model).__name__}")


# --------------------------------------------------------------------------- inputs


@dataclass
class _Item:
    name: str | None  # what records and errors call it
    source: Any  # a path, bytes, a PIL image, ready (K, S, S) uint8 images, or an error message
    kind: str  # file | stdin | bytes | image | batch | error

    @property
    def count(self) -> int:
        return len(self.source) if self.kind == "batch" else 1


def expand_inputs(inputs, spec: ImageSpec = FASHION_SPEC) -> Iterator[_Item]:
    """Every input as an item, directories expanded (recursively, in natural order)."""
    from PIL import Image

    if isinstance(inputs, (str, os.PathLike, bytes, np.ndarray, Image.Image)):
        inputs = [inputs]
    for entry in inputs:
        if isinstance(entry, np.ndarray):
            yield from _array_items(entry, spec)
        elif isinstance(entry, Image.Image):
            yield _Item(None, entry, "image")
        elif isinstance(entry, (bytes, bytearray)):
            yield _Item(None, bytes(entry), "bytes")
        elif isinstance(entry, (str, os.PathLike)):
            name = os.fspath(entry)
            if name == STDIN:
                yield _Item(STDIN, None, "stdin")
            elif not name:
                yield _Item(name, "empty path", "error")  # Path("") would mean the current folder
            elif Path(name).is_dir():
                yield from _directory_items(name)
            else:
                yield _Item(name, Path(name), "file")
        else:
            raise TypeError(f"inputs: expected paths, PIL images, bytes or uint8 arrays, got {type(entry).__name__}")


def _directory_items(name: str) -> Iterator[_Item]:
    """The image files found under a directory, with an error item for each folder that could not
    be read and one when there is no image at all."""
    problems: list[DataError] = []
    found = image_files.find_images(name, on_error=problems.append)
    for problem in problems:
        yield _Item(problem.path, problem.problem, "error")
    if not found and not problems:
        suffixes = ", ".join(image_files.IMAGE_SUFFIXES)
        yield _Item(name, f"no image files in this directory (looked for {suffixes})", "error")
    yield from (_Item(str(path), path, "file") for path in found)


def _array_items(array: np.ndarray, spec: ImageSpec) -> Iterator[_Item]:
    from PIL import Image

    size = spec.size
    if array.ndim == 3 and array.shape[1:] == (size, size):
        batch = array  # (N, S, S): model-ready images
    elif array.ndim == 2 and array.shape == (size, size):
        batch = array[None]
    else:
        if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):  # any-size grey or RGB(A) image
            if array.dtype != np.uint8:
                raise FmnistError(f"inputs: an image array of shape {array.shape} must be uint8, got {array.dtype}")
            yield _Item(None, Image.fromarray(array), "image")
            return
        raise FmnistError(f"inputs: expected uint8 images of shape (N, {size}, {size}) or ({size}, {size}), "
                          f"got shape {array.shape}")
    if array.dtype != np.uint8:
        hint = " (pixels in 0-1? multiply by 255 first)" if array.dtype.kind == "f" and array.size and array.max() <= 1 else ""
        raise FmnistError(f"inputs: images must be uint8 pixel values 0-255, got {array.dtype}{hint}")
    for start in range(0, len(batch), CHUNK):  # the model's input as it is, in slices (no copies)
        yield _Item(None, batch[start : start + CHUNK], "batch")


def _prepare(item: _Item, spec: ImageSpec, invert: str) -> tuple[np.ndarray, dict | None]:
    """(the model's input, how it was prepared); raises DataError for an unreadable input."""
    if item.kind == "batch":
        return item.source, None
    if item.kind == "error":
        raise DataError(item.name, item.source)
    if item.kind == "image":
        with images.converting("<image>"):
            prepared = images.prepare(item.source, spec, invert)
    elif item.kind == "stdin":
        prepared = images.load(sys.stdin.buffer.read(), spec, invert, name="<stdin>")
    elif item.kind == "bytes":
        prepared = images.load(item.source, spec, invert, name="<bytes>")
    else:
        prepared = images.load(item.source, spec, invert, name=item.name)
    return prepared.pixels, prepared.info()


# --------------------------------------------------------------------------- predicting


def iter_predictions(
    model,
    inputs,
    top_k: int = 3,
    invert: str = "auto",
    on_error: str = "raise",
    device: str = "auto",
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Prediction]:
    """Predictions in input order, streamed chunk by chunk (see `predict`)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise FmnistError(f"top_k must be a positive integer, got {top_k!r}")
    if invert not in images.INVERT_CHOICES:
        raise FmnistError(f"invert must be one of {', '.join(images.INVERT_CHOICES)}, got {invert!r}")
    if on_error not in ("raise", "record"):
        raise FmnistError(f"on_error must be raise or record, got {on_error!r}")
    predictor = load_predictor(model, device=device, batch_size=batch_size)
    spec = predictor.image_spec
    items = expand_inputs(inputs, spec)
    # Files are decoded one after another: measured on two cores, decoding threads gained nothing on
    # photos (the work holds the GIL more than it releases it) and lost a third on small PNGs.
    while True:
        chunk = _take(items, CHUNK)
        if not chunk:
            return
        prepared = [_attempt(item, spec, invert) for item in chunk]
        # Every readable input's pixels, stacked once: (M, S, S); a lone array slice is used as it is.
        parts = [pixels if item.kind == "batch" else pixels[None]
                 for item, (pixels, _, _) in zip(chunk, prepared) if pixels is not None]
        stacked = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else None
        ranked = _rank(predictor.probabilities(stacked), top_k) if parts else None
        row = 0
        for item, (pixels, info, error) in zip(chunk, prepared):
            if error is not None:
                if on_error == "raise":
                    raise error
                yield Prediction(item.name, None, None, None, error=error.problem)
            elif item.kind == "batch":
                for image in pixels:
                    yield _record(None, ranked, row, predictor.classes, None, image)
                    row += 1
            else:
                yield _record(item.name, ranked, row, predictor.classes, info, pixels)
                row += 1
        if progress is not None:
            progress(sum(item.count for item in chunk))


def predict(model, inputs, top_k: int = 3, invert: str = "auto", on_error: str = "raise",
            device: str = "auto", batch_size: int | None = None) -> list[Prediction]:
    """Predict the class of every input; one `Prediction` per input, in order.

    model: a `.safetensors` or `.onnx` path, a `ModelFile` (fmnist.load_model) or a `Predictor`
    (load_predictor: reuse it across calls to skip loading).
    inputs: image file paths, directories (searched recursively for image files), "-" (stdin),
    PIL images, encoded image bytes, or numpy uint8 arrays: (N, 28, 28) and (28, 28) arrays are the
    model's input as they are (like the dataset's arrays); other shapes, (H, W) or (H, W, 3|4), are
    images to prepare. A single path, image or array needs no list.
    invert: auto (invert when the border is lighter than the object) | always | never.
    on_error: raise the first unreadable input's DataError, or record it in its Prediction.error.
    """
    return list(iter_predictions(model, inputs, top_k=top_k, invert=invert, on_error=on_error,
                                 device=device, batch_size=batch_size))


def _take(items: Iterator[_Item], count: int) -> list[_Item]:
    """The next items, up to `count` images in all (an array slice counts as its images)."""
    chunk, images_in_chunk = [], 0
    for item in items:
        chunk.append(item)
        images_in_chunk += item.count
        if images_in_chunk >= count:
            break
    return chunk


def _attempt(item: _Item, spec: ImageSpec, invert: str):
    try:
        pixels, info = _prepare(item, spec, invert)
        return pixels, info, None
    except DataError as exc:
        return None, None, exc


def _rank(probabilities: np.ndarray, top_k: int) -> tuple[list, list, list]:
    """Per row: the top-k class indices (most probable first, ties by index), their probabilities,
    and whether every output was finite — computed for the whole chunk at once."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
    top = np.take_along_axis(probabilities, order, axis=1).astype(np.float64)
    return order.tolist(), top.tolist(), np.isfinite(probabilities).all(axis=1).tolist()


def _record(name, ranked: tuple[list, list, list], row: int, classes: list[str], info, pixels) -> Prediction:
    indices, probabilities, finite = ranked[0][row], ranked[1][row], ranked[2][row]
    if not finite:
        return Prediction(name, None, None, None, error="the model's output is not finite (NaN or infinite)")
    top = [{"label": classes[i], "index": i, "probability": p} for i, p in zip(indices, probabilities)]
    return Prediction(name, classes[indices[0]], indices[0], probabilities[0], top, info, pixels=pixels)


def format_line(prediction: Prediction) -> str:
    """`shirt.jpg: Pullover (2) 97.3%  top-3: Pullover 97.3%, Shirt 1.9%, Coat 0.4%`"""
    name = prediction.path if prediction.path is not None else "<image>"
    line = f"{name}: {prediction.label} ({prediction.index}) {prediction.probability:.1%}"
    if len(prediction.top_k) > 1:
        ranked = ", ".join(f"{entry['label']} {entry['probability']:.1%}" for entry in prediction.top_k)
        line += f"  top-{len(prediction.top_k)}: {ranked}"
    return line


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
