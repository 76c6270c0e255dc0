"""The learning-rate finder's suggestion is a rate a user can train with: one epoch on a slice at the
suggested rate learns (the old rule suggested 1.2e-07 for the baseline, where nothing is learned)."""

from __future__ import annotations

import warnings

import pytest
from test_cli import run

from fmnist.engine.config import build_config
from fmnist.engine.lr_find import lr_find, smooth, suggest_lr
from fmnist.engine.trainer import fit

# (model, optimizer, the training accuracy one epoch on 3,000 images must reach; chance is 0.10). The
# training accuracy, not the validation accuracy: after 94 steps the BatchNorm running statistics of
# minivgg (Keras's momentum 0.99) still hold their initial values, and eval mode would hide the learning.
CASES = [("baseline", "sgd", 0.5), ("baseline", "adam", 0.5), ("conv3", "sgd", 0.45), ("fast", "sgd", 0.45),
         ("minivgg", "sgd", 0.4)]


@pytest.mark.slow
@pytest.mark.parametrize("model,optimizer,floor", CASES)
def test_the_suggested_rate_trains(model, optimizer, floor, fashion, tmp_path):
    data = fashion.limit(train=3000, test=200)
    settings = dict(model=model, optimizer=optimizer, device="cpu", precision="fp32", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sweep itself warns about nothing
        sweep = lr_find(build_config(**settings), data)
    assert 1e-5 < sweep["suggestion"] < 1.0 and sweep["suggestion"] == pytest.approx(sweep["min_loss_lr"] / 10)
    trained = fit(build_config(**settings, lr=sweep["suggestion"], epochs=1, checkpoint="none"), tmp_path / "run",
                  dataset=data)
    assert trained.history[-1]["accuracy"] >= floor, (sweep["suggestion"], trained.history)


def test_the_suggestion_ignores_noise_at_the_start_and_the_blow_up_at_the_end():
    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]
    # flat and noisy, then falling to a minimum at lr 0.1, then exploding; the first points dip lowest of all
    losses = [0.5 if i < 3 else 2.3 + 0.02 * (-1) ** i if lrs[i] < 1e-4 else 2.3 - 0.5 * (i - 37) / 50
              if lrs[i] < 0.1 else 1.8 + (i - 87) * 2 for i in range(100)]
    losses[-2:] = [0.1, 0.1]  # a dip at the very end (a diverging loss can wrap around)
    suggestion, lowest = suggest_lr(lrs, smooth(losses, 2.5))
    assert 0.05 < lowest < 0.3 and suggestion == pytest.approx(lowest / 10)


def test_lr_find_prints_no_warnings(tmp_path, small_idx_dir):
    result = run("lr-find", "--model", "baseline", "--data", small_idx_dir, "--steps", "30", "--out", tmp_path)
    assert "Warning" not in result.stderr, result.stderr
