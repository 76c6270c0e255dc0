"""The metadata both model formats carry (a `.safetensors` model file's header, an exported `.onnx`
file's metadata_props), read within bounds and checked against what fmnist models take.

Anyone can edit these fields, so every one is bounded (size, nesting depth: fmnist.bounded) before
it is parsed, and checked before it is used: the class names against the model's outputs, the image
spec against the model's input. No torch here: the ONNX runtime reads metadata too.
"""

from __future__ import annotations

from pathlib import Path

from fmnist.bounded import BoundsError, brief, one_line, parse_json
from fmnist.errors import ModelFileError
from fmnist.image_spec import FASHION_SPEC, ImageSpec
from fmnist.limits import MAX_FIELD_BYTES, MAX_FILE_BYTES

INPUT_SIZE = 28  # every fmnist model takes 28×28 images: the data (Dataset), specs and the write-ups' models
INPUT_SHAPE = [1, INPUT_SIZE, INPUT_SIZE]

_MISSING = object()
_JSON_NAMES = {dict: "object", list: "array", str: "string"}


def checked_file(path: str | Path) -> Path:
    """`path` as a Path when it is a non-empty file within MAX_FILE_BYTES; else a one-line error."""
    path = ModelFileError.require_file(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ModelFileError(path, f"{size:,} bytes, more than the limit of {MAX_FILE_BYTES:,} for a model file")
    return path


def json_field(path: str | Path, metadata: dict[str, str], key: str, kind: type | None = None, default=_MISSING):
    """A metadata field parsed as JSON within the bounds and type-checked (`kind`); `default` when
    the (optional) field is absent."""
    if key not in metadata:
        if default is not _MISSING:
            return default
        raise ModelFileError(path, f"metadata field {key!r} is missing")
    try:
        value = parse_json(metadata[key], MAX_FIELD_BYTES)
    except BoundsError as exc:
        raise ModelFileError(path, f"metadata field {key!r}: {exc}") from None
    if kind is not None and not isinstance(value, kind):
        raise ModelFileError(path, f"metadata field {key!r} must be a JSON {_JSON_NAMES[kind]}, got {brief(value)}")
    return value


def checked_classes(path: str | Path, classes: list, outputs: int | None) -> list[str]:
    """The class names: at least two printable strings, one per output of the model (`outputs`,
    None where the caller checks it itself)."""
    if len(classes) < 2 or not all(isinstance(name, str) for name in classes):
        raise ModelFileError(path, "metadata 'classes' must be a list of at least two names")
    if not all(name.isprintable() for name in classes):  # a newline in a name would forge output lines
        bad = next(name for name in classes if not name.isprintable())
        raise ModelFileError(path, f"metadata 'classes' holds a name with control characters: {brief(bad)}")
    if outputs is not None and len(classes) != outputs:
        raise ModelFileError(path, f"metadata 'classes' has {len(classes)} class names but the model has "
                                   f"{outputs} outputs: the names do not belong to these weights")
    return classes


def checked_image_spec(path: str | Path, preprocessing: dict) -> ImageSpec:
    """The ImageSpec in a file's `preprocessing` record (Fashion-MNIST's when none was recorded),
    whose size must be the model's input size, 28."""
    values = preprocessing.get("image")
    if values is None:
        return FASHION_SPEC
    if not isinstance(values, dict):
        raise ModelFileError(path, "metadata 'preprocessing.image' must be a JSON object")
    try:
        spec = ImageSpec.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"metadata 'preprocessing.image' is invalid ({one_line(exc)})") from None
    if spec.size != INPUT_SIZE:
        raise ModelFileError(path, f"metadata 'preprocessing.image' has size {brief(spec.size)}, but fmnist models take "
                                   f"{INPUT_SIZE}x{INPUT_SIZE} images")
    return spec
