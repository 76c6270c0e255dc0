"""Training runs that stop the wrong way — Ctrl-C before the first checkpoint, a killed process, a
second process on the same folder, divergence, a full disk — and the run folder's own files when
they are damaged: never stuck, never a traceback, never a command suggested that cannot work."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_nothing_half_written, assert_refused, run_bounded

import fmnist
from fmnist.engine.config import build_config
from fmnist.engine.progress import NullProgress
from fmnist.engine.trainer import fit
from fmnist.report import html


class _StopInFirstEpoch(NullProgress):
    """Ctrl-C at step 3 of epoch 1: no epoch finished, no checkpoint written."""

    live = True

    def update(self, steps_done, loss, accuracy):
        if steps_done >= 3:
            raise KeyboardInterrupt


def _config(**overrides):
    return build_config(**{"model": "dense", "epochs": 2, "batch_size": 32, "precision": "fp32", "device": "cpu",
                           "seed": 2, **overrides})


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(tmp_path, fashion):
    data = fashion.limit(train=320, test=100)
    whole = fit(_config(), tmp_path / "whole", dataset=data)
    with pytest.raises(KeyboardInterrupt):
        fit(_config(), tmp_path / "cut", dataset=data, progress=_StopInFirstEpoch())
    assert (tmp_path / "cut" / "config.yaml").is_file() and not (tmp_path / "cut" / "checkpoints").exists()
    notes = []
    progress = NullProgress()
    progress.note = notes.append
    resumed = fit(_config(), tmp_path / "cut", dataset=data, resume=True, progress=progress)
    assert any("starting the run again from epoch 1" in note for note in notes)
    assert [row["val_accuracy"] for row in resumed.history] == [row["val_accuracy"] for row in whole.history]


def test_a_run_without_checkpoints_resumes_from_the_start(tmp_path, fashion):
    data = fashion.limit(train=320, test=100)
    fit(_config(checkpoint="none"), tmp_path / "run", dataset=data)
    again = fit(_config(checkpoint="none"), tmp_path / "run", dataset=data, resume=True)
    assert [row["epoch"] for row in again.history] == [1, 2]
    assert [row["epoch"] for row in fmnist.runfolder.RunFolder(tmp_path / "run").read_history()] == [1, 2]


def _train_in_background(out: Path, data_dir: Path, epochs: int = 40) -> subprocess.Popen:
    from conftest import FMNIST

    return subprocess.Popen([FMNIST, "train", "--data", str(data_dir), "--model", "dense", "--epochs", str(epochs),
                             "--precision", "fp32", "--device", "cpu", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_epoch(process: subprocess.Popen, epoch: int) -> None:
    for line in process.stderr:
        if re.match(rf"epoch +{epoch}/", line):
            return
    raise AssertionError(f"the run ended before epoch {epoch} (exit {process.wait()})")


@pytest.mark.slow
def test_a_run_is_locked_while_it_trains_and_resumes_after_a_kill(tmp_path, small_idx_dir):
    out = tmp_path / "run"
    first = _train_in_background(out, small_idx_dir)
    try:
        _wait_for_epoch(first, 2)
        second = run_bounded("train", "--resume", out)
        assert_refused(second, 2, f"{out}: another fmnist process (pid {first.pid}) is working on this run")
        again = run_bounded("train", "--data", small_idx_dir, "--out", out)
        assert_refused(again, 2, f"{out}: already holds a run")
        first.send_signal(signal.SIGKILL)  # no clean-up: its lock dies with it, a temporary file may stay
    finally:
        first.kill()
        first.wait()
    stale = out / "checkpoints" / ".resume.safetensors.abc123.part"
    stale.write_bytes(b"half a file")
    finished = run_bounded("train", "--resume", out, timeout=300)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert not stale.exists()
    assert_nothing_half_written(out)
    assert [row["epoch"] for row in fmnist.runfolder.RunFolder(out).read_history()][-1] == 40


def test_interrupt_before_the_run_folder_exists_suggests_nothing(tmp_path, small_idx_dir):
    """A SIGINT while the data are still loading: exit 130, and no `--resume` that could not work."""
    from conftest import FMNIST, interruptible

    process = subprocess.Popen(interruptible([FMNIST, "train", "--data", small_idx_dir, "--out", tmp_path / "run"]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / ".lock").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)  # the lock is taken just before the data are loaded, config.yaml written after
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    if (tmp_path / "run" / "config.yaml").exists():
        pytest.skip("the machine was fast enough to write config.yaml before the signal")
    assert process.returncode == 130 and stderr.strip().splitlines()[-1] == "fmnist: interrupted", stderr


def test_divergence_is_one_line_and_the_run_can_start_again(tmp_path, small_idx_dir):
    out = tmp_path / "run"
    diverged = run_bounded("train", "--data", small_idx_dir, "--model", "dense", "--lr", "1e12", "--epochs", "2",
                           "--precision", "fp32", "--out", out, "--quiet")
    assert_refused(diverged, 2, "training diverged in epoch 1 (the loss is not finite)", "smaller --lr")
    again = run_bounded("train", "--resume", out, "--quiet")  # it starts again (and diverges again: same lr)
    assert_refused(again, 2, "training diverged in epoch 1")


@pytest.mark.parametrize("seed", ["99999999999999999999999", "-1", "2147483648"])
def test_an_out_of_range_seed_is_one_line(tmp_path, small_idx_dir, seed):
    result = run_bounded("train", "--data", small_idx_dir, "--seed", seed, "--out", tmp_path / "run")
    assert_refused(result, 2, "seed: must be an integer from 0 to 2147483647")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fashion):
    out = tmp_path_factory.mktemp("finished") / "run"
    fmnist.train(_config(epochs=1), out, dataset=fashion.limit(train=320, test=100))
    return out


DAMAGE = {
    "metrics.json": [b"[1, 2]", b'{"model": 3}', b"{not json", b"\xff\xfe"],
    "evaluation.json": [b'{"classes": ["a"]}', b"[]"],
    "history.csv": [b"epoch,loss\n1,0.5\n", b"epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n1,x,0,0,0,0,0\n"],
    "predictions.npz": [b"PK\x03\x04 not a zip", b""],
}


@pytest.mark.parametrize("name,content", [(name, content) for name, contents in DAMAGE.items() for content in contents])
def test_report_on_a_damaged_file_is_one_line(tmp_path, finished_run, name, content):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = (run / "report.html").read_bytes()
    (run / name).write_bytes(content)
    result = run_bounded("report", run)
    assert_refused(result, 2, str(run / name))
    assert (run / "report.html").read_bytes() == before  # the earlier report stays
    assert_nothing_half_written(run)


def test_report_on_evaluation_files_that_disagree(tmp_path, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    np.savez(run / "predictions.npz", labels=np.zeros(5, np.int64), predictions=np.zeros(5, np.int64),
             probabilities=np.zeros((5, 10), np.float32))
    assert_refused(run_bounded("report", run), 2, "predictions.npz: does not match evaluation.json (100 images")


def test_cv_json_of_the_wrong_shape_is_one_line(tmp_path):
    (tmp_path / "cv.json").write_text('{"folds": "five", "models": []}')
    assert_refused(run_bounded("report", tmp_path), 2, "cv.json: folds must be a int, not str")


def test_reports_refuse_unescaped_markup_by_construction(tmp_path):
    with pytest.raises(TypeError, match="escaped by construction"):
        html.write_report(tmp_path / "report.html", "title", [("section", "<p>raw</p>")])
    page = html.write_report(tmp_path / "report.html", "<b>t</b>", [("<i>h</i>", html.text("<script>x</script>"))])
    text = page.read_text()
    assert "<script>" not in text and "<b>t</b>" not in text and "<i>h</i>" not in text and not (tmp_path / "x").exists()


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_every_output_file_follows_the_umask(tmp_path, small_idx_dir, umask, mode):
    out = tmp_path / "run"
    result = subprocess.run(["sh", "-c", f'umask {umask:03o} && exec "$0" "$@"', _fmnist(), "train", "--data",
                             str(small_idx_dir), "--model", "dense", "--epochs", "1", "--quiet", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    files = [path for path in out.rglob("*") if path.is_file() and path.name != ".lock"]
    assert {"model.safetensors", "resume.safetensors", "history.csv", "report.html"} <= {p.name for p in files}
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in files} == {path.name: oct(mode) for path in files}


def _fmnist() -> str:
    from conftest import FMNIST

    return FMNIST


def test_onnx_prediction_is_quiet_with_an_unwritable_home(tmp_path, fashion):
    from PIL import Image

    out = tmp_path / "run"
    fmnist.train(_config(epochs=1), out, dataset=fashion.limit(train=320, test=100))
    fmnist.export_onnx(out / "model.safetensors", out / "model.onnx", check_images=fashion.test.images[:50])
    Image.fromarray(fashion.test.images[0]).save(tmp_path / "image.png")
    env = dict(os.environ, HOME="/dev/null/home", XDG_CACHE_HOME="/dev/null/cache")
    result = subprocess.run([_fmnist(), "predict", str(out / "model.onnx"), str(tmp_path / "image.png")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize("text,problem", [("a: " + "[" * 100 + "]" * 100, "nested deeper than 32 levels"),
                                          ("a: " + "[" * 5000 + "]" * 5000, "nesting depth"),  # libyaml's own cap
                                          ("epochs: 1\n" + "x: " * 1 + "y" * (1 << 21),
                                           "file too large: 2,097,165 bytes (the limit is 1 MiB); refused before reading it")])
def test_a_hostile_config_file_is_one_line(tmp_path, small_idx_dir, text, problem):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = run_bounded("train", "--config", config, "--data", small_idx_dir, "--out", tmp_path / "run")
    assert_refused(result, 2, str(config), problem)


def test_a_fifo_or_a_folder_named_as_a_config_spec_or_space_is_refused_unopened(tmp_path):
    from fmnist.engine.config import ConfigError, build_config
    from fmnist.models.spec import SpecError, load_spec
    from fmnist.tuning.space import SpaceError, load_space

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading would wait forever
    for read, error, expected in [(build_config, ConfigError, "a YAML config file"),
                                  (load_spec, SpecError, "a spec file (YAML or JSON)"),
                                  (load_space, SpaceError, "a YAML search-space file")]:
        with pytest.raises(error) as raised:
            read(fifo)
        assert str(raised.value) == f"{fifo}: a FIFO, expected {expected} (only regular files are read)"
        with pytest.raises(error) as raised:
            read(tmp_path)
        assert str(raised.value) == f"{tmp_path}: is a directory, expected {expected}"


@pytest.mark.parametrize("line, message", [
    ("limit: 1e3", "limit: must be a whole number of images, at least 10, got 1000.0"),
    ("limit: many", "limit: must be a whole number of images, at least 10, got 'many'"),
    ("early_stop: 2.5", "early_stop: patience must be a whole number of epochs >= 1, got 2.5"),
    ("epochs: true", "epochs: must be a positive integer, got True"),
    ("step_epochs: [3]", "step_epochs must be a whole number >= 1 and step_gamma in (0, 1]"),
])
def test_a_whole_number_field_takes_only_whole_numbers(tmp_path, line, message):
    from fmnist.engine.config import ConfigError, build_config

    config = tmp_path / "config.yaml"
    config.write_text(line + "\n")
    with pytest.raises(ConfigError) as raised:
        build_config(config)
    assert str(raised.value) == f"{config}: {message}"


def test_numbers_in_yaml_files_read_as_yaml_1_2_reads_them(tmp_path):
    from fmnist.engine.config import build_config

    config = tmp_path / "config.yaml"
    config.write_text("lr: 3e-4\nweight_decay: 5E-4\nlimit: 1000\n")  # YAML 1.1 (PyYAML) would read "3e-4", a string
    built = build_config(config)
    assert (built.lr, built.weight_decay, built.limit) == (3e-4, 5e-4, 1000)
