"""`fmnist serve`: the prediction API and page over HTTP (the serve extra: FastAPI + uvicorn).

Parses, calls fmnist.workflows.serve.serve, and nothing more; `fmnist serve --help` imports neither
FastAPI nor torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fmnist.cli._common import command
from fmnist.errors import FmnistError


@command(short_help="Serve models over HTTP: an API and a page.")
def serve(
    model_files: Annotated[list[Path], typer.Argument(help="Model files: .onnx (onnxruntime, starts fast) or "
                                                           ".safetensors (PyTorch). The first is the default; each "
                                                           "is also served as /models/NAME/predict.",
                                                      show_default=False)],
    host: Annotated[str, typer.Option("--host", help="Address to bind. Anything but loopback needs --token-file "
                                                     "(or --insecure).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes, each with its own copy of the "
                                                           "models.")] = 1,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest request body, in MiB "
                                                                         "(refused before it is read).")] = 10,
    max_files: Annotated[int, typer.Option("--max-files", help="Most image files (or base64 images) in one "
                                                               "request.")] = 64,
    token_file: Annotated[Optional[Path], typer.Option("--token-file", help="A file holding a bearer token that "
                                                       "POST /predict then requires (Authorization: Bearer ...).",
                                                       show_default=False)] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow a non-loopback --host without a "
                                                              "token.")] = False,
    cors: Annotated[Optional[list[str]], typer.Option("--cors", help="Allow browser requests from this origin "
                                                      "(repeatable). [default: no CORS]", show_default=False)] = None,
    batch_max: Annotated[int, typer.Option("--batch-max", help="Micro-batching: model calls of requests handled "
                                                               "together run as one, up to this many images "
                                                               "(0: off; measured slower with write-up 000's "
                                                               "model, README).")] = 0,
    batch_wait_ms: Annotated[float, typer.Option("--batch-wait-ms", help="With --batch-max: how long a batch "
                                                                         "waits for more calls.")] = 2.0,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads of one model call (0: the runtime's "
                                                           "default, one per core). Requests handled at the same "
                                                           "time run in parallel either way.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings and errors only.")] = False,
) -> None:
    """Serve MODEL_FILE(s): POST /predict (multipart image files, or JSON base64 images, 28x28 arrays or
    packed pixels), GET /models, /healthz, /readyz, /metrics, the page at / and the API docs at /docs.

    Stops gracefully on Ctrl-C or SIGTERM.
    """
    try:
        # FastAPI and uvicorn (the serve extra): only this command needs them
        from fmnist.workflows.serve import ServeOptions
        from fmnist.workflows.serve import serve as run_server
    except ImportError as exc:
        raise FmnistError(f"fmnist serve needs the serve extra: pip install 'fmnist[serve]' ({exc})") from None

    options = ServeOptions(model_files=model_files, host=host, port=port, workers=workers, max_upload_mb=max_upload_mb,
                           max_files=max_files, token_file=token_file, insecure=insecure, cors=list(cors or []),
                           log_level="warning" if quiet else "info", batch_max=batch_max,
                           batch_wait_ms=batch_wait_ms, threads=threads)
    run_server(options, log=lambda line: typer.echo(line, err=True))
