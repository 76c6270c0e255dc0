"""A real-world image → the 28×28 uint8 image a model expects (what `fmnist predict` feeds it).

The write-ups predict with `load_img(grayscale, 28×28) / 255`, which gives garbage for an ordinary
photo: a dark garment on a white background, not square, in colour. Fashion-MNIST itself was made
from product photos (Xiao et al. 2017, section 2): trim the edges whose colour is within 5 % of the
corners', fit the longest side into 28 px, sharpen, extend the shorter side to 28 with the object
centred, negate (light garment on black), 8-bit grayscale. `prepare` does the same to any image:

    any mode → grayscale (alpha composited onto white, 16-bit scaled, CMYK via RGB)
    → background estimated from the corners → inverted when it is lighter than the object (`auto`)
    → background levelled to black → cropped to the object → longest side fitted into the
    model's object size, aspect kept, sharpened → centred on a 28×28 canvas.

A 28×28 image that already looks like the dataset (a dark background, an object of about the
dataset's size) is used exactly as it is, so a test image saved as PNG predicts exactly what its
array predicts.

What the training images looked like (size, object size, background) is an `ImageSpec`
(`fmnist.image_spec`); the trainer measures it from the training set and the model file records it.
Reading files is `fmnist.image_files`. Nothing here imports torch: the ONNX prediction path stays light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fmnist.errors import DataError, FmnistError
from fmnist.image_files import WORKING_SIZE, DecodedImage, name_of, open_image
from fmnist.image_spec import FASHION_SPEC, ImageSpec, measure_spec  # noqa: F401  (re-exported: fmnist.images.ImageSpec)

INVERT_CHOICES = ("auto", "always", "never")
# How far a 28x28 image's background may be from the dataset's (black) and still count as looking
# like the dataset: every one of the 70,000 Fashion-MNIST images is within 51 grey levels.
DATASET_LIKE_BACKGROUND = 0.25


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
    empty: bool = False  # nothing stands out from the background: a blank input, predicted all the same

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
            "empty": self.empty,
        }


# --------------------------------------------------------------------------- preparing


def to_grayscale(image) -> np.ndarray:
    """(H, W) float32 in 0..255 from any PIL mode.

    Transparency is composited onto white (product photos are shot on white, and a transparent
    pixel's colour is arbitrary); 16-bit images are scaled (65535 → 255), never clipped; CMYK and
    the other colour spaces go through RGB; 8-bit images keep their exact integer values.
    """
    from PIL import Image  # Pillow on first use: `import fmnist` stays light

    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image, dtype=np.float32) / 257.0
    if mode == "I":
        values = np.asarray(image, dtype=np.float64)
        # 16-bit data decoded as 32-bit integers (older Pillow opens 16-bit PNGs so; newer, as I;16).
        # A 16-bit image whose values all stay <= 255 (nearly black) would be taken as 8-bit.
        if values.max(initial=0) > 255:
            values = values / 257.0
        return np.clip(values, 0, 255).astype(np.float32)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        if values.max(initial=0) <= 1.0:  # floating-point images usually hold 0..1
            values = values * 255.0
        return np.clip(values, 0, 255).astype(np.float32)
    if mode == "La":  # premultiplied grey + alpha, which Pillow cannot convert: over white is L + (255 - A)
        values = np.asarray(image, dtype=np.float32)
        return np.clip(values[..., 0] + 255.0 - values[..., 1], 0, 255)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.float32)
    if mode not in ("L", "RGB", "1", "P"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV: via RGB, so the luma weights apply
    return np.asarray(image.convert("L"), dtype=np.float32)


def prepare(image, spec: ImageSpec = FASHION_SPEC, invert: str = "auto") -> PreparedImage:
    """The model's (size, size) uint8 input for a PIL image or a DecodedImage (see the module docstring)."""
    if invert not in INVERT_CHOICES:
        raise FmnistError(f"invert must be one of {', '.join(INVERT_CHOICES)}, got {invert!r}")
    decoded = image if isinstance(image, DecodedImage) else DecodedImage.of(image)
    width, height, frames, mode = decoded.width, decoded.height, decoded.frames, decoded.mode
    if min(width, height, *decoded.image.size) <= 0:
        raise DataError(None, f"empty image ({width}x{height} pixels)")  # `converting` names the input
    gray = to_grayscale(decoded.image)  # (H, W) float32, maybe already reduced while decoding
    if max(gray.shape) > WORKING_SIZE:
        gray = _resize(gray, _fit(gray.shape[1], gray.shape[0], WORKING_SIZE))
    scale_x, scale_y = width / gray.shape[1], height / gray.shape[0]
    background, tolerance = _background(gray, spec.tolerance)
    mask = _object_mask(gray, background, tolerance)
    object_level = float(gray[mask].mean()) if mask.any() else None
    flip = _should_invert(invert, spec, background, object_level)
    if flip:
        gray, background = 255.0 - gray, 255.0 - background
        object_level = None if object_level is None else 255.0 - object_level
    box = _bounding_box(mask)
    original_box = (int(box[0] * scale_x), int(box[1] * scale_y),
                    int(np.ceil(box[2] * scale_x)), int(np.ceil(box[3] * scale_y)))
    empty = not mask.any()
    if _dataset_like(gray.shape, background, box, mask, spec):
        return PreparedImage(to_uint8(gray), width, height, mode, flip, original_box, passthrough=True, frames=frames,
                             empty=empty)
    gray, fill = _level(gray, background, object_level, spec)
    left, top, right, bottom = box
    crop = gray[top:bottom, left:right]
    fitted = _resize(crop, _fit(crop.shape[1], crop.shape[0], spec.object_size))
    canvas = np.full((spec.size, spec.size), fill, dtype=np.float32)
    h, w = fitted.shape
    # Centred; an odd pixel of margin goes to the left and top, as in Fashion-MNIST's own images.
    y0, x0 = (spec.size - h + 1) // 2, (spec.size - w + 1) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = fitted
    return PreparedImage(_sharpen(to_uint8(canvas)), width, height, mode, flip, original_box, passthrough=False,
                         frames=frames, empty=empty)


def load(source: str | Path | bytes | BinaryIO, spec: ImageSpec = FASHION_SPEC, invert: str = "auto",
         name: str | Path | None = None) -> PreparedImage:
    """Read an image file (path, bytes or file object) and prepare it for a model."""
    image = open_image(source, name=name)
    with converting(name_of(source, name)):
        return prepare(image, spec, invert)


@contextlib.contextmanager
def converting(name: str | Path) -> Iterator[None]:
    """Turn Pillow's and numpy's complaints about a decoded image (a mode Pillow cannot convert, say)
    into the one-line DataError(name, ...) every reader of image files gives; a DataError raised
    without a name (an empty image) gets this one."""
    try:
        yield
    except DataError as exc:
        if exc.path is not None:
            raise
        raise DataError(name, exc.problem, exc.kind) from None
    except (ValueError, OSError) as exc:
        raise DataError(name, f"cannot convert this image ({exc})") from None


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Grey levels (any float array) rounded and clipped to uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _corners(gray: np.ndarray) -> np.ndarray:
    """The pixels of the four corner squares (4 % of the shorter side, at least 2 pixels).

    Corners, as the dataset's own conversion used: a garment often touches an edge (trousers, a
    close-up), rarely a corner."""
    h, w = gray.shape
    side = max(2, round(0.04 * min(h, w)))
    if 2 * side > min(h, w):
        return gray.reshape(-1)
    return np.concatenate([gray[:side, :side].ravel(), gray[:side, -side:].ravel(),
                           gray[-side:, :side].ravel(), gray[-side:, -side:].ravel()])


def _background(gray: np.ndarray, tolerance: float) -> tuple[float, float]:
    """(background level, tolerance in grey levels): the corners' median, and how far a pixel must
    differ from it to count as the object — the paper's 5 %, or more on a noisy background (a
    photo's grain, JPEG ringing), but never so much that a pale object vanishes."""
    corners = _corners(gray)
    level = float(np.median(corners))
    spread = 1.4826 * float(np.median(np.abs(corners - level)))  # robust standard deviation
    return level, min(max(tolerance * 255.0, 3.0 * spread), 0.25 * 255.0)


def _object_mask(gray: np.ndarray, background: float, tolerance: float) -> np.ndarray:
    """Pixels that differ from the background; specks are removed on images large enough to have them."""
    mask = np.abs(gray - background) > tolerance
    if min(gray.shape) >= 100:
        from PIL import Image, ImageFilter  # Pillow on first use: `import fmnist` stays light

        cleaned = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MedianFilter(3))
        cleaned_mask = np.asarray(cleaned) > 127
        if cleaned_mask.any():
            mask = cleaned_mask
    return mask


