"""Export a model file to ONNX, so it can run without PyTorch (onnxruntime, other runtimes).

The ONNX graph takes the same input as the PyTorch model — uint8 pixels (N, 1, 28, 28), any N —
and has two outputs, `logits` and `probabilities` (N, C). The model file's metadata (classes,
preprocessing and image spec, architecture, config, metrics, the weights' SHA-256) travels in the
ONNX file's metadata_props, so `fmnist predict model.onnx` needs nothing else. The file is written
under a temporary name, checked against PyTorch with onnxruntime, and only then renamed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fmnist._io import atomic_path
from fmnist.errors import FmnistError
from fmnist.modelfile import load_model, preprocessing_record
from fmnist.inference import ONNX_FORMAT, ONNX_INPUT, ONNX_LOGITS, ONNX_PROBABILITIES, OnnxPredictor, softmax

FORMAT_VERSION = 1
TOLERANCE = 1e-4  # largest difference allowed between onnxruntime's and PyTorch's outputs


@dataclass
class ExportResult:
    path: Path
    checked_images: int  # how many images the ONNX model was checked on
    checked_on: str  # which images (the test set, or random pixels when no data was found)
    max_logit_difference: float
    max_probability_difference: float
    same_predictions: bool


def export_onnx(model_file, out: str | Path, check_images: np.ndarray | None = None, check_name: str = "",
                opset: int | None = None) -> ExportResult:
    """Write `model_file` (a path or a loaded ModelFile) as ONNX to `out` and check it.

    `check_images` (N, 28, 28) uint8 are run through both runtimes; outputs must be finite and agree
    within 1e-4. Without them, 1,000 random images are used. A model whose weights are not finite
    (NaN, inf) is refused before anything is exported.
    """
    _require_onnx_packages()
    loaded = load_model(model_file, warn=False) if isinstance(model_file, (str, Path)) else model_file
    out = Path(out)
    if not loaded.finite:
        raise FmnistError(f"{loaded.path or 'model'}: the model's weights are not finite (NaN/inf); nothing was "
                          "exported")
    size = loaded.image_spec.size
    wrapper = _with_probabilities(loaded.model).eval()
    example = torch.zeros(2, 1, size, size, dtype=torch.uint8)
    with _quiet_exporter():
        try:
            program = torch.onnx.export(
                wrapper, (example,), input_names=[ONNX_INPUT], output_names=[ONNX_LOGITS, ONNX_PROBABILITIES],
                dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False,
                opset_version=opset, verbose=False)
        except Exception as exc:  # the exporter's own error types; the message says what it could not handle
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FmnistError(f"{loaded.path or 'model'}: ONNX export failed ({first})") from None
    proto = program.model_proto
    metadata = {
        "format": ONNX_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "fmnist_version": loaded.version,
        "architecture": json.dumps(loaded.architecture, sort_keys=True),
        "classes": json.dumps(list(loaded.classes)),
        "input_shape": json.dumps(list(loaded.input_shape)),
        "preprocessing": json.dumps(preprocessing_record(loaded.image_spec, onnx=True), sort_keys=True),
        "config": json.dumps(loaded.config, sort_keys=True, default=str),
        "metrics": json.dumps(loaded.metrics, sort_keys=True),
        "source": loaded.path.name if loaded.path else "",
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "fmnist"
    proto.doc_string = (f"fmnist model {loaded.name}: input {ONNX_INPUT} uint8 (N, 1, {size}, {size}) raw pixels; "
                        f"outputs {ONNX_LOGITS} and {ONNX_PROBABILITIES} (N, {len(loaded.classes)})")

    import onnx  # an optional dependency (the onnx extra): after _require_onnx_packages said what is missing

    if check_images is None:
        check_images = np.random.default_rng(0).integers(0, 256, size=(1000, size, size), dtype=np.uint8)
        check_name = "1,000 random images"
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
        result = _check(tmp, loaded, check_images)
        if not result.pop("finite"):
            raise FmnistError(f"{out}: the model's outputs are not finite (NaN/inf) on {check_name}; nothing was "
                              "written")
        # `not <=`: a NaN difference never compares greater than the tolerance, and must not pass
        if not (result["max_logit_difference"] <= TOLERANCE and result["max_probability_difference"] <= TOLERANCE):
            raise FmnistError(
                f"{out}: the exported model differs from PyTorch by {result['max_logit_difference']:.2e} "
                f"(logits) on {check_name}, more than {TOLERANCE:g}; nothing was written")
    return ExportResult(out, len(check_images), check_name, **result)


def _with_probabilities(model):
    """The model wrapped so the graph returns its logits and their softmax."""

    class WithProbabilities(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, pixels: torch.Tensor):  # (N, 1, S, S) uint8
            logits = self.inner(pixels).float()  # (N, C)
            return logits, torch.softmax(logits, dim=1)

    return WithProbabilities(model)


def _check(path: Path, loaded, check_images: np.ndarray) -> dict:
    """Run both runtimes on the same images; the largest differences and whether argmaxes agree."""
    onnx_predictor = OnnxPredictor(path, device="cpu")
    onnx_logits = onnx_predictor.logits(check_images)
    onnx_probabilities = np.concatenate([
        onnx_predictor.session.run([ONNX_PROBABILITIES], {ONNX_INPUT: check_images[i : i + 1000, None]})[0]
        for i in range(0, len(check_images), 1000)])
    model = loaded.model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        torch_logits = np.concatenate([
            model(torch.from_numpy(check_images[i : i + 1000]).unsqueeze(1).to(device)).float().cpu().numpy()
            for i in range(0, len(check_images), 1000)])
    torch_probabilities = softmax(torch_logits)
    outputs = (onnx_logits, onnx_probabilities, torch_logits, torch_probabilities)
    return {
        "finite": all(bool(np.isfinite(array).all()) for array in outputs),
        "max_logit_difference": float(np.abs(onnx_logits - torch_logits).max()),
        "max_probability_difference": float(np.abs(onnx_probabilities - torch_probabilities).max()),
        "same_predictions": bool((onnx_logits.argmax(1) == torch_logits.argmax(1)).all()),
    }


def _require_onnx_packages() -> None:
    missing = []
    for package in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise FmnistError(f"ONNX export needs {', '.join(missing)}: pip install 'fmnist[onnx]'")


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs progress and warnings (e.g. torchvision operators it skips) that mean
    nothing to a user exporting a CNN; errors still surface as exceptions."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
