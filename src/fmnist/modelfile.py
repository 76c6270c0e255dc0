"""One model = one `.safetensors` file: the weights plus JSON metadata that rebuild the model.

Loading never unpickles: safetensors holds raw tensors and a string-to-string header. The header
records the architecture (registry name + arguments, or a full spec), class names, input shape,
preprocessing, training config, final metrics, the fmnist version, a SHA-256 of the tensor bytes
(`weights_sha256`) and a SHA-256 of every other metadata field (`content_sha256`; weights_sha256 is
among them, so it covers the weights too). A file altered after saving is refused.

A digest proves integrity, not authorship: anyone can edit a file and recompute both. So a file is
read as if a stranger wrote it, and everything is checked before it is used, in one path
(`_read_checked`, used by `load_model` and `read_extras`): the file's and header's sizes, every
metadata field's size and nesting depth (before it is parsed), the architecture's size (built on
PyTorch's meta device: shapes without memory), its tensors' names and shapes against those in the
file, its output width against the class names, and the image size against the model's input, all
before any weight is read or any model allocated.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from fmnist import __version__, models
from fmnist._io import atomic_path
from fmnist.bounded import brief, one_line
from fmnist.errors import FmnistError, FmnistWarning, ModelFileError
from fmnist.image_spec import FASHION_SPEC, ImageSpec
from fmnist.limits import MAX_HEADER_BYTES
from fmnist.model_metadata import INPUT_SHAPE, checked_classes, checked_file, checked_image_spec, json_field

FORMAT = "fmnist.model"
FORMAT_VERSION = 1
CONTENT_KEY = "content_sha256"  # files written before it existed lack it: see `_checked_metadata`
# The model itself scales raw pixels (see models/layers.py: Rescale), so a caller only needs this.
# "image" is what the training images looked like (fmnist.image_spec.ImageSpec): `fmnist predict` makes a
# real-world image look the same. Files written before it was recorded get Fashion-MNIST's.
PREPROCESSING = {
    "input": "raw pixel values 0-255 (uint8 or float), shape (N, 1, 28, 28), light object on dark background",
    "inside_model": "x / 255",
}
REQUIRED = ("format", "format_version", "architecture", "classes", "input_shape", "weights_sha256")


def preprocessing_record(image_spec: ImageSpec = FASHION_SPEC, onnx: bool = False) -> dict:
    """The `preprocessing` metadata of a model file; with `onnx`, of an exported ONNX file, whose
    graph takes uint8 pixels only (the PyTorch model takes uint8 or float)."""
    record = dict(PREPROCESSING, image=image_spec.to_dict())
    if onnx:
        record["input"] = record["input"].replace("(uint8 or float)", "(uint8)")
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
    finite: bool = True  # every weight is a finite number (a run that diverged saves NaN)

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


def content_digest(metadata: dict[str, str]) -> str:
    """SHA-256 of every metadata field but CONTENT_KEY itself, weights_sha256 among them: so it covers
    the weights and the metadata. The fields are hashed as one canonical JSON object (sorted keys)."""
    fields = {key: value for key, value in metadata.items() if key != CONTENT_KEY}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
    metadata[CONTENT_KEY] = content_digest(metadata)
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # a full disk, say: safetensors raises its own error, not an OSError
            raise ModelFileError(path, f"cannot write ({exc})") from None
    return path


@dataclass
class _Checked:
    """A model file's metadata, checked, and its tensors (those asked for)."""

    fields: dict  # ModelFile's fields but the model: architecture, classes, input_shape, config, ...
    extras: dict  # the resume state's JSON values (extra.* metadata)
    tensors: dict[str, torch.Tensor]


def _read_checked(path: str | Path, extras: bool = False) -> _Checked:
    """Everything a model file says, each part checked before the next is read (see the module's
    docstring): the weights, and with `extras` the resume state's tensors too."""
    path = checked_file(path)
    with open(path, "rb") as handle:
        header = int.from_bytes(handle.read(8), "little")
    if header > path.stat().st_size - 8:
        raise ModelFileError(path, f"not a valid safetensors file, or truncated (a header of {header:,} bytes "
                                   "announced, more than the file holds)")
    if header > MAX_HEADER_BYTES:
        raise ModelFileError(path, f"a safetensors header of {header:,} bytes, more than the limit of "
                                   f"{MAX_HEADER_BYTES:,}: not a model file fmnist wrote")
    metadata, shapes = _safetensors(path, lambda handle: (
        handle.metadata() or {}, {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}))
    checked = _checked_metadata(path, metadata, shapes)
    wanted = [key for key in shapes if extras or not key.startswith("extra.")]
    checked.tensors = _safetensors(path, lambda handle: {key: handle.get_tensor(key) for key in wanted})
    weights = {key: value for key, value in checked.tensors.items() if not key.startswith("extra.")}
    if _tensors_digest(weights) != metadata["weights_sha256"]:
        raise ModelFileError(path, "weights do not match their recorded SHA-256: the file was altered after saving")
    return checked


