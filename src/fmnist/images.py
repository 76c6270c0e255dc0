"""A real-world image file → the 28×28 uint8 image a model expects (what `fmnist predict` feeds it).

The write-ups predict with `load_img(grayscale, 28×28) / 255`, which gives garbage for an ordinary
photo: a dark garment on a white background, not square, in colour. Fashion-MNIST itself was made
from product photos (Xiao et al. 2017, section 2): trim the edges whose colour is within 5 % of the
corners', fit the longest side into 28 px, sharpen, extend the shorter side to 28 with the object
centred, negate (light garment on black), 8-bit grayscale. `prepare` does the same to any image:

    any mode → grayscale (alpha composited onto white, 16-bit scaled, CMYK via RGB)
    → background estimated from the border → inverted when it is lighter than the object (`auto`)
    → background levelled to black → cropped to the object → longest side fitted into the
    model's object size, aspect kept → centred on a 28×28 canvas.

A 28×28 image that already looks like the dataset (dark border, light object) passes through
unchanged, so a test image saved as PNG predicts exactly what its array predicts.

What the training images looked like (size, object size, background) is an `ImageSpec`; the trainer
measures it from the training set and the model file records it. Nothing here imports torch: the
ONNX prediction path stays light.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fmnist._io import open_for_reading
from fmnist.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Refuse absurd images before decoding them: a 28×28 classifier has no use for more than this, and a
# small file can declare billions of pixels (a decompression bomb).
MAX_IMAGE_PIXELS = 50_000_000
# Big photos are analysed and resized at this longest side at most: nothing of a 28 px result is lost,
# and JPEGs decode several times faster at a reduced DCT scale.
WORKING_SIZE = 1024
INVERT_CHOICES = ("auto", "always", "never")


@dataclass(frozen=True)
class ImageSpec:
    """What a model's training images look like; `prepare` makes other images look the same."""

    size: int = 28  # the model's input is size × size pixels
    object_size: int = 28  # longest side of the object (Fashion-MNIST fills the frame: 28; MNIST digits: 20)
    background: str = "dark"  # dark: light objects on black (Fashion-MNIST, MNIST); light: dark on white
    tolerance: float = 0.05  # a pixel within this share of full intensity of the background is background

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and self.size >= 2):
            raise ValueError(f"image spec: size must be an integer >= 2, got {self.size!r}")
        if not (isinstance(self.object_size, int) and 1 <= self.object_size <= self.size):
            raise ValueError(f"image spec: object_size must be an integer in 1..{self.size}, got {self.object_size!r}")
        if self.background not in ("dark", "light"):
            raise ValueError(f"image spec: background must be dark or light, got {self.background!r}")
        if not (isinstance(self.tolerance, (int, float)) and 0 <= self.tolerance < 0.5):
            raise ValueError(f"image spec: tolerance must be in [0, 0.5), got {self.tolerance!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ImageSpec:
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"image spec: unknown key(s) {', '.join(unknown)}")
        return cls(**values)


FASHION_SPEC = ImageSpec()


@dataclass
class PreparedImage:
    """The model's input and what was done to get it."""

    pixels: np.ndarray  # (size, size) uint8, light object on dark background (for a dark spec)
    width: int  # the original image's size
    height: int
    mode: str  # the original PIL mode (RGB, RGBA, L, I;16, CMYK, P, ...)
    inverted: bool
    box: tuple[int, int, int, int]  # the object's bounding box in the original (left, top, right, bottom)
    passthrough: bool  # already the dataset's size and look: used as it is
    frames: int = 1  # frames in the file (an animation's first frame is used)
    notes: list[str] = field(default_factory=list)

    def info(self) -> dict:
        """What `--json` reports about the input."""
        return {
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "inverted": self.inverted,
            "box": list(self.box),
            "passthrough": self.passthrough,
            "frames": self.frames,
        }


# --------------------------------------------------------------------------- reading


