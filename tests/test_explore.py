"""`fmnist explore --seed`: the random samples per class are reproducible, and the seed chooses them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from forked import fmnist_process
from PIL import Image

SAMPLE_FIGURES = ("samples-train.png", "samples-test.png")


def _explore(data: Path, out: Path, seed: int) -> Path:
    result = fmnist_process("explore", "--data", data, "--out", out, "--seed", seed, "--quiet")
    assert result.returncode == 0, result.stderr
    return out


def test_explore_seed_picks_the_samples_reproducibly(tmp_path, small_idx_dir):
    first = _explore(small_idx_dir, tmp_path / "first", seed=3)
    again = _explore(small_idx_dir, tmp_path / "again", seed=3)
    other = _explore(small_idx_dir, tmp_path / "other", seed=4)
    for name in SAMPLE_FIGURES:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name  # same seed: the same file
        chosen = np.asarray(Image.open(first / name).convert("L"))
        rechosen = np.asarray(Image.open(other / name).convert("L"))
        assert chosen.shape == rechosen.shape, name
        # The title names the seed; the lower half of the figure is images only (the 4 per class of
        # classes 5-9 with their class names), so it differs only when other images were chosen.
        lower = chosen.shape[0] // 2
        assert not np.array_equal(chosen[lower:], rechosen[lower:]), name
    # The figures that are not random do not depend on the seed.
    for name in ("first-images.png", "class-means.png", "class-distribution.png"):
        assert (first / name).read_bytes() == (other / name).read_bytes(), name
