"""Readers and writers for the three on-disk layouts of MNIST-like data.

- IDX (LeCun's format, raw or gzip-compressed), the official distribution;
- the Kaggle CSV (`label,pixel1,...,pixel784`, one image a row);
- image folders (`<split>/<class>/<any name>.<png|jpg|...>`).

Every reader returns plain numpy arrays and raises `DataError(path, problem)` for bad input,
so the caller can say which file is wrong and why in one line.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path

import numpy as np

from fmnist import image_files, images
from fmnist._io import atomic_path, open_for_reading, write_bytes_atomic
from fmnist.errors import DataError

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
GZIP_MAGIC = b"\x1f\x8b"

IMAGE_SIZE = 28
CSV_HEADER = ["label"] + [f"pixel{i}" for i in range(1, IMAGE_SIZE * IMAGE_SIZE + 1)]
IMAGE_SUFFIXES = set(image_files.IMAGE_SUFFIXES)


# --------------------------------------------------------------------------- IDX


def read_file_bytes(path: str | Path) -> bytes:
    """The file's content, decompressed when it is gzip data (detected by content, not by name)."""
    path = Path(path)
    with open_for_reading(path) as handle:
        raw = handle.read()
    if not raw:
        raise DataError(path, "empty file")
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataError(path, "truncated gzip data (the download or copy was cut short)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(path, f"corrupt gzip data ({exc})") from None


def parse_idx(data: bytes, path: str | Path) -> np.ndarray:
    """Parse IDX bytes into an array with native byte order; checks magic number and sizes."""
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
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual < expected:
        raise DataError(
            path, f"truncated: header says shape {shape} ({expected} bytes), file holds {actual}"
        )
    if actual > expected:
        raise DataError(path, f"{actual - expected} unexpected bytes after the data of shape {shape}")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or .gz)."""
    return parse_idx(read_file_bytes(path), path)


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


# --------------------------------------------------------------------------- Kaggle CSV


def read_kaggle_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a Kaggle Fashion-MNIST CSV: header `label,pixel1..pixel784`, one image per row.

    Returns images uint8 (N, 28, 28) and labels int64 (N,). Labels are checked by the Dataset.
    """
    path = Path(path)
    text = read_file_bytes(path)
    first_newline = text.find(b"\n")
    header_line = (text if first_newline < 0 else text[:first_newline]).decode("utf-8", "replace")
    header = [column.strip().strip('"') for column in header_line.strip().lstrip("\ufeff").split(",")]
    if header != CSV_HEADER:
        missing = [c for c in CSV_HEADER if c not in header]
        unknown = [c for c in header if c not in CSV_HEADER]
        detail = []
        if missing:
            detail.append(f"missing column{'s' if len(missing) > 1 else ''} {_few(missing)}")
        if unknown:
            detail.append(f"unknown column{'s' if len(unknown) > 1 else ''} {_few(unknown)}")
        if not detail:
            detail.append("columns out of order")
        raise DataError(path, f"bad CSV header ({'; '.join(detail)}); expected label,pixel1,...,pixel784")
    body = text[first_newline + 1 :] if first_newline >= 0 else b""
    if not body.strip():
        raise DataError(path, "no data rows after the header")
    try:
        # Fast path: numpy's C parser. ndmin=2 keeps a one-row file two-dimensional.
        table = np.loadtxt(io.StringIO(body.decode("utf-8")), delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, UnicodeDecodeError):
        _diagnose_csv_rows(path, body)
        raise  # _diagnose_csv_rows always raises; this keeps type checkers honest
    pixels = table[:, 1:]
    bad = np.argwhere((pixels < 0) | (pixels > 255))
    if len(bad):
        row, column = bad[0]
        raise DataError(
            path,
            f"line {row + 2}: pixel{column + 1} = {pixels[row, column]} is outside 0-255",
        )
    images = pixels.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    return images, table[:, 0].copy()


def _diagnose_csv_rows(path: Path, body: bytes) -> None:
    """Find the first malformed row, for an error message that names line and column."""
    for line_number, line in enumerate(body.decode("utf-8", "replace").splitlines(), start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != len(CSV_HEADER):
            raise DataError(path, f"line {line_number}: {len(fields)} values, expected {len(CSV_HEADER)}")
        for column, field in zip(CSV_HEADER, fields):
            try:
                value = int(field)
            except ValueError:
                raise DataError(path, f"line {line_number}: {column} = {field.strip()!r} is not an integer") from None
            if not -(2**63) <= value < 2**63:
                raise DataError(path, f"line {line_number}: {column} = {field.strip()} is out of range")
    raise DataError(path, "unreadable CSV data")


def write_kaggle_csv(path: str | Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images (N, 28, 28) uint8 and labels (N,) as a Kaggle-style CSV, atomically."""
    table = np.column_stack([np.asarray(labels).reshape(-1), np.asarray(images).reshape(len(labels), -1)])
    with atomic_path(path) as tmp:
        np.savetxt(tmp, table, fmt="%d", delimiter=",", header=",".join(CSV_HEADER), comments="")


def _few(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


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
