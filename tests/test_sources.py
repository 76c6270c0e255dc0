"""Downloads from a mirror (a local HTTP server on 127.0.0.1 stands in for the internet)."""

from __future__ import annotations

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


def test_download_from_an_unreachable_mirror(tmp_path):
    with pytest.raises(DataError, match=r"127\.0\.0\.1:9/train-images-idx3-ubyte\.gz: unreachable"):
        sources.download(tmp_path / "cache", mirrors=["http://127.0.0.1:9/"], timeout=5)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_download_of_a_missing_file_reports_http_status(tmp_path, serve):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    with pytest.raises(DataError, match=r"HTTP 404"):
        sources.download(tmp_path / "cache", mirrors=[serve(empty)])


def test_load_dataset_downloads_when_nothing_is_installed(tmp_path, monkeypatch, serve, official_gz_dir):
    monkeypatch.setattr(sources, "SYSTEM_DIRS", ())
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    dataset = load_dataset(mirrors=[serve(official_gz_dir)])
    assert dataset.source.kind == "download" and dataset.verified
    # The next load finds the verified cache and downloads nothing.
    again = load_dataset(mirrors=["http://127.0.0.1:9/"])
    assert again.source.kind == "cache" and again.verified
