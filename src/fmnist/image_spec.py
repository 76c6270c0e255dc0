"""What a model's training images look like (`ImageSpec`), measured from the training set.

Every model file records it, and `fmnist.images.prepare` makes a real-world image look the same:
the right size, the object about as large as the training objects, the background as dark or light.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


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
