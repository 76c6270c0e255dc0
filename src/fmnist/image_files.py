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
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fmnist import image_decoding
from fmnist._io import read_limited, read_regular_file, silenced_stderr, too_large
from fmnist.errors import DataError
from fmnist.image_decoding import too_many_pixels
from fmnist.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS  # noqa: F401  (MAX_IMAGE_PIXELS re-exported)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
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

    `source` is a path, the file's bytes, or a binary file object (read from where it stands, and
    left open); `name` names it in errors. Every input is read whole first, within MAX_IMAGE_BYTES
    (a regular file is refused from its size), then checked and decoded by fmnist.image_decoding.
    """
    from PIL import Image, UnidentifiedImageError  # Pillow on first use: `import fmnist` stays light

    _quiet_pillow()
    name = name_of(source, name)
    data = _read(source, name)
    tiff = data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    try:
        with silenced_stderr() if tiff else contextlib.nullcontext(), image_decoding.strict_pillow():
            image, width, height, mode, frames = _decode(data, name)
        orientation = image.getexif().get(0x0112)
        image = _upright(_shrink(image), orientation)  # phone photos: upright as the camera held them
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(name, "not an image, or not one of the formats read (PNG, JPEG, BMP, GIF, TIFF, WebP)",
                        kind="unsupported") from None
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        raise DataError(name, too_many_pixels(f"{int(declared.group(1)):,} pixels" if declared else "its size"),
                        kind="too large") from None
    except MemoryError:
        raise DataError(name, "not enough memory to decode it") from None
    except Exception as exc:  # noqa: BLE001 — Pillow and its C decoders raise a dozen types for corrupt data
        detail = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(name, f"truncated or corrupt image ({detail[:200]})") from None
    if orientation in _ROTATING_ORIENTATIONS:
        width, height = height, width
    return DecodedImage(image, width, height, mode, frames)


def _read(source, name) -> bytes:
    """The whole input within MAX_IMAGE_BYTES: a regular file refused from its size, a stream (stdin, a
    pipe) once it passes the limit; an empty one refused."""
    if isinstance(source, (str, Path)):
        data = read_regular_file(source, name, expected="an image file", max_bytes=MAX_IMAGE_BYTES)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > MAX_IMAGE_BYTES:
            raise DataError(name, too_large("input", len(data), MAX_IMAGE_BYTES, "refused before decoding"),
                            kind="too large")
    else:
        try:
            data = read_limited(source, MAX_IMAGE_BYTES, name)
        except (OSError, ValueError) as exc:  # an I/O error, a closed file object
            raise DataError(name, f"cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if not data:
        raise DataError(name, "empty file (0 bytes)")
    return data


def _decode(data: bytes, name) -> tuple[Any, int, int, str, int]:
    """(the first frame, decoded and checked; the file's width, height, mode and frames)."""
    from PIL import Image  # Pillow on first use: `import fmnist` stays light

    end = image_decoding.sequential_jpeg_end(data)
    buffer = data if end is None else data[:end] + image_decoding.JPEG_PADDING

    def opened():
        return Image.open(io.BytesIO(buffer), formats=image_decoding.FORMATS)

    first = [opened()]
    image_decoding.check_header(first[0], name)
    (width, height), mode = first[0].size, first[0].mode
    frames = image_decoding.count_frames(first[0], data, name)

    def frame():
        image = first.pop() if first else opened()
        image.seek(0)  # an animation's first frame
        if image.format in ("JPEG", "MPO") and max(image.size) > 2 * WORKING_SIZE:
            image.draft(image.mode, (WORKING_SIZE, WORKING_SIZE))  # decode at a reduced DCT scale
        image_decoding.check_decode_memory(image, name)
        return image

    return image_decoding.load_checked(frame, name, end_withheld=end is not None), width, height, mode, frames


def name_of(source, name=None) -> str | Path:
    """What errors call an input: its given name, its path, or "<image>" for bytes and file objects."""
    if name is not None:
        return name
    return source if isinstance(source, (str, Path)) else "<image>"


def _shrink(image):
    """A huge image box-averaged in its own integer mode to between 1 and 2 × WORKING_SIZE, a band of
    rows at a time: the conversions reduce() needs are made per band, never of the whole image, so
    decoding is the only full-size allocation (see MAX_DECODE_BYTES). Bands are whole multiples of
    the box height, so the result equals one reduce() of the whole image."""
    from PIL import Image  # Pillow on first use: `import fmnist` stays light

    longest = max(image.size)
    if longest <= 2 * WORKING_SIZE:
        return image
    factor = longest // WORKING_SIZE
    width, height = image.size
    rows = max(1, _BAND_BYTES // (4 * width * factor)) * factor
    bands = [_reduced(image.crop((0, top, width, min(top + rows, height))), factor) for top in range(0, height, rows)]
    if len(bands) == 1:
        return bands[0]
    shrunk = Image.new(bands[0].mode, (bands[0].width, sum(band.height for band in bands)))
    for index, band in enumerate(bands):
        shrunk.paste(band, (0, index * (rows // factor)))
    return shrunk


_BAND_BYTES = 16 << 20  # a band of rows converted at once while shrinking


def _reduced(image, factor: int):
    """One band reduced: in a mode reduce() takes, averaging premultiplied colours (hidden pixels'
    colours must not bleed)."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")  # same values (0..65535), a mode reduce() takes
    if image.mode in ("RGBA", "LA"):
        premultiplied = {"RGBA": "RGBa", "LA": "La"}[image.mode]
        return image.convert(premultiplied).reduce(factor).convert(image.mode)
    return image.reduce(factor)


_TRANSPOSES = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
               7: "TRANSVERSE", 8: "ROTATE_90"}  # EXIF orientation → the transpose that undoes it


def _upright(image, orientation):
    """The image as the camera was held (ImageOps.exif_transpose's table), applied after shrinking and
    only when needed: exif_transpose copies even an upright image."""
    from PIL import Image  # Pillow on first use: `import fmnist` stays light

    method = _TRANSPOSES.get(orientation)
    return image if method is None else image.transpose(getattr(Image.Transpose, method))


_FILTER_LOCK = threading.Lock()
_filters_installed = False


def _quiet_pillow() -> None:
    """Once per process, lazily (so `import fmnist` does not import Pillow): silence Pillow's warning
    about images above 89 Mpixels (fmnist refuses them above 50 anyway) and register the plugins of
    image_decoding.FORMATS (Image.open(formats=...) finds only registered ones)."""
    global _filters_installed
    with _FILTER_LOCK:
        if not _filters_installed:
            from PIL import Image  # Pillow on first use: `import fmnist` stays light
            # The plugins of image_decoding.FORMATS only (Image.init() would import all forty, 35 ms more per run).
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

    Symbolic links to folders are followed, but every real folder is searched once: a folder reached
    again (a loop, or two links to one folder) is not searched again, so a tree of links costs what
    its real folders hold, never 2 ** depth. The first path in natural order is the one kept. A
    folder that cannot be read is reported through `on_error` (else raised): it is not silently
    skipped.
    """
    directory = Path(directory)
    found: list[Path] = []

    def report(exc: OSError) -> None:
        problem = DataError(exc.filename or directory, "permission denied" if isinstance(exc, PermissionError)
                            else f"cannot read this folder ({exc.strerror or exc})")
        if on_error is None:
            raise problem
        on_error(problem)

    searched: set[tuple[int, int]] = set()  # (device, inode) of every folder searched
    for root, dirs, files in os.walk(directory, onerror=report, followlinks=True):
        try:
            status = os.stat(root)
            identity = (status.st_dev, status.st_ino)
        except OSError as exc:
            report(exc)
            dirs[:] = []
            continue
        if identity in searched:  # reached before through another path (a loop, or a second link)
            dirs[:] = []
            continue
        searched.add(identity)
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
        for file in files:
            if not file.startswith(".") and Path(file).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(root) / file)
    return sorted(found, key=lambda p: [natural_key(part) for part in p.relative_to(directory).parts])
