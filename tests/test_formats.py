"""IDX, CSV and image-folder readers: round trips and every kind of bad input."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from conftest import write_idx_set
from forked import fmnist_process

from fmnist.data import formats
from fmnist.data.dataset import load_dataset
from fmnist.errors import DataError



@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"data-idx3-ubyte{suffix}"
    formats.write_idx(path, array)
    back = formats.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    assert np.array_equal(back, array)
    assert not list(tmp_path.glob("*.part"))


def test_idx_round_trip_of_real_images(tmp_path, fashion):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    formats.write_idx(path, fashion.train.images[:500])
    assert np.array_equal(formats.read_idx(path), fashion.train.images[:500])
    # Same bytes every time (mtime=0 in the gzip header): reproducible files.
    first = path.read_bytes()
    formats.write_idx(path, fashion.train.images[:500])
    assert path.read_bytes() == first


def test_truncated_gz(tmp_path, fashion):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    formats.write_idx(path, fashion.train.images[:200])
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: truncated gzip data"):
        formats.read_idx(path)


def test_wrong_magic_number(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: not an IDX file: magic number 0x12340803"):
        formats.read_idx(path)


KNOWN_TYPES = "known: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64"
EXPECTED_MAGIC = "(expected 0x00000801 for labels or 0x00000803 for images)"
# Each byte of the magic number wrong on its own; the rest of the file is a valid 10-label IDX1 file.
BAD_MAGIC = {
    "first byte": (b"\x08\x00\x08\x01",
                   f"not an IDX file: magic number 0x08000801: the first two bytes must be zero {EXPECTED_MAGIC}"),
    "second byte": (b"\x00\x01\x08\x01",
                    f"not an IDX file: magic number 0x00010801: the first two bytes must be zero {EXPECTED_MAGIC}"),
    "unknown type byte": (b"\x00\x00\x07\x01",
                          f"not an IDX file: magic number 0x00000701: unknown data type byte 0x07 ({KNOWN_TYPES})"),
    "type byte between known ones": (b"\x00\x00\x0A\x01",
                                     f"not an IDX file: magic number 0x00000A01: unknown data type byte 0x0A ({KNOWN_TYPES})"),
    "zero dimensions": (b"\x00\x00\x08\x00",
                        "not an IDX file: magic number 0x00000800: zero dimensions (the fourth byte counts them)"),
}


def _one_line_data_error(call) -> str:
    with pytest.raises(DataError) as caught:
        call()
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("case", BAD_MAGIC)
def test_each_byte_of_the_magic_number_is_checked(tmp_path, case):
    magic, problem = BAD_MAGIC[case]
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(magic + formats.idx_bytes(np.arange(10, dtype=np.uint8))[4:])
    assert _one_line_data_error(lambda: formats.read_idx(path)) == f"{path}: {problem}"


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x00\x00\x08", "too short for an IDX header (3 bytes)"),
        # Three dimensions need 4 + 3 * 4 bytes of header; only two sizes are there.
        (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (28).to_bytes(4, "big"),
         "truncated IDX header: 3 dimensions need 16 bytes"),
        # The header promises two images; the file holds one (784 bytes).
        (formats.idx_bytes(np.zeros((2, 28, 28), np.uint8))[: 16 + 784],
         "truncated: header says shape (2, 28, 28) (1568 bytes), file holds 784"),
        (formats.idx_bytes(np.zeros((1, 28, 28), np.uint8)) + bytes(5),
         "5 unexpected bytes after the data of shape (1, 28, 28)"),
        # Multi-byte types count bytes, not values: 3 int32 values are 12 bytes.
        (formats.idx_bytes(np.arange(3, dtype=np.int32))[:-1], "truncated: header says shape (3,) (12 bytes), file holds 11"),
        (formats.idx_bytes(np.arange(3, dtype=np.float64)) + bytes(8),
         "8 unexpected bytes after the data of shape (3,)"),
    ],
    ids=["short", "truncated-header", "fewer-images", "trailing-bytes", "int32-cut", "float64-extra"],
)
def test_idx_sizes_that_disagree_with_the_header(tmp_path, content, problem):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(content)
    assert _one_line_data_error(lambda: formats.read_idx(path)) == f"{path}: {problem}"
    gz = tmp_path / "t10k-images-idx3-ubyte.gz"  # the same checks after decompression
    gz.write_bytes(gzip.compress(content))
    assert _one_line_data_error(lambda: formats.read_idx(gz)) == f"{gz}: {problem}"


@pytest.mark.parametrize("case", ["second byte", "unknown type byte", "zero dimensions"])
def test_cli_reports_a_bad_idx_header_in_one_line(tmp_path, small_idx_dir, case):
    """`fmnist info --data DIR`: exit 2 and one line naming the file, never a traceback."""
    magic, problem = BAD_MAGIC[case]
    data = tmp_path / "data"
    shutil.copytree(small_idx_dir, data)
    bad = data / "t10k-labels-idx1-ubyte"
    bad.write_bytes(magic + bad.read_bytes()[4:])
    result = fmnist_process("info", "--data", data)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.splitlines() == [f"fmnist: error: {bad}: {problem}"]


def test_truncated_raw_idx_and_trailing_bytes(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(formats.idx_bytes(np.arange(10, dtype=np.uint8))[:-3])
    with pytest.raises(DataError, match=r"truncated: header says shape \(10,\)"):
        formats.read_idx(path)
    path.write_bytes(formats.idx_bytes(np.arange(10, dtype=np.uint8)) + b"xx")
    with pytest.raises(DataError, match="2 unexpected bytes"):
        formats.read_idx(path)


def test_empty_file(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: empty file"):
        formats.read_idx(path)


def _idx_dir(tmp_path, fashion, train_labels=None, n=40):
    labels = fashion.train.labels[:n] if train_labels is None else train_labels
    write_idx_set(tmp_path, fashion.train.images[:n], labels, fashion.test.images[:10], fashion.test.labels[:10])
    return tmp_path


def test_image_label_count_mismatch(tmp_path, fashion):
    _idx_dir(tmp_path, fashion, train_labels=fashion.train.labels[:39])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: 39 labels but train-images-idx3-ubyte holds 40 images"):
        load_dataset(tmp_path, download=False)


def test_label_out_of_range(tmp_path, fashion):
    labels = fashion.train.labels[:40].copy()
    labels[7] = 10
    _idx_dir(tmp_path, fashion, train_labels=labels)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: label 10 at index 7 is outside 0-9"):
        load_dataset(tmp_path, download=False)


def test_images_of_the_wrong_size(tmp_path, fashion):
    _idx_dir(tmp_path, fashion)
    formats.write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((40, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match=r"shape \(N, 28, 28\), found \(40, 32, 32\)"):
        load_dataset(tmp_path, download=False)


def test_incomplete_idx_set(tmp_path, fashion):
    _idx_dir(tmp_path, fashion)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"incomplete IDX set: missing t10k-labels-idx1-ubyte"):
        load_dataset(tmp_path, download=False)


def _write_csv(path, lines):
    header = ",".join(formats.CSV_HEADER)
    path.write_text("\n".join([header] + lines) + "\n")


def _row(label=3, pixel=0):
    return ",".join([str(label)] + [str(pixel)] * 784)


def test_csv_reads_rows(tmp_path):
    path = tmp_path / "fashion-mnist_train.csv"
    _write_csv(path, [_row(3, 7), _row(9, 255)])
    images, labels = formats.read_kaggle_csv(path)
    assert images.shape == (2, 28, 28) and images.dtype == np.uint8
    assert list(labels) == [3, 9] and images[1].min() == 255


def test_csv_missing_column(tmp_path):
    path = tmp_path / "fashion-mnist_train.csv"
    path.write_text(",".join(formats.CSV_HEADER[:-1]) + "\n" + ",".join(["1"] * 784) + "\n")
    with pytest.raises(DataError, match=r"fashion-mnist_train\.csv: bad CSV header \(missing column pixel784\)"):
        formats.read_kaggle_csv(path)


def test_csv_row_with_a_missing_value(tmp_path):
    path = tmp_path / "fashion-mnist_train.csv"
    _write_csv(path, [_row(), _row()[:-2]])
    with pytest.raises(DataError, match=r"line 3: 784 values, expected 785"):
        formats.read_kaggle_csv(path)


def test_csv_non_numeric_pixel(tmp_path):
    path = tmp_path / "fashion-mnist_test.csv"
    fields = _row().split(",")
    fields[5] = "abc"
    _write_csv(path, [_row(), ",".join(fields)])
    with pytest.raises(DataError, match=r"fashion-mnist_test\.csv: line 3: pixel5 = 'abc' is not an integer"):
        formats.read_kaggle_csv(path)


def test_csv_out_of_range_pixel(tmp_path):
    path = tmp_path / "fashion-mnist_test.csv"
    fields = _row().split(",")
    fields[100] = "300"
    _write_csv(path, [_row(), _row(), ",".join(fields)])
    with pytest.raises(DataError, match=r"line 4: pixel100 = 300 is outside 0-255"):
        formats.read_kaggle_csv(path)


def test_csv_label_out_of_range(tmp_path):
    for name in ("fashion-mnist_train.csv", "fashion-mnist_test.csv"):
        _write_csv(tmp_path / name, [_row(1), _row(12)])
    with pytest.raises(DataError, match=r"fashion-mnist_train\.csv: label 12 at index 1 is outside 0-9"):
        load_dataset(tmp_path, download=False)


def test_csv_empty_and_header_only(tmp_path):
    path = tmp_path / "fashion-mnist_train.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty file"):
        formats.read_kaggle_csv(path)
    _write_csv(path, [])
    with pytest.raises(DataError, match="no data rows"):
        formats.read_kaggle_csv(path)


def test_csv_gzipped_is_read_too(tmp_path):
    path = tmp_path / "fashion-mnist_train.csv"
    _write_csv(path, [_row(4, 9)])
    path.write_bytes(gzip.compress(path.read_bytes()))
    images, labels = formats.read_kaggle_csv(path)
    assert list(labels) == [4] and images.max() == 9


def test_official_images_round_trip_through_image_folders(tmp_path, fashion):
    """28x28 images are data, not photos: read back exactly, even those whose object covers a
    corner (train 41623, a bag, would look light-backgrounded to a photo heuristic)."""
    chosen = np.r_[np.arange(300), [4258, 4394, 5108, 10646, 12923, 24040, 26299, 26336, 41019, 41623, 52273]]
    formats.write_image_folder(tmp_path, fashion.train.images[chosen], fashion.train.labels[chosen],
                               list(fashion.classes))
    images, labels, classes = formats.read_image_folder(tmp_path)
    assert np.array_equal(images, fashion.train.images[chosen]) and np.array_equal(labels, fashion.train.labels[chosen])


def test_photos_in_image_folders_are_fitted_not_stretched(tmp_path, fashion):
    image = fashion.test.images[1]
    wide = np.zeros((60, 150), np.uint8)
    wide[2:58, 47:103] = np.asarray(Image.fromarray(image).resize((56, 56)))  # the garment, off-centre margins
    (tmp_path / "0_a").mkdir()
    Image.fromarray(wide).save(tmp_path / "0_a" / "wide.png")
    (tmp_path / "1_b").mkdir()
    Image.fromarray(255 - wide).save(tmp_path / "1_b" / "light.png")
    images, labels, _ = formats.read_image_folder(tmp_path)
    fitted = images[labels == 0][0]
    rows, cols = np.flatnonzero(fitted.max(1) > 30), np.flatnonzero(fitted.max(0) > 30)
    # Cropped to the garment and fitted back to 28 px high: 21-22 px wide like the original (cols 4-24),
    # where stretching the 150x60 image to 28x28 would have squeezed it to about 8 px.
    assert (rows[0], rows[-1]) == (0, 27) and 20 <= cols[-1] - cols[0] + 1 <= 23 and 3 <= cols[0] <= 5
    light = images[labels == 1][0]
    assert light[0, 0] == light[0, -1] == light[-1, 0] == 255  # polarity kept: the trainer records it, predict follows
    formats.write_image_folder(tmp_path / "train", fashion.train.images[:20], fashion.train.labels[:20], list(fashion.classes))
    formats.write_image_folder(tmp_path / "test", fashion.test.images[:5], fashion.test.labels[:5], list(fashion.classes))
    bad = tmp_path / "train" / "3_Dress" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DataError, match=r"broken\.png: (not an image|truncated or corrupt image)"):
        load_dataset(tmp_path, download=False)


def test_folder_with_no_images(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "README.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"train: no image files in the class folders"):
        load_dataset(tmp_path, download=False)


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match=r"does-not-exist: no such directory"):
        load_dataset(tmp_path / "does-not-exist", download=False)


def test_directory_with_no_known_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no dataset found; expected the four IDX files"):
        load_dataset(tmp_path, download=False)


# --- each reader's and writer's details, word for word (issue 11's mutation run) ------------------------


def _data_error(call) -> str:
    with pytest.raises(DataError) as caught:
        call()
    return str(caught.value)


def test_idx_writer_refuses_what_idx_cannot_hold():
    with pytest.raises(ValueError, match=r"^IDX cannot store dtype int64$"):
        formats.idx_bytes(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"^IDX needs 1 to 255 dimensions, got 0$"):
        formats.idx_bytes(np.array(7, np.uint8))
    # The header: two zero bytes, the type code, the number of dimensions, then each size as 4 big-endian bytes.
    assert formats.idx_bytes(np.arange(6, dtype=">i2").reshape(2, 3)) == (
        b"\x00\x00\x0b\x02" + b"\x00\x00\x00\x02\x00\x00\x00\x03" + b"\x00\x00\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05")


def test_idx_edge_cases_read_back(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    formats.write_idx(path, np.zeros(0, np.uint8))  # no labels at all: a header and nothing else
    assert formats.read_idx(path).shape == (0,)
    formats.write_idx(path, np.arange(6, dtype=np.uint8))
    labels = formats.read_idx(path)
    labels[0] = 9  # a writable array of its own, not a view of the file's bytes
    assert labels.tolist() == [9, 1, 2, 3, 4, 5]
    # Sizes are 4 bytes each: a dimension of 2**24 + 1 needs all four.
    for shape in ((2**24 + 1,), (1, 2**24 + 1)):
        formats.write_idx(path, np.zeros(shape, np.uint8))
        assert formats.read_idx(path).shape == shape
    for header, problem in ((b"\x00\x00\x08\x00", ("not an IDX file: magic number 0x00000800: zero dimensions "
                                                     "(the fourth byte counts them)")),
                            (b"\x00\x00\x08\x01", "truncated IDX header: 1 dimensions need 8 bytes")):
        path.write_bytes(header)  # four bytes: a whole magic number, and nothing after it
        assert _data_error(lambda: formats.read_idx(path)) == f"{path}: {problem}"


def test_a_gz_file_records_no_time(tmp_path):
    """gzip's header has a modification time; 0 keeps the bytes the same whenever the file is written."""
    path = tmp_path / "labels-idx1-ubyte.gz"
    formats.write_idx(path, np.arange(10, dtype=np.uint8))
    assert path.read_bytes()[4:8] == bytes(4)


