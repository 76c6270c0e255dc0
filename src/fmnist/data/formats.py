"""Readers and writers for the three on-disk layouts of MNIST-like data.

- IDX (LeCun's format, raw or gzip-compressed), the official distribution;
- the Kaggle CSV (`label,pixel1,...,pixel784`, one image a row; fmnist.data.kaggle_csv);
- image folders (`<split>/<class>/<any name>.<png|jpg|...>`).

Every reader returns plain numpy arrays and raises `DataError(path, problem)` for bad input,
so the caller can say which file is wrong and why in one line. Every file is read through
fmnist.data.streams, within the limits of fmnist.limits, before anything of its declared size is
allocated.
"""

from __future__ import annotations

import gzip
import math
import re
from pathlib import Path

import numpy as np

from fmnist import image_files, images
from fmnist._io import atomic_path, write_bytes_atomic
from fmnist.data import streams
from fmnist.data.kaggle_csv import CSV_HEADER, read_kaggle_csv, write_kaggle_csv  # noqa: F401  (re-exported)
from fmnist.errors import DataError
from fmnist.limits import MAX_DATA_BYTES, bytes_text

# IDX type codes (third byte of the magic number) → big-endian numpy dtypes.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype.newbyteorder(">"): code for code, dtype in IDX_DTYPES.items()}

IMAGE_SIZE = 28
IMAGE_SUFFIXES = set(image_files.IMAGE_SUFFIXES)


# --------------------------------------------------------------------------- IDX


def read_file_bytes(path: str | Path, limit: int = MAX_DATA_BYTES) -> bytes:
    """The file's content, decompressed when it is gzip data (detected by content, not by name);
    refused once it passes `limit` bytes (see fmnist.limits)."""
    return streams.read_all(path, limit=limit)


def read_idx_bytes(path: str | Path) -> bytearray:
    """An IDX file's content (raw or .gz), read only as far as its header says: the size the header
    declares is checked against the limit before anything is allocated, exactly that many bytes are
    read into one buffer, and a byte more is an error — a bomb costs its header, not its expansion."""
    with streams.DataStream(path) as stream:
        if stream.empty:
            raise DataError(path, "empty file")
        head = stream.read(4)
        if len(head) == 4:
            head += stream.read(4 * head[3])
        _, shape, header, expected = idx_header(head, path)
        content = _allocate(header + expected, path)
        content[:header] = head
        actual = stream.readinto(memoryview(content)[header:])
        if actual < expected:
            raise DataError(path, f"truncated: header says shape {_shape_text(shape)} ({expected} bytes), "
                                  f"file holds {actual}")
        extra = len(stream.read(_TRAILING_SHOWN))
        if extra:
            count = f"{extra}" if extra < _TRAILING_SHOWN else f"more than {_TRAILING_SHOWN - 1}"
            raise DataError(path, f"{count} unexpected bytes after the data of shape {_shape_text(shape)}")
    return content


_TRAILING_SHOWN = 1 << 16  # trailing bytes counted exactly up to here; beyond, "more than"


def idx_header(data: bytes, path: str | Path) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """(dtype, shape, header length, data bytes) from the start of IDX content; every bad header,
    and one that declares more than MAX_DATA_BYTES, is a one-line DataError."""
    if len(data) < 4:
        raise DataError(path, f"too short for an IDX header ({len(data)} bytes)")
    # The magic number is 0x00 0x00, a data type byte, the number of dimensions: each byte checked
    # on its own, so every bad header is a one-line DataError saying which byte is wrong.
    bad_magic = f"not an IDX file: magic number 0x{int.from_bytes(data[:4], 'big'):08X}"
    if data[:2] != b"\x00\x00":
        raise DataError(
            path,
            f"{bad_magic}: the first two bytes must be zero "
            "(expected 0x00000801 for labels or 0x00000803 for images)",
        )
    dtype = IDX_DTYPES.get(data[2])
    if dtype is None:
        known = ", ".join(f"0x{code:02X} {kind.name}" for code, kind in IDX_DTYPES.items())
        raise DataError(path, f"{bad_magic}: unknown data type byte 0x{data[2]:02X} (known: {known})")
    ndim = data[3]
    if ndim == 0:
        raise DataError(path, f"{bad_magic}: zero dimensions (the fourth byte counts them)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(path, f"truncated IDX header: {ndim} dimensions need {header} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape) * dtype.itemsize  # Python integers: 255 dimensions of 2**32 - 1 do not overflow
    # An empty array still needs dimensions numpy can index: (0, 2**31, 2**31) is refused as well.
    extent = math.prod(max(n, 1) for n in shape) * dtype.itemsize
    if extent > MAX_DATA_BYTES:
        size = f"{extent:,}" if extent < 10**24 else f"about 10^{len(str(extent // 10**24)) + 23}"
        size = size if expected else f"0, but its other dimensions span {size}"
        raise DataError(path, f"header declares shape {_shape_text(shape)} = {size} bytes of data "
                              f"(the limit is {bytes_text(MAX_DATA_BYTES)}); refused before reading it")
    return dtype, shape, header, expected


