"""One model = one `.safetensors` file: the weights plus JSON metadata that rebuild the model.

Loading never unpickles: safetensors holds raw tensors and a string-to-string header. The header
records the architecture (registry name + arguments, or a full spec), class names, input shape,
preprocessing, training config, final metrics, the fmnist version, and a SHA-256 of the tensor
bytes, so a file whose weights were altered after saving is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from fmnist import __version__, models
from fmnist._io import atomic_path
from fmnist.errors import FmnistError, ModelFileError
from fmnist.image_spec import FASHION_SPEC, ImageSpec

FORMAT = "fmnist.model"
FORMAT_VERSION = 1
INPUT_SHAPE = [1, 28, 28]
# The model itself scales raw pixels (see models/layers.py: Rescale), so a caller only needs this.
# "image" is what the training images looked like (fmnist.image_spec.ImageSpec): `fmnist predict` makes a
# real-world image look the same. Files written before it was recorded get Fashion-MNIST's.
PREPROCESSING = {
    "input": "raw pixel values 0-255 (uint8 or float), shape (N, 1, 28, 28), light object on dark background",
    "inside_model": "x / 255",
}
REQUIRED = ("format", "format_version", "architecture", "classes", "input_shape", "weights_sha256")


def preprocessing_record(image_spec: ImageSpec = FASHION_SPEC) -> dict:
    """The `preprocessing` metadata of a model file (also embedded in exported ONNX files)."""
    record = dict(PREPROCESSING, image=image_spec.to_dict())
    if image_spec.background == "light":
        record["input"] = record["input"].replace("light object on dark background", "dark object on light background")
    return record


@dataclass
class ModelFile:
    """A loaded model and everything its file says about it."""

    model: nn.Module  # in eval mode; input (N, 1, 28, 28) raw pixels, output logits (N, classes)
    architecture: dict
    classes: list[str]
    input_shape: list[int] = field(default_factory=lambda: list(INPUT_SHAPE))
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    version: str = ""
    path: Path | None = None
    image_spec: ImageSpec = FASHION_SPEC  # what its training images looked like (see fmnist.images)

    @property
    def name(self) -> str:
        return self.architecture.get("name", "spec")


def _tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers (BatchNorm statistics), detached, contiguous, on the CPU."""
    return {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}


def save_model(
    path: str | Path,
    model: nn.Module,
    architecture: dict,
    classes: list[str] | tuple[str, ...],
    config: dict | None = None,
    metrics: dict | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    extra_metadata: dict | None = None,
    image_spec: ImageSpec = FASHION_SPEC,
) -> Path:
    """Write the model file atomically. `extra_*` carry resume state in checkpoints; `image_spec`
    says what the training images looked like (`fmnist.image_spec.measure_spec`)."""
    tensors = model_tensors(model)
    digest = _tensors_digest(tensors)
    for key, value in (extra_tensors or {}).items():
        tensors[f"extra.{key}"] = value.detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "fmnist_version": __version__,
        "architecture": json.dumps(architecture, sort_keys=True),
        "classes": json.dumps(list(classes)),
        "input_shape": json.dumps(INPUT_SHAPE),
        "preprocessing": json.dumps(preprocessing_record(image_spec), sort_keys=True),
        "config": json.dumps(config or {}, sort_keys=True, default=str),
        "metrics": json.dumps(metrics or {}, sort_keys=True),
        "weights_sha256": digest,
    }
    for key, value in (extra_metadata or {}).items():
        metadata[f"extra.{key}"] = json.dumps(value, default=str)
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # a full disk, say: safetensors raises its own error, not an OSError
            raise ModelFileError(path, f"cannot write ({exc})") from None
    return path