def test_every_empty_or_broken_file_names_itself(tmp_path):
    empty = tmp_path / "empty-idx1-ubyte"
    empty.write_bytes(b"")
    assert _data_error(lambda: formats.read_idx(empty)) == f"{empty}: empty file"
    truncated = tmp_path / "cut-idx1-ubyte.gz"
    truncated.write_bytes(gzip.compress(formats.idx_bytes(np.arange(200, dtype=np.uint8)))[:-30])
    assert _data_error(lambda: formats.read_idx(truncated)) == (
        f"{truncated}: truncated gzip data (the download or copy was cut short)")
    corrupt = tmp_path / "corrupt-idx1-ubyte.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + bytes(6) + b"not deflate data at all")
    assert _data_error(lambda: formats.read_idx(corrupt)).startswith(f"{corrupt}: corrupt gzip data (")


def _csv(path, header, *rows) -> str:
    path.write_bytes(header + b"".join(b"\n" + row for row in rows))
    return _data_error(lambda: formats.read_kaggle_csv(path))


def _header(columns) -> bytes:
    return ",".join(columns).encode()


def _csv_row(label="3", **pixels) -> bytes:
    fields = [label] + ["0"] * 784
    for name, value in pixels.items():
        fields[int(name.removeprefix("pixel"))] = value
    return ",".join(fields).encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("columns, detail", [
    (formats.CSV_HEADER[:-2], "missing columns pixel783, pixel784"),
    (formats.CSV_HEADER[:-3], "missing columns pixel782, pixel783, pixel784"),
    (formats.CSV_HEADER[:-4], "missing columns pixel781, pixel782, pixel783 (and 1 more)"),
    ([*formats.CSV_HEADER, "note"], "unknown column note"),
    ([*formats.CSV_HEADER[:-1], "pixel785", "note"], "missing column pixel784; unknown columns pixel785, note"),
    ([formats.CSV_HEADER[1], formats.CSV_HEADER[0], *formats.CSV_HEADER[2:]], "columns out of order"),
])
def test_a_bad_csv_header_says_which_columns(tmp_path, columns, detail):
    path = tmp_path / "fashion-mnist_train.csv"
    assert _csv(path, _header(columns), _csv_row()) == (
        f"{path}: bad CSV header ({detail}); expected label,pixel1,...,pixel784")


