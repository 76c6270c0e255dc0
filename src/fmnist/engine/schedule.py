"""The optimizer a config asks for, and its per-step learning-rate schedule."""

from __future__ import annotations

import math

import torch

from fmnist.engine.config import TrainConfig


def make_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    lr = config.resolved_lr()
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        # eps=1e-7: Keras's Adam epsilon, so the write-ups' Adam recipes match.
        return torch.optim.Adam(parameters, lr=lr, eps=1e-7, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, eps=1e-7, weight_decay=config.weight_decay)


def lr_factor(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning-rate multiplier at optimizer step `step` (0-based); a pure function of the step."""
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "time-decay":
        # Keras's legacy `decay` argument: lr / (1 + decay * iterations), updated every step.
        decay = config.decay if config.decay is not None else config.resolved_lr() / config.epochs
        return 1.0 / (1.0 + decay * step)
    if config.schedule == "step":
        return config.step_gamma ** (step // (config.step_epochs * steps_per_epoch))
    if config.schedule == "linear":
        # Linear warm-up from 0 to the full rate, then linear decay towards 0, which the step after the
        # last would reach (airbench's schedule).
        warm = config.warmup_epochs * steps_per_epoch
        if step < warm:
            return min(1.0, (step + 1) / warm)
        return max(0.0, (total_steps - step) / max(1.0, total_steps - warm))
    progress = step / max(1, total_steps - 1)
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    # onecycle: 30 % cosine warm-up from lr/25 to lr, then cosine annealing to lr/1e4.
    warm = 0.3
    if progress < warm:
        return 1 / 25 + (1 - 1 / 25) * 0.5 * (1 - math.cos(math.pi * progress / warm))
    return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * (progress - warm) / (1 - warm)))


class Schedule:
    """The learning rate of every optimizer step of a run."""

    def __init__(self, config: TrainConfig, steps_per_epoch: int):
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * config.epochs
        self.base_lr = config.resolved_lr()

    def lr(self, epoch: int, step: int) -> float:
        """The rate at step `step` (0-based) of epoch `epoch` (1-based)."""
        global_step = (epoch - 1) * self.steps_per_epoch + step
        return self.base_lr * lr_factor(self.config, global_step, self.total_steps, self.steps_per_epoch)
