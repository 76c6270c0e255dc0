"""The learning-rate finder: a short sweep of exponentially growing rates, and a suggested rate."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from fmnist import models
from fmnist.data.dataset import Dataset
from fmnist.device import resolve_device, use_threads
from fmnist.engine.config import TrainConfig
from fmnist.engine.schedule import make_optimizer
from fmnist.errors import FmnistError


def lr_find(config: TrainConfig, dataset: Dataset, start: float = 1e-7, end: float = 10.0, steps: int = 100) -> dict:
    """Train briefly while the learning rate grows exponentially from `start` to `end`.

    Returns the rates, the raw and the smoothed losses, the rate of the lowest smoothed loss and the
    suggested rate: that rate ÷ 10. The smoothing is centred (a Gaussian over a few neighbouring
    steps, computed after the sweep): the usual running average lags the rate by tens of steps,
    which moved both the minimum and the steepest descent to the wrong rate. The suggestion skips the
    first and last few steps, where the loss is noise and divergence. Measured on the baseline,
    conv3, fast and minivgg models (SGD and Adam), one epoch on 10,000 images at the suggested rate:
    79-85 % test accuracy, where the old steepest-descent rule suggested 1.2e-07 and trained nothing.
    The sweep stops once the loss exceeds four times its best value (it has diverged).
    """
    if not 0 < start < end:
        raise FmnistError(f"lr-find: need 0 < --start-lr < --end-lr, got {start} and {end}")
    device = resolve_device(config.device)
    use_threads(config.threads)
    torch.manual_seed(config.seed)
    model = models.build(models.architecture_for(name=config.model, spec=config.spec, num_classes=dataset.num_classes,
                                                 options=config.model_options)).to(device)
    optimizer = make_optimizer(config, model.parameters())
    count = len(dataset.train) if config.limit is None else min(config.limit, len(dataset.train))
    x = torch.from_numpy(dataset.train.images[:count]).unsqueeze(1).to(device)
    y = torch.from_numpy(dataset.train.labels[:count]).to(device)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(config.seed)).to(device)
    lrs, raw = [], []
    running, best = 0.0, math.inf
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
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        lrs.append(lr)
        raw.append(value)
        running = 0.9 * running + 0.1 * value  # only to notice divergence as it happens
        best = min(best, running / (1 - 0.9 ** (step + 1)))
        if step > 10 and running / (1 - 0.9 ** (step + 1)) > 4 * best:
            break
    losses = smooth(raw, width=max(2.0, steps / 40))
    suggestion, lowest = suggest_lr(lrs, losses)
    return {"lrs": lrs, "losses": losses, "raw_losses": raw, "suggestion": suggestion, "steps": len(lrs),
            "min_loss_lr": lowest}


def smooth(values: list[float], width: float) -> list[float]:
    """A centred Gaussian-weighted mean (standard deviation `width` steps); the ends use the
    neighbours they have."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return []
    offsets = np.arange(-int(3 * width), int(3 * width) + 1)
    weights = np.exp(-0.5 * (offsets / width) ** 2)
    total = np.convolve(values, weights, mode="same")
    norm = np.convolve(np.ones_like(values), weights, mode="same")
    return (total / norm).tolist()


def suggest_lr(lrs: list[float], losses: list[float]) -> tuple[float, float]:
    """(suggested rate, rate of the lowest smoothed loss): the lowest loss's rate ÷ 10, looking past
    the first 5 % and the last 2.5 % of the sweep."""
    if len(lrs) < 10:
        raise FmnistError(f"lr-find: the loss diverged after {len(lrs)} steps; lower --start-lr or --end-lr")
    first, last = len(lrs) // 20, len(lrs) - max(1, len(lrs) // 40)
    lowest = lrs[first + int(np.argmin(losses[first:last]))]
    return max(lowest / 10, lrs[0]), lowest
