"""Feature maps of a trained model: what every convolution and pooling layer makes of an image."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fmnist import models

ACTIVATIONS = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.GELU, nn.SELU, nn.Tanh, nn.Sigmoid)


@torch.inference_mode()
def feature_maps(model: nn.Module, images: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(layer name, maps (N, C, H, W)) for every conv and pooling layer, in forward order.

    A convolution followed by its activation is shown after the activation, as Keras's fused
    `Conv2D(activation=...)` layers show it in write-up 003.
    """
    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    watched: list[tuple[str, nn.Module]] = []
    for position, (name, module) in enumerate(leaves):
        if isinstance(module, nn.Conv2d):
            following = leaves[position + 1][1] if position + 1 < len(leaves) else None
            watched.append((name, following if isinstance(following, ACTIVATIONS) else module))
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            watched.append((name, module))
    captured: dict[int, torch.Tensor] = {}
    hooks = [module.register_forward_hook(lambda m, i, o, key=index: captured.__setitem__(key, o.detach()))
             for index, (_, module) in enumerate(watched)]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with models.single_view(model):  # the image's own maps, not its mirror image's (flip TTA)
            model(torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return [(name, captured[index].float().cpu().numpy()) for index, (name, _) in enumerate(watched) if index in captured]
