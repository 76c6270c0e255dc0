"""`fmnist export`: a model file to ONNX, checked against PyTorch on the test images (or, when no data
is found, on random images) before it is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fmnist.data.dataset import load_dataset
from fmnist.errors import DataError, FmnistError
from fmnist.export import ExportResult, export_onnx
from fmnist.modelfile import load_model


def export_file(model_file: str | Path, out: str | Path | None = None, data: str | Path | None = None,
                log: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Export `model_file` to `out` (default: beside it, with the suffix .onnx)."""
    model_file = Path(model_file)
    target = Path(out) if out is not None else model_file.with_suffix(".onnx")
    if target.resolve() == model_file.resolve():
        raise FmnistError(f"--out {target}: would overwrite the model file")
    loaded = load_model(model_file, warn=False)  # export refuses non-finite weights itself, in one line
    try:
        dataset = load_dataset(data, download=False, log=log)
    except DataError as exc:
        if data is not None:
            raise
        log(f"no test images to check against ({exc}); checking on random images instead")
        dataset = None
    check_images, check_name = None, ""
    if dataset is not None and dataset.test.images.shape[1:] == (loaded.image_spec.size,) * 2:
        check_images, check_name = dataset.test.images, f"the {len(dataset.test):,} test images"
    return export_onnx(loaded, target, check_images=check_images, check_name=check_name)
