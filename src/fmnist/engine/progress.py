"""Progress of long jobs: a live rich bar on a terminal, one plain line per epoch otherwise.

`--quiet` uses `NullProgress`: no progress at all (results are printed by the caller).
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn


class Progress(Protocol):
    """What the trainer reports to: epochs, live step updates, finished-epoch rows and notes."""

    live: bool  # whether update() shows anything: the trainer reads the device's running sums only then

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def set_epochs(self, epochs: int) -> None: ...
    def update(self, steps_done: int, loss: float, accuracy: float) -> None: ...
    def end_epoch(self, row: dict) -> None: ...
    def note(self, message: str) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    """No progress at all (`--quiet`, and the Python API's default)."""

    live = False
    epochs = 0  # of the run: finished-epoch lines say "epoch 3/10"

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...

    def set_epochs(self, epochs: int) -> None:
        """The run's epochs, for a progress whose epochs run elsewhere (stacked folds: one bar for all)."""
        self.epochs = epochs

    def update(self, steps_done: int, loss: float, accuracy: float) -> None: ...
    def end_epoch(self, row: dict) -> None: ...
    def note(self, message: str) -> None: ...
    def close(self) -> None: ...


def format_epoch(row: dict, epochs: int) -> str:
    """`epoch 3/10  loss 0.3124  acc 0.8871  val_loss 0.3301  val_acc 0.8802  lr 0.01  12.3s`"""
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in row:
            label = key.replace("accuracy", "acc")
            parts.append(f"{label} {row[key]:.4f}")
    parts.append(f"lr {row['lr']:.3g}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)


class PlainProgress(NullProgress):
    """One line per epoch (logs, CI, pipes)."""

    def __init__(self, stream: TextIO | None = None, prefix: str = ""):
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.epochs = 0

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.epochs = epochs

    def end_epoch(self, row: dict) -> None:
        print(self.prefix + format_epoch(row, self.epochs), file=self.stream, flush=True)

    def note(self, message: str) -> None:
        print(self.prefix + message, file=self.stream, flush=True)


class RichProgress(NullProgress):
    """A bar per epoch with live loss and accuracy; the finished epoch stays as one line."""

    live = True

    def __init__(self, prefix: str = ""):
        self.console = Console(stderr=True, highlight=False, markup=False)
        self.prefix = prefix
        self.progress = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task = None
        self.epochs = 0

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.epochs = epochs
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("", total=steps, metrics="")
        self.progress.reset(self.task, total=steps, description=f"{self.prefix}epoch {epoch}/{epochs}", metrics="")

    def update(self, steps_done: int, loss: float, accuracy: float) -> None:
        self.progress.update(self.task, completed=steps_done, metrics=f"loss {loss:.4f} acc {accuracy:.4f}")

    def end_epoch(self, row: dict) -> None:
        self.progress.console.print(self.prefix + format_epoch(row, self.epochs))

    def note(self, message: str) -> None:
        self.progress.console.print(self.prefix + message)

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()


def make_progress(quiet: bool, prefix: str = "") -> Progress:
    if quiet:
        return NullProgress()
    if sys.stderr.isatty():
        return RichProgress(prefix)
    return PlainProgress(prefix=prefix)
