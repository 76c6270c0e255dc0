"""Real-world image → model input (fmnist.images): every colour mode, the dataset's own look, bad files."""

from __future__ import annotations

import io
import os
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fmnist import image_files, images
from fmnist.errors import DataError, FmnistError
from fmnist.images import FASHION_SPEC, ImageSpec


def photo(image: np.ndarray, scale: int = 10, margins=(40, 90, 25, 60), backdrop: float = 235.0) -> np.ndarray:
    """A (H, W) float 'photo' of a dataset image: enlarged, dark on a light backdrop, off-centre margins."""
    big = np.asarray(Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC), dtype=np.float32)
    top, bottom, left, right = margins
    canvas = np.full((28 * scale + top + bottom, 28 * scale + left + right), backdrop, dtype=np.float32)
    canvas[top : top + 28 * scale, left : left + 28 * scale] = backdrop * (1 - big / 255.0)
    return canvas


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=params.pop("format", "PNG"), **params)
    return buffer.getvalue()


@pytest.mark.slow
def test_every_dataset_image_passes_through_unchanged(fashion):
    """All 70,000: including the few whose object covers the border or a corner (train 41623, a bag)."""
    for image in np.concatenate([fashion.test.images, fashion.train.images]):
        prepared = images.prepare(Image.fromarray(image))
        assert prepared.passthrough and not prepared.inverted
        assert np.array_equal(prepared.pixels, image)


def test_a_28x28_image_that_does_not_look_like_the_dataset_is_prepared(fashion):
    small = np.zeros((28, 28), np.uint8)
    small[:12, :9] = np.asarray(Image.fromarray(fashion.test.images[1]).resize((9, 12)))  # in a corner
    prepared = images.prepare(Image.fromarray(small))
    assert not prepared.passthrough and prepared.box[1:] == (0, 9, 12) and prepared.box[0] <= 1
    rows, cols = np.flatnonzero(prepared.pixels.max(1) > 30), np.flatnonzero(prepared.pixels.max(0) > 30)
    assert rows[0] <= 1 and rows[-1] >= 26 and 3 <= cols[0] <= 9  # fitted to full height, centred
    # A dark garment on a mid-grey backdrop (the dataset's darkest corners are 51 grey levels from black).
    grey = np.where(fashion.test.images[1] > 0, 255 - fashion.test.images[1] // 2, 160).astype(np.uint8)
    on_grey = images.prepare(Image.fromarray(grey))
    assert on_grey.inverted and not on_grey.passthrough
    assert np.median(on_grey.pixels[fashion.test.images[1] == 0]) == 0  # the backdrop became black


@pytest.mark.parametrize("n", [14, 27, 29, 56])
def test_only_a_square_image_of_the_model_size_is_passed_through(fashion, n):
    """A 28xN or Nx28 image that otherwise looks like the dataset (black backdrop, a garment filling
    it) is prepared, never passed through at the wrong size: both sides are checked."""
    for width, height in ((n, 28), (28, n)):
        image = np.asarray(Image.fromarray(fashion.test.images[1]).resize((width, height), Image.Resampling.LANCZOS))
        prepared = images.prepare(Image.fromarray(image))
        assert not prepared.passthrough, (width, height)
        assert prepared.pixels.shape == (28, 28) and (prepared.width, prepared.height) == (width, height)


def _block(height: int, width: int, background: float = 0.0, level: float = 200.0, dtype=np.uint8) -> np.ndarray:
    """A 28x28 image: a height x width block of `level`, centred, on a uniform `background`."""
    image = np.full((28, 28), background, dtype)
    top, left = (28 - height) // 2, (28 - width) // 2
    image[top : top + height, left : left + width] = level
    return image


@pytest.mark.parametrize("longest, passes", [(14, True), (13, False)])
def test_half_the_frame_is_the_passthrough_limit(longest, passes):
    """An object whose longest side is half the model's object size (14 of 28 px) on black is used as
    it is; 13 px is prepared like a photo (cropped and fitted). Tall and wide objects alike."""
    for height, width in ((longest, 5), (5, longest)):
        image = _block(height, width)
        prepared = images.prepare(Image.fromarray(image))
        assert prepared.passthrough is passes, (height, width)
        assert np.array_equal(prepared.pixels, image) is passes
        assert prepared.box == ((28 - width) // 2, (28 - height) // 2, (28 - width) // 2 + width, (28 - height) // 2 + height)
    # The limit is the model's own object size: 10 of MNIST's 20 px.
    digits = ImageSpec(object_size=20)
    assert images.prepare(Image.fromarray(_block(10, 3)), digits).passthrough
    assert not images.prepare(Image.fromarray(_block(9, 3)), digits).passthrough


@pytest.mark.parametrize("background, passes", [(63, True), (64, False)])
def test_a_background_within_a_quarter_of_black_is_the_passthrough_limit(background, passes):
    """25 % of 255 is 63.75 grey levels: a backdrop at 63 still looks like the dataset, 64 does not
    (and is levelled to black); the same holds after inversion (dark object on 192 or 191), and from
    white for a model of dark objects on white."""
    image = _block(20, 12, background=background, level=255)
    prepared = images.prepare(Image.fromarray(image))
    assert prepared.passthrough is passes and not prepared.inverted
    if passes:
        assert np.array_equal(prepared.pixels, image)
    else:
        assert prepared.pixels[0, 0] == 0  # prepared: the backdrop became black
    light = _block(20, 12, background=255 - background, level=0)
    inverted = images.prepare(Image.fromarray(light))
    assert inverted.inverted and inverted.passthrough is passes
    if passes:
        assert np.array_equal(inverted.pixels, 255 - light)
    # A model trained on dark objects on white measures the backdrop from white instead.
    on_white = images.prepare(Image.fromarray(light), ImageSpec(background="light"))
    assert not on_white.inverted and on_white.passthrough is passes


def test_the_background_limit_is_inclusive():
    """Exactly 25 % of full intensity (63.75, reachable in a float image) is still within the limit."""
    at_limit = images.prepare(Image.fromarray(_block(20, 12, 63.75, 255.0, np.float32), mode="F"))
    assert at_limit.passthrough
    beyond = images.prepare(Image.fromarray(_block(20, 12, 63.8, 255.0, np.float32), mode="F"))
    assert not beyond.passthrough


def test_a_test_image_saved_as_png_reads_back_exactly(tmp_path, fashion):
    path = tmp_path / "sample_image.png"
    Image.fromarray(fashion.test.images[1]).save(path)
    prepared = images.load(path)
    assert np.array_equal(prepared.pixels, fashion.test.images[1])
    assert prepared.info() == {"width": 28, "height": 28, "mode": "L", "inverted": False, "box": list(prepared.box),
                               "passthrough": True, "frames": 1, "empty": False}


def test_an_inverted_28x28_image_is_inverted_back_exactly(fashion):
    for image in fashion.test.images[:200]:
        prepared = images.prepare(Image.fromarray(255 - image))
        assert prepared.inverted and np.array_equal(prepared.pixels, image)
    never = images.prepare(Image.fromarray(255 - fashion.test.images[0]), invert="never")
    # Kept dark on white (no dataset look, so not passed through): the canvas keeps the white backdrop.
    assert not never.inverted and not never.passthrough
    assert never.pixels[0, 0] == 255 and never.pixels.mean() > 128
    always = images.prepare(Image.fromarray(fashion.test.images[0]), invert="always")
    assert always.inverted and not always.passthrough and always.pixels[0, 0] == 255


def test_a_photo_becomes_the_dataset_image_again(fashion):
    """Dark garment on a light, non-square backdrop: inverted, background levelled to black, cropped
    to the garment, fitted to 28 px and centred: close to the original dataset image."""
    errors = []
    for image in fashion.test.images[:40]:
        rgb = np.stack([photo(image)] * 3, axis=-1) * np.array([1.0, 0.95, 0.9])  # a warm colour cast
        prepared = images.prepare(Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), mode="RGB"))
        assert prepared.inverted and not prepared.passthrough
        assert prepared.width == 28 * 10 + 25 + 60 and prepared.height == 28 * 10 + 40 + 90
        pixels = prepared.pixels.astype(int)
        assert np.median(pixels[image == 0]) == 0  # the light backdrop became the dataset's black background
        errors.append(np.abs(pixels - image.astype(int)).mean())
    # Resampling twice and sharpening move pixels a little; an unprepared photo is off by ~100 levels.
    assert np.mean(errors) < 15, np.mean(errors)


