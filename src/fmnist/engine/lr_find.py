"""The learning-rate finder: a short sweep of exponentially growing rates, and a suggested rate."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from fmnist import models
from fmnist.data.dataset import Dataset
from fmnist.device import resolve_device
from fmnist.engine.config import TrainConfig
from fmnist.engine.schedule import make_optimizer
from fmnist.errors import FmnistError


def lr_find(config: TrainConfig, dataset: Dataset, start: float = 1e-7, end: float = 10.0, steps: int = 100,
            smoothing: float = 0.98) -> dict:
    """Train briefly while the learning rate grows exponentially from `start` to `end`.

    Returns the rates, the smoothed losses (exponential moving average, bias-corrected) and a
    suggested rate: where the smoothed loss falls fastest, before it reaches its minimum. The sweep
    stops early once the loss exceeds four times its best value (it has diverged).
    """
    if not 0 < start < end:
        raise FmnistError(f"lr-find: need 0 < --start-lr < --end-lr, got {start} and {end}")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = models.build(models.architecture_for(name=config.model, spec=config.spec, num_classes=dataset.num_classes,
                                                 options=config.model_options)).to(device)
    optimizer = make_optimizer(config, model.parameters())
    count = len(dataset.train) if config.limit is None else min(config.limit, len(dataset.train))
    x = torch.from_numpy(dataset.train.images[:count]).unsqueeze(1).to(device)
    y = torch.from_numpy(dataset.train.labels[:count]).to(device)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(config.seed)).to(device)
    lrs, losses = [], []
    average, best = 0.0, math.inf
    model.train()
    for step in range(steps):
        lr = start * (end / start) ** (step / (steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        begin = (step * config.batch_size) % max(1, count - config.batch_size + 1)
        batch = order[begin : begin + config.batch_size]
        loss = F.cross_entropy(model(x[batch]), y[batch], label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss)
        if not math.isfinite(value):
            break
        average = smoothing * average + (1 - smoothing) * value
        smoothed = average / (1 - smoothing ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if step > 10 and smoothed > 4 * best:
            break
    return {"lrs": lrs, "losses": losses, "suggestion": suggest_lr(lrs, losses), "steps": len(lrs),
            "min_loss_lr": lrs[int(np.argmin(losses))] if losses else None}


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The rate of steepest descent of the smoothed loss (in log-lr), before the minimum."""
    if len(lrs) < 3:
        raise FmnistError("lr-find: the sweep diverged at once; lower --start-lr")
    low = int(np.argmin(losses))
    window = slice(0, max(low, 2) + 1)
    slopes = np.gradient(np.asarray(losses[window]), np.log(np.asarray(lrs[window])))
    return float(lrs[int(np.argmin(slopes))])
