"""Decoding one image file's bytes with Pillow, checked before and after: what `open_image` builds on.

Before decoding, from the header alone: the pixel count (MAX_IMAGE_PIXELS), the memory the decoded
frame needs (MAX_DECODE_BYTES: width x height x the bytes Pillow stores per pixel of the mode, after
JPEG's reduced-scale decoding), the number of frames (MAX_FRAMES, counted without decoding any).

After decoding: that the data covered every row. Pillow does not say when a PNG's compressed data
ends early (its zlib stream is complete, just short), and libjpeg fills a JPEG whose data ends early
with grey, with only a warning Pillow never passes on. So the frame is decoded into a buffer filled
with a sentinel value; rows the decoder never wrote still hold it. A sequential JPEG is decoded
without its end marker (and a little padding instead), which makes libjpeg stop where the data ends
instead of inventing the rest. A row that holds the sentinel by chance is told apart by decoding once
more with a second sentinel, which a real pixel cannot match both times.

No torch here (the ONNX prediction path imports this).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator

import numpy as np

from fmnist.errors import DataError
from fmnist.limits import MAX_DECODE_BYTES, MAX_FRAMES, MAX_IMAGE_PIXELS, bytes_text

# Pillow's names. Pillow's JPEG opener also returns the MPO files many phone cameras write (a JPEG
# with a second picture), so they are read too.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
# Formats whose decoders write every row of the frame (a GIF's first frame may cover only part of its
# canvas; libwebp decodes all or nothing): the rows they leave unwritten mean missing data.
_ROW_CHECKED = ("PNG", "JPEG", "MPO", "BMP", "TIFF")
_SENTINELS = (0x5A, 0xA5)
# In place of a JPEG's end marker: stuffed 0xFF bytes, entropy data no Huffman table decodes (each
# invalid code is read as an end of block), enough for libjpeg's look-ahead at the last row (measured
# on 400 photos and scans: 8 pairs always suffice, 4 do not), too little to stand in for a missing MCU.
JPEG_PADDING = b"\xff\x00" * 16


_STRICT_LOCK = threading.Lock()


@contextlib.contextmanager
def strict_pillow() -> Iterator[None]:
    """Pillow's LOAD_TRUNCATED_IMAGES off while fmnist decodes. Another library in the process may have
    turned it on, and then Pillow hands libjpeg a made-up end marker for a cut JPEG, which decodes to
    grey. It is switched back after (under a lock: fmnist's own decodes wait for each other meanwhile;
    another thread's Pillow would see it off for that long)."""
    from PIL import ImageFile  # Pillow on first use: `import fmnist` stays light

    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        yield
        return
    with _STRICT_LOCK:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = True


def check_header(image, name) -> None:
    """Refuse an opened (not yet decoded) image that is empty or declares too many pixels."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise DataError(name, f"empty image ({width}x{height} pixels)")
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(name, too_many_pixels(f"{width}x{height} = {width * height:,} pixels"), kind="too large")


def too_many_pixels(size: str) -> str:
    return f"image too large: {size} (the limit is {MAX_IMAGE_PIXELS:,}); refused before decoding"


def check_decode_memory(image, name) -> None:
    """Refuse a frame whose decoding would need more than MAX_DECODE_BYTES: its pixels at the bytes
    Pillow stores per pixel, times the copies its decoder holds at once (measured: libwebp decodes
    into a canvas of its own and hands Pillow a copy, so a WebP frame costs three)."""
    width, height = image.size
    copies = 3 if image.format == "WEBP" else 1
    needed = width * height * bytes_per_pixel(image.mode) * copies
    if needed > MAX_DECODE_BYTES:
        raise DataError(name, f"image too large to decode: {width}x{height} pixels of mode {image.mode} need "
                              f"{needed:,} bytes (the limit is {bytes_text(MAX_DECODE_BYTES)}); refused before decoding",
                        kind="too large")


def bytes_per_pixel(mode: str) -> int:
    """What Pillow stores per pixel: 1 for 1/L/P, 2 for 16-bit grey, 4 for the rest (RGB as RGBX)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def count_frames(image, data: bytes, name) -> int:
    """Frames (or pages) in the file, counted without decoding them; more than MAX_FRAMES is refused."""
    if image.format == "GIF":
        frames = _gif_frames(data, MAX_FRAMES)
    elif image.format == "TIFF":
        frames = 1
        try:
            while frames <= MAX_FRAMES:
                image.seek(frames)  # reads the next page's directory, decodes nothing
                frames += 1
        except EOFError:
            pass
        image.seek(0)
    else:
        frames = getattr(image, "n_frames", 1)  # PNG (acTL), WebP, MPO: declared in the header
    if frames > MAX_FRAMES:
        raise DataError(name, f"too many frames: more than {MAX_FRAMES:,} (only the first is used, but "
                              "counting them walks the file); refused", kind="too large")
    return frames


def _gif_frames(data: bytes, limit: int) -> int:
    """Image descriptors in a GIF, up to `limit` + 1, found by walking its blocks (no decoding)."""
    def after_table(flags: int, position: int) -> int:
        return position + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)

    def after_sub_blocks(position: int) -> int:
        while position < len(data):
            size = data[position]
            position += 1 + size
            if size == 0:
                break
        return position

    position, frames = after_table(data[10] if len(data) > 10 else 0, 13), 0
    while position < len(data) and frames <= limit:
        kind = data[position]
        if kind == 0x2C:  # an image descriptor, its colour table, the LZW code size, its data
            frames += 1
            flags = data[position + 9] if position + 9 < len(data) else 0
            position = after_sub_blocks(after_table(flags, position + 10) + 1)
        elif kind == 0x21:  # an extension: label, then sub-blocks
            position = after_sub_blocks(position + 2)
        else:  # the trailer, or bytes Pillow will complain about itself
            break
    return max(frames, 1)


