"""fit_stacked(): K models of one architecture trained in lockstep as one stacked model (the folds of a
cross-validation, on one device).

How many to stack is engine/stack_size.py's question. A model of Fashion-MNIST's size at batch 32 leaves a GPU mostly idle: a training step is a few
milliseconds, most of them per-operator overhead. Stacking the K models' weights
(torch.func.stack_module_state) and running them with vmap over functional_call does K models' work per
operator call instead of one's. Whether that pays depends on the device: on a CPU whose memory bandwidth
is low the stack's activations leave the caches that one model's fit in, and K stacked models can take
longer than K models one after another (measured on a 2-core AMD EPYC: the baseline at batch 32, 5
folds stacked, 0.52x the speed).

Each model is the one `fit` would train, and trains as `fit` trains it:
- built by the same `setup` (its own seed: the same initial weights, data, shuffle generator, schedule);
- its augmentation drawn from its own generator, which starts where the global generator stood after its
  setup, which is where the sequential run's augmentation starts drawing: the same crops and flips;
- its own optimizer state: the optimizers of the write-ups (SGD, Adam, AdamW) work element by element,
  so one optimizer over the stacked weights is K optimizers, one per slice;
- its own batch-norm running statistics (the stacked buffers are updated in place, per slice);
- its own validation, history, best epoch and early stopping (a stopped model leaves the stack; its best
  weights are restored, as `fit` restores them).
What is not the same: dropout masks come from one generator for the whole stack (the same distribution,
other masks than the sequential run draws), and the stacked convolutions add up in another order
(differences of float rounding, ~1e-6 after a step).

Used by cross-validation (`fmnist cv --parallel-folds`): runs without checkpoints, so there is no
resume; the models must take the same number of steps per epoch (folds whose training parts differ by
an image can differ by one step: those are trained one after another instead).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from fmnist.data.dataset import Dataset
from fmnist.engine.batch_norm import RunningStatsWarmUp
from fmnist.engine.config import TrainConfig, dump_config
from fmnist.engine.progress import Progress
from fmnist.engine.schedule import make_optimizer
from fmnist.engine.trainer import Best, FitResult, Training, setup, validate
from fmnist.errors import FmnistError
from fmnist.runfolder import RunFolder


class CannotStack(Exception):
    """These models cannot be trained stacked (the message says why, in one line): train them one by one."""


def stack_problem(configs: Sequence[TrainConfig], trainings: Sequence[Training]) -> str | None:
    """Why these runs cannot be stacked, or None when they can."""
    first = configs[0]
    if any(config.checkpoint != "none" for config in configs):
        return "stacked training keeps no checkpoints (cross-validation's folds have none)"
    keys = ("model", "spec", "model_options", "epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov",
            "weight_decay", "schedule", "decay", "step_epochs", "step_gamma", "warmup_epochs", "label_smoothing",
            "augment", "crop_pad", "device", "precision", "threads", "early_stop", "eval_batch_size")
    if any(getattr(config, key) != getattr(first, key) for config in configs[1:] for key in keys):
        return "the runs differ in more than their seeds and data"
    steps = {training.schedule.steps_per_epoch for training in trainings}
    if len(steps) > 1:
        return f"the folds take different numbers of steps per epoch ({', '.join(map(str, sorted(steps)))})"
    return None


def fit_stacked(configs: Sequence[TrainConfig], outs: Sequence[str | Path], dataset: Dataset,
                splits: Sequence[tuple[np.ndarray, np.ndarray]], progresses: Sequence[Progress],
                live: Progress) -> list[FitResult]:
    """Train configs[k] on splits[k] into the run folder outs[k], all at once; one FitResult per run, as
    `fit(configs[k], outs[k], dataset, progresses[k], split=splits[k])` returns it (see the module
    docstring for what differs). `live` shows the stack's steps. Raises CannotStack (before any run
    folder is written) when the runs cannot be stacked."""
    runs = [RunFolder(out) for out in outs]
    for run in runs:
        run.refuse_reuse()
    trainings, generators = [], []
    for config, split in zip(configs, splits):
        training = setup(config, dataset, split)
        trainings.append(training)
        generators.append(_generator_here(training.device))  # where `fit` would start drawing augmentations
    problem = stack_problem(configs, trainings)
    if problem is not None:
        raise CannotStack(problem)
    stack = Stack(trainings)
    stack.check()  # one forward and backward on a tiny batch: an architecture vmap cannot run fails here
    for run, config in zip(runs, configs):
        run.start(dump_config(config))
    for training, progress in zip(trainings, progresses):
        progress.set_epochs(training.config.epochs)
        data = training.data
        progress.note(f"training {training.config.model_name} on {len(data.train_x):,} images, validating on "
                      f"{len(data.val_x):,} ({data.val_name}), stacked with {len(trainings) - 1} other fold(s) on "
                      f"{training.device.type} ({torch.get_num_threads()} CPU threads), "
                      f"{'bf16 autocast' if training.amp_dtype is not None else 'fp32'}")
    first = configs[0]
    histories: list[list[dict]] = [[] for _ in configs]
    bests = [Best() for _ in configs]
    active = list(range(len(configs)))
    stopped = [False] * len(configs)
    for epoch in range(1, first.epochs + 1):
        rows = stack.train_epoch(epoch, active, generators, live)
        for k in list(active):
            training = trainings[k]
            stack.copy_into(k, training.model)
            row = {"epoch": epoch, **rows[k], **validate(training)}
            row = {key: row[key] for key in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")}
            histories[k].append(row)
            runs[k].write_history(histories[k])
            progresses[k].end_epoch(row)
            bests[k].update(row, training.model)
            if first.early_stop is not None and bests[k].stale >= first.early_stop:
                stopped[k] = True
                active.remove(k)
                progresses[k].note(f"early stop: no better val_accuracy for {first.early_stop} epochs; "
                                   f"restoring the weights of epoch {bests[k].epoch}")
        if not active:
            break
    results = []
    for k, (run, training) in enumerate(zip(runs, trainings)):
        if not stopped[k]:
            stack.copy_into(k, training.model)
        restored = stopped[k] and bests[k].weights is not None
        if restored:
            training.model.load_state_dict(bests[k].weights)
        training.model.eval()
        history = histories[k]
        results.append(FitResult(run.path, training.model, training.architecture, dataset.classes, history,
                                 training.config, None, stopped[k] and history[-1]["epoch"] < first.epochs, restored,
                                 training.data.val_name, len(training.data.train_x), str(training.device),
                                 "bf16" if training.amp_dtype is not None else "fp32", torch.get_num_threads(),
                                 training.data.image_spec))
    return results


def _generator_here(device: torch.device) -> torch.Generator:
    """A generator on `device` in the state of the device's default generator now."""
    generator = torch.Generator(device=device)
    if device.type == "cuda":
        generator.set_state(torch.cuda.get_rng_state(device))
    else:
        generator.set_state(torch.get_rng_state())
    return generator


