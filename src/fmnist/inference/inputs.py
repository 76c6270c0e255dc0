"""What can be predicted, as a stream of items: files, folders (searched), stdin, bytes, PIL images,
uint8 arrays; and each item prepared into the model's (S, S) input by `fmnist.images`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist import image_files, images
from fmnist.errors import DataError, FmnistError
from fmnist.image_spec import FASHION_SPEC, ImageSpec
from fmnist.inference.records import STDIN

CHUNK = 1024  # images decoded and predicted together at most; results stream out chunk by chunk


@dataclass
class InputItem:
    """One input to predict, before it is decoded."""

    name: str | None  # what records and errors call it
    source: Any  # a path, bytes, a PIL image, ready (K, S, S) uint8 images, an error message, the first name
    kind: str  # file | stdin | bytes | image | batch | error | duplicate | pause

    @property
    def count(self) -> int:
        return len(self.source) if self.kind == "batch" else 0 if self.kind == "pause" else 1


# Before an input that may take a while to arrive (a folder to search, standard input): what is ready
# is predicted and handed on first.
PAUSE = InputItem(None, None, "pause")


def expand_inputs(inputs, spec: ImageSpec = FASHION_SPEC) -> Iterator[InputItem]:
    """Every input as an item, directories expanded (recursively, in natural order). A file reached
    again in one call (named twice, a link, a hard link, two folders that overlap) is a `duplicate`
    item naming the first path: every real file is predicted once."""
    from PIL import Image  # Pillow on first use: `import fmnist` stays light

    if isinstance(inputs, (str, os.PathLike, bytes, np.ndarray, Image.Image)):
        inputs = [inputs]
    seen: dict[tuple[int, int], str] = {}  # (device, inode) → the first path that reached the file
    for entry in inputs:
        if isinstance(entry, np.ndarray):
            yield from _array_items(entry, spec)
        elif isinstance(entry, Image.Image):
            yield InputItem(None, entry, "image")
        elif isinstance(entry, (bytes, bytearray)):
            yield InputItem(None, bytes(entry), "bytes")
        elif isinstance(entry, (str, os.PathLike)):
            name = os.fspath(entry)
            if name == STDIN:
                yield PAUSE
                yield InputItem(STDIN, None, "stdin")
            elif not name:
                yield InputItem(name, "empty path", "error")  # Path("") would mean the current folder
            elif Path(name).is_dir():
                yield PAUSE
                yield from (_once(item, seen) for item in _directory_items(name))
            else:
                yield _once(InputItem(name, Path(name), "file"), seen)
        else:
            raise FmnistError(f"inputs: expected paths, PIL images, bytes or uint8 arrays, got {type(entry).__name__}")


def _once(item: InputItem, seen: dict[tuple[int, int], str]) -> InputItem:
    """A file item, or a duplicate item when its file was reached before in this call."""
    if item.kind != "file":
        return item
    try:
        status = os.stat(item.source)
    except OSError:  # missing, unreadable: reading it says why
        return item
    key = (status.st_dev, status.st_ino)
    if key in seen:
        return InputItem(item.name, seen[key], "duplicate")
    seen[key] = item.name
    return item


def _directory_items(name: str) -> Iterator[InputItem]:
    """The image files found under a directory, with an error item for each folder that could not
    be read and one when there is no image at all."""
    problems: list[DataError] = []
    found = image_files.find_images(name, on_error=problems.append)
    for problem in problems:
        yield InputItem(problem.path, problem.problem, "error")
    if not found and not problems:
        suffixes = ", ".join(image_files.IMAGE_SUFFIXES)
        yield InputItem(name, f"no image files in this directory (looked for {suffixes})", "error")
    yield from (InputItem(str(path), path, "file") for path in found)


def _array_items(array: np.ndarray, spec: ImageSpec) -> Iterator[InputItem]:
    from PIL import Image  # Pillow on first use: `import fmnist` stays light

    size = spec.size
    if array.ndim == 3 and array.shape[1:] == (size, size):
        batch = array  # (N, S, S): model-ready images
    elif array.ndim == 2 and array.shape == (size, size):
        batch = array[None]
    else:
        if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):  # any-size grey or RGB(A) image
            if array.dtype != np.uint8:
                raise FmnistError(f"inputs: an image array of shape {array.shape} must be uint8, got {array.dtype}")
            yield InputItem(None, Image.fromarray(array), "image")
            return
        raise FmnistError(f"inputs: expected uint8 images of shape (N, {size}, {size}) or ({size}, {size}), "
                          f"got shape {array.shape}")
    if array.dtype != np.uint8:
        hint = " (pixels in 0-1? multiply by 255 first)" if array.dtype.kind == "f" and array.size and array.max() <= 1 else ""
        raise FmnistError(f"inputs: images must be uint8 pixel values 0-255, got {array.dtype}{hint}")
    for start in range(0, len(batch), CHUNK):  # the model's input as it is, in slices (no copies)
        yield InputItem(None, batch[start : start + CHUNK], "batch")


def prepare_item(item: InputItem, spec: ImageSpec, invert: str) -> tuple[np.ndarray, dict | None]:
    """(the model's input, how it was prepared); raises DataError for an unreadable input."""
    if item.kind == "batch":
        return item.source, None
    if item.kind == "error":
        raise DataError(item.name, item.source)
    if item.kind == "image":
        with images.converting("<image>"):
            prepared = images.prepare(item.source, spec, invert)
    elif item.kind == "stdin":  # read within the image byte limit, like a file
        prepared = images.load(sys.stdin.buffer, spec, invert, name="<stdin>")
    elif item.kind == "bytes":
        prepared = images.load(item.source, spec, invert, name="<bytes>")
    else:
        prepared = images.load(item.source, spec, invert, name=item.name)
    return prepared.pixels, prepared.info()