def test_a_csv_header_from_a_spreadsheet_is_read(tmp_path):
    """Excel writes a byte-order mark and may quote every name."""
    path = tmp_path / "fashion-mnist_train.csv"
    path.write_bytes("\ufeff".encode() + _header(f'"{name}"' for name in formats.CSV_HEADER) + b"\n" + _csv_row("7"))
    images, labels = formats.read_kaggle_csv(path)
    assert labels.tolist() == [7] and images.shape == (1, 28, 28)
    path.write_bytes(b"\xff" + _header(formats.CSV_HEADER) + b"\n" + _csv_row())  # not UTF-8: still one line
    assert _data_error(lambda: formats.read_kaggle_csv(path)) == (
        f"{path}: bad CSV header (missing column label; unknown column \ufffdlabel); expected label,pixel1,...,pixel784")


def test_a_header_without_a_newline_has_no_rows(tmp_path):
    path = tmp_path / "fashion-mnist_test.csv"
    path.write_bytes(_header(formats.CSV_HEADER))
    assert _data_error(lambda: formats.read_kaggle_csv(path)) == f"{path}: no data rows after the header"


@pytest.mark.parametrize("rows, problem", [
    ([_csv_row("9223372036854775808")], "line 2: label = 9223372036854775808 is out of range"),
    ([_csv_row("-9223372036854775809")], "line 2: label = -9223372036854775809 is out of range"),
    # the extremes of int64 are integers: the row's real problem is named
    ([_csv_row("-9223372036854775808", pixel5="abc")], "line 2: pixel5 = 'abc' is not an integer"),
    ([_csv_row("9223372036854775807", pixel5="abc")], "line 2: pixel5 = 'abc' is not an integer"),
    ([_csv_row(pixel5="\udcff")], "line 2: pixel5 = '\ufffd' is not an integer"),  # a byte that is not UTF-8
    ([_csv_row(), b"", _csv_row()[:-2]], "line 4: 784 values, expected 785"),  # past a blank line
    ([_csv_row(pixel3="1_0")], "unreadable CSV data"),  # Python reads 1_0 as 10, numpy does not
    ([_csv_row(pixel2="256")], "line 2: pixel2 = 256 is outside 0-255"),
    ([_csv_row(pixel784="-1")], "line 2: pixel784 = -1 is outside 0-255"),
])
def test_each_bad_csv_row_is_named(tmp_path, rows, problem):
    path = tmp_path / "fashion-mnist_train.csv"
    assert _csv(path, _header(formats.CSV_HEADER), *rows) == f"{path}: {problem}"


