"""The Kaggle CSV layout of MNIST-like data: header `label,pixel1,...,pixel784`, one image a row.

Read in chunks (raw or gzip, through fmnist.data.streams) and parsed in blocks of rows by numpy, so a file
costs its uint8 images and one block of text, and a line or a file past its limit (fmnist.limits) is
one DataError naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fmnist._io import atomic_path
from fmnist.data import streams
from fmnist.errors import DataError
from fmnist.limits import MAX_CSV_LINE, bytes_text

IMAGE_SIZE = 28
CSV_HEADER = ["label"] + [f"pixel{i}" for i in range(1, IMAGE_SIZE * IMAGE_SIZE + 1)]



def read_kaggle_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a Kaggle Fashion-MNIST CSV: header `label,pixel1..pixel784`, one image per row.

    Returns images uint8 (N, 28, 28) and labels int64 (N,). Labels are checked by the Dataset. Blank
    lines are skipped.
    """
    path = Path(path)
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    with streams.DataStream(path) as stream:
        if stream.empty:
            raise DataError(path, "empty file")
        rows = _rows(stream, path)
        number, header = next(rows, (1, b""))
        if number != 1:
            raise DataError(path, "line 1 is blank; expected the header label,pixel1,...,pixel784")
        _check_csv_header(path, header)
        block: list[tuple[int, bytes]] = []
        for row in rows:
            block.append(row)
            if len(block) == CSV_BLOCK_ROWS:
                _parse_csv_block(path, block, images, labels)
                block = []
        if block:
            _parse_csv_block(path, block, images, labels)
    if not images:
        raise DataError(path, "no data rows after the header")
    pixels = images[0] if len(images) == 1 else np.concatenate(images)
    return pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), labels[0] if len(labels) == 1 else np.concatenate(labels)


CSV_BLOCK_ROWS = 2048  # rows handed to numpy's parser at once (about 5 MB of text)
_CHUNK = 1 << 20  # bytes of content scanned at once


def _rows(stream: streams.DataStream, path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for each non-blank line. Each chunk's visible bytes are found by numpy and
    lines are cut around them, so Python steps once per non-blank line (a valid row is 1.5 KB or
    more; an invalid one ends the reading within a block) and blank stretches cost C-speed scanning
    only; a line longer than MAX_CSV_LINE is refused as soon as it is seen."""
    pending, number = b"", 1  # number: the line number at the start of `pending`
    while True:
        chunk = stream.read(_CHUNK)
        data = pending + chunk
        end = len(data) if not chunk else data.rfind(b"\n") + 1  # complete lines only, but at the end
        visible = np.flatnonzero(np.frombuffer(data, np.uint8, count=end) > 32)  # not a space or control byte
        counted, index = 0, 0  # newlines counted up to `counted`; the next visible byte to place
        while index < len(visible):
            start = data.rfind(b"\n", 0, visible[index]) + 1
            stop = data.find(b"\n", start, end)
            stop = end if stop < 0 else stop
            number += data.count(b"\n", counted, start)
            counted = start
            if stop - start > MAX_CSV_LINE:
                _too_long(path, number)
            yield number, data[start:stop]
            index = int(np.searchsorted(visible, stop))
        number += data.count(b"\n", counted, end)
        pending = data[end:]
        if len(pending) > MAX_CSV_LINE:
            _too_long(path, number)
        if not chunk:
            return


def _too_long(path: Path, number: int) -> None:
    raise DataError(path, f"line {number} is longer than {bytes_text(MAX_CSV_LINE)} "
                          "(a row of 785 values is about 3 KB); refused")


def _check_csv_header(path: Path, line: bytes) -> None:
    header_line = line.decode("utf-8", "replace")
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


def _parse_csv_block(path: Path, rows: list[tuple[int, bytes]], images: list, labels: list) -> None:
    """Parse (line number, line) rows into uint8 images and int64 labels, appended to the lists."""
    numbers = [number for number, _ in rows]
    try:
        # Fast path: numpy's C parser. ndmin=2 keeps a one-row block two-dimensional. ASCII only: numpy
        # 2.4's loadtxt reads out of bounds (and crashes, now and then) on some characters far above
        # ASCII ('\U000f940d', found by tests/hostile/test_fuzz.py); a valid row is ASCII anyway.
        table = np.loadtxt([line.decode("ascii") for _, line in rows], delimiter=",", dtype=np.int64, ndmin=2)
    except (ValueError, UnicodeDecodeError):
        table = None
    if table is None or table.shape[1] != len(CSV_HEADER):
        _diagnose_csv_rows(path, rows)
    pixels = table[:, 1:]
    bad = np.argwhere((pixels < 0) | (pixels > 255))
    if len(bad):
        row, column = bad[0]
        raise DataError(path, f"line {numbers[row]}: pixel{column + 1} = {pixels[row, column]} is outside 0-255")
    images.append(pixels.astype(np.uint8))
    labels.append(table[:, 0].copy())


def _diagnose_csv_rows(path: Path, rows: list[tuple[int, bytes]]) -> None:
    """Find the first malformed row, for an error message that names line and column."""
    for line_number, raw in rows:
        line = raw.decode("utf-8", "replace")
        fields = line.split(",")
        if len(fields) != len(CSV_HEADER):
            raise DataError(path, f"line {line_number}: {len(fields)} values, expected {len(CSV_HEADER)}")
        for column, field in zip(CSV_HEADER, fields):
            try:
                value = int(field)
            except ValueError:
                raise DataError(path, f"line {line_number}: {column} = {field.strip()[:20]!r} is not an integer") from None
            if not -(2**63) <= value < 2**63:
                raise DataError(path, f"line {line_number}: {column} = {field.strip()[:20]} is out of range")
    raise DataError(path, "unreadable CSV data")


def write_kaggle_csv(path: str | Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images (N, 28, 28) uint8 and labels (N,) as a Kaggle-style CSV, atomically."""
    table = np.column_stack([np.asarray(labels).reshape(-1), np.asarray(images).reshape(len(labels), -1)])
    with atomic_path(path) as tmp:
        np.savetxt(tmp, table, fmt="%d", delimiter=",", header=",".join(CSV_HEADER), comments="")


def _few(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")
