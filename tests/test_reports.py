"""Diagnostics and report.html: every figure written, non-empty, embedded; redrawn from files."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from test_cli import assert_one_line_error, run

from fmnist.engine.config import TrainConfig
from fmnist.workflows.train_run import train
from fmnist.workflows.redraw import redraw

TRAIN_FIGURES = ("learning-curves.png", "training-summary.png", "confusion-matrix.png", "class-scores.png",
                 "montage.png", "correct.png", "incorrect.png", "top-losses.png", "feature-maps.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fashion):
    """One run folder for the module: tests read it; a test that changes files works on `own_copy`."""
    out = tmp_path_factory.mktemp("run")
    data = fashion.limit(train=400, test=200)
    train(TrainConfig(model="baseline", epochs=2, device="cpu", precision="fp32"), out, dataset=data)
    return out, data


@pytest.fixture
def own_copy(trained, tmp_path):
    """This test's own copy of the trained run folder, so tests pass in any order."""
    out, data = trained
    return shutil.copytree(out, tmp_path / "run"), data


def _embedded(report_path):
    return report_path.read_text().count("data:image/png;base64,")


def test_train_writes_every_figure_and_embeds_it(trained):
    out, _ = trained
    for name in TRAIN_FIGURES:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 3000, name
    assert _embedded(out / "report.html") == len(TRAIN_FIGURES)
    report = (out / "report.html").read_text()
    for text in ("precision", "Most confused", "test_accuracy", "model: baseline"):
        assert text in report
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["images"] == 200 and len(evaluation["confusion_matrix"]) == 10


def test_redraw_from_files_alone(own_copy):
    out, data = own_copy
    for name in TRAIN_FIGURES:
        (out / name).unlink()
    (out / "report.html").unlink()
    redraw(out, data)
    assert all((out / name).is_file() for name in TRAIN_FIGURES)
    assert _embedded(out / "report.html") == len(TRAIN_FIGURES)


def test_redraw_refuses_mismatched_test_images(own_copy, fashion):
    out, _ = own_copy
    # The full test set's first 200 labels are the same images; a shifted slice is not.
    shifted = fashion.limit(train=400, test=400)
    shifted = type(shifted)(shifted.train, shifted.test.subset(slice(200, 400)), shifted.classes, shifted.source, False)
    redraw(out, shifted)
    assert "not the ones evaluated" in (out / "report.html").read_text()


@pytest.mark.slow
def test_evaluate_report_and_activations_commands(tmp_path, trained, small_idx_dir):
    out, _ = trained
    evaluated = run("evaluate", out / "model.safetensors", "--data", small_idx_dir, "--out", tmp_path / "eval", "--quiet")
    assert "macro avg" in evaluated.stdout and "most confused:" in evaluated.stdout
    figures = ("confusion-matrix.png", "class-scores.png", "montage.png", "correct.png", "incorrect.png",
               "top-losses.png", "feature-maps.png")
    for name in figures:
        assert (tmp_path / "eval" / name).stat().st_size > 3000, name
    assert _embedded(tmp_path / "eval" / "report.html") == len(figures)

    (tmp_path / "eval" / "montage.png").unlink()
    run("report", tmp_path / "eval", "--data", small_idx_dir)
    assert (tmp_path / "eval" / "montage.png").is_file()

    maps = run("activations", out / "model.safetensors", "--images", "0,7,26", "--filter", "1",
               "--data", small_idx_dir, "--out", tmp_path / "act")
    assert re.search(r"conv1\s+\(32, 26, 26\)", maps.stdout) and re.search(r"pool1\s+\(32, 13, 13\)", maps.stdout)
    assert (tmp_path / "act" / "feature-maps.png").stat().st_size > 3000
    assert_one_line_error(run("activations", out / "model.safetensors", "--images", "0,5000", "--data", small_idx_dir,
                              check_code=2), "--images: index 5000 is outside 0-99")
    assert_one_line_error(run("report", tmp_path / "act", check_code=2), "not an fmnist output folder")


def test_lr_find(tmp_path, small_idx_dir):
    result = run("lr-find", "--model", "baseline", "--data", small_idx_dir, "--steps", "60", "--out", tmp_path)
    match = re.search(r"suggested learning rate: ([0-9.e-]+)", result.stdout)
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    # The suggestion is the lowest smoothed loss's rate ÷ 10; the sweep stopped once it diverged.
    assert match and float(match.group(1)) == pytest.approx(saved["suggestion"], rel=1e-2)
    assert saved["suggestion"] <= saved["min_loss_lr"] < 10
    assert len(saved["lrs"]) == len(saved["losses"]) >= 12
    assert saved["lrs"] == sorted(saved["lrs"])
    assert (tmp_path / "lr-find.png").stat().st_size > 3000 and _embedded(tmp_path / "report.html") == 1


@pytest.mark.parametrize("runs", [1, 3])
def test_one_epoch_curves_show_their_points(runs, tmp_path, monkeypatch):
    """A line through one point draws nothing: a one-epoch run (or a cv of one-epoch folds) drew empty
    panels. Every curve with few points is marked, and the epoch axis has whole-number ticks."""
    from fmnist.report import plots

    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.append(fig) or path)
    row = {"epoch": 1, "loss": 0.9, "accuracy": 0.7, "val_loss": 0.8, "val_accuracy": 0.72}
    plots.plot_learning_curves([[row]] * runs, tmp_path / "curves.png")
    if runs == 1:
        plots.plot_training_summary([row], tmp_path / "summary.png")
    for fig in drawn:
        lines = [line for ax in fig.axes for line in ax.get_lines()]
        assert len(lines) == (4 * runs if len(fig.axes) == 2 else 4)
        for line in lines:
            assert len(line.get_xdata()) == 1 and line.get_marker() not in (None, "", "None", " ")
            assert line.get_markersize() >= 5
        for ax in fig.axes:
            assert all(float(tick).is_integer() for tick in ax.get_xticks()), ax.get_xticks()
        plots.plt.close(fig)