def sequential_jpeg_end(data: bytes) -> int | None:
    """Where the end marker (EOI) of a baseline or extended sequential JPEG with one scan sits; None
    for any other JPEG (progressive, arithmetic, several scans: libjpeg reads those to their end
    before it writes a row) or when there is no end marker (a cut file: Pillow says so itself)."""
    if data[:2] != b"\xff\xd8":
        return None
    position, sequential, scans = 2, False, 0
    while position + 1 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:
            return position if sequential and scans == 1 else None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            position += 2
            continue
        if marker in (0xC0, 0xC1):
            sequential = True
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # progressive, lossless, arithmetic
            return None
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:  # a scan: entropy-coded data up to the next marker other than RSTn
            scans += 1
            while True:
                position = data.find(b"\xff", position)
                if position < 0 or position + 1 >= len(data):
                    return None
                following = data[position + 1]
                if following == 0 or 0xD0 <= following <= 0xD7:
                    position += 2
                elif following == 0xFF:
                    position += 1
                else:
                    break
    return None


def load_checked(open_frame: Callable[[], object], name, end_withheld: bool = False) -> object:
    """`open_frame()` (an opened, drafted image, not yet decoded) decoded, refused when its data ended
    before its last rows (see the module docstring). `end_withheld`: a JPEG opened without its end
    marker, whose decoder then reports the data as cut short even when every row is there."""
    from PIL import Image  # Pillow on first use: `import fmnist` stays light

    image = open_frame()
    if image.format not in _ROW_CHECKED:
        image.load()
        return image
    sentinels = (255, 0) if image.mode == "1" else _SENTINELS
    suspects = None
    for sentinel in sentinels:
        if suspects is not None:
            image = open_frame()
        bands = len(image.getbands())
        color = sentinel * 257 if image.mode.startswith("I") else sentinel if bands == 1 else (sentinel,) * bands
        try:
            image.im = Image.core.fill(image.mode, image.size, color)
            stored = _stored(image.mode, color)
        except (ValueError, TypeError, KeyError):  # a mode Pillow cannot fill: no check possible
            image.load()
            return image
        try:
            image.load()
        except OSError as exc:
            if not end_withheld or "truncated" not in str(exc):
                raise
            image.tile = []  # every row decoded is in place; the sentinel says whether all were
        unwritten = _unwritten_rows(image, stored)
        suspects = unwritten if suspects is None else suspects & unwritten
        if not suspects.any():
            return image
    raise DataError(name, "truncated or corrupt image (the data ends before the last rows)")


_BYTE_MODES = ("1", "L", "P", "LA", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def _unwritten_rows(image, stored: tuple[np.ndarray, tuple[int, ...]]) -> np.ndarray:
    """For each edge row, whether every pixel of it holds the sentinel (decoders write whole rows, so a
    row the data did not reach is the sentinel throughout, and a real row almost never is). The
    histogram (C, one pass) rules most images out without converting any pixels."""
    (width, height), (value, places) = image.size, stored
    if places:
        histogram = image.histogram()
        if any(histogram[place] < width for place in places):
            return np.zeros(min(height, 4), dtype=bool)
    same = _edge_rows(image) == value
    same = same.all(axis=-1) if same.ndim == 3 else same
    return same.all(axis=1)


@functools.lru_cache(maxsize=64)
def _stored(mode: str, color) -> tuple[np.ndarray, tuple[int, ...]]:
    """The value a pixel of `mode` filled with `color` reads back as, and (for modes of 8-bit bands)
    where its bands sit in the image's histogram."""
    from PIL import Image  # Pillow on first use: `import fmnist` stays light

    pixel = Image.new(mode, (1, 1), color)
    places = tuple(256 * band + count.index(1) for band, count in
                   enumerate(zip(*[iter(pixel.histogram())] * 256))) if mode in _BYTE_MODES else ()
    return np.asarray(pixel)[0, 0], places


def _edge_rows(image) -> np.ndarray:
    """The first two and last two rows: where a decoder stops writing (bottom-up BMPs end at the top;
    interlaced PNGs write odd rows last)."""
    width, height = image.size
    if height <= 4 or width * height <= 1 << 16:  # small: one conversion is cheaper than two crops
        pixels = np.asarray(image)
        return pixels if height <= 4 else np.concatenate([pixels[:2], pixels[-2:]])
    return np.concatenate([np.asarray(image.crop((0, 0, width, 2))),
                           np.asarray(image.crop((0, height - 2, width, height)))])