def open_image(source: str | Path | bytes | BinaryIO, name: str | Path | None = None):
    """Decode an image file (its first frame) into a loaded PIL image, or raise DataError(name, why).

    `source` is a path, the file's bytes, or a binary file object; `name` names it in errors.
    The pixel count is checked from the header, before anything is decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = _name_of(source, name)
    if isinstance(source, (str, Path)):
        opened = open_for_reading(source, name, expected="an image file")
    elif isinstance(source, (bytes, bytearray, memoryview)):
        opened = io.BytesIO(bytes(source))
    else:
        opened = contextlib.nullcontext(source)  # the caller's file object: read it, leave it open
    try:
        with opened as handle:
            if _size_of(handle) == 0:
                raise DataError(name, "empty file (0 bytes)")
            try:
                with warnings.catch_warnings():  # PIL warns above 89 Mpixels; we refuse above 50 Mpixels
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    image = Image.open(handle)
            except UnidentifiedImageError:
                raise DataError(name, "not an image (unrecognised format; PNG, JPEG, BMP, GIF, TIFF and WebP are read)") from None
            except Image.DecompressionBombError as exc:  # PIL's own limit, far above ours
                declared = re.search(r"\((\d+) pixels\)", str(exc))
                raise DataError(name, _too_large(f"{int(declared.group(1)):,} pixels" if declared else "its size")) from None
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(name, _too_large(f"{width}x{height} = {width * height:,} pixels"))
            if width < 1 or height < 1:
                raise DataError(name, f"image has no pixels ({width}x{height})")
            frames = getattr(image, "n_frames", 1)
            image.seek(0)  # an animation's first frame
            if image.format == "JPEG" and max(width, height) > 2 * WORKING_SIZE:
                image.draft(image.mode, (WORKING_SIZE, WORKING_SIZE))  # decode at a reduced scale: faster
            image.load()
            image = ImageOps.exif_transpose(image)  # phone photos: upright as the camera held them
    except DataError:
        raise
    except PermissionError:
        raise DataError(name, "permission denied") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, Image.DecompressionBombError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(name, f"truncated or corrupt image ({detail})") from None
    image.info["fmnist_size"] = (width, height)
    image.info["fmnist_frames"] = frames
    return image


def _name_of(source, name) -> str | Path:
    """What errors call an input: its given name, its path, or "<image>" for bytes and file objects."""
    if name is not None:
        return name
    return source if isinstance(source, (str, Path)) else "<image>"


def _too_large(size: str) -> str:
    return f"image too large: {size} (the limit is {MAX_IMAGE_PIXELS:,}); refused before decoding"


def _size_of(handle: BinaryIO) -> int | None:
    try:
        return os.fstat(handle.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        position = handle.tell()
        end = handle.seek(0, io.SEEK_END)
        handle.seek(position)
        return end - position
    except (AttributeError, OSError):
        return None


def to_grayscale(image) -> np.ndarray:
    """(H, W) float32 in 0..255 from any PIL mode.

    Transparency is composited onto white (product photos are shot on white, and a transparent
    pixel's colour is arbitrary); 16-bit images are scaled (65535 → 255), never clipped; CMYK and
    the other colour spaces go through RGB; 8-bit images keep their exact integer values.
    """
    from PIL import Image

    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image, dtype=np.float32) / 257.0
    if mode == "I":
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0) > 255:  # 16-bit data decoded as 32-bit integers
            values = values / 257.0
        return np.clip(values, 0, 255).astype(np.float32)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        if values.max(initial=0) <= 1.0:  # floating-point images usually hold 0..1
            values = values * 255.0
        return np.clip(values, 0, 255).astype(np.float32)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.float32)
    if mode not in ("L", "RGB", "1", "P"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV: via RGB, so the luma weights apply
    return np.asarray(image.convert("L"), dtype=np.float32)


# --------------------------------------------------------------------------- preparing


def prepare(image, spec: ImageSpec = FASHION_SPEC, invert: str = "auto") -> PreparedImage:
    """The model's (size, size) uint8 input for a PIL image (see the module docstring)."""
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert must be one of {', '.join(INVERT_CHOICES)}, got {invert!r}")
    width, height = image.info.get("fmnist_size", image.size)
    frames = image.info.get("fmnist_frames", getattr(image, "n_frames", 1))
    mode = image.mode
    gray = to_grayscale(image)  # (H, W) float32, maybe reduced by JPEG draft decoding
    scale_x, scale_y = width / gray.shape[1], height / gray.shape[0]
    if max(gray.shape) > WORKING_SIZE:
        gray = _resize(gray, _fit(gray.shape[1], gray.shape[0], WORKING_SIZE))
        scale_x, scale_y = width / gray.shape[1], height / gray.shape[0]
    background, tolerance = _background(gray, spec.tolerance)
    mask = _object_mask(gray, background, tolerance)
    object_level = float(gray[mask].mean()) if mask.any() else None
    flip = _should_invert(invert, spec, background, object_level)
    if flip:
        gray = 255.0 - gray
        background = 255.0 - background
        object_level = None if object_level is None else 255.0 - object_level
    box = _bounding_box(mask)
    original_box = (int(box[0] * scale_x), int(box[1] * scale_y),
                    int(np.ceil(box[2] * scale_x)), int(np.ceil(box[3] * scale_y)))
    if gray.shape == (spec.size, spec.size):
        # Already the model's size: the user (or the dataset) made it so. Only the polarity may change.
        return PreparedImage(_to_uint8(gray), width, height, mode, flip, original_box, passthrough=True, frames=frames)
    gray = _level(gray, background, object_level, spec)
    left, top, right, bottom = box
    crop = gray[top:bottom, left:right]
    fitted = _resize(crop, _fit(crop.shape[1], crop.shape[0], spec.object_size))
    canvas = np.full((spec.size, spec.size), 0.0 if spec.background == "dark" else 255.0, dtype=np.float32)
    h, w = fitted.shape
    # Centred; an odd pixel of margin goes to the left and top, as in Fashion-MNIST's own images.
    y0, x0 = (spec.size - h + 1) // 2, (spec.size - w + 1) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = fitted
    return PreparedImage(_sharpen(_to_uint8(canvas)), width, height, mode, flip, original_box, passthrough=False,
                         frames=frames)


def load(source: str | Path | bytes | BinaryIO, spec: ImageSpec = FASHION_SPEC, invert: str = "auto",
         name: str | Path | None = None) -> PreparedImage:
    """Read an image file (path, bytes or file object) and prepare it for a model."""
    image = open_image(source, name=name)
    try:
        return prepare(image, spec, invert)
    except (ValueError, OSError) as exc:  # a mode PIL cannot convert, say
        raise DataError(_name_of(source, name), f"cannot convert this image ({exc})") from None


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _border(gray: np.ndarray) -> np.ndarray:
    """The pixels of a ring around the edge, 2 % of the shorter side wide (at least 1 pixel)."""
    h, w = gray.shape
    width = max(1, round(0.02 * min(h, w)))
    if 2 * width >= min(h, w):
        return gray.reshape(-1)
    return np.concatenate([gray[:width].ravel(), gray[-width:].ravel(),
                           gray[width:-width, :width].ravel(), gray[width:-width, -width:].ravel()])


def _background(gray: np.ndarray, tolerance: float) -> tuple[float, float]:
    """(background level, tolerance in grey levels): the border's median, and how far a pixel must
    differ from it to count as the object — the paper's 5 %, or more on a noisy border (a photo's
    grain, JPEG ringing), but never so much that a pale object vanishes."""
    ring = _border(gray)
    level = float(np.median(ring))
    spread = 1.4826 * float(np.median(np.abs(ring - level)))  # robust standard deviation of the border
    return level, min(max(tolerance * 255.0, 3.0 * spread), 0.25 * 255.0)


def _object_mask(gray: np.ndarray, background: float, tolerance: float) -> np.ndarray:
    """Pixels that differ from the background; specks are removed on images large enough to have them."""
    mask = np.abs(gray - background) > tolerance
    if min(gray.shape) >= 100:
        from PIL import Image, ImageFilter

        cleaned = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MedianFilter(3))
        cleaned_mask = np.asarray(cleaned) > 127
        if cleaned_mask.any():
            mask = cleaned_mask
    return mask