def test_the_largest_pixel_and_a_label_column_vector_are_written_and_read(tmp_path):
    path = tmp_path / "train.csv"
    images = np.full((2, 28, 28), 255, np.uint8)
    formats.write_kaggle_csv(path, images, np.array([[4], [1]]))
    back, labels = formats.read_kaggle_csv(path)
    assert np.array_equal(back, images) and labels.tolist() == [4, 1]


def test_image_folder_names_and_order(tmp_path):
    assert formats.class_folder_name(3, " (Dress) ") == "3_Dress"
    assert formats.class_folder_name(0, "T-shirt/top") == "0_T-shirt_top"
    assert formats.class_folder_name(1, "X-ray ") == "1_X-ray"
    # images as int64 (a CSV's columns, say) are written as 8-bit PNGs; the folders may exist already
    formats.write_image_folder(tmp_path / "a", np.full((2, 28, 28), 200, np.int64), [0, 1], ["x", "y"])
    formats.write_image_folder(tmp_path / "a", np.full((1, 28, 28), 100, np.int64), [1], ["x", "y"])
    assert sorted(str(path.relative_to(tmp_path / "a")) for path in (tmp_path / "a").rglob("*.png")) == [
        "0_x/00000.png", "1_y/00000.png", "1_y/00001.png"]
    # eleven numbered classes, one image each, all called a.png: read back in label order, not path order
    for label in range(11):
        (tmp_path / "b" / f"{label}").mkdir(parents=True)
        Image.new("L", (28, 28), label).save(tmp_path / "b" / f"{label}" / "a.png")
    images, labels, classes = formats.read_image_folder(tmp_path / "b")
    assert labels.tolist() == list(range(11)) and images[:, 0, 0].tolist() == list(range(11))
    assert classes == [str(label) for label in range(11)] and labels.dtype == np.int64


