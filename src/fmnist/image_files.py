"""Reading image files safely: decode one file (checked before and while decoding), find image files.

Every failure is a one-line `DataError(name, problem)`: no such file, permission denied, empty, not an
image, a format fmnist does not read, too many pixels (refused from the header, before decoding),
truncated or corrupt. Only PNG, JPEG, BMP, GIF, TIFF and WebP are decoded, whatever the suffix says:
Pillow knows more formats (EPS among them, which it hands to Ghostscript), and an image classifier
should not run those on files from the internet.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fmnist._io import open_for_reading, silenced_stderr
from fmnist.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Pillow's names. Pillow's JPEG opener also returns the MPO files many phone cameras write (a JPEG
# with a second picture), so they are read too.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
# Refuse absurd images before decoding them: a 28×28 classifier has no use for more than this, and a
# small file can declare billions of pixels (a decompression bomb).
MAX_IMAGE_PIXELS = 50_000_000
# Big photos are decoded and analysed at about this longest side: nothing of a 28 px result is lost,
# JPEGs decode several times faster at a reduced DCT scale, and no full-size float copy is ever made.
WORKING_SIZE = 1024
_ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass
class DecodedImage:
    """A decoded image file: its first frame, loaded and upright, and what the file itself said."""

    image: Any  # a loaded PIL image, maybe smaller than the file's (see WORKING_SIZE)
    width: int  # the full-resolution upright size
    height: int
    mode: str  # the file's own PIL mode (RGB, RGBA, L, I;16, CMYK, P, ...)
    frames: int = 1  # frames in the file (an animation's first frame is decoded)

    @classmethod
    def of(cls, image) -> DecodedImage:
        """A PIL image that was not read from a file, described by itself."""
        return cls(image, image.size[0], image.size[1], image.mode, getattr(image, "n_frames", 1))


def open_image(source: str | Path | bytes | BinaryIO, name: str | Path | None = None) -> DecodedImage:
    """Decode an image (its first frame), or raise DataError(name, why).

    `source` is a path, the file's bytes, or a binary file object (read, and left open); `name`
    names it in errors.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError  # Pillow on first use: `import fmnist` stays light

    _quiet_pillow()
    name = name_of(source, name)
    if isinstance(source, (str, Path)):
        opened = open_for_reading(source, name, expected="an image file")
    elif isinstance(source, (bytes, bytearray, memoryview)):
        opened = io.BytesIO(bytes(source))
    else:
        opened = contextlib.nullcontext(source)
    try:
        with opened as handle:
            if _size_of(handle) == 0:
                raise DataError(name, "empty file (0 bytes)")
            try:
                image = Image.open(handle, formats=FORMATS)
            except UnidentifiedImageError:
                raise DataError(name, "not an image, or not one of the formats read "
                                      "(PNG, JPEG, BMP, GIF, TIFF, WebP)") from None
            except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours
                declared = re.search(r"\((\d+) pixels\)", str(exc))
                raise DataError(name, _too_large(f"{int(declared.group(1)):,} pixels" if declared else "its size")) from None
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(name, _too_large(f"{width}x{height} = {width * height:,} pixels"))
            frames, mode = getattr(image, "n_frames", 1), image.mode
            image.seek(0)  # an animation's first frame
            if image.format in ("JPEG", "MPO") and max(width, height) > 2 * WORKING_SIZE:
                image.draft(image.mode, (WORKING_SIZE, WORKING_SIZE))  # decode at a reduced DCT scale
            with silenced_stderr() if image.format == "TIFF" else contextlib.nullcontext():
                image.load()
            orientation = image.getexif().get(0x0112)
            image = _shrink(ImageOps.exif_transpose(image))  # phone photos: upright as the camera held them
    except DataError:
        raise
    except PermissionError:
        raise DataError(name, "permission denied") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(name, f"truncated or corrupt image ({detail})") from None
    if orientation in _ROTATING_ORIENTATIONS:
        width, height = height, width
    return DecodedImage(image, width, height, mode, frames)


def name_of(source, name=None) -> str | Path:
    """What errors call an input: its given name, its path, or "<image>" for bytes and file objects."""
    if name is not None:
        return name
    return source if isinstance(source, (str, Path)) else "<image>"


def _too_large(size: str) -> str:
    return f"image too large: {size} (the limit is {MAX_IMAGE_PIXELS:,}); refused before decoding"


def _size_of(handle: BinaryIO) -> int | None:
    """The bytes left in a regular file or buffer; None for pipes and sockets (size unknown)."""
    try:
        status = os.fstat(handle.fileno())
        return status.st_size - handle.tell() if stat.S_ISREG(status.st_mode) else None
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        position = handle.tell()
        end = handle.seek(0, io.SEEK_END)
        handle.seek(position)
        return end - position
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _shrink(image):
    """A huge image box-averaged in its own integer mode to between 1 and 2 × WORKING_SIZE."""
    longest = max(image.size)
    if longest <= 2 * WORKING_SIZE:
        return image
    factor = longest // WORKING_SIZE
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")  # same values (0..65535), a mode reduce() takes
    if image.mode in ("RGBA", "LA"):  # average premultiplied colours: hidden pixels' colours must not bleed
        premultiplied = {"RGBA": "RGBa", "LA": "La"}[image.mode]
        return image.convert(premultiplied).reduce(factor).convert(image.mode)
    return image.reduce(factor)


_FILTER_LOCK = threading.Lock()
_filters_installed = False


def _quiet_pillow() -> None:
    """Once per process, lazily (so `import fmnist` does not import Pillow): silence Pillow's warning
    about images above 89 Mpixels (fmnist refuses them above 50 anyway) and register the plugins of
    FORMATS (Image.open(formats=...) finds only registered ones)."""
    global _filters_installed
    with _FILTER_LOCK:
        if not _filters_installed:
            from PIL import Image  # Pillow on first use: `import fmnist` stays light
            # The plugins of FORMATS only (Image.init() would import all forty, 35 ms more per run).
            from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin  # noqa: F401
            from PIL import TiffImagePlugin, WebPImagePlugin  # noqa: F401

            warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
            _filters_installed = True


# --------------------------------------------------------------------------- finding image files


def natural_key(name: str) -> list:
    """Sort key that orders `img2` before `img10`."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def find_images(directory: str | Path, on_error: Callable[[DataError], None] | None = None) -> list[Path]:
    """Image files under `directory` (recursively, by suffix; hidden names skipped), in natural order.

    Symbolic links to folders are followed, except a link back to a folder the search is already
    inside (a loop). A folder that cannot be read is reported through `on_error` (else raised): it
    is not silently skipped.
    """
    directory = Path(directory)
    found: list[Path] = []

    def report(exc: OSError) -> None:
        problem = DataError(exc.filename or directory, "permission denied" if isinstance(exc, PermissionError)
                            else f"cannot read this folder ({exc.strerror or exc})")
        if on_error is None:
            raise problem
        on_error(problem)

    for root, dirs, files in os.walk(directory, onerror=report, followlinks=True):
        parts = Path(root).relative_to(directory).parts
        ancestors = {os.path.realpath(directory.joinpath(*parts[:depth])) for depth in range(len(parts))}
        if os.path.realpath(root) in ancestors:  # a link back up: searching on would never end
            dirs[:] = []
            continue
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
        for file in files:
            if not file.startswith(".") and Path(file).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(root) / file)
    return sorted(found, key=lambda p: [natural_key(part) for part in p.relative_to(directory).parts])
