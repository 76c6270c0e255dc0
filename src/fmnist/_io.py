"""File plumbing every layer shares: atomic writes (a temporary name in the target directory, then a
rename: a reader or a crash never sees a half-written file under the final name), one-line errors
for reads, and silencing native libraries that print straight to file descriptor 2.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fmnist.errors import DataError


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


def open_for_reading(path: str | Path, name: str | Path | None = None, expected: str = "a file") -> BinaryIO:
    """`open(path, "rb")`, with the usual failures as one-line DataErrors naming `name` (default: path)."""
    name = path if name is None else name
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(name, "no such file") from None
    except IsADirectoryError:
        raise DataError(name, f"is a directory, expected {expected}") from None
    except PermissionError:
        raise DataError(name, "permission denied") from None
    except OSError as exc:
        raise DataError(name, f"cannot open ({exc.strerror or exc})") from None


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