class Stack:
    """The K models' weights and buffers stacked (leading dimension K), one optimizer over them, and the
    training step of any subset of the K."""

    def __init__(self, trainings: Sequence[Training]):
        self.trainings = trainings
        # functional_call runs its code with the stacked tensors: the model as the trainer runs it (reorder.py)
        self.template = trainings[0].trainer
        self.params, self.buffers = stack_module_state([training.model for training in trainings])
        first = trainings[0]
        self.config, self.device, self.amp_dtype = first.config, first.device, first.amp_dtype
        self.optimizer = make_optimizer(self.config, list(self.params.values()))
        self.schedule = first.schedule
        self.running_stats = RunningStatsWarmUp(self.template)

        def one(params, buffers, images):
            return functional_call(self.template, (params, buffers), (images,))

        self.forward = vmap(one, in_dims=(0, 0, 0), randomness="different")

    def check(self) -> None:
        """A forward and backward pass of every model on two black images, the weights left as they were
        (no optimizer step) and the batch-norm statistics put back."""
        saved = {name: buffer.clone() for name, buffer in self.buffers.items()}
        size = self.trainings[0].data.train_x.shape[-1]
        images = torch.zeros((len(self.trainings), 2, 1, size, size), dtype=torch.uint8, device=self.device)
        try:
            self.template.train()
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                logits = self.forward(self.params, self.buffers, images)
            logits.float().sum().backward()
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CannotStack(f"{self.config.model_name} cannot run stacked ({message[:200]})") from None
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for name, buffer in self.buffers.items():
                    buffer.copy_(saved[name])

    def copy_into(self, k: int, model: torch.nn.Module) -> None:
        """Model k's weights and buffers from the stack into `model`."""
        with torch.no_grad():
            for name, tensor in model.named_parameters():
                tensor.copy_(self.params[name][k])
            for name, tensor in model.named_buffers():
                tensor.copy_(self.buffers[name][k])

    def train_epoch(self, epoch: int, active: list[int], generators: Sequence[torch.Generator],
                    live: Progress) -> dict[int, dict]:
        """One epoch of the active models: {k: {loss, accuracy, lr, seconds}}."""
        config, trainings = self.config, self.trainings
        started = time.perf_counter()
        self.template.train()
        steps = self.schedule.steps_per_epoch
        live.start_epoch(epoch, config.epochs, steps)
        orders = {k: torch.randperm(len(trainings[k].data.train_x), generator=trainings[k].shuffle).to(self.device)
                  for k in active}
        loss_sums = torch.zeros(len(trainings), device=self.device)
        corrects = torch.zeros(len(trainings), device=self.device, dtype=torch.int64)
        seen = [0] * len(trainings)
        refresh = max(1, steps // 50)
        lr = self.schedule.lr(epoch, 0)
        for step in range(steps):
            lr = self.schedule.lr(epoch, step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.running_stats.before_step((epoch - 1) * steps + step)
            batches = {}
            for k in active:
                data = trainings[k].data
                batch = orders[k][step * config.batch_size : (step + 1) * config.batch_size]
                batches[k] = (trainings[k].augment(data.train_x[batch], generators[k]), data.train_y[batch])
            for members, losses, correct in self.step(active, batches):
                index = torch.tensor(members, device=self.device)
                loss_sums.index_add_(0, index, losses * len(batches[members[0]][1]))
                corrects.index_add_(0, index, correct)
                for k in members:
                    seen[k] += len(batches[k][1])
            if live.live and ((step + 1) % refresh == 0 or step + 1 == steps):
                total = sum(seen[k] for k in active)
                live.update(step + 1, float(loss_sums[active].sum()) / total, float(corrects[active].sum()) / total)
        sums = loss_sums.tolist()
        diverged = [k for k in active if not math.isfinite(sums[k])]
        if diverged:
            raise FmnistError(f"training diverged in epoch {epoch} (the loss of fold(s) "
                              f"{', '.join(str(k + 1) for k in diverged)} is not finite); train again with a smaller --lr")
        seconds = time.perf_counter() - started
        counts = corrects.tolist()
        # Each model's share of the epoch's time: the stack's time over the models in it
        return {k: {"loss": sums[k] / seen[k], "accuracy": counts[k] / seen[k], "lr": lr,
                    "seconds": seconds / len(active)} for k in active}

    def step(self, active: list[int], batches: dict[int, tuple[torch.Tensor, torch.Tensor]]):
        """One optimizer step of the models `active` on their (images, labels) `batches`; returns, for
        each group of models that ran as one stack, (members, their mean losses, their correct counts)."""
        # Models whose batches have the same size run as one stack (all of them but at an epoch's end)
        by_size: dict[int, list[int]] = {}
        for k in active:
            by_size.setdefault(len(batches[k][1]), []).append(k)
        groups = []
        for members in by_size.values():
            images = torch.stack([batches[k][0] for k in members])
            labels = torch.stack([batches[k][1] for k in members])
            logits = self._forward(members, images)
            losses = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="none",
                                     label_smoothing=self.config.label_smoothing).view(len(members), -1).mean(dim=1)
            losses.sum().backward()  # each model's gradient is its own loss's
            groups.append((members, losses.detach(), (logits.detach().argmax(dim=2) == labels).sum(dim=1)))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return groups

    def _forward(self, members: list[int], images: torch.Tensor) -> torch.Tensor:
        """Logits (len(members), B, C) of the models `members` in training mode; their batch-norm
        statistics updated in the stack."""
        everyone = members == list(range(len(self.trainings)))
        if everyone:
            params, buffers = self.params, self.buffers
        else:
            index = torch.tensor(members, device=self.device)
            params = {name: tensor.index_select(0, index) for name, tensor in self.params.items()}
            buffers = {name: tensor.index_select(0, index) for name, tensor in self.buffers.items()}
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits = self.forward(params, buffers, images)
        if not everyone:
            with torch.no_grad():  # the statistics were updated in the selected copies: back into the stack
                for name, tensor in buffers.items():
                    self.buffers[name].index_copy_(0, index, tensor)
        return logits