def _should_invert(invert: str, spec: ImageSpec, background: float, object_level: float | None) -> bool:
    if invert != "auto":
        return invert == "always"
    reference = object_level if object_level is not None else 127.5
    background_is_lighter = background > reference
    return background_is_lighter if spec.background == "dark" else not background_is_lighter


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom), right/bottom exclusive; the whole image when nothing stands out."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0, 0, mask.shape[1], mask.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _dataset_like(shape: tuple[int, int], background: float, box, mask: np.ndarray, spec: ImageSpec) -> bool:
    """Already the model's size, on (nearly) the dataset's background, with an object at least half
    the dataset's size: used exactly as it is. Every one of the 70,000 Fashion-MNIST images passes
    (the smallest object is 19 px on its longest side, measured against the corners' grey); a small
    object in a corner or a grey backdrop does not."""
    if shape != (spec.size, spec.size):
        return False
    target = 0.0 if spec.background == "dark" else 255.0
    if abs(background - target) > DATASET_LIKE_BACKGROUND * 255:
        return False
    if not mask.any():
        return True
    longest = max(box[2] - box[0], box[3] - box[1])
    return longest >= spec.object_size // 2


def _level(gray: np.ndarray, background: float, object_level: float | None, spec: ImageSpec):
    """(image, canvas colour): stretched so the background is exactly black (dark spec) or white
    (light spec), as in the dataset — a photo's grey backdrop would otherwise reach the model as a
    grey frame it never saw. When the polarity is not the dataset's (`--invert never` on a dark
    garment on white), nothing is stretched and the canvas takes the image's own background."""
    if object_level is not None:
        if spec.background == "dark" and object_level > background:
            if background < 254.5:
                gray = np.clip((gray - background) * (255.0 / (255.0 - background)), 0, 255)
            return gray, 0.0
        if spec.background == "light" and object_level < background:
            if background > 0.5:
                gray = np.clip(gray * (255.0 / background), 0, 255)
            return gray, 255.0
        return gray, background
    return gray, (0.0 if spec.background == "dark" else 255.0)


def _sharpen(pixels: np.ndarray) -> np.ndarray:
    """The dataset's sharpening step after resizing (a Gaussian unsharp mask of radius 1).

    Measured on 2,000 photo-like test images (benchmarks/photos.py), baseline model: 89.3 % without
    sharpening, 89.9 % with it; stronger settings (100-150 %) did no better.
    """
    from PIL import Image, ImageFilter  # Pillow on first use: `import fmnist` stays light

    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.UnsharpMask(radius=1.0, percent=60, threshold=0)))


def _fit(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is `longest`, aspect ratio kept."""
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample a float image to (width, height): Lanczos, antialiased when shrinking."""
    from PIL import Image  # Pillow on first use: `import fmnist` stays light

    if (gray.shape[1], gray.shape[0]) == size:
        return gray
    resized = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32), mode="F").resize(
        size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 255)