def test_the_crop_box_is_the_garment(fashion):
    image = fashion.test.images[1]  # a pullover touching the top and bottom edges
    rows, cols = np.flatnonzero(image.max(1) > 12), np.flatnonzero(image.max(0) > 12)
    prepared = images.prepare(Image.fromarray(np.rint(photo(image)).astype(np.uint8)))
    left, top, right, bottom = prepared.box
    assert abs(top - (40 + rows[0] * 10)) <= 10 and abs(bottom - (40 + (rows[-1] + 1) * 10)) <= 10
    assert abs(left - (25 + cols[0] * 10)) <= 10 and abs(right - (25 + (cols[-1] + 1) * 10)) <= 10


def test_transparency_is_composited_onto_white(fashion):
    gray = np.rint(photo(fashion.test.images[0], backdrop=255.0)).astype(np.uint8)
    alpha = np.where(gray < 250, 255, 0).astype(np.uint8)
    garbage = np.random.default_rng(0).integers(0, 256, size=gray.shape + (3,), dtype=np.uint8)
    rgb = np.where(alpha[..., None] > 0, np.stack([gray] * 3, axis=-1), garbage)  # hidden pixels hold noise
    rgba = Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")
    on_white = images.prepare(Image.fromarray(np.where(alpha > 0, gray, 255).astype(np.uint8)))
    prepared = images.load(png_bytes(rgba))
    assert prepared.mode == "RGBA"
    assert np.array_equal(prepared.pixels, on_white.pixels)
    la = images.load(png_bytes(Image.fromarray(np.dstack([np.where(alpha > 0, gray, 0), alpha]).astype(np.uint8), mode="LA")))
    assert np.array_equal(la.pixels, on_white.pixels)


def test_sixteen_bit_images_are_scaled_not_clipped(fashion):
    image = fashion.test.images[3]
    wide = Image.fromarray(image.astype(np.uint16) * 257)  # 0..65535, as a 16-bit scanner writes it
    prepared = images.load(png_bytes(wide))
    assert prepared.mode.startswith("I")
    assert np.array_equal(prepared.pixels, image)  # clipping at 255 would make it almost all white


def test_cmyk_palette_and_float_images(fashion):
    rgb = Image.fromarray(np.stack([np.rint(photo(fashion.test.images[5])).astype(np.uint8)] * 3, axis=-1))
    reference = images.prepare(rgb).pixels.astype(int)
    cmyk = images.load(png_bytes(rgb.convert("CMYK"), format="JPEG", quality=95))
    assert cmyk.mode == "CMYK" and np.abs(cmyk.pixels.astype(int) - reference).mean() < 4
    palette = images.load(png_bytes(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)))
    assert palette.mode == "P" and np.abs(palette.pixels.astype(int) - reference).mean() < 4
    unit = Image.fromarray(fashion.test.images[5].astype(np.float32) / 255.0, mode="F")  # 0..1 floats
    assert np.array_equal(images.prepare(unit).pixels, fashion.test.images[5])


def test_an_animated_gif_uses_its_first_frame(fashion):
    first, second = (Image.fromarray(fashion.test.images[i]) for i in (0, 1))
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=[second], duration=100, loop=0)
    prepared = images.load(buffer.getvalue())
    assert prepared.frames == 2
    assert np.array_equal(prepared.pixels, fashion.test.images[0])


