"""Shared fixtures: the real dataset (loaded once) and small real slices written to disk; the
hostile-input harness (at the end)."""

from __future__ import annotations

import functools
import http.server
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from forked import fmnist_process
from hypothesis import HealthCheck, settings

from fmnist.data import formats
from fmnist.data.dataset import load_dataset

SMALL_TRAIN, SMALL_TEST = 300, 100

# Property-based fuzzing (hypothesis): in CI a fixed, bounded set of examples per property, the same
# on every run; `make fuzz` raises the count and lets hypothesis explore (FMNIST_FUZZ_EXAMPLES, and
# FMNIST_FUZZ_RANDOM=1 for fresh random examples).
settings.register_profile(
    "fmnist",
    max_examples=int(os.environ.get("FMNIST_FUZZ_EXAMPLES", "60")),
    derandomize=os.environ.get("FMNIST_FUZZ_RANDOM") != "1",
    deadline=None,  # a shared 2-core machine: time per example is not what is tested
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # nothing written outside the tests' temporary folders
)
settings.load_profile("fmnist")


@pytest.fixture(scope="session")
def fashion():
    """The full official dataset, found along the normal search path (no download)."""
    return load_dataset(download=False)


@pytest.fixture(scope="session")
def small_idx_dir(tmp_path_factory, fashion):
    """The first 300 training and 100 test images of the real data, as a raw IDX set."""
    directory = tmp_path_factory.mktemp("small-idx")
    write_idx_set(directory, fashion.train.images[:SMALL_TRAIN], fashion.train.labels[:SMALL_TRAIN],
                  fashion.test.images[:SMALL_TEST], fashion.test.labels[:SMALL_TEST])
    return directory


def write_idx_set(directory, train_images, train_labels, test_images, test_labels, suffix=""):
    formats.write_idx(directory / f"train-images-idx3-ubyte{suffix}", train_images)
    formats.write_idx(directory / f"train-labels-idx1-ubyte{suffix}", np.asarray(train_labels, dtype=np.uint8))
    formats.write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", test_images)
    formats.write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", np.asarray(test_labels, dtype=np.uint8))


@pytest.fixture(scope="session")
def _matplotlib_cache(tmp_path_factory):
    """One matplotlib configuration folder for the session: it holds the font cache, which
    matplotlib would otherwise rebuild (seconds) in every test and every `fmnist` subprocess."""
    return tmp_path_factory.mktemp("matplotlib")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path, tmp_path_factory, _matplotlib_cache):
    """No test sees the user's $FMNIST_DATA, home, caches or configuration, or writes to them.

    HOME, XDG_CACHE_HOME and XDG_CONFIG_HOME point into a fresh folder of this test's own (beside
    its tmp_path, not inside it, so tests that use tmp_path as a data directory see only their own
    files), MPLCONFIGDIR into the session's matplotlib folder; `fmnist` subprocesses inherit them,
    onnxruntime's files land there too. Session-scoped fixtures (`fashion`) are set up before this
    one and keep loading from the system copy.
    """
    monkeypatch.delenv("FMNIST_DATA", raising=False)
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path / "cache"))
    home = tmp_path_factory.mktemp("home")
    folders = {"HOME": home, "XDG_CACHE_HOME": home / ".cache", "XDG_CONFIG_HOME": home / ".config",
               "MPLCONFIGDIR": _matplotlib_cache}
    for variable, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(variable, str(folder))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(directory) → base URL of an HTTP server on 127.0.0.1 for that directory."""
    servers = []

    def start(directory):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- the hostile-input harness
# (tests/hostile/). It lives here, not in a conftest.py of its own: pytest imports every conftest.py as
# the module `conftest`, a second one replacing the first in sys.modules, and then the tests that
# `from conftest import write_idx_set` fail to import when both folders are collected in one run.
#
# The hostile-input suite: each case is built small by a generator (nothing large is committed) and
# fed to a real `fmnist` process whose address space is capped, so a case that makes fmnist allocate
# without bound fails fast instead of exhausting the machine.
#
# Every case asserts what README's reliability section promises for bad input: one line on stderr
# (`fmnist: error: ...` naming the file and the problem), the documented exit status, no traceback,
# bounded memory (the cap) and time (the timeout), nothing half-written (no `.part` file left), and
# earlier files intact.

FMNIST = str(Path(sys.executable).parent / "fmnist")
MEMORY_LIMIT = 1536 * 2**20  # bytes of address space: torch and a model fit in far less
TIMEOUT = 120  # seconds: every refusal is meant to be cheap


def interruptible(command: list) -> list[str]:
    """`command` with SIGINT at its default action, however the suite was started: a background job of a
    non-interactive shell inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt."""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *map(str, command)]


def run_bounded(*args, stdin: bytes | None = None, timeout: float = TIMEOUT, memory: int = MEMORY_LIMIT,
                cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """`fmnist ARGS` in a process of its own (forked.py: the imports done once), under an address-space cap
    and a timeout; stdout and stderr as bytes. A cap below the default is sized to what the command needs
    from a fresh start: that runs in a fresh interpreter."""
    return fmnist_process(*args, input=stdin, timeout=timeout, limits={resource.RLIMIT_AS: memory}, cwd=cwd,
                          text=False, fresh=memory < MEMORY_LIMIT)


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


@pytest.fixture(scope="session")
def hostile_model(tmp_path_factory, fashion):
    """An ONNX model for the hostile prediction cases (write-up 003's dense model, one epoch on 300
    images): what it predicts does not matter there, only how fmnist treats what it is given."""
    import fmnist
    from fmnist.engine.config import TrainConfig
    from fmnist.engine.trainer import fit
    from fmnist.modelfile import save_model

    out = tmp_path_factory.mktemp("hostile-model")
    config = TrainConfig(model="dense", epochs=1, batch_size=64, device="cpu", seed=1, checkpoint="none")
    result = fit(config, out / "run", dataset=fashion.limit(train=300, test=100))
    save_model(out / "model.safetensors", result.model, result.architecture, fashion.classes,
               config=config.to_dict(), image_spec=result.image_spec)
    return fmnist.export_onnx(out / "model.safetensors", out / "model.onnx", check_images=fashion.test.images[:200],
                              check_name="200 test images").path


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory, fashion):
    """(model.safetensors, model.onnx) for the `fmnist serve` tests: write-up 000's baseline CNN, one
    epoch on 500 images (about 60 % accurate: enough to tell a Pullover from a Sandal most times)."""
    import fmnist
    from fmnist.engine.config import TrainConfig
    from fmnist.engine.trainer import fit
    from fmnist.modelfile import save_model

    out = tmp_path_factory.mktemp("serve-model") / "tiny"
    config = TrainConfig(model="baseline", epochs=1, batch_size=32, device="cpu", seed=3, checkpoint="none")
    result = fit(config, out / "run", dataset=fashion.limit(train=500, test=100))
    save_model(out / "model.safetensors", result.model, result.architecture, fashion.classes,
               config=config.to_dict(), image_spec=result.image_spec, metrics={"test_accuracy": 0.6})
    onnx = fmnist.export_onnx(out / "model.safetensors", out / "model.onnx", check_images=fashion.test.images[:200],
                              check_name="200 test images").path
    return out / "model.safetensors", onnx
