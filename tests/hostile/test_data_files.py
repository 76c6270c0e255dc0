"""Hostile data files (IDX and Kaggle CSV, raw or gzip): decompression bombs, absurd declared sizes,
dimensions whose product overflows, endless lines. Each is built small here (a bomb as many copies of
one tiny gzip member: gzip readers decompress concatenated members as one stream) and read by a real
`fmnist info --data DIR` under the harness's address-space cap: one line, exit 2, quickly."""

from __future__ import annotations

import gzip
import shutil
import struct
import zlib

import numpy as np
import pytest
from conftest import assert_refused, run_bounded

from fmnist.data import formats
from fmnist.errors import DataError
from fmnist.limits import MAX_CSV_LINE, MAX_DATA_BYTES

OFFICIAL = "/usr/share/datasets/fashion-mnist"


def _member(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    return compressor.compress(data) + compressor.flush()


def _bomb(start: bytes, filler: bytes, total: int) -> bytes:
    """`start`, then `filler` repeated to `total` bytes of content, as a small multi-member .gz."""
    block = _member(filler * ((64 << 20) // len(filler)))
    return _member(start) + block * -(-total // (64 << 20))


def _data_dir(tmp_path, name: str, content: bytes):
    """A copy of the official IDX set with one file replaced."""
    directory = tmp_path / "data"
    shutil.copytree(OFFICIAL, directory)
    for stale in directory.glob(name.removesuffix(".gz") + "*"):
        stale.unlink()
    (directory / name).write_bytes(content)
    return directory, directory / name


def _idx_header(dtype_code: int, *shape: int) -> bytes:
    return bytes([0, 0, dtype_code, len(shape)]) + b"".join(struct.pack(">I", n) for n in shape)


def test_an_idx_gzip_bomb_is_refused_after_its_declared_size(tmp_path):
    """1.5 MB of .gz whose header declares 100 test images but whose stream expands to 2 GB (more than
    the cap): reading stops one chunk after the declared bytes."""
    bomb = _bomb(_idx_header(0x08, 100, 28, 28), b"\0", 2 << 30)
    assert len(bomb) < 4 << 20
    data, path = _data_dir(tmp_path, "t10k-images-idx3-ubyte.gz", bomb)
    line = assert_refused(run_bounded("info", "--data", data), 2, str(path), "unexpected bytes after the data of shape (100, 28, 28)")
    assert "more than 65535" in line  # one chunk past the declared bytes, not the 2 GB
    with pytest.raises(DataError, match="more than 65535 unexpected bytes"):
        formats.read_idx(path)


@pytest.mark.parametrize("shape, shown", [
    ((60000, 28, 28, 1000), "(60000, 28, 28, 1000) = 47,040,000,000 bytes"),
    ((2**32 - 1,) * 4, "(4294967295, 4294967295, 4294967295, 4294967295) = about 10^38 bytes"),  # overflows int64
    ((2**32 - 1,) * 200, "(4294967295, 4294967295, 4294967295, 4294967295, ... 200 dimensions)"),
], ids=["47-GB", "overflows-int64", "200-dimensions"])
def test_an_absurd_declared_size_is_refused_from_the_header(tmp_path, shape, shown):
    content = _bomb(_idx_header(0x08, *shape), b"\0", 1) if len(shape) < 5 else _idx_header(0x08, *shape)
    name = "train-images-idx3-ubyte.gz" if len(shape) < 5 else "train-images-idx3-ubyte"
    data, path = _data_dir(tmp_path, name, content)
    line = assert_refused(run_bounded("info", "--data", data), 2, str(path), f"header declares shape {shown}",
                          "(the limit is 1 GiB); refused before reading it")
    assert len(line) < 300


def test_an_empty_shape_with_huge_dimensions_is_refused_too(tmp_path):
    """(0, 2**31, 2**31) holds no data, but numpy cannot index those dimensions (found by fuzzing:
    a ValueError traceback)."""
    path = tmp_path / "empty-idx3-ubyte"
    path.write_bytes(_idx_header(0x0B, 0, 2**31, 2**31))
    with pytest.raises(DataError, match=r"shape \(0, 2147483648, 2147483648\) = 0, but its other dimensions span "
                                         r"9,223,372,036,854,775,808 bytes of data"):
        formats.read_idx(path)


def test_the_limit_is_the_declared_size_itself(tmp_path):
    """A header that declares exactly MAX_DATA_BYTES is accepted (then found truncated); one byte more is
    refused before anything is allocated."""
    at_limit = tmp_path / "at-limit-idx1-ubyte"
    at_limit.write_bytes(_idx_header(0x08, MAX_DATA_BYTES) + b"\1\2\3")
    with pytest.raises(DataError, match=rf"truncated: header says shape \({MAX_DATA_BYTES},\) \({MAX_DATA_BYTES} bytes\), file holds 3"):
        formats.read_idx(at_limit)
    over = tmp_path / "over-idx1-ubyte"
    over.write_bytes(_idx_header(0x0B, MAX_DATA_BYTES // 2 + 1))  # int16: 2 bytes each
    with pytest.raises(DataError, match=f"= {MAX_DATA_BYTES + 2:,} bytes of data"):
        formats.read_idx(over)


def _csv_dir(tmp_path, content: bytes):
    directory = tmp_path / "csv"
    directory.mkdir()
    good = ",".join(formats.CSV_HEADER) + "\n" + ",".join(["1"] * 785) + "\n"
    (directory / "fashion-mnist_test.csv").write_text(good)
    (directory / "fashion-mnist_train.csv").write_bytes(content)
    return directory, directory / "fashion-mnist_train.csv"


CSV_HEADER_LINE = (",".join(formats.CSV_HEADER) + "\n").encode()


def test_a_csv_of_blank_lines_past_the_limit_is_refused_at_the_content_limit(tmp_path):
    """1.1 GB of newlines in 1 MB of .gz: scanned (at C speed: benchmarks, not this test, time it) and
    refused at the content limit, within run_bounded's memory cap and timeout."""
    data, path = _csv_dir(tmp_path, _bomb(CSV_HEADER_LINE, b"\n", MAX_DATA_BYTES + (64 << 20)))
    assert_refused(run_bounded("info", "--data", data), 2, str(path), "content (decompressed) too large",
                   "(the limit is 1 GiB)")


@pytest.mark.parametrize("filler", [b"0", b" "], ids=["digits", "spaces"])
def test_an_endless_csv_line_is_refused_at_the_line_limit(tmp_path, filler):
    data, path = _csv_dir(tmp_path, _bomb(CSV_HEADER_LINE + b"1,", filler, 2 << 30))
    assert_refused(run_bounded("info", "--data", data), 2, str(path), "line 2 is longer than 64 KiB")
    endless_header = tmp_path / "header.csv"
    endless_header.write_bytes(b"label," * (MAX_CSV_LINE // 6 + 1))
    with pytest.raises(DataError, match="line 1 is longer than 64 KiB"):
        formats.read_kaggle_csv(endless_header)


def test_csv_rows_keep_their_line_numbers_across_blank_lines_and_blocks(tmp_path):
    row = ",".join(["3"] + ["7"] * 784)
    bad = ",".join(["3"] + ["7"] * 99 + ["256"] + ["7"] * 684)
    lines = [",".join(formats.CSV_HEADER)] + [row] * 2500 + ["", "  ", row + "\r", bad]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 2505: pixel100 = 256 is outside 0-255"):
        formats.read_kaggle_csv(path)
    path.write_text("\n".join(lines[:-1]) + "\n\n")
    images, labels = formats.read_kaggle_csv(path)
    assert images.shape == (2501, 28, 28) and (images == 7).all() and (labels == 3).all()


def test_a_csv_line_numpy_would_crash_on_is_one_line(tmp_path):
    """numpy 2.4's loadtxt reads out of bounds on some characters far above ASCII and crashes now and
    then (found by fuzzing); rows reach it only as ASCII. In a subprocess: a crash fails the test."""
    data, path = _csv_dir(tmp_path, CSV_HEADER_LINE + "\U000f940d\n".encode() * 50)
    for _ in range(3):
        assert_refused(run_bounded("info", "--data", data), 2, str(path), "line 2: 1 values, expected 785")


def test_csv_rows_of_the_wrong_width_everywhere_are_one_line(tmp_path):
    """Every row 3 values wide parses as a table, just not of 785 columns: a one-line error."""
    path = tmp_path / "train.csv"
    path.write_bytes(CSV_HEADER_LINE + b"1,2,3\n" * 5)
    with pytest.raises(DataError, match="line 2: 3 values, expected 785"):
        formats.read_kaggle_csv(path)


def test_a_fifo_as_a_data_file_is_refused_without_opening_it(tmp_path):
    data, path = _data_dir(tmp_path, "t10k-labels-idx1-ubyte", b"")
    path.unlink()
    import os

    os.mkfifo(path)
    assert_refused(run_bounded("info", "--data", data, timeout=60), 2, str(path), "a FIFO, expected a file")


def test_a_gzipped_idx_set_with_a_bomb_in_classes_txt(tmp_path):
    """classes.txt is read within its own small limit."""
    data = tmp_path / "data"
    shutil.copytree(OFFICIAL, data)
    (data / "classes.txt").write_bytes(_bomb(b"a\nb\n", b"c\n", 1 << 30))
    assert_refused(run_bounded("info", "--data", data), 2, str(data / "classes.txt"), "too large",
                   "(the limit is 1 MiB)")


def test_a_valid_gzip_idx_reads_the_same_as_raw(tmp_path):
    images = np.arange(5 * 28 * 28, dtype=np.uint8).reshape(5, 28, 28)
    raw, packed = tmp_path / "a-idx3-ubyte", tmp_path / "b-idx3-ubyte.gz"
    formats.write_idx(raw, images)
    formats.write_idx(packed, images)
    assert np.array_equal(formats.read_idx(raw), images) and np.array_equal(formats.read_idx(packed), images)
    assert formats.read_idx(raw).flags.writeable
    packed.write_bytes(gzip.compress(formats.idx_bytes(images)) + gzip.compress(b"\0"))  # a second member
    with pytest.raises(DataError, match="1 unexpected bytes after the data of shape"):
        formats.read_idx(packed)