def _safetensors(path: Path, read):
    """`read(handle)` on the open file, with safetensors' errors as one line."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return read(handle)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(path, f"not a valid safetensors file, or truncated ({one_line(exc)})") from None


def _checked_metadata(path: Path, metadata: dict[str, str], shapes: dict[str, tuple[int, ...]]) -> _Checked:
    """The metadata, parsed within bounds and checked against the tensors' shapes in the header."""
    if metadata.get("format") != FORMAT:
        raise ModelFileError(path, "no fmnist metadata: not an fmnist model file")
    missing = [key for key in REQUIRED if key not in metadata]
    if missing:
        raise ModelFileError(path, f"metadata is missing {', '.join(missing)}")
    if metadata["format_version"] != str(FORMAT_VERSION):
        raise ModelFileError(path, f"format version {brief(metadata['format_version'])} is not supported "
                                   f"(this fmnist reads {FORMAT_VERSION})")
    # The rule for files written before CONTENT_KEY existed: their weights are checked by
    # weights_sha256 alone, and their metadata, unprotected, by the same checks as everyone's.
    if CONTENT_KEY in metadata and metadata[CONTENT_KEY] != content_digest(metadata):
        raise ModelFileError(path, "metadata do not match their recorded SHA-256: the file was altered after saving")
    fields = {
        "architecture": json_field(path, metadata, "architecture", dict),
        "classes": json_field(path, metadata, "classes", list),
        "input_shape": json_field(path, metadata, "input_shape", list),
        "config": json_field(path, metadata, "config", dict, default={}),
        "metrics": json_field(path, metadata, "metrics", dict, default={}),
        "image_spec": checked_image_spec(path, json_field(path, metadata, "preprocessing", dict, default={})),
        "version": metadata.get("fmnist_version", "")[:100],
        "path": path,
    }
    extras = {key[len("extra."):]: json_field(path, metadata, key) for key in metadata if key.startswith("extra.")}
    if fields["input_shape"] != INPUT_SHAPE:
        raise ModelFileError(path, f"input shape {brief(fields['input_shape'])} is not supported "
                                   f"(fmnist models take {INPUT_SHAPE})")
    checked_classes(path, fields["classes"], None)
    outputs = _check_architecture(path, fields["architecture"], shapes)
    checked_classes(path, fields["classes"], outputs)
    return _Checked(fields, extras, {})


def _check_architecture(path: Path, architecture: dict, shapes: dict[str, tuple[int, ...]]) -> int:
    """Build the architecture on the meta device (no memory), refuse it over the size bounds or when
    its tensors differ from the file's in name or shape; its output width (the number of classes)."""
    try:
        skeleton = models.skeleton(architecture)
    except FmnistError as exc:
        raise ModelFileError(path, f"cannot rebuild the architecture ({exc})") from None
    expected = {key: tuple(tensor.shape) for key, tensor in skeleton.state_dict().items()}
    weights = {key: shape for key, shape in shapes.items() if not key.startswith("extra.")}
    unexpected, absent = set(weights) - set(expected), set(expected) - set(weights)
    if unexpected or absent:
        detail = []
        if absent:
            detail.append(f"missing tensors {', '.join(sorted(absent)[:3])}")
        if unexpected:
            detail.append(f"unexpected tensors {', '.join(brief(key) for key in sorted(unexpected)[:3])}")
        raise ModelFileError(path, f"weights do not fit the architecture: {'; '.join(detail)}")
    for key, shape in weights.items():
        if shape != expected[key]:
            raise ModelFileError(path, f"tensor {key!r} has shape {shape}, the architecture expects {expected[key]}")
    try:
        with torch.no_grad():
            logits = skeleton.eval()(torch.zeros((1, *INPUT_SHAPE), dtype=torch.uint8, device="meta"))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ModelFileError(path, f"the architecture does not take {INPUT_SHAPE[1]}x{INPUT_SHAPE[2]} images with "
                                   f"{INPUT_SHAPE[0]} channel ({one_line(exc)})") from None
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ModelFileError(path, "the architecture does not return logits (N, classes)")
    return int(logits.shape[1])


def load_model(path: str | Path, device: str | torch.device = "cpu", warn: bool = True) -> ModelFile:
    """Rebuild a model from its file alone. The model comes back in eval mode on `device`. Weights
    that are not finite (NaN, inf) set `finite` False and, with `warn`, give an FmnistWarning."""
    checked = _read_checked(path)
    # Building initialises weights from the global RNG; loading must not disturb a caller's random
    # stream (an exact --resume depends on it), so it draws from a forked one.
    with torch.random.fork_rng(devices=[]):
        model = models.build(checked.fields["architecture"])
    model.load_state_dict(checked.tensors)
    model.to(device).eval()
    finite = all(bool(torch.isfinite(tensor).all()) for tensor in checked.tensors.values() if tensor.is_floating_point())
    loaded = ModelFile(model=model, finite=finite, **checked.fields)
    if not finite and warn:
        warnings.warn(FmnistWarning(f"{loaded.path}: the model's weights are not finite (NaN/inf): its scores "
                                    "mean nothing"), stacklevel=2)
    return loaded


def read_extras(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The resume state stored beside the weights in a checkpoint (tensors and JSON values), read
    and checked as `load_model` reads a file."""
    checked = _read_checked(path, extras=True)
    tensors = {key[len("extra."):]: value for key, value in checked.tensors.items() if key.startswith("extra.")}
    return tensors, checked.extras
