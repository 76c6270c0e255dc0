"""Seeded train/validation splits. Every function returns index arrays (sorted, int64).

The same seed always gives the same indices, on any machine, so every model meets the same folds.
"""

from __future__ import annotations

import numpy as np


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")


def random_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: a random `fraction` of range(n) held out."""
    _check_fraction(fraction)
    from sklearn.model_selection import train_test_split  # over a second to import: only when splitting

    train, val = train_test_split(np.arange(n), test_size=fraction, random_state=seed, shuffle=True)
    return np.sort(train), np.sort(val)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices with each class's share the same in both parts."""
    _check_fraction(fraction)
    from sklearn.model_selection import train_test_split  # over a second to import: only when splitting

    labels = np.asarray(labels)
    train, val = train_test_split(
        np.arange(len(labels)), test_size=fraction, random_state=seed, shuffle=True, stratify=labels
    )
    return np.sort(train), np.sort(val)


def balanced_holdout(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices with exactly `per_class` images of every class held out.

    Write-up 002 holds out 1000 images per class from the training set this way.
    """
    labels = np.asarray(labels)
    if per_class < 1:
        raise ValueError(f"images per class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) <= per_class:
            raise ValueError(
                f"class {label} has {len(members)} images; cannot hold out {per_class} and still train on it"
            )
        held.append(rng.choice(members, size=per_class, replace=False))
    val = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val


def kfold(n: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's KFold(folds, shuffle=True, random_state=seed), as write-up 000 uses it."""
    from sklearn.model_selection import KFold  # over a second to import: only when splitting

    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(train, val) for train, val in splitter.split(np.zeros(n))]


def stratified_kfold(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """StratifiedKFold: every fold keeps the class proportions of `labels`."""
    from sklearn.model_selection import StratifiedKFold  # over a second to import: only when splitting

    labels = np.asarray(labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(train, val) for train, val in splitter.split(np.zeros(len(labels)), labels)]