def test_class_folders_in_natural_order_and_what_is_not_a_class(tmp_path):
    for name in ("shoe10", "shoe2", ".thumbnails"):
        (tmp_path / name).mkdir()
        Image.new("L", (28, 28)).save(tmp_path / name / "x.png")
    (tmp_path / "README").write_text("not a class")
    _, labels, classes = formats.read_image_folder(tmp_path)
    assert classes == ["shoe2", "shoe10"] and labels.tolist() == [0, 1]
    assert _data_error(lambda: formats.read_image_folder(tmp_path / "missing")) == (
        f"{tmp_path / 'missing'}: no such directory")
    (tmp_path / "empty").mkdir()
    assert _data_error(lambda: formats.read_image_folder(tmp_path / "empty")) == (
        f"{tmp_path / 'empty'}: no class sub-folders (expected one folder of images per class)")


def test_a_csv_line_past_the_line_limit_is_named(tmp_path):
    path = tmp_path / "train.csv"
    too_long = b"1" * (64 * 1024 + 1)  # limits.MAX_CSV_LINE + 1, not a row at all
    assert _csv(path, _header(formats.CSV_HEADER), b"", b"", too_long) == (
        f"{path}: line 4 is longer than 64 KiB (a row of 785 values is about 3 KB); refused")
    assert _csv(path, _header(formats.CSV_HEADER), b"", too_long, b"") == (  # a complete line this time
        f"{path}: line 3 is longer than 64 KiB (a row of 785 values is about 3 KB); refused")
    for end in ([], [b""]):  # exactly 64 KiB: allowed, as the last (unfinished) line or a complete one
        assert _csv(path, _header(formats.CSV_HEADER), too_long[1:], *end) == f"{path}: line 2: 1 values, expected 785"


