"""File plumbing every layer shares: atomic writes (a temporary name in the target directory, then a
rename: a reader or a crash never sees a half-written file under the final name), one-line errors
for reads, and silencing native libraries that print straight to file descriptor 2.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fmnist.errors import DataError
from fmnist.limits import bytes_text


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600, and a writer may replace the file (safetensors does): the finished file
        # gets the usual mode, as any file the user's umask governs.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def open_for_reading(path: str | Path, name: str | Path | None = None, expected: str = "a file",
                     max_bytes: int | None = None) -> BinaryIO:
    """`open(path, "rb")` for a regular file only, at most `max_bytes` long; the usual failures, and a
    device, FIFO or socket, are one-line DataErrors naming `name` (default: path)."""
    descriptor, _ = _open_regular(path, path if name is None else name, expected, max_bytes)
    return os.fdopen(descriptor, "rb")


def read_regular_file(path: str | Path, name: str | Path | None = None, expected: str = "a file",
                      max_bytes: int | None = None) -> bytes:
    """The whole content of a regular file at most `max_bytes` long (see open_for_reading), read with
    as few system calls as the size allows."""
    name = path if name is None else name
    descriptor, size = _open_regular(path, name, expected, max_bytes)
    try:
        limit = max_bytes if max_bytes is not None else max(size, 1 << 62)
        parts, total, wanted = [], 0, min(size, limit) + 1  # one byte more: the file may have grown
        while piece := os.read(descriptor, wanted):
            parts.append(piece)
            total += len(piece)
            if total > limit:
                raise DataError(name, too_large("file", None, limit, "refused while reading it"), kind="too large")
            wanted = min(1 << 20, limit + 1 - total)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    except PermissionError:
        raise DataError(name, "permission denied") from None
    except OSError as exc:
        raise DataError(name, f"cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(descriptor)


def _open_regular(path, name, expected: str, max_bytes: int | None) -> tuple[int, int]:
    """(descriptor, size) of a regular file. Its type is checked with os.stat before it is opened, so
    a FIFO is never opened, and again on the descriptor (opened non-blocking: a FIFO swapped in
    between cannot hang the open); its size before a byte is read."""
    try:
        _require_regular(os.stat(path), name, expected, max_bytes)
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(name, "no such file") from None
    except NotADirectoryError:
        raise DataError(name, "no such file (a part of the path is not a folder)") from None
    except PermissionError:
        raise DataError(name, "permission denied") from None
    except OSError as exc:
        raise DataError(name, f"cannot open ({exc.strerror or exc})") from None
    try:
        status = os.fstat(descriptor)
        _require_regular(status, name, expected, max_bytes)
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return descriptor, status.st_size
    except BaseException:
        os.close(descriptor)
        raise


_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"))


def _require_regular(status: os.stat_result, name, expected: str, max_bytes: int | None) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise DataError(name, f"is a directory, expected {expected}")
    if not stat.S_ISREG(status.st_mode):
        kind = next((kind for test, kind in _NOT_REGULAR if test(status.st_mode)), "not a regular file")
        raise DataError(name, f"{kind}, expected {expected} (only regular files are read)")
    if max_bytes is not None and status.st_size > max_bytes:
        raise DataError(name, too_large("file", status.st_size, max_bytes, "refused before reading it"),
                        kind="too large")


def too_large(what: str, size: int | None, limit: int, when: str) -> str:
    """The one wording of every byte limit: `file too large: 70,000,000 bytes (the limit is 64 MiB); ...`
    (`size` None: only known to be over the limit)."""
    size_text = f"more than {limit:,} bytes" if size is None else f"{size:,} bytes"
    return f"{what} too large: {size_text} (the limit is {bytes_text(limit)}); {when}"


def read_limited(stream: BinaryIO, limit: int, name, what: str = "input", chunk: int = 1 << 20) -> bytes:
    """Everything a stream (a pipe, stdin, a socket) holds, refused once it passes `limit` bytes:
    at most `limit` + 1 bytes are ever held."""
    parts, total = [], 0
    while True:
        piece = stream.read(min(chunk, limit + 1 - total))
        if not piece:
            return b"".join(parts)
        parts.append(piece)
        total += len(piece)
        if total > limit:
            raise DataError(name, too_large(what, None, limit, "refused after reading that much"), kind="too large")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the duration. Native libraries print their own complaints
    straight to it (libtiff about a corrupt file; onnxruntime, on import, that it cannot save a
    telemetry ID in an unwritable home); their real errors still reach Python as exceptions, and
    the user gets fmnist's one line."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield
            return
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
