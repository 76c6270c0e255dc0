"""`fmnist models | summary | train | evaluate` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, run

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_models_lists_the_registry():
    out = run("models").stdout
    for name, params in (("baseline", "542,230"), ("dense", "101,770"), ("conv64x2", "243,786"),
                         ("conv3", "241,546"), ("conv3-dropout", "241,546"), ("minivgg", "1,679,082"),
                         ("fmnistcnn", "3,467,402"), ("fast", "99,152"), ("fast-wide", "391,840")):
        assert name in out and params in out, name


def test_summary_of_a_model_and_of_a_spec(tmp_path):
    out = run("summary", "baseline").stdout
    assert "Total params: 542,230" in out and "Trainable params: 542,230" in out
    spec = tmp_path / "cnn.yaml"
    spec.write_text(
        "conv0: {conv0_pad: 1, conv0_channels: 8, conv0_filter: 3, conv0_stride: 1, conv0_pool: 2, conv0_activation: relu}\n"
        "fc0: {fc0_neurons: 10, fc0_activation: softmax}\n"
    )
    out = run("summary", spec).stdout
    assert "Total params:" in out and "(None, 8, 14, 14)" in out
    spec.write_text("conv0: {conv0_pad: 1, conv0_channels: 0, conv0_filter: 3, conv0_stride: 1, conv0_pool: 2, conv0_activation: relu}\n"
                    "fc0: {fc0_neurons: 10, fc0_activation: softmax}\n")
    assert_one_line_error(run("summary", "--spec", spec, check_code=2), "conv0")


@pytest.mark.slow
def test_train_then_evaluate(tmp_path, small_idx_dir):
    out = tmp_path / "run"
    result = run("train", "--data", small_idx_dir, "--epochs", "2", "--batch-size", "32", "--device", "cpu",
                 "--precision", "fp32", "--out", out)
    assert "test accuracy" in result.stdout and str(out) in result.stdout
    # Not a terminal: one plain progress line per epoch on stderr.
    epoch_lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"]
    metrics = json.loads((out / "metrics.json").read_text())
    evaluated = run("evaluate", out / "model.safetensors", "--data", small_idx_dir, "--out", tmp_path / "eval")
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in evaluated.stdout
    for name in ("T-shirt/top", "Ankle boot", "precision", "recall", "f1-score", "macro avg", "weighted avg"):
        assert name in evaluated.stdout
    assert (tmp_path / "eval" / "confusion-matrix.png").stat().st_size > 5000
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    assert not (tmp_path / "eval" / "metrics.json").exists()  # evaluating into a run folder keeps its metrics


def test_train_quiet_prints_results_only(tmp_path, small_idx_dir):
    result = run("train", "--data", small_idx_dir, "--epochs", "1", "--model", "dense", "--optimizer", "adam",
                 "--out", tmp_path / "run", "--quiet", "--checkpoint", "none")
    assert "test accuracy" in result.stdout and result.stderr == ""
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_train_with_a_config_file_and_override(tmp_path, small_idx_dir):
    result = run("train", "--config", CONFIGS / "writeup004-conv3-dropout.yaml", "--epochs", "1", "--data", small_idx_dir,
                 "--out", tmp_path / "run", "--quiet")
    assert "1 epochs" in result.stdout
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "model: conv3-dropout" in config and "val: split:0.2" in config and "seed: 2018" in config


@pytest.mark.slow
def test_train_with_the_fast_recipe_and_an_override(tmp_path, small_idx_dir):
    result = run("train", "--recipe", "fast", "--epochs", "2", "--batch-size", "64", "--data", small_idx_dir,
                 "--device", "cpu", "--precision", "fp32", "--out", tmp_path / "run")
    assert "test accuracy" in result.stdout
    assert "training fast-narrow on 300 images" in result.stderr  # fp32: the recipe's fp32 values (recipes.py)
    config = (tmp_path / "run" / "config.yaml").read_text()
    for line in ("recipe: fast", "model: fast-narrow", "epochs: 2", "batch_size: 64", "augment: flip", "schedule: linear",
                 "nesterov: true", "label_smoothing: 0.1", "precision: fp32"):
        assert line in config.splitlines(), line
    run("train", "--config", tmp_path / "run" / "config.yaml", "--data", small_idx_dir, "--device", "cpu",
                "--out", tmp_path / "again", "--quiet")
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["test_accuracy"] == \
        json.loads((tmp_path / "run" / "metrics.json").read_text())["test_accuracy"]  # the saved config reruns it


@pytest.mark.parametrize("args,fragments", [
    (["train", "--model", "nope", "--epochs", "1"], ["unknown model 'nope'", "baseline"]),
    (["train", "--optimizer", "rmsprop"], ["optimizer: expected one of sgd, adam, adamw"]),
    (["train", "--val", "half"], ["val: expected test"]),
    (["train", "--config", "no-such.yaml"], ["no-such.yaml: no such file"]),
    (["train", "--resume", "no-such-run"], ["not a run folder"]),
    (["evaluate", "no-such.safetensors"], ["no-such.safetensors: no such file"]),
    (["train", "--recipe", "slow"], ["unknown recipe 'slow'", "fast"]),
    (["train", "--augment", "rotate"], ["augment: expected one of none, flip, crop"]),
    (["train", "--precision", "fp16"], ["precision: expected one of auto, fp32, bf16"]),
    (["train", "--schedule", "linear", "--epochs", "2", "--warmup-epochs", "2"], ["warmup_epochs: must be below epochs (2) for the linear schedule"]),
])
def test_bad_training_input_is_one_line_exit_2(args, fragments, tmp_path, small_idx_dir):
    if args[0] == "train" and "--resume" not in args:  # --resume takes no other option
        # A check that failed to fire would start training: keep it small and out of the repository.
        args = [*args, "--data", small_idx_dir, "--limit", "64", "--out", tmp_path / "run"]
    elif args[0] == "evaluate":
        args = [*args, "--data", small_idx_dir]
    assert_one_line_error(run(*args, check_code=2), *fragments)
    assert not (tmp_path / "run").exists()


def test_resume_and_reuse_of_a_run_folder(tmp_path, small_idx_dir):
    out = tmp_path / "run"
    run("train", "--data", small_idx_dir, "--epochs", "1", "--out", out, "--quiet")
    assert_one_line_error(run("train", "--data", small_idx_dir, "--out", out, check_code=2),
                          "already holds a run", "--resume")
    assert_one_line_error(run("train", "--resume", out, "--epochs", "3", check_code=2), "drop --epochs")
    resumed = run("train", "--resume", out, "--quiet")  # the run was complete: it is evaluated again
    assert "test accuracy" in resumed.stdout
    model_bytes = (out / "model.safetensors").read_bytes()
    metrics = (out / "metrics.json").read_text()
    # Evaluating a checkpoint into the run folder leaves the run's model and metrics alone.
    checkpoint = next((out / "checkpoints").glob("baseline-epoch-*.safetensors"))
    run("evaluate", checkpoint, "--data", small_idx_dir, "--out", out, "--quiet")
    assert (out / "model.safetensors").read_bytes() == model_bytes and not (out / "model.safetensors").is_symlink()
    assert (out / "metrics.json").read_text() == metrics


def test_evaluate_refuses_a_truncated_model_file(tmp_path, small_idx_dir):
    out = tmp_path / "run"
    run("train", "--data", small_idx_dir, "--epochs", "1", "--out", out, "--quiet", "--checkpoint", "none")
    model = out / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-64])
    assert_one_line_error(run("evaluate", model, "--data", small_idx_dir, check_code=2), str(model), "truncated")
