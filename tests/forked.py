"""`fmnist ARGS` in a real process of its own, without paying the imports again for every command.

Every `fmnist` process begins by importing numpy, torch and matplotlib: 3.3 CPU seconds on this 2-core AVX2
machine, more than most commands the tests run take (a refusal, a one-epoch train on 300 images). So the
commands run in processes forked from a server that imported `fmnist.cli` and those libraries once and did
nothing else (multiprocessing's forkserver: no thread pool started, no files open). The clean-clone CI's
pytest took 729 s before and 466 s after (the same idle 2-core machine, `CI=true bash .ci/run`).
Each command still is a process of its own: its own memory, exit status, file descriptors 0/1/2 (files, as
with `capture_output`), working directory, environment (os.environ replaced before `fmnist.cli.main` runs),
resource limits and timeout. What it cannot have is a start of its own: environment variables read at
import time, warnings printed then, the address space of only what the command imports. The tests about
those (test_cli's start-up test, Ctrl-C, threads from the environment, tight address-space caps, torchrun,
`fmnist serve`) start `fmnist` with subprocess, as a user does (`fresh=True` here).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from fmnist.cli import main as fmnist_main

# The forkserver imports these once; `forked` itself so that the child's target needs no import either.
_PRELOAD = ["fmnist.cli", "torch", "numpy", "PIL.Image", "matplotlib.pyplot", "forked"]
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(_PRELOAD)
# The process that imported this module starts and uses the forkserver. A copy of it made by os.fork (mutmut
# forks one per mutant) would find the server's pid is not its child's and fail: it starts commands the
# plain way instead.
_OWNER = os.getpid()
FMNIST = str(Path(sys.executable).parent / "fmnist")


def _command(argv: list[str], environ: dict[str, str], cwd: str, streams: list[tuple[str, int]],
             limits: dict[int, int]) -> None:
    """The forked process: become a fresh `fmnist ARGV` (runs in the child only)."""
    _set_limits(limits)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environ)
    for number, (path, flags) in enumerate(streams):
        handle = os.open(path, flags, 0o600)
        os.dup2(handle, number)
        os.close(handle)
    sys.stdin = open(0, closefd=False, encoding="utf-8", errors="surrogateescape")
    fmnist_main(argv)


def _set_limits(limits: dict[int, int]) -> None:
    for limit, value in limits.items():
        resource.setrlimit(limit, (value, value))


def fmnist_process(*args, input: bytes | str | None = None, env: dict[str, str] | None = None,
                   cwd: str | Path | None = None, timeout: float = 300, limits: dict[int, int] | None = None,
                   text: bool = True, fresh: bool = False) -> subprocess.CompletedProcess:
    """`fmnist ARGS` as subprocess.run(..., capture_output=True) would run it: a CompletedProcess with the
    exit status (-N when signal N ended it) and what it wrote to stdout and stderr; TimeoutExpired (the
    process killed) after `timeout` seconds; `limits` sets resource limits in it ({resource.RLIMIT_AS: bytes}).
    `fresh`: a new interpreter (subprocess), for what depends on the start: a forked process holds all the
    server's imports (torch included, which `fmnist predict` on an ONNX model never loads), so an address-space
    cap sized to what a command itself needs is only meaningful in a fresh one."""
    argv = [str(arg) for arg in args]
    stdin_bytes = input.encode() if isinstance(input, str) else input
    if fresh or os.getpid() != _OWNER:
        result = subprocess.run([FMNIST, *argv], input=stdin_bytes, capture_output=True, timeout=timeout, env=env,
                                cwd=cwd, check=False, preexec_fn=lambda: _set_limits(limits or {}))
        if text:
            result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
        return result
    with tempfile.TemporaryDirectory(prefix="fmnist-forked-") as scratch:
        stdin = Path(scratch) / "stdin"
        stdin.write_bytes(stdin_bytes or b"")
        streams = [(str(stdin), os.O_RDONLY), (f"{scratch}/stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                   (f"{scratch}/stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)]
        process = _context.Process(target=_command, args=(argv, dict(os.environ if env is None else env),
                                                          str(cwd or os.getcwd()), streams, limits or {}))
        process.start()
        process.join(timeout)
        timed_out = process.exitcode is None
        if timed_out:
            process.kill()
            process.join()
        stdout, stderr = (Path(scratch) / "stdout").read_bytes(), (Path(scratch) / "stderr").read_bytes()
    if text:
        stdout, stderr = stdout.decode(), stderr.decode()
    command = ["fmnist", *argv]
    if timed_out:
        raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
    return subprocess.CompletedProcess(command, process.exitcode, stdout, stderr)
