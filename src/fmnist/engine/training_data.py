"""What a run trains and validates on: the training images (all, a --limit, or a fold), the validation
images its `val` names, both moved to the training device as uint8, and what they look like."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fmnist.data import splits
from fmnist.data.dataset import Dataset
from fmnist.engine.config import ConfigError, TrainConfig, parse_val
from fmnist.image_spec import ImageSpec, measure_spec


@dataclass
class TrainingData:
    """What a run trains and validates on, resident on the training device."""

    train_x: torch.Tensor  # (N, 1, S, S) uint8
    train_y: torch.Tensor  # (N,) int64
    val_x: torch.Tensor  # (V, 1, S, S) uint8
    val_y: torch.Tensor  # (V,) int64
    val_name: str  # which images validate, in words (the log and metrics.json say it)
    image_spec: ImageSpec  # what the training images look like; every model file records it
    val_is_test: bool = False  # the validation images are the whole test set (--val test)


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


def training_data(config: TrainConfig, dataset: Dataset, device: torch.device,
                  split: tuple[np.ndarray, np.ndarray] | None = None) -> TrainingData:
    """The training and validation images on `device`: the config's `val`, or the given split."""
    train_count = len(dataset.train) if config.limit is None else min(config.limit, len(dataset.train))
    if split is None:
        train_idx, val_images, val_labels, val_name = validation_split(config, dataset, train_count)
    else:
        train_idx, val_idx = split
        val_images, val_labels = dataset.train.images[val_idx], dataset.train.labels[val_idx]
        val_name = f"{len(val_idx):,} held-out training images"
    train_images = dataset.train.images[:train_count][train_idx]
    train_x, train_y = _to_device(train_images, dataset.train.labels[:train_count][train_idx], device)
    val_x, val_y = _to_device(val_images, val_labels, device)
    val_is_test = split is None and parse_val(config.val)[0] == "test"
    return TrainingData(train_x, train_y, val_x, val_y, val_name, measure_spec(train_images), val_is_test)


def _to_device(images: np.ndarray, labels: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(device)  # (N, 1, 28, 28) uint8
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)).to(device)  # (N,)
    return x, y
