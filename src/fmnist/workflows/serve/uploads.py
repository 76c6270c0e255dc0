"""What a `POST /predict` carries, read within the server's limits into named inputs: image files
(multipart), base64-encoded images or uint8 arrays (JSON). Nothing is decoded here, and no name a
client sends is ever used as a path: it only labels that input's record.

A request that cannot be read at all is a `RequestError` with its HTTP status and a one-line message.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import numpy as np

from fmnist.bounded import one_line
from fmnist.limits import bytes_text

USAGE = ('send multipart/form-data with one or more image files, or JSON {"images": [base64, ...]} or '
         '{"arrays": [28x28 uint8 pixel rows, ...]}')


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


def read_json(body: bytes, limits: Limits, size: int) -> list[Upload]:
    """The inputs of a JSON body: {"images": [base64, ...]} or {"arrays": [[[...]]]} (S×S each)."""
    try:
        # the body is within the size limit already; json's C parser stops deep nesting (RecursionError)
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestError(422, f"malformed JSON body: {one_line(exc)}") from None
    if not isinstance(document, dict) or len(document) != 1 or not ({"images", "arrays"} & set(document)):
        raise RequestError(422, f"malformed request: {USAGE}")
    key, values = next(iter(document.items()))
    if not isinstance(values, list) or not values:
        raise RequestError(422, f"malformed request: {key!r} must be a non-empty list")
    if key == "arrays":
        return [Upload(None, arrays=_arrays(values, size))]
    if len(values) > limits.max_files:
        raise RequestError(413, f"too many images: at most {limits.max_files} in one request")
    return [Upload(f"images[{position}]", _base64(text, position)) for position, text in enumerate(values)]


def _base64(text, position: int) -> bytes:
    if not isinstance(text, str):
        raise RequestError(422, f"images[{position}]: expected a base64 string, got {type(text).__name__}")
    if text.startswith("data:") and "," in text:  # a data URL, as a browser writes one
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, f"images[{position}]: not valid base64") from None


def _arrays(values: list, size: int) -> np.ndarray:
    """(N, size, size) uint8 from nested lists of integers 0-255."""
    try:
        array = np.array(values, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise RequestError(422, f"arrays: expected lists of {size} rows of {size} integers 0-255 each") from None
    if array.ndim != 3 or array.shape[1:] != (size, size):
        raise RequestError(422, f"arrays: each array must be {size}x{size} integers, got shape "
                                f"{tuple(array.shape[1:]) if array.ndim >= 1 else ()}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise RequestError(422, "arrays: pixel values must be integers 0-255")
    return array.astype(np.uint8)


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


