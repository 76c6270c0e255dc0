"""fmnist's own architectures, built for accuracy per second rather than to match a write-up.

`fast` follows airbench's CIFAR-10 speed-run design, scaled down to 28×28 grayscale and two CPU
cores: a 3×3 stem, then blocks of conv → max-pool → BatchNorm → ReLU (pooling before normalising
quarters that work), a global max-pool and a bias-free linear head. In eval mode the model averages
its logits over the image and its mirror image (flip test-time augmentation): evaluation,
`fmnist predict` and ONNX export all get it, since it lives in the model. `fast-wide` is the same
at twice the width, for a GPU or a longer CPU budget; `fast-narrow` the same with fewer channels where
the maps are large (convolutions out to 8 and 16 channels at 28×28, 48 at 14×14, 128 at 7×7: 0.46× the
multiplies), the recipe's model where it trains in fp32 (engine/recipes.py).

Measured (benchmarks/fast_recipe.py; table in benchmarks/README.md): with flip TTA the recipe ends
0.16 points higher than without; GELU instead of ReLU is equal within noise and 4 % slower per epoch.
The widths (16-128) and the unscaled logits (airbench scales them by 1/8) were picked in one-seed
exploratory runs that were not kept; no table here measures them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from fmnist.models.layers import Rescale
from fmnist.models.registry import register

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def _conv_bn(in_channels: int, out_channels: int, pool: bool, activation: str) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)]  # BN supplies the bias
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(out_channels), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


class FastNet(nn.Module):
    """stem (28×28) → blocks, each halving the size (14, 7, 3) → global max-pool → linear."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128),
                 logit_scale: float = 1.0, tta: bool = True, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if not isinstance(tta, bool):
            raise ValueError(f"tta: expected true or false, got {tta!r}")
        self.rescale = Rescale()
        self.stem = _conv_bn(in_channels, widths[0], pool=False, activation=activation)  # (N, w0, 28, 28)
        self.blocks = nn.Sequential(*[_conv_bn(a, b, pool=True, activation=activation)
                                      for a, b in zip(widths[:-1], widths[1:])])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.logit_scale = logit_scale
        self.tta = tta

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.rescale(x)))  # (N, w, 3, 3)
        x = self.head(self.pool(x).flatten(1))  # (N, classes)
        return x if self.logit_scale == 1.0 else x * self.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, 28, 28) raw pixels → (N, classes)
        if self.training or not self.tta:
            return self.logits(x)
        return 0.5 * (self.logits(x) + self.logits(torch.flip(x, dims=[3])))


@contextlib.contextmanager
def single_view(model: nn.Module) -> Iterator[nn.Module]:
    """Flip TTA switched off for the duration: code that watches each layer's output (the summary's
    shapes, feature maps) must see one pass over the image, not a second one over its mirror."""
    tta = getattr(model, "tta", False)
    if tta:
        model.tta = False
    try:
        yield model
    finally:
        if tta:
            model.tta = tta


@register("fast", "fmnist's CPU speed model (recipe `fast`): stem 16 → 3 × [conv → pool → BN → ReLU] (32, 64, "
                  "128) → max-pool → linear; flip TTA in eval")
def fast(num_classes: int = 10, in_channels: int = 1, tta: bool = True, activation: str = "relu") -> nn.Module:
    return FastNet(num_classes, in_channels, widths=(16, 32, 64, 128), tta=tta, activation=activation)


@register("fast-wide", "fast at twice the width (32 → 64, 128, 256); flip TTA in eval")
def fast_wide(num_classes: int = 10, in_channels: int = 1, tta: bool = True, activation: str = "relu") -> nn.Module:
    return FastNet(num_classes, in_channels, widths=(32, 64, 128, 256), tta=tta, activation=activation)


@register("fast-narrow", "fast with fewer channels where the maps are large: stem 8 → 3 × [conv → pool → BN → ReLU] "
                         "(16, 48, 128) → max-pool → linear; the fast recipe's model in fp32; flip TTA in eval")
def fast_narrow(num_classes: int = 10, in_channels: int = 1, tta: bool = True, activation: str = "relu") -> nn.Module:
    return FastNet(num_classes, in_channels, widths=(8, 16, 48, 128), tta=tta, activation=activation)
