"""Commands that use a trained model on new data: predict, export.

`fmnist predict model.onnx ...` must start fast: nothing here imports torch unless the model is a
`.safetensors` file (or the command is export).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn

from fmnist.cli._common import DataOption, DeviceOption, QuietOption, command, console, note
from fmnist.errors import FmnistError
from fmnist.inference import CHUNK, format_error, format_line


@command(short_help="The class of each image file or folder.")
def predict(
    model_file: Annotated[Path, typer.Argument(help="A model file: .safetensors (PyTorch) or .onnx (onnxruntime, "
                                                    "from `fmnist export`).", show_default=False)],
    paths: Annotated[list[str], typer.Argument(help="Image files (PNG, JPEG, BMP, GIF, TIFF, WebP), directories "
                                                    "(searched recursively), or - for standard input.",
                                               show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", help="How many classes to list per image.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of {path, label, index, probability, "
                                                         "top_k, mirrored, input} instead of lines.")] = False,
    invert: Annotated[str, typer.Option("--invert", help="auto: invert when the border is lighter than the object "
                                                        "(dark garment on white); always; never.")] = "auto",
    mirror: Annotated[str, typer.Option("--mirror", help="on: predict each prepared image (not a 28x28 dataset-like "
                                                        "one) from the mean of its and its mirror image's logits, "
                                                        "auto: on for models trained with flips and without flip "
                                                        "TTA (it helps them, and hurts others); off.")] = "auto",
    show_input: Annotated[Optional[Path], typer.Option("--show-input", help="Save the 28x28 image the model saw for "
                                                       "each file here, with a montage and report.html.",
                                                       show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per forward pass. "
                                                      "[default: 128 for PyTorch on a CPU, 64 for ONNX]",
                                                      show_default=False)] = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Predict the class of each image: `path: Pullover (2) 97.3%` and the top-k.

    Exit status 0 when every file was predicted, 1 when some could not be (one line each on
    stderr), 2 for a usage error (bad model file or option).
    """
    from fmnist.workflows.predict_files import predict_files  # loads torch only for .safetensors models

    # Pillow's warnings about odd files (corrupt EXIF data, say) would add lines to stderr for a file
    # that is predicted fine; a file that fails gets its own one-line error.
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")

    progress = _Progress(quiet, announce=as_json)

    def show(prediction) -> None:
        if not prediction.ok:
            progress.message(format_error(prediction))
        elif not as_json:
            progress.result(format_line(prediction))

    try:
        summary = predict_files(model_file, paths, show, top_k=top_k, invert=invert, device=device,
                                batch_size=batch_size, keep=as_json, show_input=show_input, progress=progress.advance,
                                mirror=mirror)
    finally:
        progress.close()
    if as_json:
        sys.stdout.write(json.dumps([p.as_dict() for p in summary.kept], indent=2) + "\n")
    if summary.report is not None:
        written = sum(prediction.pixels is not None for prediction in summary.kept)  # duplicates have none
        count = f"{written} input image{'s' if written != 1 else ''}"
        note(quiet)(f"wrote {count}, inputs.png and {summary.report.name} to {show_input}")
    if summary.failed:
        raise typer.Exit(1)


class _Progress:
    """A live count on a terminal; result lines and error lines printed in input order."""

    def __init__(self, quiet: bool, announce: bool):
        self.quiet = quiet
        self.announce = announce and not quiet and not sys.stderr.isatty()  # --json into a pipe or log
        self.done = 0
        self.live = None
        if not quiet and sys.stderr.isatty():
            self.live = Progress(SpinnerColumn(), TextColumn("predicted {task.completed:,} images"),
                                 console=_stderr_console(), transient=True)
            self.live.start()
            self.task = self.live.add_task("", total=None)

    def advance(self, count: int) -> None:
        self.done += count
        if self.live is not None:
            self.live.update(self.task, completed=self.done)
        elif self.announce and self.done >= CHUNK:  # a line per full chunk: a big job shows it is moving
            typer.echo(f"fmnist: predicted {self.done:,} images", err=True)

    def result(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()  # into a pipe too: each result is out as soon as it is known

    def message(self, line: str) -> None:
        sys.stdout.flush()  # keep stdout and stderr lines in input order on a shared terminal
        if self.live is not None:
            self.live.console.print(line)
        else:
            typer.echo(line, err=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _stderr_console():
    return Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


@command(short_help="A model file to ONNX, checked against PyTorch.")
def export(
    model_file: Annotated[Path, typer.Argument(help="A model file (.safetensors) written by fmnist.",
                                               show_default=False)],
    export_format: Annotated[str, typer.Option("--format", help="Export format (onnx).")] = "onnx",
    out: Annotated[Optional[Path], typer.Option("--out", help="Output file. [default: MODEL_FILE with the "
                                                "format's suffix]", show_default=False)] = None,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    """Export to ONNX (dynamic batch axis, uint8 pixels in, logits and probabilities out), checked
    against PyTorch with onnxruntime on the test images before it is written."""
    from fmnist.workflows.export_file import export_file  # torch and onnx: imported when exporting

    if export_format != "onnx":
        raise FmnistError(f"--format: expected onnx, got {export_format!r}")
    result = export_file(model_file, out, data=data, log=note(quiet))
    size = result.path.stat().st_size / 2**20
    agreement = "same predictions" if result.same_predictions else "some predictions differ at ties"
    console.print(f"wrote {result.path} ({size:.1f} MiB): onnxruntime matches PyTorch on {result.checked_on} "
                  f"(max |difference| {result.max_logit_difference:.1e} in logits, "
                  f"{result.max_probability_difference:.1e} in probabilities; {agreement})")
