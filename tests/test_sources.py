"""Downloads from a mirror (a local HTTP server on 127.0.0.1 stands in for the internet)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_idx_set

from fmnist.data import sources
from fmnist.data.dataset import load_dataset
from fmnist.errors import DataError


@pytest.fixture(scope="module")
def official_gz_dir(tmp_path_factory):
    """The official files, gzip-compressed, as a mirror serves them."""
    from fmnist.data.dataset import load_dataset as load

    dataset = load(download=False)
    directory = tmp_path_factory.mktemp("mirror")
    if dataset.source.layout == "idx" and all(str(p).endswith(".gz") for p in dataset.source.files.values()):
        for path in dataset.source.files.values():
            (directory / path.name).symlink_to(path)
    else:
        write_idx_set(directory, dataset.train.images, dataset.train.labels,
                      dataset.test.images, dataset.test.labels, suffix=".gz")
    return directory


@pytest.fixture
def wrong_gz_dir(tmp_path, fashion):
    """A mirror serving well-formed files with the wrong content (a slice of the data)."""
    directory = tmp_path / "wrong-mirror"
    directory.mkdir()
    write_idx_set(directory, fashion.train.images[:10], fashion.train.labels[:10],
                  fashion.test.images[:10], fashion.test.labels[:10], suffix=".gz")
    return directory


def test_download_verifies_and_stores_uncompressed(tmp_path, serve, official_gz_dir, wrong_gz_dir, fashion):
    cache = tmp_path / "cache"
    notes = []
    source = sources.download(cache, mirrors=[serve(wrong_gz_dir), serve(official_gz_dir)], log=notes.append)
    assert source.kind == "download"
    assert sorted(p.name for p in cache.iterdir()) == sorted(name for name, _ in sources.OFFICIAL_FILES.values())
    assert any("checksum mismatch" in note for note in notes)  # the wrong mirror was tried and refused
    for role, (name, digest) in sources.OFFICIAL_FILES.items():
        assert sources.sha256((cache / name).read_bytes()) == digest
    # Afterwards the cache is the first implicit source, and it is verified.
    from fmnist.data.dataset import read_source

    dataset = read_source(sources.Source("cache", "idx", cache, source.files))
    assert dataset.verified and np.array_equal(dataset.train.labels, fashion.train.labels)


def test_download_checksum_mismatch_leaves_nothing(tmp_path, serve, wrong_gz_dir):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"could not download train-images-idx3-ubyte: .*checksum mismatch"):
        sources.download(cache, mirrors=[serve(wrong_gz_dir)])
    assert not cache.exists() or not any(cache.iterdir())


def test_corrupt_gzip_on_one_mirror_falls_through_to_the_next(tmp_path, serve, official_gz_dir):
    broken = tmp_path / "broken-mirror"
    broken.mkdir()
    for name, _ in __import__("fmnist.data.sources", fromlist=["x"]).OFFICIAL_FILES.values():
        (broken / f"{name}.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    notes = []
    source = sources.download(tmp_path / "cache", mirrors=[serve(broken), serve(official_gz_dir)], log=notes.append)
    assert len(source.files) == 4 and any("not valid gzip data" in note for note in notes)


@pytest.fixture
def closed_mirror():
    """The URL of a port on 127.0.0.1 that nothing listens on: one the system just gave out and
    that was closed again (a fixed port, say 9, may well be in use on some machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_from_an_unreachable_mirror(tmp_path, closed_mirror):
    url = f"{closed_mirror}train-images-idx3-ubyte.gz"
    with pytest.raises(DataError) as caught:
        sources.download(tmp_path / "cache", mirrors=[closed_mirror], timeout=5)
    assert str(caught.value).startswith(f"could not download train-images-idx3-ubyte: {url}: unreachable (")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_download_of_a_missing_file_reports_http_status(tmp_path, serve):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    with pytest.raises(DataError, match=r"HTTP 404"):
        sources.download(tmp_path / "cache", mirrors=[serve(empty)])


def test_load_dataset_downloads_when_nothing_is_installed(tmp_path, monkeypatch, serve, official_gz_dir, closed_mirror):
    monkeypatch.setattr(sources, "SYSTEM_DIRS", ())
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    dataset = load_dataset(mirrors=[serve(official_gz_dir)])
    assert dataset.source.kind == "download" and dataset.verified
    # The next load finds the verified cache and downloads nothing.
    again = load_dataset(mirrors=[closed_mirror])
    assert again.source.kind == "cache" and again.verified


def test_tests_run_with_their_own_home_and_caches(tmp_path_factory):
    """conftest's isolation: HOME, the XDG folders, matplotlib's folder and fmnist's cache lie in this
    run's temporary folder, for the tests and for the `fmnist` processes they start; only the system
    copy of the data is shared."""
    base = tmp_path_factory.getbasetemp()
    for variable in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR", "FMNIST_CACHE"):
        assert Path(os.environ[variable]).is_relative_to(base), variable
    assert "FMNIST_DATA" not in os.environ
    assert [kind for kind, directory in sources.search_path() if not directory.is_relative_to(base)] == ["system"]
    code = "import matplotlib, pathlib; print(pathlib.Path.home()); print(matplotlib.get_configdir())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    home, matplotlib_dir = child.stdout.splitlines()
    assert home == os.environ["HOME"] and matplotlib_dir == os.environ["MPLCONFIGDIR"]