def _should_invert(invert: str, spec: ImageSpec, background: float, object_level: float | None) -> bool:
    if invert != "auto":
        return invert == "always"
    reference = object_level if object_level is not None else 127.5
    border_is_lighter = background > reference
    return border_is_lighter if spec.background == "dark" else not border_is_lighter


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom), right/bottom exclusive; the whole image when nothing stands out."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0, 0, mask.shape[1], mask.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _level(gray: np.ndarray, background: float, object_level: float | None, spec: ImageSpec) -> np.ndarray:
    """Stretch so the background is exactly black (dark spec) or white (light spec), as in the dataset.

    A photo's grey backdrop would otherwise reach the model as a grey frame it never saw in training.
    Only done when the polarity is right (the object lies on the far side of the background).
    """
    if object_level is None:
        return gray
    if spec.background == "dark" and object_level > background and background < 254.5:
        return np.clip((gray - background) * (255.0 / (255.0 - background)), 0, 255)
    if spec.background == "light" and object_level < background and background > 0.5:
        return np.clip(gray * (255.0 / background), 0, 255)
    return gray


def _sharpen(pixels: np.ndarray) -> np.ndarray:
    """The dataset's sharpening step after resizing (a Gaussian unsharp mask of radius 1).

    Measured on 2,000 photo-like test images (benchmarks/photos.py), baseline model: 89.3 % without
    sharpening, 89.85 % with it; stronger settings (100-150 %) did no better.
    """
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.UnsharpMask(radius=1.0, percent=60, threshold=0)))


