"""Hostile image files: small files that declare huge or many frames, data that ends before the rows
its header promises, files too big to read. Each is built here and predicted by a real `fmnist
predict` under the harness's address-space cap (or read in-process): one line, exit 1, quickly."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import assert_refused, run_bounded
from PIL import Image, ImageFile

from fmnist import image_files, images
from fmnist.errors import DataError
from fmnist.limits import MAX_FRAMES, MAX_IMAGE_BYTES


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, rows: int, depth: int = 8, color: int = 0, channels: int = 1,
         interlaced: bool = False, raw: bytes | None = None) -> bytes:
    """A PNG whose IHDR says width x height and whose (complete, valid) zlib stream holds `rows` rows
    of zero pixels, or `raw` bytes; compressed row by row, so no full-size buffer is ever built."""
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, int(interlaced))
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + width * channels * depth // 8)
    body = compressor.compress(raw) if raw is not None else b"".join(compressor.compress(row) for _ in range(rows))
    body += compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def _encoded(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **params)
    return buffer.getvalue()


def _photo(width=240, height=200) -> Image.Image:
    """A photo-like image: a dark blob on a light, noisy backdrop."""
    rng = np.random.default_rng(7)
    pixels = np.full((height, width, 3), 230.0) + rng.normal(0, 6, (height, width, 3))
    pixels[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = 40
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _enlarged(jpeg: bytes, extra_rows: int) -> bytes:
    """The JPEG with the height in its frame header (SOF0) raised: the data ends rows early."""
    data = bytearray(jpeg)
    sof = data.index(b"\xff\xc0")
    height = struct.unpack(">H", data[sof + 5 : sof + 7])[0]
    data[sof + 5 : sof + 7] = struct.pack(">H", height + extra_rows)
    return bytes(data)


def _refused_by_predict(tmp_path, hostile_model, name: str, content: bytes, *fragments: str, memory=None) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    result = run_bounded("predict", hostile_model, path, **({"memory": memory} if memory else {}))
    assert result.stdout == b""
    return assert_refused(result, 1, str(path), *fragments)


# --------------------------------------------------------------------------- data that ends early


def test_a_png_whose_data_holds_ten_of_7000_rows_is_truncated(tmp_path, hostile_model):
    """Its zlib stream is complete, just short: Pillow decodes it without a word (exit 0 before)."""
    content = _png(7000, 7000, rows=10)
    assert len(content) < 1000
    _refused_by_predict(tmp_path, hostile_model, "short.png", content, "truncated or corrupt image",
                        "the data ends before the last rows")


def test_an_interlaced_png_cut_after_its_first_pass_is_truncated():
    first_pass = b"\0" * (8 * (1 + 8))  # 64x64 grey, Adam7 pass 1: 8 rows of 8 pixels
    with pytest.raises(DataError, match="truncated or corrupt image"):
        images.load(_png(64, 64, 0, interlaced=True, raw=first_pass))


@pytest.mark.parametrize("extra_rows", [16, 400, 6800])
def test_a_jpeg_with_an_enlarged_size_field_is_truncated(tmp_path, hostile_model, extra_rows):
    """libjpeg fills the missing rows with grey and only warns; fmnist decodes without the end marker,
    so the decoder stops where the data does."""
    jpeg = _encoded(_photo(), format="JPEG", quality=85)
    _refused_by_predict(tmp_path, hostile_model, "tall.jpg", _enlarged(jpeg, extra_rows), "truncated or corrupt image")


def test_truncation_is_refused_even_when_pillow_is_told_to_load_truncated_images(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # another library in the process did this
    jpeg = _encoded(_photo(), format="JPEG", quality=85)
    for content in (_png(700, 700, rows=10), jpeg[: len(jpeg) // 2], _enlarged(jpeg, 64)):
        with pytest.raises(DataError, match="truncated or corrupt image"):
            images.load(content)


@pytest.mark.parametrize("params", [
    {"format": "JPEG", "quality": 85}, {"format": "JPEG", "quality": 95, "subsampling": 0},
    {"format": "JPEG", "progressive": True}, {"format": "PNG"}, {"format": "PNG", "optimize": True},
    {"format": "BMP"}, {"format": "TIFF", "compression": "tiff_lzw"}, {"format": "GIF"},
    {"format": "WEBP", "lossless": True},
], ids=lambda params: "-".join(str(value) for value in params.values()))
def test_valid_files_decode_to_exactly_what_pillow_decodes(params):
    """The checks change nothing: the pixels are Pillow's own (a JPEG decoded without its end marker
    included), also where a row happens to hold a sentinel value throughout."""
    image = _photo(203, 157)
    image.paste((0x5A, 0x5A, 0x5A), (0, 155, 203, 157))  # the last two rows: the first sentinel
    content = _encoded(image, **params)
    expected = Image.open(io.BytesIO(content))
    expected.load()
    decoded = image_files.open_image(content)
    assert decoded.image.mode == expected.mode and np.array_equal(np.asarray(decoded.image), np.asarray(expected))


# --------------------------------------------------------------------------- sizes, memory and frames


def test_a_tiny_png_that_decodes_to_196_mb_stays_within_the_memory_cap(tmp_path, hostile_model):
    """7,000 x 7,000 16-bit RGBA in 381 KB: within the pixel and decode limits (196 MB decoded), predicted
    under a 768 MiB address-space cap. It needed 900 MB of address space before (a full-size copy for
    EXIF orientation and another for premultiplied alpha); 550 MB now (the decoded frame and one band)."""
    path = tmp_path / "rgba16.png"
    path.write_bytes(_png(7000, 7000, rows=7000, depth=16, color=6, channels=4))
    assert path.stat().st_size < 400_000  # deflate tops out near 1,000:1
    result = run_bounded("predict", hostile_model, path, memory=768 << 20)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.decode().startswith(f"{path}: ")


def test_a_webp_past_the_decode_memory_limit_is_refused_from_its_header(tmp_path, hostile_model):
    """36 megapixels pass the pixel limit, but libwebp holds three copies: 432 MB, refused."""
    content = _encoded(Image.new("RGB", (6000, 6000), (250, 250, 250)), format="WEBP", lossless=True)
    _refused_by_predict(tmp_path, hostile_model, "big.webp", content, "image too large to decode: 6000x6000",
                        "need 432,000,000 bytes (the limit is 256 MiB); refused before decoding")


def _gif(frames: int) -> bytes:
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x21\xf9\x04\x00\x00\x00\x00\x00" + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame * frames + b"\x3b"


def test_more_frames_than_the_limit_are_refused_without_decoding_them(tmp_path, hostile_model):
    assert images.load(_gif(MAX_FRAMES)).frames == MAX_FRAMES
    line = _refused_by_predict(tmp_path, hostile_model, "long.gif", _gif(100_000), "too many frames: more than 1,000")
    assert "refused" in line
    pages = [Image.new("L", (2, 2), 255)] * (MAX_FRAMES + 1)
    tiff = _encoded(pages[0], format="TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(DataError, match="too many frames"):
        images.load(tiff)


def test_a_file_past_the_byte_limit_is_refused_from_its_size(tmp_path, hostile_model):
    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:
        handle.write(_encoded(_photo(), format="PNG"))
        handle.truncate(MAX_IMAGE_BYTES + 1)  # sparse: nothing is written, the size is what counts
    assert_refused(run_bounded("predict", hostile_model, path), 1, str(path),
                   f"file too large: {MAX_IMAGE_BYTES + 1:,} bytes (the limit is 64 MiB); refused before reading it")
    with pytest.raises(DataError, match="input too large"):
        images.load(b"\x89PNG" + bytes(MAX_IMAGE_BYTES))


def test_an_empty_image_is_an_error_for_that_input(hostile_model):
    import fmnist

    for empty in (np.zeros((0, 0), np.uint8), np.zeros((5, 0, 3), np.uint8), Image.new("L", (0, 0))):
        records = fmnist.predict(hostile_model, [empty, np.zeros((28, 28), np.uint8)], on_error="record")
        assert records[0].error.startswith("empty image (") and records[1].ok
        with pytest.raises(DataError, match=r"^<image>: empty image \("):
            fmnist.predict(hostile_model, empty)
