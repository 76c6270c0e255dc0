"""The hostile-input suite: each case is built small by a generator (nothing large is committed) and
fed to a real `fmnist` process whose address space is capped, so a case that makes fmnist allocate
without bound fails fast instead of exhausting the machine.

Every case asserts what README's reliability section promises for bad input: one line on stderr
(`fmnist: error: ...` naming the file and the problem), the documented exit status, no traceback,
bounded memory (the cap) and time (the timeout), nothing half-written (no `.part` file left), and
earlier files intact.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

FMNIST = str(Path(sys.executable).parent / "fmnist")
MEMORY_LIMIT = 1536 * 2**20  # bytes of address space: torch and a model fit in far less
TIMEOUT = 120  # seconds: every refusal is meant to be cheap


def _cap_memory(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def run_bounded(*args, stdin: bytes | None = None, timeout: float = TIMEOUT, memory: int = MEMORY_LIMIT,
                cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """`fmnist ARGS` as a user runs it, under an address-space cap and a timeout."""
    return subprocess.run([FMNIST, *map(str, args)], input=stdin, capture_output=True, timeout=timeout,
                          preexec_fn=_cap_memory(memory), cwd=cwd)


def assert_refused(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """Exit status `code`, exactly one stderr line `fmnist: error: ...` holding every fragment, no
    traceback; returns that line."""
    stderr = result.stderr.decode("utf-8", "replace") if isinstance(result.stderr, bytes) else result.stderr
    assert result.returncode == code, (result.returncode, stderr[-2000:])
    assert "Traceback" not in stderr and "MemoryError" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("fmnist: error: ")]
    assert len(errors) == 1, stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def assert_nothing_half_written(directory: str | Path) -> None:
    leftovers = [path for path in Path(directory).rglob("*") if path.name.endswith(".part")]
    assert not leftovers, leftovers


@pytest.fixture
def bounded():
    return run_bounded