def test_a_blank_line_where_a_read_chunk_begins_is_skipped(tmp_path):
    """The reader scans 1 MiB at a time: a blank line starting the second MiB is still blank."""
    path = tmp_path / "train.csv"
    head = _header(formats.CSV_HEADER) + b"\n" + b"\n".join([_csv_row()] * 600) + b"\n"
    padding = b" " * (2**20 - len(head) - 1) + b"\n"  # a line of spaces: the first MiB ends with its newline
    path.write_bytes(head + padding + b"\n" + _csv_row(label="7") + b"\n")
    _, labels = formats.read_kaggle_csv(path)
    assert len(head + padding) == 2**20 and labels.tolist() == [3] * 600 + [7]


def test_a_long_bad_csv_value_is_shown_cut_to_20_characters(tmp_path):
    path = tmp_path / "train.csv"
    assert _csv(path, _header(formats.CSV_HEADER), _csv_row(pixel5="abcdefghijklmnopqrstuvwxyz")) == (
        f"{path}: line 2: pixel5 = 'abcdefghijklmnopqrst' is not an integer")
    assert _csv(path, _header(formats.CSV_HEADER), _csv_row(pixel5="1234567890123456789012345")) == (
        f"{path}: line 2: pixel5 = 12345678901234567890 is out of range")


