"""The in-memory dataset every other part of fmnist consumes.

Images stay uint8 (N, 28, 28) until a batch reaches its device; labels are int64 (N,).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.data import formats, sources
from fmnist.errors import DataError
from fmnist.limits import MAX_CLASSES_BYTES

FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CLASSES_FILE = "classes.txt"  # optional, beside IDX/CSV data: one class name per line


@dataclass(frozen=True)
class Split:
    """One split (train or test): images uint8 (N, 28, 28) and labels int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray | slice) -> Split:
        return Split(self.images[indices], self.labels[indices])

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)


@dataclass(frozen=True)
class Dataset:
    """Both splits, the class names, and where they came from."""

    train: Split
    test: Split
    classes: tuple[str, ...]
    source: sources.Source
    verified: bool  # True when every file matched the official Fashion-MNIST checksums

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def limit(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first `train` / `test` images of each split (for smoke runs and tests)."""
        return Dataset(
            self.train.subset(slice(train)),
            self.test.subset(slice(test)),
            self.classes,
            self.source,
            self.verified,
        )


def make_split(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    images_origin: str | Path,
    labels_origin: str | Path | None = None,
) -> Split:
    """Check shapes, dtypes, counts and label range; errors name the offending file."""
    labels_origin = labels_origin if labels_origin is not None else images_origin
    size = formats.IMAGE_SIZE
    if images.dtype != np.uint8:
        raise DataError(images_origin, f"images must be unsigned bytes, found {images.dtype}")
    if images.ndim != 3 or images.shape[1:] != (size, size):
        raise DataError(images_origin, f"images must have shape (N, {size}, {size}), found {images.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(labels_origin, f"labels must be integers, found {labels.dtype}")
    if labels.ndim != 1:
        raise DataError(labels_origin, f"labels must be one-dimensional, found shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            labels_origin,
            f"{len(labels)} labels but {Path(images_origin).name} holds {len(images)} images",
        )
    if len(labels) == 0:
        raise DataError(images_origin, "no images")
    labels = labels.astype(np.int64, copy=False)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(
            labels_origin,
            f"label {labels[bad[0]]} at index {bad[0]} is outside 0-{num_classes - 1} "
            f"(a data set with other classes lists their names in {CLASSES_FILE})",
        )
    return Split(images, labels)


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_classes(names: list[str]) -> tuple[str, ...]:
    """Folder names that spell the Fashion-MNIST classes (`T-shirt_top`) map back to the real names."""
    if [_normalised(n) for n in names] == [_normalised(n) for n in FASHION_CLASSES]:
        return FASHION_CLASSES
    return tuple(names)


def read_classes_file(directory: Path) -> tuple[str, ...] | None:
    path = directory / CLASSES_FILE
    if not path.exists():
        return None
    try:
        text = formats.read_file_bytes(path, limit=MAX_CLASSES_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) < 2:
        raise DataError(path, "needs at least two class names, one per line")
    if len(set(names)) != len(names):
        raise DataError(path, "class names must be distinct")
    return tuple(names)


def read_source(source: sources.Source) -> Dataset:
    """Read and validate both splits of a located source."""
    if source.layout == "idx":
        return _read_idx(source)
    if source.layout == "csv":
        classes = read_classes_file(source.directory) or FASHION_CLASSES
        splits = []
        for role in ("train", "test"):
            images, labels = formats.read_kaggle_csv(source.files[role])
            splits.append(make_split(images, labels, len(classes), source.files[role]))
        return Dataset(splits[0], splits[1], classes, source, verified=False)
    if source.layout == "folders":
        train_images, train_labels, train_classes = formats.read_image_folder(source.files["train"])
        test_images, test_labels, test_classes = formats.read_image_folder(source.files["test"])
        if train_classes != test_classes:
            raise DataError(
                source.files["test"],
                f"class folders differ from train/ ({', '.join(test_classes)} vs {', '.join(train_classes)})",
            )
        classes = canonical_classes(train_classes)
        return Dataset(
            make_split(train_images, train_labels, len(classes), source.files["train"]),
            make_split(test_images, test_labels, len(classes), source.files["test"]),
            classes,
            source,
            verified=False,
        )
    raise ValueError(f"unknown layout {source.layout!r}")


def _read_idx(source: sources.Source) -> Dataset:
    contents = {role: formats.read_idx_bytes(path) for role, path in source.files.items()}
    official = {role: sources.sha256(data) == sources.OFFICIAL_FILES[role][1] for role, data in contents.items()}
    if not source.explicit and not all(official.values()):
        # A copy that claims to be Fashion-MNIST (cache, system package) must be the real thing.
        role = next(r for r, ok in official.items() if not ok)
        raise DataError(source.files[role], "checksum mismatch: not the official Fashion-MNIST file (corrupt copy?)")
    arrays = {role: formats.parse_idx(data, source.files[role]) for role, data in contents.items()}
    classes = read_classes_file(source.directory) or FASHION_CLASSES
    splits = [
        make_split(
            arrays[f"{split}_images"],
            arrays[f"{split}_labels"],
            len(classes),
            source.files[f"{split}_images"],
            source.files[f"{split}_labels"],
        )
        for split in ("train", "test")
    ]
    return Dataset(splits[0], splits[1], classes, source, verified=all(official.values()))


def load_dataset(
    data: str | Path | None = None,
    *,
    download: bool = True,
    mirrors: tuple[str, ...] | list[str] = sources.MIRRORS,
    log: sources.Log | None = None,
    progress=None,
) -> Dataset:
    """Find, verify and load the dataset (see `fmnist.data.sources` for the search order).

    A source the user named (`data`, `$FMNIST_DATA`) must be valid: its problems are raised.
    A copy found elsewhere that fails verification is skipped (reported through `log`) and the
    search goes on; the last step is a verified download into the cache.
    """
    problems = []
    for source in sources.iter_sources(data, log=log):
        if source.explicit:
            return read_source(source)
        try:
            return read_source(source)
        except DataError as exc:
            problems.append(str(exc))
            if log:
                log(f"skipping {source.kind} copy: {exc}")
    if not download:
        raise DataError(None, "Fashion-MNIST not found" + _searched(problems))
    try:
        source = sources.download(mirrors=mirrors, progress=progress, log=log)
    except DataError as exc:
        raise DataError(
            None,
            f"Fashion-MNIST not found and the download failed: {exc}"
            + _searched(problems)
            + "; install Debian's dataset-fashion-mnist package or pass --data DIR",
        ) from None
    return read_source(source)


def _searched(problems: list[str]) -> str:
    searched = ", ".join(str(directory) for _, directory in sources.search_path())
    return f" (searched {searched}" + (f"; {'; '.join(problems)}" if problems else "") + ")"
