"""Errors a user can act on. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class FmnistError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in fmnist."""


class FmnistWarning(UserWarning):
    """Something the user must know although fmnist can go on (a model whose weights are NaN, say).
    The CLI prints it as one line, `fmnist: warning: ...`."""


class DataError(FmnistError):
    """A data file or directory is missing, malformed, or fails verification."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
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
