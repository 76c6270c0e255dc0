"""How many folds to stack (engine/stacked.py) on a device: on a GPU as many as fit its memory, on a CPU
all of them only when a few timed steps say the stack is faster (on a CPU with little memory bandwidth it
is slower: the stack's activations leave the caches one model's fit in).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from fmnist import models
from fmnist.data.dataset import Dataset
from fmnist.device import resolve_device
from fmnist.engine.config import TrainConfig
from fmnist.engine.stacked import CannotStack, Stack, stack_problem
from fmnist.engine.trainer import setup


def auto_stack_size(configs: Sequence[TrainConfig], dataset: Dataset,
                    splits: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[int, str]:
    """How many of these runs to stack on their device, and why in words. On a GPU as many as fit in 80 %
    of its free memory by an estimate of one model's share: weights, gradients and two optimizer moments,
    its training images, and twice its activations (kept for the backward pass) at the batch size. On a
    CPU, where stacking can be slower (module docstring), all of them when the stack trains faster than
    the runs one after another, timed over a few steps (`stacking_speedup`), else 1."""
    config, folds = configs[0], len(configs)
    device = resolve_device(config.device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        architecture = models.architecture_for(name=config.model, spec=config.spec, options=config.model_options)
        size = dataset.train.images.shape[-1]
        per_model = model_bytes(architecture, config.batch_size, size) + len(splits[0][0]) * (size * size + 8)
        stack = stack_size(per_model, free, folds)
        return stack, f"{stack} of {folds} fit in 80 % of the GPU's free memory"
    try:
        speedup = stacking_speedup(configs, dataset, splits)
    except CannotStack as exc:
        return 1, str(exc)
    if speedup >= PAYS:
        return folds, f"stacked, {folds} train {speedup:.2f}x as fast as one after another (timed)"
    return 1, f"stacked, {folds} would train {speedup:.2f}x as fast as one after another (timed), so one after another"


PAYS = 1.15  # the least speed-up (timed over a few steps) for which `auto` stacks on a CPU


def stacking_speedup(configs: Sequence[TrainConfig], dataset: Dataset,
                     splits: Sequence[tuple[np.ndarray, np.ndarray]], steps: int = 6) -> float:
    """K × (seconds of one model's training step) ÷ (seconds of the K models' stacked step), each the
    fastest of `steps` steps after one warm-up step, on throwaway copies of the runs (nothing is written;
    the real runs start from their seeds afterwards). Raises CannotStack when the runs cannot be stacked."""
    trainings = [setup(config, dataset, split) for config, split in zip(configs, splits)]
    problem = stack_problem(configs, trainings)
    if problem is not None:
        raise CannotStack(problem)
    stack = Stack(trainings)
    stack.check()
    batch = configs[0].batch_size
    batches = {k: (training.data.train_x[:batch], training.data.train_y[:batch]) for k, training in enumerate(trainings)}
    one = trainings[0]
    one.model.train()

    def single() -> None:
        with torch.autocast(one.device.type, dtype=one.amp_dtype or torch.float32, enabled=one.amp_dtype is not None):
            logits = one.model(batches[0][0])
        loss = F.cross_entropy(logits.float(), batches[0][1])
        one.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        one.optimizer.step()

    def stacked() -> None:
        stack.step(list(range(len(trainings))), batches)

    def fastest(step) -> float:
        times = []
        for _ in range(steps + 1):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        return min(times[1:])

    return len(trainings) * fastest(single) / fastest(stacked)


def stack_size(per_model_bytes: int, free_bytes: int, folds: int) -> int:
    """The number of models of `per_model_bytes` each that fit in 80 % of `free_bytes`, between 1 and folds."""
    return max(1, min(folds, int(0.8 * free_bytes) // max(1, per_model_bytes)))


def model_bytes(architecture: dict, batch_size: int, size: int = 28) -> int:
    """An estimate of one model's training memory: fp32 weights, gradients and two optimizer moments,
    and twice the fp32 outputs of its layers at `batch_size` (counted on the meta device: nothing is
    allocated)."""
    model = models.skeleton(architecture)
    outputs = 0

    def count(module, inputs, output):
        nonlocal outputs
        if isinstance(output, torch.Tensor):
            outputs += output.numel()

    hooks = [module.register_forward_hook(count) for module in model.modules() if not list(module.children())]
    try:
        model.train()
        model(torch.empty((batch_size, 1, size, size), dtype=torch.uint8, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    weights = sum(parameter.numel() for parameter in model.parameters())
    return 4 * (4 * weights + 2 * outputs)
