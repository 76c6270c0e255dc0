"""Where the dataset comes from: find it, or download and verify it.

Sources are tried in order (DESIGN.md): an explicit `--data DIR`, `$FMNIST_DATA`, the user cache,
system copies (Debian's `dataset-fashion-mnist`, Keras's cache), then a download from the official
mirrors. Official files are verified by the SHA-256 of their *uncompressed* content, which does not
change when a packager recompresses them (Debian's .gz files differ from Zalando's, byte for byte).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fmnist._io import too_large, write_bytes_atomic
from fmnist.data import streams
from fmnist.errors import DataError
from fmnist.limits import MAX_DATA_BYTES

# role → (standard file name, SHA-256 of the uncompressed IDX content).
# Computed from Debian's dataset-fashion-mnist 0.0~git20200523 files; the same digests are
# published by others who derived them from archives matching Zalando's official gzip MD5s,
# and the labels agree with the official ones (6000/1000 per class, first training labels
# 9 0 0 3 0 2 7 2 5 5), which tests/test_dataset.py checks.
OFFICIAL_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": ("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": ("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": ("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
OFFICIAL_SHA256 = {sha: name for name, sha in OFFICIAL_FILES.values()}

# Tried in order; each serves the four .gz files under their standard names.
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
DOWNLOAD_TIMEOUT = 30.0  # seconds without data before a mirror is given up

SYSTEM_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
CSV_NAMES = (("fashion-mnist_train.csv", "fashion-mnist_test.csv"), ("train.csv", "test.csv"))
# Sub-folders where other tools keep the IDX files: torchvision, Keras's cache, the Zalando repo.
IDX_SUBDIRS = (".", "FashionMNIST/raw", "fashion-mnist", "fashion", "data/fashion", "raw")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """A located copy of the data: which search step found it, its layout and its files."""

    kind: str  # "--data", "$FMNIST_DATA", "cache", "system", "keras", "download"
    layout: str  # "idx", "csv" or "folders"
    directory: Path
    files: dict[str, Path] = field(default_factory=dict)  # role → file or folder

    @property
    def explicit(self) -> bool:
        """Named by the user: its problems are errors, not reasons to try the next source."""
        return self.kind in ("--data", "$FMNIST_DATA")

    def describe(self) -> str:
        names = {"idx": "IDX files", "csv": "Kaggle CSV files", "folders": "image folders"}
        return f"{names[self.layout]} in {self.directory} ({self.kind})"


def cache_dir() -> Path:
    """`$FMNIST_CACHE`, else `$XDG_CACHE_HOME/fmnist`, else `~/.cache/fmnist`."""
    if os.environ.get("FMNIST_CACHE"):
        return Path(os.environ["FMNIST_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fmnist"


def search_path(data: str | Path | None = None) -> list[tuple[str, Path]]:
    """The directories to look in, in order, as (kind, directory)."""
    steps: list[tuple[str, Path]] = []
    if data is not None:
        steps.append(("--data", Path(data).expanduser()))
    if os.environ.get("FMNIST_DATA"):
        steps.append(("$FMNIST_DATA", Path(os.environ["FMNIST_DATA"]).expanduser()))
    steps.append(("cache", cache_dir()))
    steps += [("system", directory) for directory in SYSTEM_DIRS]
    steps.append(("keras", Path.home() / ".keras" / "datasets" / "fashion-mnist"))
    return steps


def _idx_file(directory: Path, name: str) -> Path | None:
    # The original MNIST site also spelled the names with a dot: train-images.idx3-ubyte.
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if _present(directory / candidate):
            return directory / candidate
    return None


def _present(path: Path) -> bool:
    """There, and not a folder: a FIFO or device under a data file's name is found, so that reading it
    says what it is (fmnist reads regular files only) instead of calling the file missing."""
    return path.exists() and not path.is_dir()


def find_layout(kind: str, directory: Path) -> Source | None:
    """Recognise one of the three layouts in `directory`, or None.

    A directory with some but not all four IDX files is reported, since that is a broken copy
    rather than a different layout.
    """
    for sub in IDX_SUBDIRS:
        folder = (directory / sub) if sub != "." else directory
        if not folder.is_dir():
            continue
        found = {role: _idx_file(folder, name) for role, (name, _) in OFFICIAL_FILES.items()}
        if all(found.values()):
            return Source(kind, "idx", folder, {role: path for role, path in found.items() if path})
        if any(found.values()):
            missing = [OFFICIAL_FILES[role][0] for role, path in found.items() if path is None]
            raise DataError(folder, f"incomplete IDX set: missing {', '.join(m + '[.gz]' for m in missing)}")
    for train_name, test_name in CSV_NAMES:
        if _present(directory / train_name) and _present(directory / test_name):
            return Source(kind, "csv", directory, {"train": directory / train_name, "test": directory / test_name})
    if (directory / "train").is_dir() and (directory / "test").is_dir():
        return Source(kind, "folders", directory, {"train": directory / "train", "test": directory / "test"})
    return None


LAYOUT_HELP = (
    "expected the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]), the Kaggle pair "
    "fashion-mnist_train.csv/fashion-mnist_test.csv, or train/ and test/ image folders"
)


def iter_sources(data: str | Path | None = None, log: Log | None = None) -> Iterator[Source]:
    """Yield each source found along the search path, in order."""
    for kind, directory in search_path(data):
        explicit = kind in ("--data", "$FMNIST_DATA")
        if not directory.exists():
            if explicit:
                raise DataError(directory, f"no such directory (given by {kind})")
            continue
        if not directory.is_dir():
            if explicit:
                raise DataError(directory, f"not a directory (given by {kind}); {LAYOUT_HELP}")
            continue
        try:
            source = find_layout(kind, directory)
        except DataError as exc:
            if explicit:
                raise
            if log:
                log(f"skipping {kind} copy: {exc}")
            continue
        if source is None:
            if explicit:
                raise DataError(directory, f"no dataset found; {LAYOUT_HELP}")
            continue
        yield source


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(
    destination: Path | None = None,
    mirrors: tuple[str, ...] | list[str] = MIRRORS,
    timeout: float = DOWNLOAD_TIMEOUT,
    progress: Callable[[str, int, int | None], None] | None = None,
    log: Log | None = None,
) -> Source:
    """Download the four official files into `destination` (the cache by default), verified.

    Each file is fetched into memory, decompressed, checked against its SHA-256, and only then
    written (to a temporary name, renamed into place), uncompressed (loading raw IDX is several times faster than gunzip).
    A mirror that fails or serves wrong bytes is skipped; when every mirror fails, the last
    problem is raised and nothing is left behind.
    """
    destination = Path(destination) if destination is not None else cache_dir()
    if not mirrors:
        raise DataError(None, "no download mirrors given")
    files: dict[str, Path] = {}
    for role, (name, expected) in OFFICIAL_FILES.items():
        target = destination / name
        if target.is_file() and sha256(streams.read_all(target)) == expected:
            files[role] = target
            continue
        problems = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name + ".gz"
            try:
                content = _fetch_gunzip(url, timeout, progress, name)
            except DataError as exc:
                problems.append(str(exc))
                if log:
                    log(f"download failed: {exc}")
                continue
            digest = sha256(content)
            if digest != expected:
                problems.append(f"{url}: checksum mismatch (SHA-256 {digest[:16]}…, expected {expected[:16]}…)")
                if log:
                    log(problems[-1])
                continue
            write_bytes_atomic(target, content)
            files[role] = target
            break
        else:
            raise DataError(
                None,
                f"could not download {name}: {problems[-1]}"
                + ("" if len(problems) == 1 else f" (and {len(problems) - 1} other mirror(s) failed)"),
            )
    return Source("download", "idx", destination, files)


def _fetch_gunzip(url: str, timeout: float, progress, name: str) -> bytes:
    """Fetch `url` into memory (~26 MB; at most MAX_DATA_BYTES) and return its gunzipped content.

    Nothing touches the disk until the content is verified, so an interrupted or wrong
    download can never leave a partial file in the cache.
    """
    buffer = bytearray()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "fmnist"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            while chunk := response.read(1 << 20):
                buffer += chunk
                if len(buffer) > MAX_DATA_BYTES:
                    raise DataError(url, too_large("download", None, MAX_DATA_BYTES, "given up"),
                                    kind="too large")
                if progress:
                    progress(name, len(buffer), total)
    except urllib.error.HTTPError as exc:
        raise DataError(url, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DataError(url, f"unreachable ({exc.reason})") from None
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise DataError(url, f"download failed ({exc or type(exc).__name__})") from None
    except ValueError as exc:  # not a URL urllib understands
        raise DataError(url, f"not a usable URL ({exc})") from None
    if total is not None and len(buffer) != total:
        raise DataError(url, f"download cut short ({len(buffer)} of {total} bytes)")
    if buffer[:2] != streams.GZIP_MAGIC:
        raise DataError(url, "not valid gzip data (no gzip header)")
    try:
        return streams.read_all(io.BytesIO(buffer), name=url)  # decompressed within MAX_DATA_BYTES
    except DataError as exc:
        raise DataError(url, f"not valid gzip data ({exc.problem})") from None
