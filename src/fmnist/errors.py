"""Errors a user can act on. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class FmnistError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in fmnist."""


class DataError(FmnistError):
    """A data file or directory is missing, malformed, or fails verification."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")