def parse_idx(data: bytes | bytearray, path: str | Path) -> np.ndarray:
    """Parse IDX bytes into an array with native byte order; checks magic number and sizes."""
    dtype, shape, header, expected = idx_header(data, path)
    actual = len(data) - header
    if actual < expected:
        raise DataError(
            path, f"truncated: header says shape {_shape_text(shape)} ({expected} bytes), file holds {actual}"
        )
    if actual > expected:
        raise DataError(path, f"{actual - expected} unexpected bytes after the data of shape {_shape_text(shape)}")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header).reshape(shape)
    # A buffer read for this call (read_idx_bytes) is used in place when no byte swap is needed.
    in_place = isinstance(data, bytearray) and dtype.isnative
    return array.astype(dtype.newbyteorder("="), copy=not in_place)


def _shape_text(shape: tuple[int, ...]) -> str:
    return str(shape) if len(shape) <= 6 else f"({', '.join(map(str, shape[:4]))}, ... {len(shape)} dimensions)"


def _allocate(size: int, path: str | Path) -> bytearray:
    try:
        return bytearray(size)
    except MemoryError:
        raise DataError(path, f"not enough memory to read its {size:,} bytes") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or .gz)."""
    return parse_idx(read_idx_bytes(path), path)


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise an array as IDX (uncompressed)."""
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if big not in _IDX_CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, _IDX_CODES[big], array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=big).tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an IDX file atomically; gzip-compressed when the name ends in `.gz`."""
    data = idx_bytes(array)
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)  # mtime=0: same bytes every time
    write_bytes_atomic(path, data)


# --------------------------------------------------------------------------- image folders


def class_folder_name(index: int, name: str) -> str:
    """A file-system-safe folder name that keeps the label: `0_T-shirt_top`."""
    return f"{index}_{re.sub(r'[^A-Za-z0-9.-]+', '_', name).strip('_')}"


def list_class_folders(root: Path) -> list[tuple[int, str, Path]]:
    """(label, class name, folder) for each sub-folder of `root`.

    Folders named with a numeric prefix (`0`, `3_Dress`, `7-sneaker`) take that number as their
    label; otherwise labels follow the sorted folder names, as torchvision's ImageFolder does.
    """
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: image_files.natural_key(p.name))
    if not folders:
        raise DataError(root, "no class sub-folders (expected one folder of images per class)")
    numbered = [re.fullmatch(r"(\d+)(?:[ _-]+(.*))?", p.name) for p in folders]
    if all(numbered):
        entries = [(int(m.group(1)), m.group(2) or m.group(1), p) for m, p in zip(numbered, folders)]
        labels = [label for label, _, _ in entries]
        if sorted(labels) != list(range(len(labels))):
            raise DataError(root, f"numbered class folders must run 0..{len(labels) - 1}, found {sorted(labels)}")
        return sorted(entries)
    return [(i, p.name, p) for i, p in enumerate(folders)]


def load_grayscale_image(path: Path) -> np.ndarray:
    """Decode one image file into the (28, 28) uint8 image a model trains on.

    A 28×28 image is kept exactly as it is (in grayscale): a data set's own images must not be
    altered, so the official images round-trip through `write_image_folder`. Any other size is
    cropped to its object, fitted and centred as `fmnist predict` does (fmnist.images), without
    inverting it: the trainer records the data's polarity in the model file, and prediction makes
    new images match it.
    """
    decoded = image_files.open_image(path)
    with images.converting(path):
        if (decoded.width, decoded.height) == (IMAGE_SIZE, IMAGE_SIZE):
            return images.to_uint8(images.to_grayscale(decoded.image))
        return images.prepare(decoded, invert="never").pixels


def read_image_folder(root: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read `root/<class>/<image>` into images uint8 (N, 28, 28), labels int64 (N,), class names.

    Images are ordered by file name (natural order), then by label, so a folder written by
    `write_image_folder` reads back in its original order. Files that are not images by their
    suffix (README, .DS_Store) are skipped; an image file that cannot be decoded is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "no such directory")
    folders = list_class_folders(root)
    files: list[tuple[list, int, Path]] = []
    for label, _, folder in folders:
        for file in folder.rglob("*"):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                files.append((image_files.natural_key(file.name), label, file))
    if not files:
        raise DataError(root, "no image files in the class folders")
    files.sort(key=lambda entry: (entry[0], entry[1]))
    pixels = np.stack([load_grayscale_image(file) for _, _, file in files])
    labels = np.array([label for _, label, _ in files], dtype=np.int64)
    return pixels, labels, [name for _, name, _ in folders]


def write_image_folder(root: str | Path, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    """Write each image as `root/<label>_<class>/<index>.png` (index zero-padded, so names sort)."""
    from PIL import Image  # Pillow on first use: `import fmnist` stays light

    root = Path(root)
    width = max(5, len(str(len(images) - 1)))
    folders = {i: root / class_folder_name(i, name) for i, name in enumerate(classes)}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        target = folders[int(label)] / f"{index:0{width}d}.png"
        with atomic_path(target) as tmp:
            Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG")