def _fit(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is `longest`, aspect ratio kept."""
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample a float image to (width, height): Lanczos, antialiased when shrinking."""
    from PIL import Image

    if (gray.shape[1], gray.shape[0]) == size:
        return gray
    resized = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32), mode="F").resize(
        size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 255)


# --------------------------------------------------------------------------- measuring a training set


def measure_spec(images: np.ndarray, tolerance: float = FASHION_SPEC.tolerance, sample: int = 5000) -> ImageSpec:
    """The ImageSpec of a training set (N, H, W) uint8: its background and typical object size.

    Fashion-MNIST: dark background, objects 28 px on their longest side; MNIST digits: 20 px.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or not len(images):
        raise ValueError(f"expected square images (N, H, H), got shape {images.shape}")
    size = int(images.shape[1])
    step = max(1, len(images) // sample)
    chosen = images[::step][:sample].astype(np.int16)
    borders = np.concatenate([chosen[:, 0, :], chosen[:, -1, :], chosen[:, :, 0], chosen[:, :, -1]], axis=1)
    background = "dark" if float(np.median(borders)) < 128 else "light"
    level = 0 if background == "dark" else 255
    mask = np.abs(chosen - level) > tolerance * 255
    rows, cols = mask.any(axis=2), mask.any(axis=1)  # (N, H), (N, W)
    positions = np.arange(size)
    height = np.where(rows, positions, -1).max(1) - np.where(rows, positions, size).min(1) + 1
    width = np.where(cols, positions, -1).max(1) - np.where(cols, positions, size).min(1) + 1
    longest = np.maximum(height, width)
    longest = longest[longest > 0]
    object_size = int(np.median(longest)) if len(longest) else size
    return ImageSpec(size=size, object_size=max(1, min(size, object_size)), background=background, tolerance=tolerance)


# --------------------------------------------------------------------------- finding image files


def natural_key(name: str) -> list:
    """Sort key that orders `img2` before `img10`."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def find_images(directory: str | Path) -> list[Path]:
    """Image files under `directory` (recursively, by suffix, hidden files skipped), in natural order."""
    directory = Path(directory)
    found = []
    for root, dirs, files in os.walk(directory, onerror=None):
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
        for file in files:
            if not file.startswith(".") and Path(file).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(root) / file)
    return sorted(found, key=lambda p: [natural_key(part) for part in p.relative_to(directory).parts])
