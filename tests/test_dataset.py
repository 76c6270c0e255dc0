"""The real dataset, its three layouts, and the order in which sources are searched."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_idx_set

from fmnist.data import formats, sources
from fmnist.data.dataset import FASHION_CLASSES, load_dataset
from fmnist.errors import DataError


def test_official_dataset_shapes_counts_and_labels(fashion):
    assert fashion.verified
    assert fashion.train.images.shape == (60000, 28, 28)
    assert fashion.test.images.shape == (10000, 28, 28)
    assert fashion.train.images.dtype == np.uint8 and fashion.test.images.dtype == np.uint8
    assert fashion.train.labels.dtype == np.int64 and fashion.test.labels.dtype == np.int64
    assert fashion.train.labels.shape == (60000,) and fashion.test.labels.shape == (10000,)
    assert list(fashion.train.class_counts(10)) == [6000] * 10
    assert list(fashion.test.class_counts(10)) == [1000] * 10
    assert list(fashion.train.labels[:10]) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert fashion.train.images.mean() == pytest.approx(72.94, abs=0.005)
    assert fashion.classes == FASHION_CLASSES
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"


def test_three_layouts_give_identical_arrays(tmp_path, small_idx_dir):
    idx = load_dataset(small_idx_dir, download=False)
    csv_dir = tmp_path / "csv"
    formats.write_kaggle_csv(csv_dir / "fashion-mnist_train.csv", idx.train.images, idx.train.labels)
    formats.write_kaggle_csv(csv_dir / "fashion-mnist_test.csv", idx.test.images, idx.test.labels)
    folder_dir = tmp_path / "folders"
    formats.write_image_folder(folder_dir / "train", idx.train.images, idx.train.labels, list(idx.classes))
    formats.write_image_folder(folder_dir / "test", idx.test.images, idx.test.labels, list(idx.classes))

    for directory, layout in ((csv_dir, "csv"), (folder_dir, "folders")):
        other = load_dataset(directory, download=False)
        assert other.source.layout == layout
        for split in ("train", "test"):
            mine, theirs = getattr(idx, split), getattr(other, split)
            assert np.array_equal(mine.images, theirs.images), (layout, split)
            assert np.array_equal(mine.labels, theirs.labels), (layout, split)
            assert theirs.images.dtype == np.uint8 and theirs.labels.dtype == np.int64
        assert other.classes == FASHION_CLASSES


def test_gz_and_raw_idx_and_tool_layouts_load_the_same(tmp_path, fashion, small_idx_dir):
    torchvision_raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    write_idx_set(torchvision_raw, fashion.train.images[:50], fashion.train.labels[:50],
                  fashion.test.images[:20], fashion.test.labels[:20], suffix=".gz")
    found = load_dataset(tmp_path / "tv", download=False)
    assert found.source.directory == torchvision_raw
    assert np.array_equal(found.train.images, fashion.train.images[:50])
    assert not found.verified  # a slice is not the official file


def test_image_folders_accept_colour_and_other_sizes(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for name in ("cats", "dogs"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            Image.new("RGB", (64, 48), (255, 0, 0) if name == "cats" else (0, 0, 255)).save(folder / "a.jpg")
    dataset = load_dataset(tmp_path, download=False)
    assert dataset.classes == ("cats", "dogs")
    assert dataset.train.images.shape == (2, 28, 28)
    assert list(dataset.train.labels) == [0, 1]
    # Red and blue have different luminance: the colour really went through a grayscale conversion.
    assert dataset.train.images[0].mean() != dataset.train.images[1].mean()


def test_classes_file_names_other_data(tmp_path, fashion):
    labels = np.array([0, 1, 2, 11] * 5)
    write_idx_set(tmp_path, fashion.train.images[:20], labels, fashion.test.images[:4], labels[:4])
    with pytest.raises(DataError, match=r"label 11 at index 3 is outside 0-9"):
        load_dataset(tmp_path, download=False)
    (tmp_path / "classes.txt").write_text("\n".join(f"class {i}" for i in range(12)) + "\n")
    dataset = load_dataset(tmp_path, download=False)
    assert dataset.num_classes == 12 and dataset.classes[11] == "class 11"


def test_source_order_data_then_env_then_system(tmp_path, monkeypatch, small_idx_dir):
    monkeypatch.setenv("FMNIST_DATA", str(small_idx_dir))
    assert load_dataset(download=False).source.kind == "$FMNIST_DATA"
    other = tmp_path / "other"
    other.mkdir()
    dataset = load_dataset(small_idx_dir, download=False)
    write_idx_set(other, dataset.train.images[:10], dataset.train.labels[:10],
                  dataset.test.images[:5], dataset.test.labels[:5])
    explicit = load_dataset(other, download=False)
    assert explicit.source.kind == "--data" and len(explicit.train) == 10
    monkeypatch.delenv("FMNIST_DATA")
    assert load_dataset(download=False).source.kind in ("cache", "system", "keras")


def test_corrupt_cache_copy_is_skipped_not_used(tmp_path, monkeypatch, small_idx_dir):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FMNIST_CACHE", str(cache))
    dataset = load_dataset(small_idx_dir, download=False)
    write_idx_set(cache, dataset.train.images, dataset.train.labels, dataset.test.images, dataset.test.labels)
    notes = []
    found = load_dataset(download=False, log=notes.append)
    assert found.source.kind != "cache" and found.verified
    assert any("checksum mismatch" in note and "cache" in note for note in notes)


def test_nothing_found_and_no_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "SYSTEM_DIRS", ())
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError, match="Fashion-MNIST not found"):
        load_dataset(download=False)


def test_limit_takes_the_first_images(fashion):
    small = fashion.limit(train=30, test=10)
    assert len(small.train) == 30 and len(small.test) == 10
    assert np.array_equal(small.train.labels, fashion.train.labels[:30])
