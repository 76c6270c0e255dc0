"""The `fmnist` command as a user runs it: a real process, its output, exit status and files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_idx_set
from forked import fmnist_process

from fmnist.data import formats

FMNIST = str(Path(sys.executable).parent / "fmnist")


def run(*args, check_code=0):
    """`fmnist ARGS` in a process of its own (forked.py: the imports done once), its exit status checked."""
    result = fmnist_process(*args)
    assert result.returncode == check_code, (result.returncode, result.stdout, result.stderr)
    return result


def assert_one_line_error(result, *fragments):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fmnist: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "expected"), [(["--help"], "Usage: fmnist"),
                                              (["summary", "baseline"], "Total params: 542,230")])
def test_started_as_a_user_starts_it_fmnist_prints_no_warnings(args, expected):
    """A real start (the other tests' commands are forked from a server that imported fmnist once: a
    warning printed while fmnist, torch or matplotlib are imported would show only here)."""
    result = subprocess.run([FMNIST, *args], capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert expected in result.stdout


def test_help_lists_the_commands():
    import re

    out = run("--help").stdout
    listed = re.findall(r"^  ([a-z][a-z-]+) ", out[out.index("Commands:"):], flags=re.M)
    assert listed == ["info", "data", "explore", "models", "summary", "train", "cv", "lr-find", "evaluate",
                      "report", "activations", "predict", "export", "tune", "serve"]


def test_info_on_the_official_data():
    out = run("info").stdout
    assert "official Fashion-MNIST, SHA-256 verified" in out
    assert "60,000 images" in out and "10,000 images" in out
    for name in ("T-shirt/top", "Ankle boot", "6,000", "1,000", "torch:", "device:"):
        assert name in out


def test_info_on_a_directory(small_idx_dir):
    out = run("info", "--data", small_idx_dir).stdout
    assert "(--data)" in out and "not the official files" in out
    assert "300 images" in out and "100 images" in out


def test_explore_writes_readable_figures_and_a_report(tmp_path, small_idx_dir):
    out_dir = tmp_path / "explore"
    result = run("explore", "--data", small_idx_dir, "--out", out_dir, "--quiet")
    assert "Images per class" in result.stdout and str(out_dir) in result.stdout
    expected = ["first-images.png", "samples-train.png", "samples-test.png", "class-distribution.png", "class-means.png"]
    for name in expected:
        data = (out_dir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["train"]["images_shape"] == [300, 28, 28]
    assert sum(summary["train"]["class_counts"]) == 300
    assert summary["figures"] == expected
    report = (out_dir / "report.html").read_text()
    assert report.count("data:image/png;base64,") == len(expected)
    assert not list(out_dir.glob("*.part"))


def test_quiet_hides_notes_but_not_results(tmp_path, small_idx_dir):
    loud = run("data", "--data", small_idx_dir)
    quiet = run("data", "--data", small_idx_dir, "--quiet")
    assert loud.stdout == quiet.stdout and str(small_idx_dir) in quiet.stdout
    assert loud.stderr and not quiet.stderr


def test_missing_directory_is_one_line_exit_2(tmp_path):
    missing = tmp_path / "nowhere"
    assert_one_line_error(run("info", "--data", missing, check_code=2), str(missing), "no such directory")


def test_truncated_gz_is_one_line_exit_2(tmp_path, fashion):
    write_idx_set(tmp_path, fashion.train.images[:100], fashion.train.labels[:100],
                  fashion.test.images[:10], fashion.test.labels[:10], suffix=".gz")
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    assert_one_line_error(run("info", "--data", tmp_path, check_code=2), str(path), "truncated gzip data")


def test_bad_csv_is_one_line_exit_2(tmp_path):
    header = ",".join(formats.CSV_HEADER)
    good = ",".join(["1"] * 785)
    (tmp_path / "fashion-mnist_train.csv").write_text(f"{header}\n{good}\n{good.replace('1', '-3', 2)}\n")
    (tmp_path / "fashion-mnist_test.csv").write_text(f"{header}\n{good}\n")
    result = run("explore", "--data", tmp_path, "--out", tmp_path / "out", check_code=2)
    assert_one_line_error(result, "fashion-mnist_train.csv", "line 3", "outside 0-255")
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "info", "--data", tmp_path / "nowhere", check_code=1)
    assert "Traceback" in result.stderr and "DataError" in result.stderr


def test_data_download_checksum_mismatch_exit_2_and_empty_cache(tmp_path, fashion, serve):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    write_idx_set(mirror, fashion.train.images[:10], fashion.train.labels[:10],
                  fashion.test.images[:10], fashion.test.labels[:10], suffix=".gz")
    result = run("data", "--download", "--mirror", serve(mirror), "--quiet", check_code=2)
    assert_one_line_error(result, "train-images-idx3-ubyte", "checksum mismatch")
    cache = Path(tmp_path / "cache")
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.parametrize("args,fragments", [
    (["info", "--bogus"], ["No such option: --bogus", "(see: fmnist info --help)"]),
    (["nonexistent-command"], ["No such command 'nonexistent-command'", "(see: fmnist --help)"]),
    (["train", "--epochs", "two"], ["Invalid value for '--epochs'", "(see: fmnist train --help)"]),
    (["predict"], ["Missing argument", "(see: fmnist predict --help)"]),
])
def test_usage_errors_are_one_line_exit_2(args, fragments):
    """click prints a usage block and a boxed panel; README promises one line."""
    assert_one_line_error(run(*args, check_code=2), *fragments)


def test_version_prints_the_version():
    from fmnist import __version__

    result = run("--version")
    assert result.stdout == f"fmnist {__version__}\n" and result.stderr == ""