def test_csv_refusals_at_the_start_word_for_word(tmp_path):
    path = tmp_path / "train.csv"
    missing_all = "missing columns label, pixel1, pixel2 (and 782 more)"
    for content, problem in (
        (b"", "empty file"),
        (b"\n" + _header(formats.CSV_HEADER) + b"\n" + _csv_row(), "line 1 is blank; expected the header label,pixel1,...,pixel784"),
        (b" \n\t\n", f"bad CSV header ({missing_all}; unknown column ); expected label,pixel1,...,pixel784"),  # blank
        (b"x\n" + _header(formats.CSV_HEADER),  # a one-character first line is the header too
         f"bad CSV header ({missing_all}; unknown column x); expected label,pixel1,...,pixel784"),
        (_header(formats.CSV_HEADER) + b"\n!!!\n", "line 2: 1 values, expected 785"),  # "!" is the first visible byte
        (_header(["Xlabel", *formats.CSV_HEADER[1:]]),  # only quotes, spaces and a byte-order mark are taken off
         "bad CSV header (missing column label; unknown column Xlabel); expected label,pixel1,...,pixel784"),
    ):
        path.write_bytes(content)
        assert _data_error(lambda: formats.read_kaggle_csv(path)) == f"{path}: {problem}"


def test_csv_blocks_are_joined_and_a_bad_row_in_a_full_block_is_named(tmp_path):
    path = tmp_path / "train.csv"
    rows = [_csv_row(label=str(i % 10), pixel1=str(i % 256)) for i in range(2049)]  # one full block and one row
    path.write_bytes(b"\n".join([_header(formats.CSV_HEADER), *rows]))
    images, labels = formats.read_kaggle_csv(path)
    assert images.shape == (2049, 28, 28) and labels.shape == (2049,)
    assert labels.tolist() == [i % 10 for i in range(2049)] and images[:, 0, 0].tolist() == [i % 256 for i in range(2049)]
    rows[9] = _csv_row(pixel3="-5")
    path.write_bytes(b"\n".join([_header(formats.CSV_HEADER), *rows]))
    assert _data_error(lambda: formats.read_kaggle_csv(path)) == f"{path}: line 11: pixel3 = -5 is outside 0-255"


