"""The `fmnist` command. Each command parses its options and calls the library; nothing more.

Errors a user can fix (`FmnistError`) print as one line on stderr and exit with status 2;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fmnist.cli import data, train, evaluate, predict  # noqa: F401  (each module registers its commands)
from fmnist.cli._common import app, state


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    state["debug"] = debug


def main() -> None:
    app()


__all__ = ["app", "main"]
