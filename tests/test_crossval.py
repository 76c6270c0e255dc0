"""k-fold cross-validation: the same folds for every model, write-up 000's printed lines, cv.json."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from test_cli import run

from fmnist.engine.config import TrainConfig
from fmnist.workflows.crossval import cross_validate, folds_sha256, make_folds, summary_line


def test_folds_are_disjoint_covering_and_seeded(fashion):
    labels = fashion.train.labels[:1000]
    for stratified in (False, True):
        folds = make_folds(labels, 5, seed=1, stratified=stratified)
        validated = np.concatenate([val for _, val in folds])
        assert np.array_equal(np.sort(validated), np.arange(1000))
        for train, val in folds:
            assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 1000
        assert folds_sha256(folds) == folds_sha256(make_folds(labels, 5, seed=1, stratified=stratified))
        assert folds_sha256(folds) != folds_sha256(make_folds(labels, 5, seed=2, stratified=stratified))


def test_summary_line_uses_population_std():
    # Write-up 000's numbers: mean 91.187, std 0.121 (numpy's default ddof=0), n=5.
    scores = [0.912, 0.9105, 0.9128, 0.9116, 0.9125]
    expected_std = np.std(np.asarray(scores) * 100)
    assert summary_line(scores) == f"Accuracy: mean={np.mean(scores) * 100:.3f} std={expected_std:.3f}, n=5"


def test_cross_validate_two_models(tmp_path, fashion):
    data = fashion.limit(train=300, test=100)
    lines = []
    configs = [TrainConfig(model="dense", optimizer="adam", epochs=1, device="cpu"),
               TrainConfig(model="baseline", epochs=1, device="cpu")]
    summary = cross_validate(configs, tmp_path, folds=3, dataset=data, report=lines.append)
    assert [entry["name"] for entry in summary["models"]] == ["dense", "baseline"]
    for entry in summary["models"]:
        assert entry["n"] == 3 and len(entry["histories"]) == 3
        assert entry["mean"] == pytest.approx(np.mean(entry["scores"]))
        for fold in range(1, 4):
            assert (tmp_path / entry["folder"] / f"fold-{fold}" / "history.csv").is_file()
    fold_lines = [line for line in lines if line.startswith(">")]
    assert len(fold_lines) == 6 and all(re.fullmatch(r"> \d+\.\d{3}", line) for line in fold_lines)
    assert sum(line.startswith("Accuracy: mean=") for line in lines) == 2
    saved = json.loads((tmp_path / "cv.json").read_text())
    assert saved["folds_sha256"] == summary["folds_sha256"] and saved["train_images"] == 300


def test_cv_command_prints_results_even_when_quiet(tmp_path, small_idx_dir):
    out = tmp_path / "cv"
    result = run("cv", "--model", "dense", "--optimizer", "adam", "--folds", "3", "--epochs", "1", "--final",
                 "--data", small_idx_dir, "--out", out, "--quiet")
    lines = result.stdout.splitlines()
    assert sum(bool(re.fullmatch(r"> \d+\.\d{3}", line)) for line in lines) == 3
    assert any(re.fullmatch(r"Accuracy: mean=\d+\.\d{3} std=\d+\.\d{3}, n=3", line) for line in lines)
    assert any(line.startswith("final model: test accuracy") for line in lines)
    assert result.stderr == ""
    for name in ("cv.json", "cv-boxplot.png", "cv-learning-curves.png", "report.html", "final/model.safetensors",
                 "final/report.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2
    assert "mean %" in report


@pytest.mark.slow
def test_stratified_cv_of_two_specs_keeps_both(tmp_path, small_idx_dir):
    spec = tmp_path / "tiny.yaml"
    spec.write_text("conv0: {pad: 1, channels: 4, filter: 3, stride: 1, pool: 2, activation: relu}\n"
                    "fc0: {neurons: 10, activation: softmax}\n")
    out = tmp_path / "cv"
    result = run("cv", "--spec", spec, "--spec", spec, "--stratified", "--folds", "2", "--epochs", "1",
                 "--optimizer", "adam", "--data", small_idx_dir, "--out", out, "--quiet")
    assert "1-spec" in result.stdout and "2-spec" in result.stdout
    saved = json.loads((out / "cv.json").read_text())
    assert saved["stratified"] and [e["label"] for e in saved["models"]] == ["1-spec", "2-spec"]
    for name in ("cv-learning-curves-1-spec.png", "cv-learning-curves-2-spec.png", "cv-boxplot.png"):
        assert (out / name).stat().st_size > 3000
    (out / "cv-boxplot.png").unlink()
    run("report", out)
    assert (out / "cv-boxplot.png").is_file() and "2-spec" in (out / "report.html").read_text()


def test_cv_rejects_one_fold(tmp_path):
    from test_cli import assert_one_line_error

    assert_one_line_error(run("cv", "--folds", "1", "--out", tmp_path, check_code=2), "--folds must be at least 2")
