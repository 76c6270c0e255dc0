"""`fmnist serve`: check the options and model files, then run the app under uvicorn until SIGTERM or
Ctrl-C (a graceful shutdown: requests in flight are answered first).

Safe by default: it binds 127.0.0.1; any other address needs a bearer token (--token-file), or an
explicit --insecure. With several workers each loads the models itself (uvicorn starts them from
`app_from_environment`); the models are checked here first, so a bad file is one line, not a crash loop.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fmnist._io import read_regular_file
from fmnist.errors import DataError, FmnistError
from fmnist.workflows.serve.app import AppSettings, create_app
from fmnist.workflows.serve.guards import MULTIPROCESS_DIRECTORY
from fmnist.workflows.serve.models import ModelSet, model_names
from fmnist.workflows.serve.uploads import Limits

MAX_TOKEN_BYTES = 4096
_ENVIRONMENT = "FMNIST_SERVE_SETTINGS"  # how the parent hands the settings to uvicorn's worker processes


@dataclass
class ServeOptions:
    model_files: list[Path]
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_upload_mb: float = 10
    max_files: int = 64
    token_file: Path | None = None
    insecure: bool = False
    cors: list[str] = field(default_factory=list)
    log_level: str = "info"
    batch_max: int = 0  # micro-batching of model calls (batching.py): off unless above 1
    batch_wait_ms: float = 2.0
    threads: int = 0  # CPU threads per model call; 0: the runtime's default (--threads 1 measured no faster)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_token(path: Path) -> str:
    try:  # a regular file only: a FIFO would wait forever
        data = read_regular_file(path, name=f"--token-file {path}", expected="a token file",
                                 max_bytes=MAX_TOKEN_BYTES)
    except DataError as exc:
        raise FmnistError(str(exc)) from None
    token = data.decode("utf-8", errors="replace").strip()
    if len(data) > MAX_TOKEN_BYTES or not token or any(c.isspace() or not c.isprintable() for c in token):
        raise FmnistError(f"--token-file {path}: expected one token of printable characters (up to {MAX_TOKEN_BYTES} bytes)")
    return token


def check(options: ServeOptions) -> AppSettings:
    """The app's settings, or a one-line FmnistError for options that must not start a server."""
    if not options.model_files:
        raise FmnistError("give at least one model file (.onnx or .safetensors)")
    if not 1 <= options.port <= 65535:
        raise FmnistError(f"--port must be 1-65535, got {options.port}")
    if options.workers < 1:
        raise FmnistError(f"--workers must be at least 1, got {options.workers}")
    if not options.max_upload_mb > 0 or not options.max_files >= 1:
        raise FmnistError("--max-upload-mb and --max-files must be positive")
    if options.batch_max < 0 or not 0 <= options.batch_wait_ms <= 1000:
        raise FmnistError(f"--batch-max must be 0 (off) or more and --batch-wait-ms 0-1000, got {options.batch_max} "
                          f"and {options.batch_wait_ms:g}")
    if options.threads < 0:
        raise FmnistError(f"--threads must be 0 (the runtime's default: one per core) or more, got {options.threads}")
    token = read_token(options.token_file) if options.token_file is not None else None
    if not is_loopback(options.host) and token is None and not options.insecure:
        raise FmnistError(f"--host {options.host} is reachable from other machines: give --token-file (clients "
                          "send Authorization: Bearer <token>), or --insecure to serve without one")
    limits = Limits(max_body_bytes=int(options.max_upload_mb * (1 << 20)), max_files=options.max_files)
    return AppSettings(limits=limits, token=token, cors_origins=tuple(options.cors))


def serve(options: ServeOptions, log=print) -> None:
    """Check, load, serve; returns after a graceful shutdown."""
    import uvicorn  # the serve extra: imported when a server starts

    settings = check(options)
    # With --workers the parent only checks the files (each worker loads and batches its own copies): no
    # batcher thread of its own, which would keep the checked models alive after it lets go of them.
    models = ModelSet(list(options.model_files), batch_max=options.batch_max if options.workers == 1 else 0,
                      batch_wait_ms=options.batch_wait_ms, threads=options.threads or None)
    models.load()  # checked here: a bad model file stops the command before it binds the port
    if models.error is not None:
        raise FmnistError(models.error)
    described = ", ".join(f"{name} ({models.models[name].predictor.runtime})" for name in models.names)
    log(f"fmnist serve: {described} on http://{options.host}:{options.port}/ "
        f"(loaded in {models.seconds:.2f} s; {options.workers} worker{'s' if options.workers > 1 else ''})")
    common = dict(host=options.host, port=options.port, log_level=options.log_level, timeout_graceful_shutdown=10,
                  server_header=False, proxy_headers=False)
    if options.workers == 1:
        server = uvicorn.Server(uvicorn.Config(create_app(models, settings), **common))
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the handler it found:
        # this one makes that a normal return (exit status 0), as a service manager expects.
        previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            server.run()
        except _Terminated:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        return
    # Each worker loads its own copies; the parent only supervises, so it lets go of the ones it checked.
    del models
    gc.collect()
    # Metrics summed over the workers: prometheus-client keeps each worker's values in this folder
    # (set before the workers import it; a fresh, empty folder per server; removed when it stops).
    metrics_folder = tempfile.mkdtemp(prefix="fmnist-serve-metrics-")
    os.environ[MULTIPROCESS_DIRECTORY] = metrics_folder
    os.environ[_ENVIRONMENT] = json.dumps({
        "models": [str(path) for path in options.model_files], "names": model_names(options.model_files),
        "max_body_bytes": settings.limits.max_body_bytes, "max_files": settings.limits.max_files,
        "token": settings.token, "cors": list(settings.cors_origins), "batch_max": options.batch_max,
        "batch_wait_ms": options.batch_wait_ms, "threads": options.threads or None})
    try:
        uvicorn.run("fmnist.workflows.serve.server:app_from_environment", factory=True, workers=options.workers,
                    **common)
    finally:
        shutil.rmtree(metrics_folder, ignore_errors=True)
        os.environ.pop(MULTIPROCESS_DIRECTORY, None)


class _Terminated(Exception):
    pass


def _terminated(signum, frame):
    raise _Terminated()


def app_from_environment():
    """The app in one of uvicorn's worker processes (the settings come from the parent's environment)."""
    settings = json.loads(os.environ[_ENVIRONMENT])
    models = ModelSet(settings["models"], names=settings["names"], batch_max=settings["batch_max"],
                      batch_wait_ms=settings["batch_wait_ms"], threads=settings["threads"])
    limits = Limits(max_body_bytes=settings["max_body_bytes"], max_files=settings["max_files"])
    return create_app(models, AppSettings(limits=limits, token=settings["token"], cors_origins=tuple(settings["cors"])))
