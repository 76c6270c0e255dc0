"""Batched augmentation on the device, on uint8 batches, as tensor ops (no per-image Python).

Random translation (a crop of the image padded with black) and horizontal flip are done together
by one gather: every output pixel reads the input pixel it comes from, or a black pad pixel. Random
erasing blanks one rectangle per image. Fashion-MNIST garments are left-right symmetric enough
that a flip is a new, valid image; a vertical flip would not be.

torch is imported where the tensors are: the training config imports AUGMENTS from here, and
parsing options (`--help`) must not wait for torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmnist.errors import FmnistError

if TYPE_CHECKING:
    import torch

AUGMENTS = ("none", "flip", "crop", "flip+crop", "flip+crop+erase")


@dataclass(frozen=True)
class Augment:
    """What to do to each training batch; `name` is the config's `augment` value."""

    flip: bool = False
    pad: int = 0  # translate by up to ± pad pixels (0: no translation)
    erase: float = 0.0  # probability of blanking one random rectangle (random erasing)

    @classmethod
    def named(cls, name: str, pad: int = 2) -> Augment:
        if name not in AUGMENTS:
            raise FmnistError(f"augment: expected one of {', '.join(AUGMENTS)}, got {name!r}")
        parts = set(name.split("+")) - {"none"}
        return cls(flip="flip" in parts, pad=pad if "crop" in parts else 0, erase=0.5 if "erase" in parts else 0.0)

    @property
    def active(self) -> bool:
        return self.flip or self.pad > 0 or self.erase > 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """images (B, 1, H, W) uint8 on any device → augmented (B, 1, H, W) uint8, same device.

        Randomness comes from `generator` (on the images' device), by default the device's global
        generator, which the trainer seeds and a resume restores."""
        import torch  # torch on first use (module docstring)

        if not self.active:
            return images
        batch, channels, height, width = images.shape
        device = images.device
        rows = torch.arange(height, device=device).view(1, height, 1)  # (1, H, 1)
        cols = torch.arange(width, device=device).view(1, 1, width)  # (1, 1, W)
        if self.flip:
            flipped = torch.rand(batch, device=device, generator=generator) < 0.5
            cols = torch.where(flipped.view(batch, 1, 1), width - 1 - cols, cols)  # (B, 1, W)
        if self.pad:
            shift = torch.randint(-self.pad, self.pad + 1, (2, batch), device=device, generator=generator)
            rows = rows + shift[0].view(batch, 1, 1)
            cols = cols + shift[1].view(batch, 1, 1)
        rows, cols = rows.expand(batch, height, width), cols.expand(batch, height, width)
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)  # (B, H, W)
        source = (rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)).view(batch, 1, -1)
        flat = images.reshape(batch, channels, height * width)
        out = torch.gather(flat, 2, source.expand(batch, channels, -1)).view(batch, channels, height, width)
        out = out * inside.unsqueeze(1)  # pixels shifted in from outside are black
        if self.erase:
            out = _erase(out, self.erase, generator)
        return out

    def describe(self) -> str:
        parts = (["horizontal flip"] if self.flip else []) + ([f"translate ±{self.pad} px"] if self.pad else [])
        parts += [f"random erasing (p {self.erase:g})"] if self.erase else []
        return ", ".join(parts) or "none"


def _erase(images: torch.Tensor, probability: float, generator: torch.Generator | None) -> torch.Tensor:
    """Blank one rectangle (4-16 px a side) in each image with the given probability."""
    import torch  # torch on first use (module docstring)

    batch, _, height, width = images.shape
    device = images.device
    size = torch.randint(4, 17, (2, batch), device=device, generator=generator)  # (h, w) per image
    top = (torch.rand(batch, device=device, generator=generator) * (height - size[0] + 1)).long()
    left = (torch.rand(batch, device=device, generator=generator) * (width - size[1] + 1)).long()
    chosen = torch.rand(batch, device=device, generator=generator) < probability
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    box = ((rows >= top.view(-1, 1, 1)) & (rows < (top + size[0]).view(-1, 1, 1))
           & (cols >= left.view(-1, 1, 1)) & (cols < (left + size[1]).view(-1, 1, 1)) & chosen.view(-1, 1, 1))
    return images.masked_fill(box.unsqueeze(1), 0)
