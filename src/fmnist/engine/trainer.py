"""fit(): the training loop, its history, checkpoints, early stopping and exact resume.

Data stay uint8 tensors on the training device; each batch is gathered by index and the model
scales it itself. Metrics accumulate on the device, so the host waits only when progress is drawn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from fmnist import models
from fmnist._io import write_text_atomic
from fmnist.data import splits
from fmnist.data.augment import Augment
from fmnist.data.dataset import FASHION_CLASSES, Dataset, load_dataset
from fmnist.device import resolve_device, resolve_precision
from fmnist.engine import state as run_state
from fmnist.engine.config import ConfigError, TrainConfig, config_from_dict, dump_config, parse_val
from fmnist.engine.evaluate import loss_and_accuracy, predict_logits
from fmnist.engine.progress import NullProgress
from fmnist.errors import FmnistError
from fmnist.images import measure_spec
from fmnist.modelfile import load_model, read_extras, save_model

RESUME_FILE = "resume.safetensors"


@dataclass
class TrainResult:
    out: Path
    model: torch.nn.Module
    architecture: dict
    classes: tuple[str, ...]
    history: list[dict]
    metrics: dict
    config: TrainConfig
    best_checkpoint: Path | None = None
    stopped_early: bool = False
    extra: dict = field(default_factory=dict)


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


def make_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    lr = config.resolved_lr()
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        # eps=1e-7: Keras's Adam epsilon, so the write-ups' Adam recipes match.
        return torch.optim.Adam(parameters, lr=lr, eps=1e-7, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, eps=1e-7, weight_decay=config.weight_decay)


def validation_split(config: TrainConfig, dataset: Dataset, train_count: int):
    """(train indices, validation images, validation labels, name) for the config's `val`."""
    kind, value = parse_val(config.val)
    labels = dataset.train.labels[:train_count]
    if kind == "test":
        return np.arange(train_count), dataset.test.images, dataset.test.labels, "test set"
    try:
        if kind == "split":
            train_idx, val_idx = splits.random_holdout(train_count, value, seed=config.seed)
            name = f"{value:.0%} of the training set"
        else:
            train_idx, val_idx = splits.balanced_holdout(labels, value, seed=config.seed)
            name = f"{value} training images per class"
    except ValueError as exc:  # too few images for the hold-out asked for
        raise ConfigError(f"val {config.val}: {exc}") from None
    images = dataset.train.images[:train_count]
    return train_idx, images[val_idx], labels[val_idx], name


def _to_device(images: np.ndarray, labels: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(device)  # (N, 1, 28, 28) uint8
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)).to(device)  # (N,)
    return x, y


def checkpoint_name(model_name: str, epoch: int, val_accuracy: float) -> str:
    """Write-up 002's naming: `{model}-epoch-{NN}-val_acc-{0.xxxx}`."""
    return f"{model_name}-epoch-{epoch:02d}-val_acc-{val_accuracy:.4f}.safetensors"


