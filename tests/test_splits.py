"""Hold-out and k-fold splits on the real labels: disjoint, covering, stratified, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.data import splits


def _check_partition(train, val, n):
    assert train.dtype.kind == "i" and val.dtype.kind == "i"
    assert len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(n))


def test_random_holdout(fashion):
    n = len(fashion.train)
    train, val = splits.random_holdout(n, 0.2, seed=2018)
    _check_partition(train, val, n)
    assert len(val) == 12000
    again = splits.random_holdout(n, 0.2, seed=2018)
    assert np.array_equal(val, again[1])
    assert not np.array_equal(val, splits.random_holdout(n, 0.2, seed=2019)[1])


def test_stratified_holdout_keeps_class_shares(fashion):
    labels = fashion.train.labels[:5000]
    train, val = splits.stratified_holdout(labels, 0.1, seed=1)
    _check_partition(train, val, 5000)
    expected = np.bincount(labels, minlength=10) * 0.1
    assert np.all(np.abs(np.bincount(labels[val], minlength=10) - expected) <= 1)


def test_balanced_holdout_takes_n_per_class(fashion):
    labels = fashion.train.labels
    train, val = splits.balanced_holdout(labels, 1000, seed=0)
    _check_partition(train, val, len(labels))
    assert list(np.bincount(labels[val], minlength=10)) == [1000] * 10
    assert np.array_equal(val, splits.balanced_holdout(labels, 1000, seed=0)[1])
    with pytest.raises(ValueError, match="cannot hold out 6000"):
        splits.balanced_holdout(labels, 6000, seed=0)


@pytest.mark.parametrize("stratified", [False, True])
def test_kfold_disjoint_covering_and_seeded(fashion, stratified):
    labels = fashion.train.labels
    folds = (splits.stratified_kfold(labels, 5, seed=1) if stratified else splits.kfold(len(labels), 5, seed=1))
    assert len(folds) == 5
    all_val = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(all_val), np.arange(len(labels)))  # every image validated once
    for train, val in folds:
        _check_partition(train, val, len(labels))
        assert len(val) == 12000
        if stratified:
            assert list(np.bincount(labels[val], minlength=10)) == [1200] * 10
    again = splits.stratified_kfold(labels, 5, seed=1) if stratified else splits.kfold(len(labels), 5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_kfold_matches_write_up_000():
    # Write-up 000: KFold(5, shuffle=True, random_state=1).split(data)
    from sklearn.model_selection import KFold

    expected = list(KFold(5, shuffle=True, random_state=1).split(np.zeros(100)))
    for (train, val), (train_ref, val_ref) in zip(splits.kfold(100, 5, seed=1), expected):
        assert np.array_equal(train, train_ref) and np.array_equal(val, val_ref)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="between 0 and 1"):
        splits.random_holdout(100, fraction, seed=0)
