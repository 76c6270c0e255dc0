"""fit(): the training loop, its history, checkpoints, early stopping and exact resume.

Data stay uint8 tensors on the training device; each batch is gathered by index and the model
scales it itself. Metrics accumulate on the device, so the host waits only when progress is drawn.

    fit ─ setup ─ for each epoch: train_one_epoch → validate → history.csv → Best → Checkpointer

Under torchrun (`world`, engine/distributed.py) the loop is data-parallel: each rank takes its share of
every global batch, its loss scaled so that DDP's average is the whole batch's mean; rank 0 writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fmnist import models, runtime
from fmnist.data.dataset import FASHION_CLASSES, Dataset, load_dataset
from fmnist.device import resolve_device, resolve_precision, use_threads
from fmnist.engine import distributed
from fmnist.engine import resume as resume_state
from fmnist.engine.augment import Augment
from fmnist.engine.batch_norm import RunningStatsWarmUp
from fmnist.engine.config import TrainConfig, dump_config, parse_val
from fmnist.engine.distributed import World
from fmnist.engine.evaluate import loss_and_accuracy, predict_logits
from fmnist.engine.progress import NullProgress, Progress
from fmnist.engine.resume import Best
from fmnist.engine.schedule import Schedule, make_optimizer
from fmnist.engine.training_data import TrainingData, training_data
from fmnist.errors import FmnistError
from fmnist.image_spec import ImageSpec
from fmnist.modelfile import load_model, read_extras, save_model
from fmnist.runfolder import RunFolder, checkpoint_name


@dataclass
class Training:
    """Everything an epoch needs: the model, its optimizer and schedule, the data, how batches vary."""

    config: TrainConfig
    model: nn.Module
    architecture: dict
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    augment: Augment  # draws from the global generator, which torch.manual_seed(config.seed) seeded
    shuffle: torch.Generator  # the data order's own generator
    amp_dtype: torch.dtype | None  # autocast dtype of the forward pass; None: fp32
    device: torch.device
    data: TrainingData
    val_logits: torch.Tensor | None = None  # (V, C) of the latest validation
    running_stats: RunningStatsWarmUp | None = None  # batch-norm momentum by step (engine/batch_norm.py)
    world: World | None = None  # data-parallel over torchrun's processes (size > 1), else None
    trainer: nn.Module | None = None  # what the steps call: the model as reorder.py runs it; in DDP with a world
    own_stream: distributed.OwnStream | None = None  # under a world: this rank's dropout stream, per epoch


@dataclass
class FitResult:
    out: Path
    model: nn.Module  # in eval mode; the best epoch's weights when early stopping restored them
    architecture: dict
    classes: tuple[str, ...]
    history: list[dict]  # one row per epoch: epoch, loss, accuracy, val_loss, val_accuracy, lr, seconds
    config: TrainConfig
    best_checkpoint: Path | None
    stopped_early: bool  # the patience ran out before the last epoch
    restored_best: bool  # the weights are the best epoch's, not the last epoch's
    val_name: str
    train_images: int
    device: str
    precision: str  # fp32 | bf16: what --precision chose on this machine
    threads: int  # torch's intra-op CPU threads the run used (--threads, 0: automatic)
    image_spec: ImageSpec
    # The test set's logits (N, C) under the returned weights when the last validation ran on the test
    # set (--val test, no early-stopping restore): the final evaluation need not compute them again.
    test_logits: torch.Tensor | None = None


def fit(config: TrainConfig, out: str | Path, dataset: Dataset | None = None, progress: Progress | None = None,
        callbacks: Sequence[Callable[[dict], None]] = (), resume: bool = False,
        split: tuple[np.ndarray, np.ndarray] | None = None, world: World | None = None) -> FitResult:
    """Train `config` into the run folder `out`; with `resume`, continue the run saved there.

    `split` = (train indices, validation indices) into the training set overrides `config.val`
    (cross-validation passes its folds this way). `world`: train data-parallel over torchrun's
    processes (every rank calls fit; rank 0 alone reads and writes `out`).
    """
    world = world if world is not None and world.size > 1 else None
    main = world is None or world.main
    run, progress = RunFolder(out), progress or NullProgress()

    def check() -> None:  # before the data are loaded: a mistake costs no time
        if resume and not run.config.is_file():
            raise FmnistError(f"{out}: nothing to resume (no config.yaml: not a run folder)")
        if not resume:
            run.refuse_reuse()

    distributed.on_main(world, check)
    restart = distributed.on_main(world, lambda: resume and not run.resume_state.is_file())  # nothing to continue
    dataset = dataset if dataset is not None else load_dataset(config.data)
    training = setup(config, dataset, split, world)
    checkpointer = Checkpointer(run, training, dataset.classes)
    history, best, first_epoch = checkpointer.restore() if resume and not restart else ([], Best(), 1)
    if restart:
        if main:
            run.discard_progress()
        progress.note(f"{out}: no checkpoint to continue from (--checkpoint none, or stopped before its first one); "
                      "starting the run again from epoch 1")
    elif resume:
        progress.note(f"resuming {out} after epoch {first_epoch - 1}")
    elif main:
        run.start(dump_config(config))
    _announce(progress, training, dataset, split)
    stopped_early = patience_ran_out = False
    for epoch in range(first_epoch, config.epochs + 1):
        trained = train_one_epoch(training, epoch, progress)
        row = {"epoch": epoch, "loss": trained["loss"], "accuracy": trained["accuracy"], **validate(training),
               "lr": trained["lr"], "seconds": trained["seconds"]}
        history.append(row)
        if main:
            run.write_history(history)
        progress.end_epoch(row)
        checkpointer.save(epoch, history, best, improved=best.update(row, training.model))
        for callback in callbacks:
            callback(row)
        if config.early_stop is not None and best.stale >= config.early_stop:
            stopped_early, patience_ran_out = epoch < config.epochs, True
            progress.note(f"early stop: no better val_accuracy for {config.early_stop} epochs; "
                          f"restoring the weights of epoch {best.epoch}")
            break
    if patience_ran_out and best.weights is not None:
        training.model.load_state_dict(best.weights)
    training.model.eval()
    return FitResult(run.path, training.model, training.architecture, dataset.classes, history, config,
                     run.checkpoint(best.path) if best.path else None, stopped_early,
                     patience_ran_out and best.weights is not None, training.data.val_name, len(training.data.train_x),
                     str(training.device), "bf16" if training.amp_dtype is not None else "fp32", torch.get_num_threads(),
                     training.data.image_spec,
                     test_logits=training.val_logits if training.data.val_is_test and not patience_ran_out else None)


def setup(config: TrainConfig, dataset: Dataset, split: tuple[np.ndarray, np.ndarray] | None = None,
          world: World | None = None) -> Training:
    """A fresh, seeded model with its optimizer, and the data on the device. The order of the steps is part
    of the result: torch.manual_seed comes first, then the model draws its weights. With a `world`, every
    rank builds the same model and the training steps go through DistributedDataParallel."""
    device = resolve_device(config.device)
    if world is not None:
        device = distributed.device_of(world, device)  # one GPU per process
    use_threads(config.threads)
    runtime.keep_freed_memory()  # every step frees and takes the same activations: keep them (runtime.py)
    torch.manual_seed(config.seed)  # one place: weights, dropout and augmentation (the shuffle has its own)
    architecture = models.architecture_for(name=config.model, spec=config.spec, num_classes=dataset.num_classes,
                                           options=config.model_options)
    # Channels-last: oneDNN's and cuDNN's fast convolution layout; state_dict and model files are the same.
    model = models.build(architecture).to(device).to(memory_format=torch.channels_last)
    amp_dtype = resolve_precision(config.precision, device)
    augment = Augment.named(config.augment, config.crop_pad)
    data = training_data(config, dataset, device, split)
    optimizer = make_optimizer(config, model.parameters())
    shuffle = torch.Generator().manual_seed(config.seed)
    schedule = Schedule(config, steps_per_epoch=math.ceil(len(data.train_x) / config.batch_size))
    trainer = models.pool_before_activation(model)  # the same function, less work (models/reorder.py)
    if world is not None:
        trainer = nn.parallel.DistributedDataParallel(trainer, device_ids=[device.index] if device.type == "cuda" else None)
    return Training(config, model, architecture, optimizer, schedule, augment, shuffle, amp_dtype, device, data,
                    running_stats=RunningStatsWarmUp(model), world=world, trainer=trainer)


def train_one_epoch(training: Training, epoch: int, progress: Progress) -> dict:
    """One pass over the shuffled training images: {loss, accuracy, lr (the last step's), seconds}."""
    config, model, optimizer, data = training.config, training.model, training.optimizer, training.data
    started = time.perf_counter()
    model.train()
    steps = training.schedule.steps_per_epoch
    progress.start_epoch(epoch, config.epochs, steps)
    order = torch.randperm(len(data.train_x), generator=training.shuffle).to(training.device)
    world = training.world
    if world is not None:
        training.own_stream = distributed.OwnStream(training.device, config.seed, world.rank, epoch)
    loss_sum = torch.zeros((), device=training.device)
    correct = torch.zeros((), device=training.device, dtype=torch.int64)
    seen, refresh = 0, max(1, steps // 50)
    for step in range(steps):
        lr = training.schedule.lr(epoch, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = order[step * config.batch_size : (step + 1) * config.batch_size]
        xb, yb = training.augment(data.train_x[batch]), data.train_y[batch]
        if world is not None:  # every rank augmented the whole batch, as one process does: take this rank's share
            share = distributed.shard(len(batch), world.rank, world.size)
            xb, yb = xb[share], yb[share]
        if training.running_stats is not None:
            training.running_stats.before_step((epoch - 1) * steps + step)
        with training.own_stream or nullcontext(), torch.autocast(training.device.type, dtype=training.amp_dtype or torch.float32,
                                                   enabled=training.amp_dtype is not None):
            logits = training.trainer(xb)
        if world is None:
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=config.label_smoothing)
            summed = loss.detach() * len(yb)
        else:  # DDP averages the ranks' gradients: scaled so, the average is the global batch's mean
            summed = F.cross_entropy(logits.float(), yb, label_smoothing=config.label_smoothing, reduction="sum")
            loss = summed * (world.size / len(batch))
            summed = summed.detach()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += summed
        correct += (logits.detach().argmax(dim=1) == yb).sum()
        seen += len(yb)
        if progress.live and ((step + 1) % refresh == 0 or step + 1 == steps):
            progress.update(step + 1, float(loss_sum) / seen, float(correct) / seen)
    if world is not None:  # the epoch's figures over every rank's share
        loss_sum, correct, seen = distributed.sum_all([float(loss_sum), float(correct), seen], training.device)
    if not math.isfinite(float(loss_sum)):  # float() waits for the device: the epoch's work is done
        kept = f"; the run folder keeps epoch {epoch - 1}" if epoch > 1 and config.checkpoint != "none" else ""
        raise FmnistError(f"training diverged in epoch {epoch} (the loss is not finite){kept}; "
                          "train again with a smaller --lr")
    seconds = time.perf_counter() - started  # training only: validation is not part of the recipe's cost
    return {"loss": float(loss_sum) / seen, "accuracy": float(correct) / seen, "lr": lr, "seconds": seconds}


def validate(training: Training) -> dict:
    """{val_loss, val_accuracy} on the validation images (plain cross-entropy, no label smoothing)."""
    data, world = training.data, training.world
    if world is None:
        training.val_logits = predict_logits(training.model, data.val_x, training.config.eval_batch_size)
    else:  # each rank predicts its share of the images with rank 0's model; every rank gets all logits
        distributed.broadcast_buffers(training.model)
        share = data.val_x[distributed.shard(len(data.val_x), world.rank, world.size)]
        part = predict_logits(training.model, share, training.config.eval_batch_size)
        training.val_logits = distributed.all_rows(part, len(data.val_x), world)
    result = loss_and_accuracy(training.val_logits, data.val_y)
    return {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}


class Checkpointer:
    """After each epoch: the best or every-epoch model file (002's names), then the resume state."""

    def __init__(self, run: RunFolder, training: Training, classes: tuple[str, ...]):
        self.run, self.training, self.classes = run, training, classes

    def _save(self, path: Path, **extra) -> None:
        training = self.training
        save_model(path, training.model, training.architecture, self.classes, config=training.config.to_dict(),
                   image_spec=training.data.image_spec, **extra)

    def save(self, epoch: int, history: list[dict], best: Best, improved: bool) -> None:
        config, run = self.training.config, self.run
        if config.checkpoint == "none" or (self.training.world is not None and not self.training.world.main):
            return
        if config.checkpoint == "every" or improved:
            path = run.checkpoint(checkpoint_name(config.model_name, epoch, history[-1]["val_accuracy"]))
            self._save(path, metrics={key: value for key, value in history[-1].items() if key != "seconds"})
            if config.checkpoint == "best" and best.path and best.path != path.name:
                run.checkpoint(best.path).unlink(missing_ok=True)  # keep one best file, not one per improvement
            if improved:
                best.path = path.name
        training = self.training
        optimizer_tensors, optimizer_values = resume_state.optimizer_state(training.optimizer)
        self._save(run.resume_state,
                   extra_tensors={**optimizer_tensors, **resume_state.rng_state(training.shuffle, training.device)},
                   extra_metadata={"epoch": epoch, "history": history, "best": best.state(),
                                   "optimizer": optimizer_values})

    def restore(self) -> tuple[list[dict], Best, int]:
        """(history, best, next epoch) of the saved run; weights, optimizer and generators restored.
        Under a world, rank 0 reads the run folder and the other ranks receive what it read."""
        training, world = self.training, self.training.world
        if world is None:
            return self._read()
        history, best, next_epoch = self._read() if world.main else (None, None, None)
        state = distributed.broadcast(world, {
            "model": training.model.state_dict(), "optimizer": training.optimizer.state_dict(),
            "rng": resume_state.rng_state(training.shuffle, training.device), "history": history,
            "best": best.state(), "next_epoch": next_epoch} if world.main else None)
        if not world.main:
            training.model.load_state_dict(state["model"])
            training.optimizer.load_state_dict(state["optimizer"])
            resume_state.restore_rng(state["rng"], training.shuffle, training.device)
            history, best, next_epoch = state["history"], Best.from_state(state["best"]), state["next_epoch"]
        return history, best, next_epoch

    def _read(self) -> tuple[list[dict], Best, int]:
        training, run = self.training, self.run
        extra_tensors, extra = read_extras(run.resume_state)
        training.model.load_state_dict(load_model(run.resume_state).model.state_dict())
        resume_state.restore_optimizer(training.optimizer, extra_tensors, extra["optimizer"])
        resume_state.restore_rng(extra_tensors, training.shuffle, training.device)
        best = Best.from_state(extra["best"])
        if best.path and run.checkpoint(best.path).is_file():
            best.weights = load_model(run.checkpoint(best.path), device=training.device).model.state_dict()
        return extra["history"], best, extra["epoch"] + 1


def _announce(progress: Progress, training: Training, dataset: Dataset, split) -> None:
    config, data = training.config, training.data
    if config.early_stop is not None and split is None and parse_val(config.val)[0] == "test":
        progress.note("note: --early-stop with --val test picks the weights on the test set, so the test accuracy "
                      "is optimistic; hold out validation images with --val split:0.1 for an honest figure")
    progress.note(f"training {config.model_name} on {len(data.train_x):,} images, validating on {len(data.val_x):,} "
                  f"({data.val_name}), device {training.device.type} ({torch.get_num_threads()} CPU threads), "
                  f"{'bf16 autocast' if training.amp_dtype is not None else 'fp32'}")
    if config.schedule == "linear":
        progress.note(f"learning rate {config.resolved_lr():g}: linear warm-up over {config.warmup_epochs:g} "
                      f"epoch{'s' if config.warmup_epochs != 1 else ''}, then linear decay to 0")
    if tuple(dataset.classes) != FASHION_CLASSES and (training.augment.flip or getattr(training.model, "tta", False)):
        progress.note("note: horizontal flips (flip augmentation, the fast models' flip TTA) suit classes that look "
                      "the same mirrored, as Fashion-MNIST's do; for digits or letters use --augment none and "
                      "model_options {tta: false}")
