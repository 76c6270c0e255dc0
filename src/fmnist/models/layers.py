"""Building blocks shared by every model: in-model pixel scaling and Keras-equivalent layers.

The write-ups are Keras code. To reproduce them layer for layer we match Keras's defaults, not
PyTorch's: glorot_uniform kernels with zero biases (PyTorch uses a scaled kaiming_uniform and random
biases), and BatchNormalization(momentum=0.99, epsilon=1e-3), which is PyTorch momentum 0.01
(PyTorch weighs the *new* batch statistic by `momentum`, Keras weighs the old running value).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

# Keras's VarianceScaling draws he_normal from a normal truncated at ±2 std and widens it by this
# factor, so the truncated distribution still has std sqrt(2 / fan_in).
_TRUNCATED_NORMAL_STD = 0.87962566103423978
KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99
KERAS_BN_EPSILON = 1e-3


class Rescale(nn.Module):
    """Raw pixels (0..255, uint8 or float) → float32 in [0, 1], as every write-up prepares its data.

    It is the first module of every model, so a saved model needs no separate preprocessing step and
    data can stay uint8 until the batch is on its device. The scale is a Python constant, not a
    buffer: no extra tensor lands in state_dict.
    """

    def __init__(self, scale: float = 255.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() / self.scale  # (N, C, 28, 28) float32

    def extra_repr(self) -> str:
        return f"scale=1/{self.scale:g}"


class Flatten(nn.Flatten):
    """nn.Flatten whose gradient goes back in its input's memory layout.

    The trainer keeps activations channels-last (oneDNN's fast layout). Flattening a channels-last
    tensor copies it into (N, C·H·W) order, and the copy's gradient comes back in the plain layout,
    so the max-pool before it converted its whole input, four times the flattened size, to that
    layout and its gradient back, every step: 1.7 of the baseline's 11 ms per batch-32 step on a 2-core
    AVX2 EPYC (benchmarks/README.md, "On an AVX2-only CPU"). Turning the small gradient channels-last here
    removes both copies. The values are the same; the state_dict and model files too.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.requires_grad and x.dim() == 4 and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last) and not _in_functorch(x)):
            x.register_hook(_channels_last)
        return super().forward(x)


class Dropout(nn.Dropout):
    """nn.Dropout whose mask on the CPU comes from torch.rand instead of ATen's bernoulli_: an element is kept
    when its uniform draw is ≥ p, so with probability 1 - p (to 2⁻²⁴), drawn from the same seeded generator.
    bernoulli_ is the slow part of dropout there: MiniVGGNet's batch-32 step takes 0.90× the time native (bf16)
    and 0.94× held to AVX2, and its test accuracy after 2 epochs is the same within noise (20 seeds each;
    benchmarks/README.md, "Dropout's mask"). Other devices keep ATen's fused kernel. No state: model files
    and eval mode are as before.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or self.p == 1.0 or self.inplace or x.device.type != "cpu":
            return super().forward(x)
        # fp32 draws (bf16's would round p), compared in place: the mask is 1.0 or 0.0 in the draws' own memory,
        # then in x's dtype, so the product forward and backward is one same-dtype multiply. Under torch.func's
        # vmap (stacked folds) ge_ has no batching rule and would run fold by fold: compared out of place there.
        draws = torch.rand_like(x, dtype=torch.float32)
        kept = draws >= self.p if _in_functorch(x) else draws.ge_(self.p)
        return (x * kept.to(x.dtype)).mul_(1.0 / (1.0 - self.p))


def _channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


# Whether a tensor belongs to torch.func's transforms (vmap over stacked folds), whose layouts are theirs
# to choose (vmap refuses a channels-last .contiguous()). torch has no public test; this private one exists
# since 2.0. Should a later torch drop it, every tensor counts as wrapped: the hook is skipped, nothing breaks.
_in_functorch = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda tensor: True)


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    """Keras's fan_in / fan_out: input (output) units times the kernel's receptive field."""
    receptive_field = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


@torch.no_grad()
def glorot_uniform_(module: nn.Module) -> nn.Module:
    """Keras's default for Conv2D/Dense: kernel ~ U(±sqrt(6 / (fan_in + fan_out))), bias 0."""
    fan_in, fan_out = _fans(module.weight)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    module.weight.uniform_(-limit, limit)
    return _zero_bias(module)


@torch.no_grad()
def he_uniform_(module: nn.Module) -> nn.Module:
    """Keras he_uniform (write-up 000): kernel ~ U(±sqrt(6 / fan_in)), bias 0."""
    fan_in, _ = _fans(module.weight)
    limit = math.sqrt(6.0 / fan_in)
    module.weight.uniform_(-limit, limit)
    return _zero_bias(module)


@torch.no_grad()
def he_normal_(module: nn.Module) -> nn.Module:
    """Keras he_normal (write-up 004): truncated normal (±2σ) whose std is sqrt(2 / fan_in), bias 0."""
    fan_in, _ = _fans(module.weight)
    sigma = math.sqrt(2.0 / fan_in) / _TRUNCATED_NORMAL_STD
    nn.init.trunc_normal_(module.weight, mean=0.0, std=sigma, a=-2.0 * sigma, b=2.0 * sigma)
    return _zero_bias(module)


def _zero_bias(module: nn.Module) -> nn.Module:
    if getattr(module, "bias", None) is not None:
        module.bias.zero_()
    return module


INITIALIZERS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "glorot_uniform": glorot_uniform_,
    "he_uniform": he_uniform_,
    "he_normal": he_normal_,
}


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
           init: str = "glorot_uniform") -> nn.Conv2d:
    """Keras Conv2D: padding 0 is Keras "valid"; for a 3x3 kernel, padding 1 is "same"."""
    return INITIALIZERS[init](nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding))


def dense(in_features: int, out_features: int, *, init: str = "glorot_uniform") -> nn.Linear:
    """Keras Dense with its kernel initialiser."""
    return INITIALIZERS[init](nn.Linear(in_features, out_features))


def batch_norm2d(num_features: int) -> nn.BatchNorm2d:
    """Keras BatchNormalization over channels of (N, C, H, W)."""
    return nn.BatchNorm2d(num_features, eps=KERAS_BN_EPSILON, momentum=KERAS_BN_MOMENTUM)


def batch_norm1d(num_features: int) -> nn.BatchNorm1d:
    """Keras BatchNormalization over features of (N, F)."""
    return nn.BatchNorm1d(num_features, eps=KERAS_BN_EPSILON, momentum=KERAS_BN_MOMENTUM)


# Keras activation names → modules. leaky_relu uses Keras 3's default slope 0.2 (PyTorch's is 0.01);
# elu (alpha 1) and gelu (exact, not tanh-approximated) already agree. softmax is handled by the
# caller: models return logits and the loss applies the softmax.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module for a Keras activation name (softmax excluded: logits out)."""
    return ACTIVATIONS[name]()