def test_a_shape_of_many_dimensions_is_shown_short():
    def header(*shape):
        return bytes([0, 0, 8, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)

    assert _data_error(lambda: formats.parse_idx(header(1, 2, 1, 3, 1, 1), "x.idx")) == (
        "x.idx: truncated: header says shape (1, 2, 1, 3, 1, 1) (6 bytes), file holds 0")
    assert _data_error(lambda: formats.parse_idx(header(1, 2, 1, 3, 5, 1, 1), "x.idx")) == (
        "x.idx: truncated: header says shape (1, 2, 1, 3, ... 7 dimensions) (30 bytes), file holds 0")
    assert _data_error(lambda: formats.parse_idx(b"\x00\x00\x08", "x.idx")) == (
        "x.idx: too short for an IDX header (3 bytes)")  # parse_idx checks the header itself too
    assert _data_error(lambda: formats.parse_idx(header(2, 1) + b"\x01\x02\x03", "x.idx")) == (
        "x.idx: 1 unexpected bytes after the data of shape (2, 1)")


def test_a_huge_declared_size_is_written_out_then_rounded():
    def header(*shape):
        return bytes([0, 0, 8, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)

    refused = "bytes of data (the limit is 1 GiB); refused before reading it"
    for shape, size in (((10**8, 10**8, 10**8 - 1), "999,999,990,000,000,000,000,000"),  # below 10^24: every digit
                        ((10**8, 10**8, 10**8), "about 10^24"),
                        ((2**31, 2**31, 2**31), "about 10^27")):
        assert _data_error(lambda shape=shape: formats.idx_header(header(*shape), "x.idx")) == (
            f"x.idx: header declares shape {shape} = {size} {refused}")


def test_trailing_bytes_are_counted_up_to_65535(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    for extra, count in ((65535, "65535"), (65536, "more than 65535")):
        path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 7]) + bytes(extra))
        assert _data_error(lambda: formats.read_idx(path)) == (
            f"{path}: {count} unexpected bytes after the data of shape (1,)")


def test_idx_data_read_into_a_buffer_is_used_in_place_and_is_writable():
    content = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])
    buffer = bytearray(content)
    in_place = formats.parse_idx(buffer, "x.idx")  # a buffer read for this call: no copy of 47 MB of images
    assert np.shares_memory(in_place, np.frombuffer(buffer, np.uint8)) and in_place.tolist() == [7, 8, 9]
    copied = formats.parse_idx(content, "x.idx")  # bytes are read-only: the array is a writable copy
    assert copied.flags.writeable and copied.tolist() == [7, 8, 9]
    swapped = formats.parse_idx(bytearray(formats.idx_bytes(np.array([1, -2], np.int32))), "x.idx")
    assert swapped.dtype == np.dtype("=i4") and swapped.tolist() == [1, -2] and swapped.flags.writeable


def test_an_idx_file_too_big_for_the_memory_left_is_one_line(tmp_path):
    """1,000,000,000 bytes declared (within the 1 GiB limit), in a Python capped at 600 MB of address space."""
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (1000).to_bytes(4, "big") * 3 + b"\1")
    script = ("import resource, sys\n"
              "resource.setrlimit(resource.RLIMIT_AS, (600 * 2**20, resource.RLIM_INFINITY))\n"
              "from fmnist.data import formats\nfrom fmnist.errors import DataError\n"
              "try:\n    formats.read_idx(sys.argv[1])\nexcept DataError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120,
                            check=False, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert (result.returncode, result.stdout, result.stderr) == (
        0, f"{path}: not enough memory to read its 1,000,000,016 bytes\n", "")
