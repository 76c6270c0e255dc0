"""A copy of a model rewritten for fast inference; its outputs equal the original's up to float rounding.

On a 2-core CPU the baseline's time goes to fresh activation buffers and to layout shuffles, not to
arithmetic. The copy (for `fmnist predict`; training never uses it):

- runs in channels-last memory (oneDNN's fast convolution layout);
- makes a ReLU in a Sequential in-place when its input is the fresh output of an earlier layer of
  the same container (a convolution, linear, normalisation or pooling layer, possibly seen through
  layers that pass their input on, such as Dropout in eval mode); never when the input could be the
  container's own input, which its caller may still read (a residual connection, say);
- replaces MaxPool2d with kernel == stride by the max of k² strided views (exactly the same values,
  about twice as fast as max_pool2d, which also computes the indices it then throws away);
- folds a Flatten that feeds a Linear into the Linear, with the weight's columns reordered to
  (H, W, C), so flattening a channels-last tensor is a free view instead of a copy.

Measured on the baseline, 10,000 test images in batches of 128, model calls only: 6,000 images/s
as trained (NCHW, fresh buffers), 22,000-25,000 channels-last with in-place ReLUs, 28,000-29,000
with the pooling and flattening rewrites (the machine is noisy; README has benchmarks/predict.py's).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F


class StridedMaxPool2d(nn.Module):
    """MaxPool2d(k) with stride k and no padding: the elementwise max of the k² strided views."""

    def __init__(self, kernel: int):
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) → (N, C, H // k, W // k)
        k = self.kernel
        height, width = x.shape[-2] // k * k, x.shape[-1] // k * k  # floor, as max_pool2d does
        views = [x[..., i:height:k, j:width:k] for i in range(k) for j in range(k)]
        out = torch.maximum(views[0], views[1])  # a fresh tensor; the rest accumulate into it
        for view in views[2:]:
            torch.maximum(out, view, out=out)
        return out

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"


class ChannelsLastLinear(nn.Module):
    """Flatten + Linear on (N, C, H, W), reading the input in (N, H, W, C) order."""

    def __init__(self, linear: nn.Linear, shape: tuple[int, int, int]):
        super().__init__()
        channels, height, width = shape
        out_features = linear.out_features
        weight = linear.weight.detach().view(out_features, channels, height, width).permute(0, 2, 3, 1)
        self.weight = nn.Parameter(weight.reshape(out_features, -1).contiguous(), requires_grad=False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) → (N, out_features)
        return F.linear(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1), self.weight, self.bias)


# Layers whose output is a new tensor; and layers that hand on their input (or a view of it).
_FRESH = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.MaxPool2d, nn.AvgPool2d, StridedMaxPool2d,
          ChannelsLastLinear)
_PASS_THROUGH = (nn.Identity, nn.modules.dropout._DropoutNd, nn.Flatten)


def _fresh_input(container: nn.Sequential, names: list[str], position: int) -> bool:
    """Whether the input of the layer at `position` is a tensor created inside `container`."""
    for earlier in reversed(names[:position]):
        layer = container._modules[earlier]
        if isinstance(layer, _FRESH):
            return True
        if not isinstance(layer, _PASS_THROUGH):
            return False
    return False


def _poolable(module: nn.Module) -> int | None:
    """The kernel size when `module` is a MaxPool2d that StridedMaxPool2d computes exactly."""
    if not isinstance(module, nn.MaxPool2d) or module.ceil_mode or module.return_indices:
        return None
    kernel, stride = module.kernel_size, module.stride if module.stride is not None else module.kernel_size
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    if pair(kernel) != pair(stride) or pair(module.padding) != (0, 0) or pair(module.dilation) != (1, 1):
        return None
    k, k2 = pair(kernel)
    return k if k == k2 and k >= 2 else None


def _flatten_inputs(model: nn.Module, input_size: int, device: torch.device) -> dict[int, tuple[int, ...]]:
    """The input shape (without batch) of every Flatten, from one forward pass of a blank image."""
    shapes: dict[int, tuple[int, ...]] = {}

    def record(module: nn.Module, args: tuple) -> None:  # a pre-hook that returns None leaves the input alone
        shapes[id(module)] = tuple(args[0].shape[1:])

    hooks = [module.register_forward_pre_hook(record) for module in model.modules() if isinstance(module, nn.Flatten)]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 1, input_size, input_size, dtype=torch.uint8, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def inference_copy(model: nn.Module, device: torch.device, input_size: int = 28) -> nn.Module:
    """The rewritten copy (see the module docstring), in eval mode on `device`; `model` is untouched."""
    fast = copy.deepcopy(model).to(device).eval()
    cpu = device.type == "cpu"
    shapes = _flatten_inputs(fast, input_size, device) if cpu else {}
    for module in list(fast.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for position, name in enumerate(names):
            child = module._modules[name]
            following = module._modules[names[position + 1]] if position + 1 < len(names) else None
            if isinstance(child, nn.ReLU) and _fresh_input(module, names, position):
                child.inplace = True
            elif cpu and _poolable(child):
                module._modules[name] = StridedMaxPool2d(_poolable(child))
            elif (cpu and isinstance(child, nn.Flatten) and isinstance(following, nn.Linear)
                  and (child.start_dim, child.end_dim) == (1, -1) and len(shapes.get(id(child), ())) == 3):
                module._modules[name] = ChannelsLastLinear(following, shapes[id(child)])
                module._modules[names[position + 1]] = nn.Identity()
    if cpu:
        fast = fast.to(memory_format=torch.channels_last)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    return fast