def fit(
    config: TrainConfig,
    out: str | Path,
    dataset: Dataset | None = None,
    progress: NullProgress | None = None,
    callbacks: Sequence[Callable[[dict], None]] = (),
    resume: bool = False,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainResult:
    """Train `config` into the run folder `out`; with `resume`, continue the run saved there.

    `split` = (train indices, validation indices) into the training set overrides `config.val`
    (cross-validation passes its folds this way).
    """
    out = Path(out)
    progress = progress or NullProgress()
    checkpoints = out / "checkpoints"
    resume_path = checkpoints / RESUME_FILE
    if resume and not resume_path.is_file():
        raise FmnistError(f"{out}: nothing to resume (no checkpoints/{RESUME_FILE}; was it run with --checkpoint none?)")
    dataset = dataset if dataset is not None else load_dataset(config.data)
    device = resolve_device(config.device)
    train_count = len(dataset.train) if config.limit is None else min(config.limit, len(dataset.train))

    torch.manual_seed(config.seed)  # one place: weights, dropout and (below) the shuffle order
    architecture = models.architecture_for(name=config.model, spec=config.spec, num_classes=dataset.num_classes,
                                           options=config.model_options)
    # Channels-last: oneDNN's and cuDNN's fast convolution layout. Only the memory layout changes;
    # state_dict and model files are the same.
    model = models.build(architecture).to(device).to(memory_format=torch.channels_last)
    amp_dtype = resolve_precision(config.precision, device)
    augment = Augment.named(config.augment, config.crop_pad)  # draws from the seeded global generator
    if split is None:
        train_idx, val_images, val_labels, val_name = validation_split(config, dataset, train_count)
    else:
        train_idx, val_idx = split
        val_images, val_labels = dataset.train.images[val_idx], dataset.train.labels[val_idx]
        val_name = f"{len(val_idx):,} held-out training images"
    train_images = dataset.train.images[:train_count][train_idx]
    image_spec = measure_spec(train_images)  # recorded in every model file: predict makes photos look like these
    train_x, train_y = _to_device(train_images, dataset.train.labels[:train_count][train_idx], device)
    val_x, val_y = _to_device(val_images, val_labels, device)
    optimizer = make_optimizer(config, model.parameters())
    shuffle = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    base_lr = config.resolved_lr()

    history: list[dict] = []
    best = {"val_accuracy": -1.0, "epoch": 0, "path": None, "stale": 0}
    start_epoch = 1
    if resume:
        extra_tensors, extra = read_extras(resume_path)
        model.load_state_dict(load_model(resume_path).model.state_dict())
        run_state.restore_optimizer(optimizer, extra_tensors, extra["optimizer"])
        run_state.restore_rng(extra_tensors, shuffle, device)
        history, best, start_epoch = extra["history"], extra["best"], extra["epoch"] + 1
        progress.note(f"resuming {out} after epoch {extra['epoch']}")
    else:
        if (out / "config.yaml").exists():
            raise FmnistError(f"{out}: already holds a run; continue it with --resume or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.yaml", dump_config(config))
    if config.early_stop is not None and split is None and parse_val(config.val)[0] == "test":
        progress.note("note: --early-stop with --val test picks the weights on the test set, so the test accuracy "
                      "is optimistic; hold out validation images with --val split:0.1 for an honest figure")
    progress.note(f"training {config.model_name} on {len(train_x):,} images, validating on {len(val_x):,} ({val_name}), "
                  f"device {device.type}, {'bf16 autocast' if amp_dtype is not None else 'fp32'}")
    if tuple(dataset.classes) != FASHION_CLASSES and (augment.flip or getattr(model, "tta", False)):
        progress.note("note: horizontal flips (flip augmentation, the fast models' flip TTA) suit classes that look "
                      "the same mirrored, as Fashion-MNIST's do; for digits or letters use --augment none and "
                      "model_options {tta: false}")

    best_weights = None
    if resume and best["path"] and (checkpoints / best["path"]).is_file():
        best_weights = load_model(checkpoints / best["path"], device=device).model.state_dict()
    stopped_early = patience_ran_out = False
    for epoch in range(start_epoch, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        progress.start_epoch(epoch, config.epochs, steps_per_epoch)
        order = torch.randperm(len(train_x), generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        refresh = max(1, steps_per_epoch // 50)
        for step in range(steps_per_epoch):
            global_step = (epoch - 1) * steps_per_epoch + step
            lr = base_lr * lr_factor(config, global_step, total_steps, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            xb, yb = augment(train_x[batch]), train_y[batch]
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(dim=1) == yb).sum()
            seen += len(yb)
            if getattr(progress, "live", True) and ((step + 1) % refresh == 0 or step + 1 == steps_per_epoch):
                progress.update(step + 1, float(loss_sum) / seen, float(correct) / seen)
        if not math.isfinite(float(loss_sum)):  # float() waits for the device: the epoch's work is done
            raise FmnistError(f"training diverged in epoch {epoch} (loss is not finite); try a smaller --lr")
        seconds = time.perf_counter() - started  # training only: validation is not part of the recipe's cost
        val = loss_and_accuracy(predict_logits(model, val_x, config.eval_batch_size), val_y)
        row = {"epoch": epoch, "loss": float(loss_sum) / seen, "accuracy": float(correct) / seen,
               "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": lr, "seconds": seconds}
        history.append(row)
        run_state.write_history(out / "history.csv", history)
        progress.end_epoch(row)
        improved = row["val_accuracy"] > best["val_accuracy"]
        if improved:
            best.update(val_accuracy=row["val_accuracy"], epoch=epoch, stale=0)
            best_weights = {key: value.detach().clone() for key, value in model.state_dict().items()}
        else:
            best["stale"] += 1
        _write_checkpoints(config, out, model, architecture, dataset.classes, optimizer, shuffle, device,
                           history, best, epoch, improved, image_spec)
        for callback in callbacks:
            callback(row)
        if config.early_stop is not None and best["stale"] >= config.early_stop:
            stopped_early, patience_ran_out = epoch < config.epochs, True
            progress.note(f"early stop: no better val_accuracy for {config.early_stop} epochs; "
                          f"restoring the weights of epoch {best['epoch']}")
            break

    if patience_ran_out and best_weights is not None:
        model.load_state_dict(best_weights)
    model.eval()
    return TrainResult(out, model, architecture, dataset.classes, history, {}, config,
                       checkpoints / best["path"] if best["path"] else None, stopped_early,
                       extra={"val_name": val_name, "train_images": len(train_x), "device": str(device),
                              "precision": "bf16" if amp_dtype is not None else "fp32",
                              "restored_best": patience_ran_out and best_weights is not None,
                              "image_spec": image_spec})


def _write_checkpoints(config, out, model, architecture, classes, optimizer, shuffle, device,
                       history, best, epoch, improved, image_spec) -> None:
    """Best / every-epoch model files (002's names), then the resume state; all atomic."""
    if config.checkpoint == "none":
        return
    checkpoints = out / "checkpoints"
    row = history[-1]
    if config.checkpoint == "every" or improved:
        path = checkpoints / checkpoint_name(config.model_name, epoch, row["val_accuracy"])
        save_model(path, model, architecture, classes, config=config.to_dict(),
                   metrics={k: v for k, v in row.items() if k != "seconds"}, image_spec=image_spec)
        if config.checkpoint == "best" and best["path"] and best["path"] != path.name:
            (checkpoints / best["path"]).unlink(missing_ok=True)  # keep one best file, not one per improvement
        if improved:
            best["path"] = path.name  # relative to checkpoints/: the run folder can move
    optimizer_tensors, optimizer_values = run_state.optimizer_state(optimizer)
    save_model(
        checkpoints / RESUME_FILE, model, architecture, classes, config=config.to_dict(),
        extra_tensors={**optimizer_tensors, **run_state.rng_state(shuffle, device)},
        extra_metadata={"epoch": epoch, "history": history, "best": best, "optimizer": optimizer_values},
        image_spec=image_spec,
    )


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The config a run folder was trained with (for --resume)."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FmnistError(f"{run_dir}: not a run folder (no config.yaml)")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    return config_from_dict(values, origin=str(path))