def test_a_transparent_palette_is_composited_onto_white(fashion):
    """A palette PNG with a transparent entry (tRNS): hidden pixels are white, whatever colour the
    palette gives them (here a saturated green that would read as mid-grey)."""
    gray = np.rint(photo(fashion.test.images[0], backdrop=255.0)).astype(np.uint8)
    garment = gray < 250
    indices = np.where(garment, np.maximum(gray, 1), 0).astype(np.uint8)  # entry i is grey i; 0 is hidden
    palette = [20, 200, 30] + [level for i in range(1, 256) for level in (i, i, i)]
    paletted = Image.fromarray(indices, mode="P")
    paletted.putpalette(palette)
    encoded = png_bytes(paletted, transparency=0)
    assert Image.open(io.BytesIO(encoded)).info.get("transparency") == 0  # really a transparent palette
    prepared = images.load(encoded)
    assert prepared.mode == "P"
    on_white = images.prepare(Image.fromarray(np.where(garment, np.maximum(gray, 1), 255).astype(np.uint8)))
    assert np.array_equal(prepared.pixels, on_white.pixels)
    assert np.array_equal(images.to_grayscale(Image.open(io.BytesIO(encoded)))[~garment], np.full((~garment).sum(), 255.0))


def test_an_animated_webp_uses_its_first_frame(fashion):
    first, second = (Image.fromarray(fashion.test.images[i]).convert("RGB") for i in (1, 0))
    buffer = io.BytesIO()
    first.save(buffer, format="WEBP", save_all=True, append_images=[second], duration=100, loop=0, lossless=True)
    prepared = images.load(buffer.getvalue())
    assert prepared.frames == 2 and prepared.info()["frames"] == 2
    assert prepared.passthrough and np.array_equal(prepared.pixels, fashion.test.images[1])


def test_exactly_the_pixel_limit_is_decoded_one_more_is_refused_from_the_header(tmp_path):
    """The limit is image_files.MAX_IMAGE_PIXELS: an image of exactly that many pixels is read;
    one pixel more is refused from the header alone (the file below has no valid image data, so
    any decoding would report a corrupt image instead)."""
    limit = image_files.MAX_IMAGE_PIXELS
    assert limit == 50_000_000 == 10_000 * 5_000 == 14_041 * 3_561 - 1
    at_limit = Image.new("1", (10_000, 5_000), 1)  # white, 1 bit per pixel: a small file
    at_limit.paste(0, (4_000, 2_000, 6_000, 3_000))  # a black object in the middle
    path = tmp_path / "at-limit.png"
    at_limit.save(path)
    prepared = images.load(path)
    assert (prepared.width, prepared.height) == (10_000, 5_000) and prepared.inverted
    assert all(abs(a - b) <= 20 for a, b in zip(prepared.box, (4_000, 2_000, 6_000, 3_000))), prepared.box
    over = tmp_path / "over.png"
    over.write_bytes(_png_header(14_041, 3_561))
    with pytest.raises(DataError) as caught:
        images.load(over)
    assert str(caught.value) == (f"{over}: image too large: 14041x3561 = 50,000,001 pixels (the limit is 50,000,000); "
                                 "refused before decoding")


def test_exif_orientation_is_applied(fashion):
    upright = Image.fromarray(np.rint(photo(fashion.test.images[2])).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": the camera was held sideways
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor recorded
    prepared = images.load(png_bytes(stored, format="JPEG", quality=95, exif=exif.tobytes()))
    expected = images.prepare(upright).pixels.astype(int)
    assert np.abs(prepared.pixels.astype(int) - expected).mean() < 6


def test_tiny_blank_and_huge_aspect_images_do_not_break():
    for array in (np.full((1, 1), 200, np.uint8), np.full((5, 3), 0, np.uint8), np.full((40, 40), 255, np.uint8),
                  np.tile(np.linspace(0, 255, 600, dtype=np.uint8), (3, 1))):
        prepared = images.prepare(Image.fromarray(array))
        assert prepared.pixels.shape == (28, 28) and prepared.pixels.dtype == np.uint8
    blank = images.prepare(Image.fromarray(np.full((50, 80), 255, np.uint8)))
    assert blank.pixels.max() == 0  # nothing stands out: an empty (black) input


def test_measure_spec_of_fashion_and_of_digit_like_data(fashion):
    assert images.measure_spec(fashion.train.images) == FASHION_SPEC
    # MNIST-like: objects fitted into 20 px and centred with a 4 px margin.
    small = np.zeros((500, 28, 28), np.uint8)
    for i, image in enumerate(fashion.train.images[:500]):
        small[i, 4:24, 4:24] = np.asarray(Image.fromarray(image).resize((20, 20), Image.Resampling.LANCZOS))
    digits = images.measure_spec(small)
    assert digits == ImageSpec(object_size=20)
    prepared = images.prepare(Image.fromarray(np.rint(photo(fashion.test.images[1])).astype(np.uint8)), digits)
    rows, cols = np.flatnonzero(prepared.pixels.max(1) > 12), np.flatnonzero(prepared.pixels.max(0) > 12)
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (19, 20, 21)
    light = images.measure_spec(255 - fashion.train.images[:500])
    assert light.background == "light"
    on_light = images.prepare(Image.fromarray(fashion.test.images[7]), light)  # light object on black → inverted
    assert on_light.inverted and np.array_equal(on_light.pixels, 255 - fashion.test.images[7])


def test_image_spec_validation():
    for bad in ({"size": 1}, {"object_size": 40}, {"background": "grey"}, {"tolerance": 0.7}):
        with pytest.raises(ValueError, match="image spec"):
            ImageSpec(**bad)
    with pytest.raises(ValueError, match="unknown key"):
        ImageSpec.from_dict({"size": 28, "colour": "red"})
    assert ImageSpec.from_dict(FASHION_SPEC.to_dict()) == FASHION_SPEC


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with a tiny (invalid) body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x00" * 16) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "empty file"),
        (b"GIF87a? no, just text pretending", "not an image"),
        (b"%PDF-1.4 a document", "not an image"),
        (_png_header(100_000, 100_000), "image too large: 10,000,000,000 pixels"),
        (_png_header(9_000, 9_000), "image too large: 9000x9000 = 81,000,000 pixels"),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path, content, problem):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"upload.png: {problem}"):
        images.load(path)


