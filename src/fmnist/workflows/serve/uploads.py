"""What a `POST /predict` carries, read within the server's limits into named inputs: image files
(multipart), base64-encoded images, uint8 arrays as nested lists, or packed uint8 pixels (JSON). No
image is decoded here, and no name a client sends is ever used as a path: it only labels that input's
record.

A request that cannot be read at all is a `RequestError` with its HTTP status and a one-line message.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated

import msgspec
import numpy as np

from fmnist.bounded import one_line
from fmnist.limits import bytes_text

USAGE = ('send multipart/form-data with one or more image files, or JSON {"images": [base64, ...]}, '
         '{"arrays": [28x28 uint8 pixel rows, ...]} or {"pixels": base64 of N 28x28 uint8 images}')


class RequestError(Exception):
    """A request that cannot be predicted: its HTTP status and what to tell the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 10 << 20  # the whole request body (--max-upload-mb)
    max_files: int = 64  # image files or base64 images in one request (--max-files)


@dataclass
class Upload:
    """One input: encoded image bytes with the name its record carries, or (name None) a model-ready
    uint8 array batch (N, S, S)."""

    name: str | None
    data: bytes | None = None
    arrays: np.ndarray | None = None


async def read_multipart(request, limits: Limits) -> list[Upload]:
    """The files of a multipart/form-data request, in order (fields that are not files are ignored)."""
    # starlette's parser directly, not request.form(): that one turns every problem into a bare 400
    from starlette.formparsers import MultiPartException, MultiPartParser

    parser = MultiPartParser(request.headers, request.stream(), max_files=limits.max_files, max_fields=100,
                             max_part_size=64 << 10)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise RequestError(413, f"too many files: at most {limits.max_files} in one request") from None
        raise RequestError(422, f"malformed multipart body: {exc.message}") from None
    uploads = []
    try:
        for _, value in form.multi_items():
            if not isinstance(value, str):  # an UploadFile
                uploads.append(Upload(value.filename or f"file-{len(uploads) + 1}", await value.read()))
    finally:
        await form.close()
    if not uploads:
        raise RequestError(422, f"no image files in the request: {USAGE}")
    return uploads


# The JSON body, checked as it is parsed (msgspec, in C): one of the three inputs, every pixel of `arrays` an
# integer 0-255 (no floats, booleans or strings), no other keys. Parsing `arrays` is most of a big batch's
# cost (a Python object per pixel: ~10 ms for 256 images here); `pixels` packs the same images as base64 of
# their raw bytes (N x S x S uint8, row-major), a third of the size and nothing to parse per pixel.
Pixel = Annotated[int, msgspec.Meta(ge=0, le=255)]


class JsonBody(msgspec.Struct, forbid_unknown_fields=True):
    images: list[str] | None = None
    arrays: list[list[list[Pixel]]] | None = None
    pixels: str | None = None


_JSON_BODY = msgspec.json.Decoder(JsonBody)
_PIXEL_AT = re.compile(r"`\$\.arrays\[\d+\]\[\d+\]\[\d+\]`")  # where msgspec says a pixel is wrong


def read_json(body: bytes, limits: Limits, size: int) -> list[Upload]:
    """The inputs of a JSON body: {"images": [base64, ...]}, {"arrays": [[[...]]]} (S×S each) or
    {"pixels": base64 of N×S×S uint8}."""
    try:
        # the body is within the size limit already; nesting deeper than the schema is refused as it is met
        document = _JSON_BODY.decode(body)
    except msgspec.ValidationError as exc:
        problem = one_line(exc)
        if _PIXEL_AT.search(problem):
            raise RequestError(422, f"arrays: pixel values must be integers 0-255 ({problem})") from None
        if "$.arrays" in problem:
            raise RequestError(422, f"arrays: expected lists of {size} rows of {size} integers 0-255 each "
                                    f"({problem})") from None
        raise RequestError(422, f"malformed request: {problem}; {USAGE}") from None
    except msgspec.DecodeError as exc:
        raise RequestError(422, f"malformed JSON body: {one_line(exc)}") from None
    given = [(key, values) for key, values in (("images", document.images), ("arrays", document.arrays),
                                               ("pixels", document.pixels)) if values is not None]
    if len(given) != 1:
        raise RequestError(422, f"malformed request: {USAGE}")
    key, values = given[0]
    if not values:
        raise RequestError(422, f"malformed request: {key!r} must not be empty")
    if key == "pixels":
        return [Upload(None, arrays=_pixels(values, size))]
    if key == "arrays":
        return [Upload(None, arrays=_arrays(values, size))]
    if len(values) > limits.max_files:
        raise RequestError(413, f"too many images: at most {limits.max_files} in one request")
    return [Upload(f"images[{position}]", _base64(text, position)) for position, text in enumerate(values)]


def _base64(text: str, position: int) -> bytes:
    if text.startswith("data:") and "," in text:  # a data URL, as a browser writes one
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, f"images[{position}]: not valid base64") from None


def _pixels(text: str, size: int) -> np.ndarray:
    """(N, size, size) uint8 from base64 of N×size×size bytes."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, "pixels: not valid base64") from None
    if not data or len(data) % (size * size):
        raise RequestError(422, f"pixels: expected N x {size} x {size} = a multiple of {size * size} bytes, got "
                                f"{len(data):,}")
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, size, size)


def _arrays(values: list[list[list[int]]], size: int) -> np.ndarray:
    """(N, size, size) uint8 from nested lists of integers 0-255 (checked by the parser)."""
    for position, image in enumerate(values):
        if len(image) != size or any(len(row) != size for row in image):
            widths = "/".join(map(str, sorted({len(row) for row in image})[:4])) or "0"  # rows of other widths: 27/28
            raise RequestError(422, f"arrays: each array must be {size}x{size} integers, got shape "
                                    f"({len(image)}, {widths}) at arrays[{position}]")
    # every value is 0-255 already: bytes() of each row is the cheapest way to uint8 (60 % of np.array's time)
    return np.frombuffer(b"".join([bytes(row) for image in values for row in image]),
                         dtype=np.uint8).reshape(len(values), size, size)


# What `tiny` lets through is predicted on the event loop itself (app.py): a PNG that declares at most 64x64
# pixels in a file of at most 16 KiB, or at most 64 images of arrays. Each takes well under a millisecond,
# less than handing it to a worker thread and back; anything else, a photo above all, decodes in a thread.
TINY_FILE_BYTES, TINY_SIDE, TINY_IMAGES = 16 << 10, 64, 64
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny(upload: Upload) -> bool:
    """Whether this input is too small to be worth a thread: decided from its first 24 bytes (a PNG's
    signature and IHDR size), never by decoding it."""
    if upload.arrays is not None:
        return len(upload.arrays) <= TINY_IMAGES
    data = upload.data or b""
    if len(data) > TINY_FILE_BYTES or len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return False
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return width <= TINY_SIDE and height <= TINY_SIDE


def content_kind(content_type: str | None) -> str:
    """multipart | json, or a 415 RequestError."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return "multipart"
    if kind == "application/json":
        return "json"
    raise RequestError(415, f"unsupported content type {kind or '(none)'!r}: {USAGE}")


def too_large(limit: int) -> RequestError:
    return RequestError(413, f"request body too large: the limit is {bytes_text(limit)}")


