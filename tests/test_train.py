"""Short CPU training runs on real data slices: learning, files, determinism, resume, early stop."""

from __future__ import annotations

import json

import pytest
import torch

from fmnist import runfolder
from fmnist.engine.config import ConfigError, TrainConfig, build_config
from fmnist.workflows.train_run import train
from fmnist.engine.schedule import lr_factor
from fmnist.engine.trainer import fit
from fmnist.errors import FmnistError
from fmnist.modelfile import load_model


@pytest.fixture(scope="module")
def small(fashion):
    return fashion.limit(train=600, test=300)


def _config(**overrides):
    # fp32 unless a test asks otherwise: --precision auto is bf16 on some CPUs and fp32 on others, and the
    # accuracy and early-stopping expectations here were set in fp32.
    values = dict(model="baseline", epochs=3, batch_size=32, device="cpu", seed=3, precision="fp32")
    values.update(overrides)
    return TrainConfig(**values)


def _strip_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_loss_falls_and_run_folder_is_complete(tmp_path, small):
    result = train(_config(), tmp_path / "run", dataset=small)
    history = result.history
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"] * 0.8
    assert result.metrics["test_accuracy"] > 0.6  # 600 images, 3 epochs: far above chance (0.1)
    run = tmp_path / "run"
    for name in ("config.yaml", "history.csv", "metrics.json", "model.safetensors", "learning-curves.png",
                 "training-summary.png", "confusion-matrix.png", "classification_report.txt", "predictions.npz"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    saved = runfolder.RunFolder(run).read_history()
    assert [list(row) for row in saved][0] == list(runfolder.HISTORY_COLUMNS)
    assert saved[-1]["val_accuracy"] == pytest.approx(history[-1]["val_accuracy"], abs=1e-6)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val_loss", "val_accuracy", "test_loss", "test_accuracy"} <= set(metrics)
    best = list((run / "checkpoints").glob("baseline-epoch-*-val_acc-*.safetensors"))
    assert len(best) == 1
    epoch = max(history, key=lambda r: r["val_accuracy"])["epoch"]
    assert best[0].name == f"baseline-epoch-{epoch:02d}-val_acc-{max(r['val_accuracy'] for r in history):.4f}.safetensors"
    assert (run / "checkpoints" / "resume.safetensors").is_file()
    assert not list(run.rglob("*.part"))


def test_saved_model_gives_the_in_memory_accuracy(tmp_path, small):
    result = train(_config(epochs=1), tmp_path / "run", dataset=small)
    loaded = load_model(tmp_path / "run" / "model.safetensors")
    assert loaded.classes == list(small.classes)
    assert loaded.metrics["test_accuracy"] == result.metrics["test_accuracy"]
    from fmnist.engine.evaluate import evaluate_model

    again = evaluate_model(loaded.model, small.test.images, small.test.labels, small.classes, "cpu")
    assert again.accuracy == result.metrics["test_accuracy"]
    assert again.loss == pytest.approx(result.metrics["test_loss"], abs=1e-6)


def test_same_seed_same_run_other_seed_other_run(tmp_path, small):
    config = _config(model="conv3-dropout", epochs=2, optimizer="adam", batch_size=64)
    first = fit(config, tmp_path / "a", dataset=small)
    second = fit(config, tmp_path / "b", dataset=small)
    assert _strip_seconds(first.history) == _strip_seconds(second.history)
    a, b = _weights(first.model), _weights(second.model)
    assert all(torch.equal(a[key], b[key]) for key in a)
    other = fit(_config(model="conv3-dropout", epochs=2, optimizer="adam", batch_size=64, seed=4), tmp_path / "c", dataset=small)
    assert _strip_seconds(other.history) != _strip_seconds(first.history)


class _Interrupt:
    def __init__(self, after_epoch):
        self.after_epoch = after_epoch

    def __call__(self, row):
        if row["epoch"] == self.after_epoch:
            raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.parametrize("model,optimizer,schedule,extra", [
    ("conv3-dropout", "adam", "cosine", {}),
    ("minivgg", "sgd", "time-decay", {}),
    # augmentation draws from the global generator, which the resume file restores
    ("fast", "sgd", "linear", {"augment": "flip+crop+erase", "warmup_epochs": 1.0, "precision": "bf16"}),
])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, small, model, optimizer, schedule, extra):
    data = small.limit(train=256, test=100)
    config = _config(model=model, epochs=3, optimizer=optimizer, schedule=schedule, batch_size=64, nesterov=False,
                     **extra)
    whole = fit(config, tmp_path / "whole", dataset=data)
    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "cut", dataset=data, callbacks=[_Interrupt(after_epoch=2)])
    resumed = fit(config, tmp_path / "cut", dataset=data, resume=True)
    assert _strip_seconds(resumed.history) == _strip_seconds(whole.history)
    a, b = _weights(whole.model), _weights(resumed.model)
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_early_stop_restores_the_best_weights(tmp_path, small):
    # A learning rate this high makes validation accuracy collapse after a few epochs.
    config = _config(epochs=8, lr=0.3, early_stop=2, checkpoint="none")
    result = train(config, tmp_path / "run", dataset=small)
    best = max(result.history, key=lambda r: r["val_accuracy"])
    assert result.stopped_early and result.metrics["restored_best_epoch"]
    assert len(result.history) == best["epoch"] + 2
    assert result.metrics["val_accuracy"] == best["val_accuracy"]
    # The validation set is the test set here, so the restored weights reproduce the best epoch's score.
    assert result.metrics["test_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-9)

    # The same run cut to end exactly when patience runs out: not "early", but still restored.
    last = train(_config(epochs=best["epoch"] + 2, lr=0.3, early_stop=2, checkpoint="none"), tmp_path / "last",
                 dataset=small)
    assert not last.stopped_early and last.metrics["restored_best_epoch"]
    assert last.metrics["test_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-9)


def test_resume_from_another_working_directory(tmp_path, small, monkeypatch):
    config = _config(model="conv3", optimizer="adam", epochs=3, batch_size=64, early_stop=5)
    data = small.limit(train=256, test=100)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        fit(config, "run", dataset=data, callbacks=[_Interrupt(after_epoch=2)])
    monkeypatch.chdir(tmp_path.parent)
    resumed = fit(config, tmp_path / "run", dataset=data, resume=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert len(list((tmp_path / "run" / "checkpoints").glob("conv3-epoch-*"))) == 1  # the old best was replaced
    assert resumed.best_checkpoint.is_file()


def test_validation_hold_outs(tmp_path, small):
    split = fit(_config(epochs=1, val="split:0.25"), tmp_path / "a", dataset=small)
    assert split.train_images == 450
    balanced = fit(_config(epochs=1, val="balanced:10"), tmp_path / "b", dataset=small)
    assert balanced.train_images == 500
    with pytest.raises(ConfigError, match="cannot hold out 100"):
        fit(_config(epochs=1, val="balanced:100"), tmp_path / "c", dataset=small.limit(train=200))


def test_schedules():
    config = _config(schedule="time-decay", lr=0.01, epochs=25)
    assert lr_factor(config, 0, 100, 4) == 1.0
    assert lr_factor(config, 1000, 10000, 4) == pytest.approx(1 / (1 + 0.0004 * 1000))
    step = _config(schedule="step", step_epochs=2, step_gamma=0.5)
    assert [lr_factor(step, s, 60, 10) for s in (0, 19, 20, 40)] == [1.0, 1.0, 0.5, 0.25]
    cosine = _config(schedule="cosine")
    assert lr_factor(cosine, 0, 101, 10) == 1.0 and lr_factor(cosine, 100, 101, 10) == pytest.approx(0.0)
    one = _config(schedule="onecycle")
    peak = max(lr_factor(one, s, 100, 10) for s in range(100))
    assert lr_factor(one, 0, 100, 10) == pytest.approx(1 / 25) and peak == pytest.approx(1.0, abs=1e-3)


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="optimizer: expected one of sgd, adam, adamw"):
        _config(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="val: expected test, split:FRACTION"):
        _config(val="split:1.5")
    path = tmp_path / "c.yaml"
    path.write_text("model: baseline\nepochz: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key epochz"):
        build_config(path)
    path.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML"):
        build_config(path)
    path.write_text("epochs: 4\nbatch_size: 64\nlr: 1e-3\n")  # YAML reads 1e-3 as a string
    config = build_config(path, epochs=2)
    assert config.epochs == 2 and config.batch_size == 64 and config.model == "baseline" and config.lr == 0.001
    with pytest.raises(ConfigError, match="nesterov: needs the sgd optimizer"):
        _config(optimizer="adam", nesterov=True)
    with pytest.raises(ConfigError, match="lr: must be a number"):
        build_config(None, lr="fast")


def test_resume_of_a_folder_without_a_run_is_an_error(tmp_path, small):
    with pytest.raises(FmnistError, match=r"nothing to resume \(no config.yaml: not a run folder\)"):
        fit(_config(), tmp_path, dataset=small, resume=True)


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parent.parent / "configs").glob("writeup*.yaml"))  # tune-*: search spaces
    assert len(configs) >= 7
    for path in configs:
        config = build_config(path)
        assert config.model is not None
    minivgg = build_config(Path(__file__).parent.parent / "configs" / "writeup001-minivgg.yaml")
    assert (minivgg.epochs, minivgg.schedule, minivgg.decay) == (25, "time-decay", 0.0004)
