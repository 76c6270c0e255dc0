"""Shared fixtures: the real dataset (loaded once) and small real slices written to disk."""

from __future__ import annotations

import functools
import http.server
import os
import threading

import numpy as np
import pytest
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
