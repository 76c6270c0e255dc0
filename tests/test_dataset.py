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


# (sub-folder, file-name suffix, dotted names): where tools keep the IDX files, raw or compressed.
IDX_VARIANTS = [
    (".", "", False),
    (".", ".gz", False),
    (".", ".gz", True),  # the original MNIST site's spelling: train-images.idx3-ubyte.gz
    ("FashionMNIST/raw", ".gz", False),  # torchvision, as downloaded
    ("FashionMNIST/raw", "", False),  # torchvision, after it unpacks them
    ("fashion-mnist", ".gz", False),  # Keras's cache (~/.keras/datasets/fashion-mnist)
    ("data/fashion", ".gz", False),  # a clone of Zalando's repository
]


@pytest.mark.parametrize("sub, suffix, dotted", IDX_VARIANTS,
                         ids=[f"{sub}{suffix or '-raw'}{'-dotted' if dotted else ''}" for sub, suffix, dotted in IDX_VARIANTS])
def test_gz_and_raw_idx_and_tool_layouts_load_the_same(tmp_path, fashion, sub, suffix, dotted):
    """Each variant really is loaded from its own files, and gives the arrays that were written."""
    folder = tmp_path / "data" / sub
    write_idx_set(folder, fashion.train.images[:50], fashion.train.labels[:50],
                  fashion.test.images[:20], fashion.test.labels[:20], suffix=suffix)
    if dotted:
        for path in folder.iterdir():
            path.rename(path.with_name(path.name.replace("-idx", ".idx")))
    found = load_dataset(tmp_path / "data", download=False)
    assert (found.source.layout, found.source.directory) == ("idx", folder)
    assert sorted(p.name for p in found.source.files.values()) == sorted(p.name for p in folder.iterdir())
    assert all(p.name.endswith(suffix or "ubyte") for p in found.source.files.values())
    for split, count in (("train", 50), ("test", 20)):
        mine, theirs = getattr(found, split), getattr(fashion, split)
        assert np.array_equal(mine.images, theirs.images[:count]) and np.array_equal(mine.labels, theirs.labels[:count])
        assert mine.images.dtype == np.uint8 and mine.labels.dtype == np.int64
    assert not found.verified  # a slice is not the official file


def test_kaggle_short_csv_names(tmp_path, fashion):
    """Kaggle's competition files are also called train.csv and test.csv."""
    formats.write_kaggle_csv(tmp_path / "train.csv", fashion.train.images[:30], fashion.train.labels[:30])
    formats.write_kaggle_csv(tmp_path / "test.csv", fashion.test.images[:10], fashion.test.labels[:10])
    found = load_dataset(tmp_path, download=False)
    assert found.source.layout == "csv"
    assert {role: path.name for role, path in found.source.files.items()} == {"train": "train.csv", "test": "test.csv"}
    assert np.array_equal(found.train.images, fashion.train.images[:30])
    assert np.array_equal(found.train.labels, fashion.train.labels[:30])
    assert np.array_equal(found.test.images, fashion.test.images[:10]) and found.classes == FASHION_CLASSES


def test_a_numeric_folder_prefix_sets_the_label(tmp_path):
    """11 numbered class folders whose names sort differently from their numbers, both as strings
    ("10_" before "2_") and by the class name after the prefix (aardvark ... zebra): every image's
    label is its folder's number. Each image's grey level (20 x its label) says where it came from."""
    from PIL import Image

    names = ["zebra", "yak", "xerus", "wolf", "vole", "urchin", "tapir", "seal", "rhea", "quail", "aardvark"]
    separators = ["_", "_", "-", " ", "_", "-", "_", "_", " ", "_", "_"]
    for split, per_class in (("train", 2), ("test", 1)):
        for label, (name, separator) in enumerate(zip(names, separators)):
            folder = tmp_path / split / f"{label}{separator}{name}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("L", (28, 28), 20 * label).save(folder / f"img{i}.png")
    assert sorted(p.name for p in (tmp_path / "train").iterdir())[:3] == ["0_zebra", "10_aardvark", "1_yak"]
    dataset = load_dataset(tmp_path, download=False)
    assert dataset.classes == tuple(names)
    for split in (dataset.train, dataset.test):
        assert np.array_equal(split.images[:, 0, 0], 20 * split.labels)
        assert sorted(split.labels.tolist()) == sorted(list(range(11)) * (len(split) // 11))


def test_numbered_class_folders_must_run_from_zero(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for name in ("1_a", "2_b"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("L", (28, 28)).save(tmp_path / split / name / "x.png")
    with pytest.raises(DataError) as caught:
        load_dataset(tmp_path, download=False)
    assert str(caught.value) == f"{tmp_path / 'train'}: numbered class folders must run 0..1, found [1, 2]"


def _link_official_files(directory, fashion):
    """The official files the session found, linked into `directory` (as a tool keeps them)."""
    assert fashion.source.layout == "idx"
    directory.mkdir(parents=True)
    for path in fashion.source.files.values():
        (directory / path.name).symlink_to(path)
    return directory


def test_the_cache_folder_follows_fmnist_cache_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FMNIST_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert sources.cache_dir() == tmp_path / "home" / ".cache" / "fmnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.cache_dir() == tmp_path / "xdg" / "fmnist"
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path / "mine"))
    assert sources.cache_dir() == tmp_path / "mine"
    kinds = [(kind, directory) for kind, directory in sources.search_path()]
    assert kinds[0] == ("cache", tmp_path / "mine")
    assert kinds[-1] == ("keras", tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist")


@pytest.mark.parametrize("where", ["xdg", "home"])
def test_an_official_copy_in_the_user_cache_is_found_before_system_copies(tmp_path, monkeypatch, fashion, where):
    """With $FMNIST_CACHE unset: $XDG_CACHE_HOME/fmnist, else ~/.cache/fmnist (the system copy is
    still on the search path, after the cache)."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FMNIST_CACHE")
    if where == "xdg":
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        cache = _link_official_files(tmp_path / "xdg" / "fmnist", fashion)
    else:
        monkeypatch.delenv("XDG_CACHE_HOME")
        cache = _link_official_files(home / ".cache" / "fmnist", fashion)
    monkeypatch.setattr(sources, "SYSTEM_DIRS", (_link_official_files(tmp_path / "system", fashion),))
    found = load_dataset(download=False)
    assert (found.source.kind, found.source.directory) == ("cache", cache)
    assert found.verified and np.array_equal(found.test.labels, fashion.test.labels)


def test_keras_cache_is_the_last_place_searched(tmp_path, monkeypatch, fashion):
    """~/.keras/datasets/fashion-mnist (Keras's own download, four .gz files) is used when nothing
    else is installed; a system copy comes first."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    keras = _link_official_files(tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist", fashion)
    system = _link_official_files(tmp_path / "system", fashion)
    monkeypatch.setattr(sources, "SYSTEM_DIRS", (system,))
    assert load_dataset(download=False).source.kind == "system"
    monkeypatch.setattr(sources, "SYSTEM_DIRS", ())
    found = load_dataset(download=False)
    assert (found.source.kind, found.source.directory) == ("keras", keras)
    assert found.verified and np.array_equal(found.train.labels, fashion.train.labels)


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
