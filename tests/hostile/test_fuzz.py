"""Property-based fuzzing (hypothesis) of every reader of untrusted bytes: the IDX parser and file
reader, the Kaggle CSV reader, and the image decoder with `images.prepare`. The property is always the
same: any input gives a result of the promised shape, or a DataError/FmnistError (one line), never
another exception.

Bounded in CI by the profile in tests/conftest.py (a fixed set of 60 examples per property, the same
on every run, each property a few seconds); `make fuzz` runs the same properties with
FMNIST_FUZZ_EXAMPLES=2000 FMNIST_FUZZ_RANDOM=1, then the atheris campaign of fuzz/images.py.
"""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from fmnist import image_files, images
from fmnist.data import formats
from fmnist.errors import FmnistError

pytestmark = pytest.mark.fuzz

# --------------------------------------------------------------------------- IDX

_DTYPE_CODES = [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x07, 0xFF]
_DIMENSIONS = st.one_of(st.integers(0, 6), st.sampled_from([28, 60000, 2**31, 2**32 - 1]))


@st.composite
def idx_content(draw) -> bytes:
    """IDX-like bytes: mostly a plausible header with a payload of about the right size, sometimes
    anything at all."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.binary(max_size=64))
    shape = draw(st.lists(_DIMENSIONS, min_size=0, max_size=5))
    magic = bytes([0, 0, draw(st.sampled_from(_DTYPE_CODES)), draw(st.sampled_from([len(shape), len(shape), 255, 0]))])
    header = magic + b"".join(struct.pack(">I", n) for n in shape)
    payload_size = int(np.prod([n for n in shape if n < 10] or [1]))
    payload = draw(st.binary(min_size=0, max_size=8)) + bytes(payload_size * draw(st.sampled_from([1, 2, 4, 8])))
    return header + payload[: draw(st.integers(0, len(payload)))] if draw(st.booleans()) else header + payload


def _check_idx_result(array) -> None:
    assert isinstance(array, np.ndarray) and array.dtype.isnative and array.ndim >= 1


@given(idx_content())
def test_parse_idx_gives_an_array_or_a_data_error(content):
    try:
        _check_idx_result(formats.parse_idx(content, "fuzz-idx"))
    except FmnistError:
        pass


@given(content=idx_content(), packing=st.sampled_from(["raw", "gzip", "gzip-cut", "gzip-flipped", "gzip-tail"]),
       position=st.integers(0, 2**16))
def test_reading_idx_files_gives_an_array_or_a_data_error(tmp_path_factory, content, packing, position):
    path = tmp_path_factory.mktemp("idx") / "data-idx3-ubyte"
    data = content if packing == "raw" else gzip.compress(content, mtime=0)
    if packing == "gzip-cut":
        data = data[: position % (len(data) + 1)]
    elif packing == "gzip-flipped":
        flipped = bytearray(data)
        flipped[position % len(flipped)] ^= 0xFF
        data = bytes(flipped)
    elif packing == "gzip-tail":
        data += bytes([position % 256]) * (position % 7)
    path.write_bytes(data)
    try:
        _check_idx_result(formats.read_idx(path))
    except FmnistError:
        pass
    try:
        assert isinstance(formats.read_file_bytes(path), bytes)
    except FmnistError:
        pass


# --------------------------------------------------------------------------- Kaggle CSV

_FIELDS = st.one_of(st.integers(0, 255).map(str), st.sampled_from(["", " 7", "-1", "256", "1e3", "x", '"3"', "9" * 30]))


@st.composite
def csv_content(draw) -> bytes:
    header = ",".join(formats.CSV_HEADER)
    header = draw(st.sampled_from([header, header, "\ufeff" + header, header.replace("pixel9,", ""), "label,pixel1"]))
    lines = [header]
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["row", "row", "row", "blank", "short", "noise"]))
        if kind == "row":
            values = [str(draw(st.integers(0, 9)))] + [str(draw(st.integers(0, 255)))] * 784
            if draw(st.booleans()):
                values[draw(st.integers(0, 784))] = draw(_FIELDS)
            lines.append(",".join(values) + draw(st.sampled_from(["", "\r", " "])))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "  ", "\r", "\t"])))
        elif kind == "short":
            lines.append(",".join(draw(st.lists(_FIELDS, max_size=5))))
        else:
            lines.append(draw(st.text(max_size=30)))
    text = "\n".join(lines).encode("utf-8", "surrogatepass") + draw(st.sampled_from([b"", b"\n", b"\n\n", b"\xff\xfe"]))
    return gzip.compress(text, mtime=0) if draw(st.booleans()) else text


@given(csv_content())
def test_reading_a_kaggle_csv_gives_images_or_a_data_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("csv") / "train.csv"
    path.write_bytes(content)
    try:
        pixels, labels = formats.read_kaggle_csv(path)
    except FmnistError:
        return
    assert pixels.dtype == np.uint8 and pixels.shape[1:] == (28, 28) and len(pixels) == len(labels) > 0


# --------------------------------------------------------------------------- images


def _sample(kind: str, mode: str, width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    rgb[height // 4 : 3 * height // 4 + 1, width // 4 : 3 * width // 4 + 1] //= 4
    image = Image.fromarray(rgb).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    params = {"GIF": {"save_all": seed % 3 == 0, "append_images": [image.convert("P")]},
              "JPEG": {"quality": 20 + seed % 80, "progressive": seed % 4 == 0},
              "TIFF": {"compression": ["raw", "tiff_lzw", "packbits", "tiff_adobe_deflate"][seed % 4]},
              "WEBP": {"lossless": seed % 2 == 0}, "PNG": {}, "BMP": {}}[kind]
    if kind == "JPEG" and image.mode not in ("L", "RGB", "CMYK"):
        image = image.convert("RGB")
    if kind in ("BMP", "WEBP", "GIF") and image.mode == "I;16":
        image = image.convert("L")
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **params)
    return buffer.getvalue()


@st.composite
def mutated_image(draw) -> bytes:
    """A valid small image of some format and mode, then bytes flipped, cut, inserted or replaced."""
    kind = draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16"]))
    data = bytearray(_sample(kind, mode, draw(st.integers(1, 48)), draw(st.integers(1, 48)), draw(st.integers(0, 999))))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert", "replace", "big"]))
        if action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "replace":
            data[position : position + 4] = draw(st.binary(min_size=4, max_size=4))
        elif action == "big" and position + 4 <= len(data):  # a size field made large
            data[position : position + 4] = struct.pack(">I", draw(st.integers(2**12, 2**31)))
        if not data:
            break
    return bytes(data)


@given(mutated_image(), st.sampled_from(["auto", "always", "never"]))
def test_decoding_and_preparing_any_image_bytes_gives_an_input_or_a_data_error(content, invert):
    try:
        decoded = image_files.open_image(content)
    except FmnistError:
        return
    assert decoded.width > 0 and decoded.height > 0 and decoded.frames >= 1
    try:
        prepared = images.prepare(decoded, invert=invert)
    except FmnistError:
        return
    assert prepared.pixels.shape == (28, 28) and prepared.pixels.dtype == np.uint8


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_the_samples_the_fuzzer_starts_from_are_valid(kind):
    for mode in ("L", "RGB", "RGBA", "P", "1", "I;16"):
        assert images.load(_sample(kind, mode, 33, 17, 5)).pixels.shape == (28, 28)
