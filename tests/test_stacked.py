"""Stacked folds (engine/stacked.py, `fmnist cv --parallel-folds`): K folds trained as one stacked model
train what the folds trained one after another train — the same augmentation, data order, seeds,
optimizer state and early stopping per fold — on real data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_cli import run

from fmnist.engine.config import TrainConfig
from fmnist.engine.progress import NullProgress
from fmnist.engine.stack_size import model_bytes, stack_size
from fmnist.engine.stacked import CannotStack, fit_stacked
from fmnist.engine.trainer import fit, setup
from fmnist.workflows.crossval import cross_validate, make_folds


def _fold_configs(folds: int, **options) -> list[TrainConfig]:
    # fp32: under bf16 autocast (--precision auto on an AVX512-BF16 CPU) every activation is rounded to 8
    # significant bits, and the stack adds up in another order than one model: on such a CPU the baseline's
    # weights ended 0.08 apart after 189 steps, beyond any bound that would still catch a wrong step
    return [TrainConfig(checkpoint="none", threads=1, seed=1 + k, precision="fp32", **options) for k in range(folds)]


def _both(tmp_path: Path, data, configs: list[TrainConfig], limit: int):
    splits = make_folds(data.train.labels[:limit], len(configs), 1, False)
    stacked = fit_stacked(configs, [tmp_path / f"stacked-{k}" for k in range(len(configs))], data, splits,
                          [NullProgress()] * len(configs), NullProgress())
    alone = [fit(config, tmp_path / f"alone-{k}", data, split=split)
             for k, (config, split) in enumerate(zip(configs, splits))]
    return stacked, alone


def _worst(first: torch.nn.Module, second: torch.nn.Module, buffers: bool = False) -> float:
    a, b = first.state_dict(), second.state_dict()
    keys = [key for key in a if buffers == ("running" in key)]
    return max(float((a[key].float() - b[key].float()).abs().max()) for key in keys)


def test_stacked_folds_train_the_weights_the_folds_train_one_by_one(tmp_path, fashion):
    # Write-up 000's baseline with flips and crops, 3 folds of 2,000 images, 3 epochs: 189 steps each, at
    # lr 0.005, where training is stable (measured: weights within 3e-5, the same validation accuracies).
    # At 0.01 one fold takes an unstable step in epoch 2 where float rounding (the stack adds up in another
    # order) grows to 1.5e-3 in the weights and 0.4 points: the runs are then no longer comparable.
    configs = _fold_configs(3, model="baseline", epochs=3, limit=3000, augment="flip+crop", lr=0.005)
    stacked, alone = _both(tmp_path, fashion, configs, 3000)
    for together, single in zip(stacked, alone):
        assert _worst(together.model, single.model) < 5e-4
        for row, expected in zip(together.history, single.history, strict=True):
            assert row["val_accuracy"] == pytest.approx(expected["val_accuracy"], abs=0.002)  # 0.2 points
        assert together.history[-1]["loss"] == pytest.approx(single.history[-1]["loss"], rel=1e-4)
    assert stacked[0].history[-1]["val_accuracy"] != stacked[1].history[-1]["val_accuracy"]  # their own data


def test_stacked_folds_train_under_bf16_autocast_as_the_folds_do(tmp_path, fashion):
    # The tests above pin fp32 (see _fold_configs); this one runs the bf16 path the stack takes under
    # --precision auto on an AVX512-BF16 CPU (emulated, so slower, elsewhere): 3 folds of the first 1,500
    # images (1,000 to train on each), one epoch, 32 steps. Measured, native and held to AVX2: stack and folds
    # within 0.005-0.012; fold 1 at twice the learning rate ends 0.09 from the stack, so a stack that stepped
    # wrongly would fail the bound.
    configs = [TrainConfig(model="baseline", epochs=1, limit=1500, augment="flip+crop", lr=0.005, checkpoint="none",
                           threads=1, seed=1 + k, precision="bf16") for k in range(3)]
    stacked, alone = _both(tmp_path, fashion, configs, 1500)
    assert {result.precision for result in stacked + alone} == {"bf16"}
    bound = 0.03
    for together, single in zip(stacked, alone):
        assert _worst(together.model, single.model) < bound
        assert together.history[-1]["loss"] == pytest.approx(single.history[-1]["loss"], rel=0.02)
    splits = make_folds(fashion.train.labels[:1500], 3, 1, False)
    faster = fit(replace(configs[0], lr=0.01), tmp_path / "faster", fashion, split=splits[0])
    assert _worst(stacked[0].model, faster.model) > bound, _worst(stacked[0].model, faster.model)


def test_a_batch_norm_stack_steps_as_each_fold_steps(tmp_path, fashion):
    # Write-up 002's CNN (batch norm in every block), one SGD step per fold: the stack's step moves each
    # fold's weights as the fold's own step does, and updates its own running statistics. Compared by the
    # step, not by the weights after many steps, and loosely: measured here, the sequential step's own
    # gradients of the first convolutions (channels-last layout, oneDNN on this CPU) are 1e-3 to 1e-2 off
    # float64 ones, which moves the later layers' small steps by up to ~11 %; a stack that mixed the folds'
    # data or statistics would be off by their whole step.
    configs = _fold_configs(3, model="fmnistcnn", optimizer="sgd", lr=0.01, epochs=1, limit=150, batch_size=100,
                            augment="flip")
    splits = make_folds(fashion.train.labels[:150], 3, 1, False)
    start = [setup(config, fashion, split).model.state_dict() for config, split in zip(configs, splits)]
    stacked, alone = _both(tmp_path, fashion, configs, 150)
    for initial, together, single in zip(start, stacked, alone):
        a, b = together.model.state_dict(), single.model.state_dict()
        for key in a:
            if key.endswith("num_batches_tracked") or (key.startswith("conv") and key.endswith(".bias")):
                continue  # a count; the biases before batch norm, whose true gradient is 0 (only rounding)
            moved = float((b[key].float() - initial[key].float()).abs().max())
            assert moved > 0, key
            assert float((a[key].float() - b[key].float()).abs().max()) <= 0.25 * moved, key


def test_early_stopping_takes_a_fold_out_of_the_stack(tmp_path, fashion):
    configs = _fold_configs(3, model="baseline", epochs=6, limit=1500, early_stop=1, lr=0.05)
    stacked, alone = _both(tmp_path, fashion, configs, 1500)
    assert [len(result.history) for result in stacked] == [len(result.history) for result in alone]
    assert any(result.stopped_early for result in alone)  # the case is exercised
    for together, single in zip(stacked, alone):
        assert together.stopped_early == single.stopped_early and together.restored_best == single.restored_best
        # lr 0.05 makes folds stop early; it also lets float rounding grow to ~1e-2 in the weights (measured):
        # close enough to tell that the restored weights are the same epoch's (epochs differ by ~1e-1)
        assert _worst(together.model, single.model) < 5e-2


def test_runs_that_take_different_steps_per_epoch_are_not_stacked(tmp_path, fashion):
    # 1,001 images in 3 folds: training parts of 667 and 668 images; batches of 667 make 1 and 2 steps.
    configs = _fold_configs(3, model="dense", epochs=1, limit=1001, batch_size=667)
    splits = make_folds(fashion.train.labels[:1001], 3, 1, False)
    with pytest.raises(CannotStack, match="different numbers of steps per epoch"):
        fit_stacked(configs, [tmp_path / str(k) for k in range(3)], fashion, splits, [NullProgress()] * 3,
                    NullProgress())
    assert not any((tmp_path / str(k)).exists() for k in range(3))  # refused before any folder is written
    stacked = cross_validate([TrainConfig(model="dense", epochs=1, limit=1001, batch_size=667, threads=1)],
                             tmp_path / "cv-stacked", folds=3, dataset=fashion, parallel_folds=3)
    alone = cross_validate([TrainConfig(model="dense", epochs=1, limit=1001, batch_size=667, threads=1)],
                           tmp_path / "cv-alone", folds=3, dataset=fashion, parallel_folds=1)
    assert stacked["models"][0]["scores"] == alone["models"][0]["scores"]


def test_cross_validation_stacked_and_automatic_give_the_sequential_scores(tmp_path, fashion):
    config = TrainConfig(model="baseline", epochs=1, limit=1500, augment="flip+crop", threads=1, precision="fp32")
    results = {parallel: cross_validate([config], tmp_path / str(parallel), folds=3, dataset=fashion,
                                        parallel_folds=parallel)["models"][0] for parallel in (1, 3, "auto")}
    assert results[1]["scores"] == results[3]["scores"] == results["auto"]["scores"]
    assert results[3]["parallel_folds"] == 3 and results[1]["parallel_folds"] == 1
    # auto on a CPU times the stack against one model and stacks only when that is faster
    assert results["auto"]["parallel_folds"] in (1, 3) and "(timed)" in results["auto"]["stacking"]
    saved = json.loads((tmp_path / "3" / "cv.json").read_text())["models"][0]
    assert saved["parallel_folds"] == 3 and saved["stacking"] == "--parallel-folds 3"
    for fold in (1, 2, 3):
        assert (tmp_path / "3" / f"fold-{fold}" / "history.csv").read_text().count("\n") == 2


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_parallel_folds_must_be_auto_or_a_whole_number(tmp_path, value):
    result = run("cv", "--parallel-folds", value, "--out", tmp_path / "cv", check_code=2)
    assert result.returncode == 2
    assert result.stderr.strip() == f"fmnist: error: --parallel-folds must be auto or a whole number of at least 1, " \
                                    f"got {value!r}"


def test_the_gpu_stack_size_follows_memory():
    baseline = {"name": "baseline"}
    one = model_bytes(baseline, batch_size=32)
    assert one > 4 * 4 * 500_000  # weights, gradients and two moments of its ~540k weights, at least
    assert stack_size(one, free_bytes=10 * one, folds=5) == 5
    assert stack_size(one, free_bytes=3 * one, folds=5) == 2  # 80 % of 3 models' worth
    assert stack_size(one, free_bytes=one // 2, folds=5) == 1  # never fewer than one