def test_file_objects_are_read_and_left_open(fashion):
    buffer = io.BytesIO(png_bytes(Image.fromarray(fashion.test.images[1])))
    assert np.array_equal(images.load(buffer).pixels, fashion.test.images[1])
    assert not buffer.closed
    with pytest.raises(DataError, match=r"^<image>: not an image"):
        images.load(b"plain bytes, no image")


def test_truncated_and_missing_files(tmp_path, fashion):
    whole = png_bytes(Image.fromarray(np.rint(photo(fashion.test.images[0])).astype(np.uint8)))
    for cut, name in ((len(whole) // 2, "half.png"), (60, "header-only.png")):
        (tmp_path / name).write_bytes(whole[:cut])
        with pytest.raises(DataError, match=f"{name}: truncated or corrupt image"):
            images.load(tmp_path / name)
    jpeg = png_bytes(Image.fromarray(fashion.test.images[0]).resize((200, 200)), format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(DataError, match="cut.jpg: truncated or corrupt image"):
        images.load(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match="absent.png: no such file"):
        images.load(tmp_path / "absent.png")
    with pytest.raises(DataError, match="is a directory"):
        images.load(tmp_path)


def test_find_images_recurses_in_natural_order(tmp_path):
    for name in ("b/img10.png", "b/img2.PNG", "a.jpg", ".hidden/x.png", "notes.txt", "c/.x.png", "c/d/e.webp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "linked").symlink_to(tmp_path / "c")  # a second way into c: c is searched once...
    (tmp_path / "c" / "d" / "loop").symlink_to(tmp_path / "c")  # ...and a loop back is not followed forever
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    (outside / "f").mkdir(parents=True)
    (outside / "f" / "g.gif").write_bytes(b"x")
    (tmp_path / "elsewhere").symlink_to(outside)  # a linked folder outside the tree is searched
    found = [p.relative_to(tmp_path).as_posix() for p in image_files.find_images(tmp_path)]
    assert found == ["a.jpg", "b/img2.PNG", "b/img10.png", "c/d/e.webp", "elsewhere/f/g.gif"]


def test_exif_rotation_reports_the_upright_size_and_box(fashion):
    upright = np.full((400, 200), 250, np.uint8)  # portrait: 200 wide, 400 high
    upright[50:100, 50:150] = 20  # a dark object at x 50-150, y 50-100
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 400 wide, 200 high on disk
    prepared = images.load(png_bytes(stored, format="JPEG", quality=95, exif=exif.tobytes()))
    assert (prepared.width, prepared.height) == (200, 400)
    assert all(abs(a - b) <= 3 for a, b in zip(prepared.box, (50, 50, 150, 100))), prepared.box


def test_only_the_supported_formats_are_decoded(tmp_path, fashion):
    ppm = tmp_path / "disguised.png"
    Image.fromarray(fashion.test.images[0]).save(ppm, format="PPM")  # a format Pillow reads, fmnist does not
    with pytest.raises(DataError, match="disguised.png: not an image, or not one of the formats read"):
        images.load(ppm)
    eps = tmp_path / "vector.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")  # never handed to Ghostscript
    with pytest.raises(DataError, match="vector.jpg: not an image"):
        images.load(eps)


def test_a_pipe_is_read_to_its_end(fashion):
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as writer:
        writer.write(png_bytes(Image.fromarray(fashion.test.images[1])))
    with os.fdopen(read_end, "rb") as reader:
        assert np.array_equal(images.load(reader).pixels, fashion.test.images[1])


def test_huge_images_are_reduced_before_any_float_copy(fashion):
    big = Image.fromarray(fashion.test.images[1]).resize((28 * 100, 28 * 100), Image.Resampling.NEAREST)  # 7.8 Mpx
    opened = image_files.open_image(png_bytes(big))
    assert max(opened.image.size) <= 2 * image_files.WORKING_SIZE and (opened.width, opened.height) == (2800, 2800)
    prepared = images.prepare(opened)
    assert (prepared.width, prepared.height) == (2800, 2800) and prepared.passthrough is False
    assert np.abs(prepared.pixels.astype(int) - fashion.test.images[1]).mean() < 12
    rgba = Image.fromarray(np.dstack([np.stack([255 - np.asarray(big)] * 3, -1), np.asarray(big)]), mode="RGBA")
    assert image_files.open_image(png_bytes(rgba)).mode == "RGBA"


# --- measure_spec on crafted training sets, one rule at a time (issue 11's mutation run) -----------------


def _training_set(*objects, size=28, background=0):
    """(N, size, size) uint8 images on `background`, image i holding the rectangles objects[i]:
    (top, left, height, width, level) each; an empty tuple is an empty image."""
    images_ = np.full((len(objects), size, size), background, np.uint8)
    for image, rectangles in zip(images_, objects):
        for top, left, height, width, level in rectangles:
            image[top : top + height, left : left + width] = level
    return images_


def _object_size(*objects, **options) -> int:
    return images.measure_spec(_training_set(*objects), **options).object_size


def test_measure_spec_measures_each_objects_longest_side():
    assert _object_size([(0, 0, 1, 1, 255)]) == 1  # one pixel in the corner is an object of 1 px
    assert _object_size([(0, 5, 3, 9, 200)]) == 9  # wider than tall: the width counts
    assert _object_size([(10, 3, 12, 5, 13)]) == 12  # 13 grey levels is more than 5 % of 255 from black
    assert _object_size([(10, 3, 12, 5, 12)]) == 28  # 12 is not: no object, the whole frame
    assert _object_size([(0, 0, 4, 4, 255)], [(20, 20, 4, 4, 255)]) == 4  # each image measured on its own
    assert _object_size([(0, 0, 4, 4, 255)], (), [(3, 1, 6, 2, 255)]) == 5  # empty images do not count
    assert _object_size(()) == 28
    # The median over a sample: every image of a small set, every step-th of a large one.
    assert _object_size([(0, 0, 10, 1, 255)], [(0, 0, 20, 1, 255)], [(0, 0, 20, 1, 255)]) == 20
    assert _object_size(*[[(0, 0, side, 1, 255)] for side in (10, 10, 20, 20, 20, 20)], sample=2) == 15
    # The tolerance is the caller's: at 0.2 a pixel of 51 is background, at 0.45 one of 115 is an object.
    assert images.measure_spec(_training_set([(10, 10, 5, 5, 255), (0, 0, 1, 1, 51)]), tolerance=0.2) == ImageSpec(
        object_size=5, tolerance=0.2)
    assert _object_size([(10, 10, 5, 5, 115)], tolerance=0.45) == 5


def test_measure_spec_reads_the_background_from_the_borders():
    light = images.measure_spec(_training_set([(8, 8, 6, 6, 0), (0, 0, 1, 1, 243)], size=20, background=255))
    assert light == ImageSpec(size=20, object_size=6, background="light")  # 243 is within 5 % of white
    assert images.measure_spec(_training_set((), background=128)).background == "light"  # the middle is light
    # Light top and bottom rows (or left and right columns) on black: 60 of the 112 border pixels, so light.
    rows = _training_set([(0, 0, 1, 28, 255), (27, 0, 1, 28, 255)])
    assert images.measure_spec(rows).background == "light"
    assert images.measure_spec(rows.transpose(0, 2, 1)).background == "light"


def test_measure_spec_refuses_what_is_not_a_set_of_square_images():
    for shape in ((28, 28), (3, 28, 20), (0, 28, 28)):
        with pytest.raises(ValueError) as caught:
            images.measure_spec(np.zeros(shape, np.uint8))
        assert str(caught.value) == f"expected square images (N, H, H), got shape {shape}"
    with pytest.raises(ValueError) as caught:
        ImageSpec.from_dict({"size": 28, "colour": "red", "angle": 3})
    assert str(caught.value) == "image spec: unknown key(s) angle, colour"


# --- prepare's levelling, resampling and sharpening, pixel for pixel (issue 11's mutation run) ----------


def _rectangles(shape, background, *rectangles) -> Image.Image:
    """A uint8 image of `shape` on `background` with rectangles (top, left, height, width, level)."""
    pixels = np.full(shape, background, np.uint8)
    for top, left, height, width, level in rectangles:
        pixels[top : top + height, left : left + width] = level
    return Image.fromarray(pixels)


def test_the_backdrop_is_levelled_to_the_datasets():
    # A light object on a grey backdrop (100): stretched so the backdrop is black, 250 → 150 * 255 / 155 = 247.
    on_grey = images.prepare(_rectangles((100, 100), 100, (20, 30, 60, 40, 250)))
    assert not on_grey.inverted and (on_grey.pixels[14, 14], on_grey.pixels[0, 0]) == (247, 0)
    # Anything darker than the backdrop is black, like the backdrop itself.
    hole = images.prepare(_rectangles((100, 100), 100, (20, 30, 56, 56, 250), (40, 50, 8, 8, 50)))
    flat = images.prepare(_rectangles((100, 100), 100, (20, 30, 56, 56, 250), (40, 50, 8, 8, 100)))
    assert np.array_equal(hole.pixels, flat.pixels)
    # A model of dark objects on white: the backdrop (150) becomes white, 90 → 90 * 255 / 150 = 153, black stays 0.
    light = ImageSpec(background="light")
    assert (images.prepare(_rectangles((100, 100), 150, (20, 30, 60, 40, 90)), light).pixels[[14, 0], [14, 0]]
            .tolist()) == [153, 255]
    assert images.prepare(_rectangles((100, 100), 150, (20, 30, 60, 40, 0)), light).pixels[14, 14] == 0
    spot = images.prepare(_rectangles((100, 100), 150, (20, 30, 56, 56, 0), (40, 50, 8, 8, 220)), light)
    plain = images.prepare(_rectangles((100, 100), 150, (20, 30, 56, 56, 0), (40, 50, 8, 8, 150)), light)
    assert np.array_equal(spot.pixels, plain.pixels)  # lighter than the backdrop is white, like the backdrop
    assert images.prepare(Image.fromarray(np.full((50, 50), 255, np.uint8)), light).pixels.min() == 255  # blank
    # --invert never on a dark garment: nothing is stretched, the canvas keeps the image's own backdrop.
    kept = images.prepare(_rectangles((100, 100), 150, (20, 30, 60, 40, 20)), invert="never")
    assert not kept.inverted and (kept.pixels[0, 0], kept.pixels[14, 14]) == (150, 20)


def _sharpened(pixels: np.ndarray) -> np.ndarray:
    """The dataset's sharpening: a Gaussian unsharp mask of radius 1, 60 %, threshold 0."""
    from PIL import ImageFilter

    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.UnsharpMask(radius=1.0, percent=60, threshold=0)))


def test_the_object_is_resampled_with_lanczos_and_sharpened():
    rng = np.random.default_rng(0)
    texture = rng.integers(100, 256, size=(280, 280)).astype(np.uint8)  # fills the frame after cropping
    shot = np.zeros((300, 300), np.uint8)
    shot[10:290, 10:290] = texture
    resized = Image.fromarray(texture.astype(np.float32), mode="F").resize(
        (28, 28), Image.Resampling.LANCZOS, reducing_gap=3.0)  # 10x smaller: reduced by 3 first, then Lanczos
    assert np.array_equal(images.prepare(Image.fromarray(shot)).pixels, _sharpened(images.to_uint8(np.asarray(resized))))
    # An object exactly 28 px tall is not resampled: only centred (the odd pixel to the left) and sharpened.
    patch = rng.integers(50, 256, size=(28, 20)).astype(np.uint8)
    shot = np.zeros((40, 40), np.uint8)
    shot[6:34, 10:30] = patch
    canvas = np.zeros((28, 28), np.uint8)
    canvas[:, 4:24] = patch
    assert np.array_equal(images.prepare(Image.fromarray(shot)).pixels, _sharpened(canvas))
    # A line one pixel wide stays one pixel wide, across or down.
    line = np.zeros((40, 40), np.uint8)
    line[6:34, 20] = 200
    assert np.flatnonzero(images.prepare(Image.fromarray(line)).pixels.max(0)).tolist() == [14]
    assert np.flatnonzero(images.prepare(Image.fromarray(line.T)).pixels.max(1)).tolist() == [14]


def test_load_names_the_input_and_passes_its_options(fashion):
    with pytest.raises(DataError) as caught:
        images.load(b"plain bytes, no image", name="upload.jpg")
    assert str(caught.value).startswith("upload.jpg: not an image")
    dark_on_white = png_bytes(Image.fromarray(255 - fashion.test.images[0]))
    assert images.load(dark_on_white).inverted and not images.load(dark_on_white, invert="never").inverted
    assert images.load(dark_on_white, ImageSpec(background="light")).passthrough


def _image(mode: str, values, dtype="<u2") -> Image.Image:
    array = np.asarray(values)
    raw = array.astype(dtype).tobytes() if mode.startswith("I;16") else array.astype(np.uint8).tobytes()
    return Image.frombytes(mode, (array.shape[1], array.shape[0]), raw)


@pytest.mark.parametrize("image, expected", [
    # 16-bit: scaled by 257 (65535 -> 255), in every byte order Pillow names
    *((_image(mode, [[0, 257, 12850, 65535]], ">u2" if mode == "I;16B" else "<u2"), [[0, 1, 50, 255]])
      for mode in ("I;16", "I;16L", "I;16B", "I;16N")),
    # 32-bit integers: scaled when any value passes 255 (a 16-bit PNG decoded as I), clipped at 0
    (Image.fromarray(np.array([[-5, 0, 514, 65535]], dtype=np.int32)), [[0, 0, 2, 255]]),
    (Image.fromarray(np.array([[-5, 0, 256]], dtype=np.int32)), [[0, 0, 256 / 257]]),
    (Image.fromarray(np.array([[-5, 0, 100, 255]], dtype=np.int32)), [[0, 0, 100, 255]]),  # 8-bit values as I
    (Image.fromarray(np.array([[0, 65700, 1_000_000]], dtype=np.int32)), [[0, 255, 255]]),  # beyond 16 bits: clipped
    # floats: 0..1 scaled to 0..255 (NaN is 0); anything larger taken as 0..255 and clipped
    (Image.fromarray(np.array([[np.nan, 0.2, 1.0, -np.inf]], dtype=np.float32)), [[0, 51, 255, 0]]),
    (Image.fromarray(np.array([[np.nan, 2.0, 300.0, -3.0, np.inf]], dtype=np.float32)), [[0, 2, 255, 0, 255]]),
    (Image.fromarray(np.array([[0.5, 1.5]], dtype=np.float32)), [[0.5, 1.5]]),  # above 1: already 0..255
    # premultiplied grey + alpha over white: L + (255 - A)
    (_image("La", [[[100, 128], [0, 0], [200, 255], [0, 255], [200, 100]]]), [[227, 255, 200, 0, 255]]),
    # 8-bit modes keep their exact values
    (_image("L", [[0, 7, 255]]), [[0, 7, 255]]),
    (Image.fromarray(np.array([[False, True]])), [[0, 255]]),
])
def test_to_grayscale_gives_each_mode_its_documented_values(image, expected):
    gray = images.to_grayscale(image)
    assert gray.dtype == np.float32 and gray.shape == np.asarray(expected).shape
    assert np.allclose(gray, np.asarray(expected, dtype=np.float32), atol=1e-4), gray


def _over_white(rgb, alpha):
    """Colour `rgb` at opacity `alpha` composited onto white, as luma (ITU-R 601-2, Pillow's L)."""
    composed = [c * alpha / 255 + 255 * (1 - alpha / 255) for c in rgb]
    return 0.299 * composed[0] + 0.587 * composed[1] + 0.114 * composed[2]


def test_every_mode_with_alpha_is_composited_onto_white():
    pixels = [((200, 40, 90), 255), ((200, 40, 90), 128), ((10, 250, 30), 0), ((0, 0, 0), 64)]
    expected = np.array([[_over_white(rgb, alpha) for rgb, alpha in pixels]])
    rgba = Image.frombytes("RGBA", (4, 1), bytes(v for rgb, alpha in pixels for v in (*rgb, alpha)))
    premultiplied = rgba.convert("RGBa")
    greys = [int(round(0.299 * r + 0.587 * g + 0.114 * b)) for (r, g, b), _ in pixels]
    la = Image.frombytes("LA", (4, 1), bytes(v for grey, (_, alpha) in zip(greys, pixels) for v in (grey, alpha)))
    expected_la = np.array([[grey * alpha / 255 + 255 * (1 - alpha / 255) for grey, (_, alpha) in zip(greys, pixels)]])
    pa = Image.frombytes("PA", (4, 1), bytes(v for index, (_, alpha) in enumerate(pixels) for v in (index, alpha)))
    pa.putpalette([v for rgb, _ in pixels for v in rgb])
    for image, want in [(rgba, expected), (premultiplied, expected), (la, expected_la), (pa, expected)]:
        gray = images.to_grayscale(image)
        assert gray.dtype == np.float32 and np.abs(gray - want).max() <= 1.5, (image.mode, gray, want)


def test_a_palette_without_transparency_and_other_colour_spaces_go_through_rgb():
    paletted = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    paletted.putpalette([20, 200, 30, 255, 255, 255])
    assert "transparency" not in paletted.info
    assert np.allclose(images.to_grayscale(paletted), [[0.299 * 20 + 0.587 * 200 + 0.114 * 30, 255]], atol=1)
    rgb = Image.frombytes("RGB", (3, 1), bytes([200, 40, 90, 10, 250, 30, 0, 0, 0]))
    luma = images.to_grayscale(rgb)
    assert luma.dtype == np.float32 and np.array_equal(luma, np.asarray(rgb.convert("L"), dtype=np.float32))
    for mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        other = rgb.convert(mode) if mode != "LAB" else Image.frombytes("LAB", (1, 1), bytes([128, 128, 128]))
        gray = images.to_grayscale(other)
        assert gray.dtype == np.float32
        assert np.array_equal(gray, np.asarray(other.convert("RGB").convert("L"), dtype=np.float32)), mode


# ---------------------------------------------------------------------- the steps of prepare, one by one


def test_to_uint8_rounds_and_clips():
    values = np.array([-3.0, 0.4, 0.6, 254.6, 255.4, 300.0])
    result = images.to_uint8(values)
    assert result.dtype == np.uint8 and result.tolist() == [0, 0, 1, 255, 255, 255]


@pytest.mark.parametrize("shape, side", [((100, 200), 4), ((5, 5), 2), ((50, 9), 2)])
def test_the_corners_are_four_squares_of_4_percent_of_the_shorter_side(shape, side):
    gray = np.zeros(shape, dtype=np.float32)
    for rows in (slice(0, side), slice(-side, None)):
        for cols in (slice(0, side), slice(-side, None)):
            gray[rows, cols] = 7.0
    corners = images._corners(gray)
    assert corners.shape == (4 * side * side,) and (corners == 7.0).all()


def test_an_image_too_small_for_four_corners_is_all_corner():
    gray = np.arange(9, dtype=np.float32).reshape(3, 3)  # 2-pixel squares would overlap
    assert sorted(images._corners(gray).tolist()) == list(range(9))


def _with_corners(values: np.ndarray, size: int = 50) -> np.ndarray:
    """A size x size image whose 4 corner squares (2 x 2 each) hold `values` (16 of them), the rest 0."""
    gray = np.zeros((size, size), dtype=np.float32)
    squares = values.reshape(4, 2, 2)
    gray[:2, :2], gray[:2, -2:], gray[-2:, :2], gray[-2:, -2:] = squares
    return gray


@pytest.mark.parametrize("values, level, tolerance", [
    (np.full(16, 40.0), 40.0, 0.05 * 255),  # a flat background: the spec's 5 %
    (np.array([40.0] * 8 + [50.0] * 4 + [30.0] * 4), 40.0, 3 * 1.4826 * 5.0),  # grain: three robust sigmas
    (np.array([40.0] * 8 + [90.0] * 4 + [0.0] * 4), 40.0, 0.25 * 255),  # never more than a quarter of the range
])
def test_the_background_is_the_corners_median_and_the_tolerance_follows_their_spread(values, level, tolerance):
    found_level, found_tolerance = images._background(_with_corners(values), 0.05)
    assert found_level == level and found_tolerance == pytest.approx(tolerance, rel=1e-12)


def test_the_object_mask_is_strictly_beyond_the_tolerance_and_loses_its_specks_on_large_images():
    assert images._object_mask(np.array([[10.0, 20.0, 20.1]]), 10.0, 10.0).tolist() == [[False, False, True]]
    for size, speck_kept in [(100, False), (99, True)]:
        gray = np.zeros((size, size), dtype=np.float32)
        gray[40:60, 40:60] = 200.0  # the object
        gray[5, 90] = 200.0  # one speck of noise
        mask = images._object_mask(gray, 0.0, 12.75)
        assert mask[50, 50] and bool(mask[5, 90]) == speck_kept


def test_an_empty_mask_boxes_the_whole_image():
    assert images._bounding_box(np.zeros((3, 5), dtype=bool)) == (0, 0, 5, 3)


def test_inversion_compares_the_background_with_the_objects_level():
    # a dark spec wants light objects: a dark object on a lighter (if still dark) backdrop is inverted
    backdrop = np.full((60, 60), 100, dtype=np.uint8)
    backdrop[20:40, 15:45] = 20
    assert images.prepare(Image.fromarray(backdrop)).inverted
    # with no object, the background alone decides: lighter than mid-grey (127.5) means inverted
    assert images.prepare(Image.fromarray(np.full((60, 60), 128, dtype=np.uint8))).inverted
    assert not images.prepare(Image.fromarray(np.full((60, 60), 127, dtype=np.uint8))).inverted
    assert not images.prepare(Image.fromarray(np.full((60, 60), 0.5, dtype=np.float32), mode="F")).inverted  # 127.5


LIGHT = ImageSpec(background="light", object_size=20)


def test_levels_stretch_the_background_to_the_datasets_and_leave_the_wrong_polarity_alone():
    gray = np.array([[50.0, 100.0, 250.0]], dtype=np.float32)
    stretched, fill = images._level(gray, 50.0, 250.0, FASHION_SPEC)  # dark spec, light object: 50 -> 0
    assert fill == 0.0 and np.allclose(stretched, [[0.0, 50 * 255 / 205, 200 * 255 / 205]])
    same, fill = images._level(gray, 254.5, 255.0, FASHION_SPEC)  # nothing left to stretch
    assert fill == 0.0 and same is gray
    stretched, fill = images._level(gray, 200.0, 60.0, LIGHT)  # light spec, dark object: 200 -> 255, clipped
    assert fill == 255.0 and np.allclose(stretched, [[50 * 255 / 200, 100 * 255 / 200, 255.0]])
    stretched, fill = images._level(np.array([[0.5, 1.0]], dtype=np.float32), 1.0, 0.5, LIGHT)
    assert fill == 255.0 and np.allclose(stretched, [[127.5, 255.0]])
    same, fill = images._level(gray, 0.5, 0.2, LIGHT)
    assert fill == 255.0 and same is gray
    for spec in (FASHION_SPEC, LIGHT):  # an object as bright as its background on average: left alone
        same, fill = images._level(gray, 100.0, 100.0, spec)
        assert same is gray and fill == 100.0
    assert images._level(gray, 100.0, None, FASHION_SPEC)[1] == 0.0
    assert images._level(gray, 100.0, None, LIGHT)[1] == 255.0


def test_resizing_keeps_every_level_within_0_to_255_and_gives_the_size_asked():
    edge = np.zeros((40, 40), dtype=np.float32)
    edge[:, 20:] = 255.0  # Lanczos rings on both sides of a hard edge
    for size in ((13, 13), (90, 90)):
        resized = images._resize(edge, size)
        assert resized.shape == size[::-1] and resized.dtype == np.float32
        assert resized.min() == 0.0 and resized.max() == 255.0
    assert images._resize(np.zeros((10, 20), dtype=np.float32), (20, 20)).shape == (20, 20)


def test_an_odd_object_size_takes_half_rounded_down_for_the_passthrough():
    spec = ImageSpec(object_size=21)
    image = np.zeros((28, 28), dtype=np.uint8)
    image[9:19, 9:19] = 200  # 10 px: 21 // 2
    assert images.prepare(Image.fromarray(image), spec).passthrough
    image[:] = 0
    image[9:18, 9:18] = 200  # 9 px
    assert not images.prepare(Image.fromarray(image), spec).passthrough


def test_an_empty_frame_is_passed_through_and_said_to_be_empty():
    blank = images.prepare(Image.fromarray(np.zeros((28, 28), dtype=np.uint8)))
    assert blank.passthrough and blank.empty
    large = images.prepare(Image.fromarray(np.zeros((90, 60), dtype=np.uint8)))
    assert not large.passthrough and large.empty
    assert not images.prepare(Image.fromarray(photo_like())).empty


def photo_like() -> np.ndarray:
    image = np.full((90, 60), 30, dtype=np.uint8)
    image[20:70, 15:45] = 220
    return image


def test_a_large_wide_image_is_worked_on_smaller_and_boxed_in_its_own_pixels():
    width, height = 3 * images.WORKING_SIZE, images.WORKING_SIZE // 2
    image = np.zeros((height, width), dtype=np.uint8)
    image[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = 230
    prepared = images.prepare(Image.fromarray(image))
    left, top, right, bottom = prepared.box
    step = 3  # one working pixel is 3 image pixels
    assert abs(left - width // 3) <= step and abs(right - 2 * width // 3) <= step
    assert abs(top - height // 4) <= step and abs(bottom - 3 * height // 4) <= step
    rows, cols = np.flatnonzero(prepared.pixels.max(1) > 100), np.flatnonzero(prepared.pixels.max(0) > 100)
    assert len(cols) > 3 * len(rows)  # the object keeps its 4:1 shape through the working-size step


def test_an_animation_of_photos_reports_its_frames():
    first, second = Image.fromarray(photo_like()), Image.fromarray(255 - photo_like())
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=[second], duration=100, loop=0)
    prepared = images.load(buffer.getvalue())
    assert prepared.frames == 2 and not prepared.passthrough and not prepared.empty


def test_an_empty_image_and_a_wrong_invert_are_one_line_errors():
    with pytest.raises(DataError) as raised:
        images.prepare(Image.new("L", (0, 5)))
    assert raised.value.path is None and raised.value.problem == "empty image (0x5 pixels)"
    with pytest.raises(FmnistError) as raised:
        images.prepare(Image.fromarray(photo_like()), invert="maybe")
    assert str(raised.value) == "invert must be one of auto, always, never, got 'maybe'"


def test_a_failure_after_decoding_names_the_input(tmp_path, monkeypatch):
    def failing(image, spec, invert):
        raise DataError(None, "cannot convert this image (odd mode)")

    encoded = png_bytes(Image.fromarray(photo_like()))
    (tmp_path / "shirt.png").write_bytes(encoded)
    monkeypatch.setattr(images, "prepare", failing)
    for source, name, shown in [(encoded, "upload.png", "upload.png"), (tmp_path / "shirt.png", None,
                                                                          str(tmp_path / "shirt.png"))]:
        with pytest.raises(DataError) as raised:
            images.load(source, name=name)
        assert str(raised.value) == f"{shown}: cannot convert this image (odd mode)"


@pytest.mark.parametrize("values, problem", [
    ({"size": 1}, "size must be an integer >= 2"), ({"size": 2.0}, "size must be an integer >= 2"),
    ({"tolerance": 0.5}, "tolerance must be in [0, 0.5)"), ({"tolerance": -0.01}, "tolerance must be in [0, 0.5)"),
])
def test_an_image_spec_out_of_bounds_is_refused(values, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        ImageSpec(**values)
    assert ImageSpec(size=2, object_size=2).size == 2 and ImageSpec(tolerance=0).tolerance == 0


def test_the_object_size_is_measured_on_light_and_dark_images():
    dark = np.zeros((50, 28, 28), dtype=np.uint8)
    dark[:, 7:21, 9:19] = 180  # objects 14 px on their longest side
    assert images.measure_spec(dark) == ImageSpec(object_size=14)
    light = 255 - dark
    light[:, 0, 0] = 250  # a near-white corner: background within the tolerance, not object
    assert images.measure_spec(light) == ImageSpec(object_size=14, background="light")


def test_the_spec_of_light_images_is_measured_as_of_dark_ones(fashion):
    dark = images.measure_spec(fashion.train.images[:3000])
    light = images.measure_spec(255 - fashion.train.images[:3000])
    assert (dark.background, light.background) == ("dark", "light")
    assert dark.object_size == light.object_size == 28


def test_a_data_error_says_its_kind_for_a_program_to_act_on(tmp_path):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header_only = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
                   + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))  # a bomb's header
    encoded = png_bytes(Image.fromarray(photo_like()))
    for data, kind in [(b"%!PS-Adobe-3.0 EPSF", "unsupported"), (header_only, "too large"),
                       (encoded[: len(encoded) // 2], "malformed")]:
        with pytest.raises(DataError) as raised:
            images.load(data, name="upload")
        assert raised.value.kind == kind, (raised.value, kind)
    with pytest.raises(ValueError, match="DataError kind must be one of malformed, too large, unsupported"):
        DataError("x", "problem", kind="huge")
