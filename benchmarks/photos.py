"""Photo-like versions of Fashion-MNIST test images: what a user's own picture of a garment looks like.

Each image is enlarged 6-15x, negated (dark garment on a light backdrop, as product photos are
shot), given a light-grey backdrop, a colour cast, margins that make it non-square, sensor noise,
and saved as a quality-85 JPEG. The label stays known, so the accuracy of a prediction pipeline on
these photos can be compared with its accuracy on the original arrays.

`mirrored=True` photographs the garment's mirror image: every Fashion-MNIST shoe points left, while
a user's photo may show it pointing right (issue 14: a right-facing sneaker came out "Bag").
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo_bytes(image: np.ndarray, rng: np.random.Generator, mirrored: bool = False) -> bytes:
    """A JPEG photo (bytes) of one (28, 28) uint8 dataset image, or of its mirror image (left-right)."""
    if mirrored:
        image = np.ascontiguousarray(image[:, ::-1])
    scale = int(rng.integers(6, 16))
    big = Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    ink = np.asarray(big, dtype=np.float32) / 255.0  # 1 where the garment is brightest in the dataset
    backdrop = float(rng.uniform(205, 250))
    gray = backdrop * (1.0 - ink)  # dark garment on a light backdrop
    tint = rng.uniform(0.88, 1.12, size=3)
    rgb = np.clip(gray[..., None] * tint, 0, 255)
    h, w = gray.shape
    margins = (rng.uniform(0.08, 0.45, size=4) * np.array([h, h, w, w])).astype(int)  # top, bottom, left, right
    canvas = np.empty((h + margins[0] + margins[1], w + margins[2] + margins[3], 3), dtype=np.float32)
    canvas[:] = backdrop * tint
    canvas[margins[0] : margins[0] + h, margins[2] : margins[2] + w] = rgb
    canvas += rng.normal(0, rng.uniform(1.0, 4.0), size=canvas.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mode="RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def naive_pixels(data: bytes) -> np.ndarray:
    """The write-ups' way: `load_img(grayscale=True, target_size=(28, 28))` — stretch, no inversion."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L").resize((28, 28), Image.Resampling.NEAREST), dtype=np.uint8)
