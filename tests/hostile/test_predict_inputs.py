"""Hostile inputs to `fmnist predict` besides the image bytes themselves: what sits in a folder (a FIFO,
a device, a tree of links), what comes down standard input, names that would break a terminal line,
the same file reached many ways. Every case: the good files still predicted, one line per failing
input, bounded time, results out as they are known."""

from __future__ import annotations

import json
import os
import select
import subprocess

import numpy as np
import pytest
from conftest import FMNIST, assert_refused, run_bounded
from PIL import Image

from fmnist.limits import MAX_IMAGE_BYTES


@pytest.fixture
def shirt(tmp_path, fashion):
    """Test image 1 (a Pullover) as a PNG."""
    path = tmp_path / "shirt.png"
    Image.fromarray(fashion.test.images[1]).save(path)
    return path


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines()


def test_a_fifo_in_a_folder_is_an_error_line_and_the_other_files_are_predicted(tmp_path, hostile_model, fashion):
    folder = tmp_path / "shop"
    folder.mkdir()
    for name, index in (("a.png", 0), ("c.png", 2)):
        Image.fromarray(fashion.test.images[index]).save(folder / name)
    os.mkfifo(folder / "b.png")  # nobody ever writes to it: opening it for reading would wait forever
    result = run_bounded("predict", hostile_model, folder, tmp_path / "b-too.png", timeout=60)  # a hang: TimeoutExpired
    assert [line.split(": ")[0] for line in _lines(result.stdout)] == [str(folder / "a.png"), str(folder / "c.png")]
    errors = _lines(result.stderr)
    assert errors[0] == f"fmnist: error: {folder / 'b.png'}: a FIFO, expected an image file (only regular files are read)"
    assert errors[1].startswith(f"fmnist: error: {tmp_path / 'b-too.png'}: no such file") and len(errors) == 2
    assert result.returncode == 1


def test_a_device_under_an_image_name_is_refused_without_reading_it(tmp_path, hostile_model):
    (tmp_path / "zero.png").symlink_to("/dev/zero")  # endless zeros
    assert_refused(run_bounded("predict", hostile_model, tmp_path / "zero.png", timeout=60), 1,
                   f"{tmp_path / 'zero.png'}: a character device, expected an image file")


def test_standard_input_is_read_within_the_byte_limit(hostile_model, shirt):
    result = run_bounded("predict", hostile_model, "-", stdin=shirt.read_bytes() + bytes(MAX_IMAGE_BYTES))
    assert_refused(result, 1, "fmnist: error: -: input too large: more than 67,108,864 bytes (the limit is 64 MiB)")
    result = run_bounded("predict", hostile_model, "-", stdin=shirt.read_bytes())
    assert result.returncode == 0 and _lines(result.stdout)[0].startswith("-: ")


def test_results_are_out_before_standard_input_ends(hostile_model, shirt):
    """`fmnist predict MODEL shirt.png -` with stdin still open: shirt.png's line is on stdout (a pipe)
    while fmnist waits for stdin, not after."""
    process = subprocess.Popen([FMNIST, "predict", str(hostile_model), str(shirt), "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no result while standard input was still open"
        assert process.stdout.readline().decode().startswith(f"{shirt}: ")
        process.stdin.write(shirt.read_bytes())
        process.stdin.close()
        assert process.wait(60) == 0 and process.stdout.read().decode().startswith("-: ")
    finally:
        process.kill()
        process.wait()


def test_a_tree_of_links_is_searched_once_per_real_folder(tmp_path, hostile_model, shirt):
    """Two links per level to the level below, 16 levels: 65,536 paths to one image (it was predicted
    16,384 times in 76 s at depth 14). Each real folder is searched once: one line."""
    level = tmp_path / "level0"
    level.mkdir()
    os.link(shirt, level / "shirt.png")
    for depth in range(1, 17):
        above = tmp_path / f"level{depth}"
        above.mkdir()
        for name in ("x", "y"):
            (above / name).symlink_to(level)
        level = above
    result = run_bounded("predict", hostile_model, level, "--json", timeout=60)  # 65,536 predictions: TimeoutExpired
    assert result.returncode == 0
    records = json.loads(result.stdout)
    assert [record["path"] for record in records] == [str(level / ("x/" * 16) / "shirt.png").replace("//", "/")]


def test_every_real_file_is_predicted_once_and_each_path_gets_a_line(tmp_path, hostile_model, shirt, fashion):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "link.png").symlink_to(shirt)
    os.link(shirt, folder / "hard.png")
    Image.fromarray(fashion.test.images[0]).save(folder / "other.png")
    result = run_bounded("predict", hostile_model, shirt, shirt, folder, folder / "other.png")
    assert result.returncode == 0, result.stderr
    lines = _lines(result.stdout)
    assert lines[1] == f"{shirt}: the same file as {shirt} (predicted once, above)"
    assert lines[2] == f"{folder / 'hard.png'}: the same file as {shirt} (predicted once, above)"
    assert lines[3] == f"{folder / 'link.png'}: the same file as {shirt} (predicted once, above)"
    assert lines[5] == f"{folder / 'other.png'}: the same file as {folder / 'other.png'} (predicted once, above)"
    records = json.loads(run_bounded("predict", hostile_model, shirt, folder / "link.png", "--json").stdout)
    assert records[1] == {"path": str(folder / "link.png"), "duplicate_of": str(shirt)}


def test_names_that_would_break_a_terminal_line_are_escaped_and_json_is_exact(tmp_path, hostile_model, shirt):
    names = ["new\nline.png", "esc\x1b[31mred.png", "bell\a.png", os.fsdecode(b"latin-\xe9.png")]
    for name in names:
        (tmp_path / name).write_bytes(shirt.read_bytes())
    (tmp_path / "cut\r.png").write_bytes(shirt.read_bytes()[:40])
    paths = [str(tmp_path / name) for name in names]
    result = run_bounded("predict", hostile_model, *paths, tmp_path / "cut\r.png")
    out, err = _lines(result.stdout), _lines(result.stderr)
    assert result.returncode == 1 and len(out) == 4 and len(err) == 1
    assert out[0].startswith(f"{tmp_path}/new\\nline.png: ") and out[1].startswith(f"{tmp_path}/esc\\x1b[31mred.png: ")
    assert out[2].startswith(f"{tmp_path}/bell\\x07.png: ") and out[3].startswith(f"{tmp_path}/latin-\\xe9.png: ")
    assert err[0].startswith(f"fmnist: error: {tmp_path}/cut\\r.png: ")
    assert b"\x1b" not in result.stdout + result.stderr
    records = json.loads(run_bounded("predict", hostile_model, *paths, "--json").stdout)
    assert [record["path"] for record in records] == paths


def test_a_blank_image_is_predicted_with_a_note(tmp_path, hostile_model):
    Image.new("RGB", (300, 200), (240, 240, 240)).save(tmp_path / "blank.png")
    result = run_bounded("predict", hostile_model, tmp_path / "blank.png")
    assert result.returncode == 0
    assert _lines(result.stdout)[0].endswith("  (blank: nothing stands out from the background)")
    record = json.loads(run_bounded("predict", hostile_model, tmp_path / "blank.png", "--json").stdout)[0]
    assert record["input"]["empty"] is True and record["label"] is not None
    import fmnist

    (photo,) = fmnist.predict(hostile_model, [np.pad(np.full((40, 30), 30, np.uint8), 50, constant_values=230)])
    assert photo.input["empty"] is False
