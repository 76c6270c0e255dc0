"""Errors a user can act on. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class FmnistError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in fmnist."""


class FmnistWarning(UserWarning):
    """Something the user must know although fmnist can go on (a model whose weights are NaN, say).
    The CLI prints it as one line, `fmnist: warning: ...`."""


class DataError(FmnistError):
    """A data file or directory is missing, malformed, or fails verification. `kind` says which, for a
    program to act on (the web service's status): "too large" (past a limit: refused before it is read
    or decoded), "unsupported" (not a format fmnist reads), or "malformed" (anything else)."""

    KINDS = ("malformed", "too large", "unsupported")

    def __init__(self, path: str | Path | None, problem: str, kind: str = "malformed"):
        if kind not in self.KINDS:
            raise ValueError(f"DataError kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        self.path = None if path is None else str(path)
        self.problem = problem
        self.kind = kind
        super().__init__(problem if path is None else f"{path}: {problem}")


class ModelFileError(FmnistError):
    """A model file (.safetensors or exported .onnx) is missing, malformed, tampered with, or does not
    fit its architecture."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    @classmethod
    def require_file(cls, path: str | Path) -> Path:
        """`path` as a Path when it is a non-empty file; else this error, saying which it is not."""
        path = Path(path)
        if not path.is_file():
            raise cls(path, "no such file" if not path.exists() else "not a file")
        if path.stat().st_size == 0:
            raise cls(path, "empty file")
        return path


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` as one line of plain terminal text: control characters (a newline in a file name, a
    terminal escape sequence), line and paragraph separators and undecodable bytes (surrogates from
    os.fsdecode) become backslash escapes. What every line fmnist prints about user-supplied names goes
    through; JSON output is exact and needs none of this."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char == " " else _escape(char) for char in text)


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
