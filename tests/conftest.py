"""Shared fixtures: the real dataset (loaded once) and small real slices written to disk."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest

from fmnist.data import formats
from fmnist.data.dataset import load_dataset

SMALL_TRAIN, SMALL_TEST = 300, 100


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


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """No test sees the user's $FMNIST_DATA or writes to the real cache."""
    monkeypatch.delenv("FMNIST_DATA", raising=False)
    monkeypatch.setenv("FMNIST_CACHE", str(tmp_path / "cache"))


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
