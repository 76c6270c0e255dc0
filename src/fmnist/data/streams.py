"""A data file's content as a bounded stream: gzip data is decompressed as it is read (detected by
content, not by name), no read goes past `limit` bytes of content, and every failure — no such file,
not a regular file, a truncated or corrupt gzip stream, too much content — is one `DataError` naming
the file. Readers take only what they need from it, so a decompression bomb costs what its header or
the limit allows, never what it expands to.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import BinaryIO

from fmnist._io import open_for_reading, too_large
from fmnist.errors import DataError
from fmnist.limits import MAX_DATA_BYTES

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20


class DataStream:
    """`with DataStream(path) as stream: stream.read(n)` — the file's (decompressed) content.

    `source` is a path, or a binary file object (which is left open) named `name`."""

    def __init__(self, source: str | Path | BinaryIO, name: str | Path | None = None, limit: int = MAX_DATA_BYTES):
        self.name = source if name is None else name
        self.limit = limit
        self.consumed = 0  # bytes of content handed out so far
        if isinstance(source, (str, Path)):
            self._raw = open_for_reading(source, self.name, max_bytes=limit)
            self._owned = True
        else:
            self._raw, self._owned = source, False
        try:
            head = self._raw.read(2)
            self._raw.seek(0)
        except BaseException:
            self.close()
            raise
        self.empty, self.compressed = not head, head == GZIP_MAGIC
        self._content = gzip.GzipFile(fileobj=self._raw, mode="rb") if self.compressed else self._raw

    def __enter__(self) -> DataStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._raw.close()

    def _checked(self, read, *args):
        try:
            data = read(*args)
        except EOFError:
            raise DataError(self.name, "truncated gzip data (the download or copy was cut short)") from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise DataError(self.name, f"corrupt gzip data ({exc})") from None
        except OSError as exc:
            raise DataError(self.name, f"cannot read ({exc.strerror or exc})") from None
        self.consumed += data if isinstance(data, int) else len(data)
        if self.consumed > self.limit:
            what = "content (decompressed)" if self.compressed else "content"
            raise DataError(self.name, too_large(what, None, self.limit, "refused after reading that much"),
                            kind="too large")
        return data

    def read(self, size: int) -> bytes:
        """Up to `size` bytes (fewer only at the end), never more than one byte past the limit."""
        parts, wanted = [], size
        while wanted > 0:
            piece = self._checked(self._content.read, min(wanted, CHUNK, self.limit + 1 - self.consumed))
            if not piece:
                break
            parts.append(piece)
            wanted -= len(piece)
        return b"".join(parts)

    def readinto(self, buffer: memoryview) -> int:
        """Fill `buffer` (a preallocated, bounded array) as far as the content goes; the bytes filled."""
        filled = 0
        while filled < len(buffer):
            count = self._checked(self._content.readinto, buffer[filled : filled + CHUNK])
            if not count:
                break
            filled += count
        return filled


def read_all(source: str | Path | BinaryIO, name: str | Path | None = None, limit: int = MAX_DATA_BYTES) -> bytes:
    """The whole (decompressed) content, refused once it passes `limit` bytes; an empty file is an error."""
    with DataStream(source, name, limit) as stream:
        if stream.empty:
            raise DataError(stream.name, "empty file")
        return stream.read(limit + 1)