def read_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The raw tensors and metadata of a safetensors file, with one-line errors."""
    path = ModelFileError.require_file(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(path, f"not a valid safetensors file, or truncated ({message})") from None
    return tensors, metadata


_MISSING = object()


def _json_field(path: Path, metadata: dict[str, str], key: str, kind: type, default=_MISSING):
    """A metadata value, parsed and type-checked; `default` when the (optional) key is absent."""
    if key not in metadata and default is not _MISSING:
        return default
    try:
        value = json.loads(metadata[key])
    except (KeyError, json.JSONDecodeError):
        raise ModelFileError(path, f"metadata field {key!r} is missing or not valid JSON") from None
    if not isinstance(value, kind):
        raise ModelFileError(path, f"metadata field {key!r} must be a JSON {kind.__name__}")
    return value


def load_model(path: str | Path, device: str | torch.device = "cpu") -> ModelFile:
    """Rebuild a model from its file alone. The model comes back in eval mode on `device`."""
    path = Path(path)
    tensors, metadata = read_file(path)
    if metadata.get("format") != FORMAT:
        raise ModelFileError(path, "no fmnist metadata: not an fmnist model file")
    missing = [key for key in REQUIRED if key not in metadata]
    if missing:
        raise ModelFileError(path, f"metadata is missing {', '.join(missing)}")
    if metadata["format_version"] != str(FORMAT_VERSION):
        raise ModelFileError(path, f"format version {metadata['format_version']} is not supported (this fmnist reads {FORMAT_VERSION})")
    architecture = _json_field(path, metadata, "architecture", dict)
    classes = _json_field(path, metadata, "classes", list)
    if len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise ModelFileError(path, "metadata 'classes' must be a list of at least two names")
    input_shape = _json_field(path, metadata, "input_shape", list)
    if input_shape != INPUT_SHAPE:
        raise ModelFileError(path, f"input shape {input_shape} is not supported (fmnist models take {INPUT_SHAPE})")
    config = _json_field(path, metadata, "config", dict, default={})
    metrics = _json_field(path, metadata, "metrics", dict, default={})
    image_spec = image_spec_from(path, _json_field(path, metadata, "preprocessing", dict, default={}))
    weights = {key: value for key, value in tensors.items() if not key.startswith("extra.")}
    if _tensors_digest(weights) != metadata["weights_sha256"]:
        raise ModelFileError(path, "weights do not match their recorded SHA-256: the file was altered after saving")
    try:
        # Building initialises weights from the global RNG; loading must not disturb a caller's
        # random stream (an exact --resume depends on it), so it draws from a forked one.
        with torch.random.fork_rng(devices=[]):
            model = models.build(architecture)
    except FmnistError as exc:
        raise ModelFileError(path, f"cannot rebuild the architecture ({exc})") from None
    expected = model.state_dict()
    unexpected = sorted(set(weights) - set(expected))
    absent = sorted(set(expected) - set(weights))
    if unexpected or absent:
        detail = []
        if absent:
            detail.append(f"missing tensors {', '.join(absent[:3])}")
        if unexpected:
            detail.append(f"unexpected tensors {', '.join(unexpected[:3])}")
        raise ModelFileError(path, f"weights do not fit the architecture: {'; '.join(detail)}")
    for key, tensor in weights.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelFileError(
                path,
                f"tensor {key!r} has shape {tuple(tensor.shape)}, the architecture expects {tuple(expected[key].shape)}",
            )
    model.load_state_dict(weights)
    model.to(device).eval()
    return ModelFile(
        model=model,
        architecture=architecture,
        classes=classes,
        input_shape=input_shape,
        config=config,
        metrics=metrics,
        version=metadata.get("fmnist_version", ""),
        path=path,
        image_spec=image_spec,
    )


def image_spec_from(path: str | Path, preprocessing: dict) -> ImageSpec:
    """The ImageSpec in a file's `preprocessing` record; Fashion-MNIST's when none was recorded."""
    values = preprocessing.get("image")
    if values is None:
        return FASHION_SPEC
    if not isinstance(values, dict):
        raise ModelFileError(path, "metadata 'preprocessing.image' must be a JSON object")
    try:
        return ImageSpec.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"metadata 'preprocessing.image' is invalid ({exc})") from None


def read_extras(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The resume state stored beside the weights in a checkpoint (tensors and JSON values)."""
    tensors, metadata = read_file(path)
    extra_tensors = {key[len("extra."):]: value for key, value in tensors.items() if key.startswith("extra.")}
    extra_metadata = {}
    for key, value in metadata.items():
        if key.startswith("extra."):
            try:
                extra_metadata[key[len("extra."):]] = json.loads(value)
            except json.JSONDecodeError:
                raise ModelFileError(path, f"metadata field {key!r} is not valid JSON") from None
    return extra_tensors, extra_metadata
