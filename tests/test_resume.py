"""Checkpoints, early stopping and exact `--resume`: fmnist.engine.trainer's Best and Checkpointer and the
resume state of fmnist.engine.resume, on a dense model and 256 real images (a fraction of a second a run).

test_train.py resumes the larger models and every schedule; these check each checkpoint mode, ties, the
resume file's record, every optimizer, and early stopping across an interruption.
"""

from __future__ import annotations

import pytest
import torch
from test_train import _Interrupt, _strip_seconds, _weights

from fmnist.engine.config import TrainConfig
from fmnist.engine.trainer import Best, fit
from fmnist.modelfile import load_model, read_extras
from fmnist.runfolder import checkpoint_name


@pytest.fixture(scope="module")
def tiny(fashion):
    return fashion.limit(train=256, test=100)


def _config(**overrides):
    # lr 0.3 makes validation accuracy swing: seed 2 peaks in epoch 2, seed 3 ties epochs 2 and 3.
    values = {"model": "dense", "epochs": 4, "batch_size": 32, "lr": 0.3, "seed": 2, "device": "cpu", "precision": "fp32"}
    values.update(overrides)
    return TrainConfig(**values)


def _accuracies(result):
    return [row["val_accuracy"] for row in result.history]


def _checkpoints(out):
    return sorted(path.name for path in (out / "checkpoints").iterdir())


def _interrupted_then_resumed(config, out, dataset, after_epoch):
    with pytest.raises(KeyboardInterrupt):
        fit(config, out, dataset=dataset, callbacks=[_Interrupt(after_epoch=after_epoch)])
    return fit(config, out, dataset=dataset, resume=True)


def test_best_counts_only_a_strict_improvement():
    model = torch.nn.Linear(2, 1)
    best = Best()
    improved = []
    for epoch, accuracy in enumerate([0.0, 0.5, 0.5, 0.25, 0.75, 0.5, 0.5], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        improved.append(best.update({"epoch": epoch, "val_accuracy": accuracy}, model))
    assert improved == [True, True, False, False, True, False, False]  # 0.0 beats "no epoch yet"; a tie does not
    assert best.state() == {"val_accuracy": 0.75, "epoch": 5, "path": None, "stale": 2}
    assert torch.equal(best.weights["weight"], torch.full((1, 2), 5.0))  # a copy, not the live weights
    assert Best.from_state(best.state()).state() == best.state()


def test_checkpoint_best_keeps_one_file_and_a_tie_does_not_replace_it(tmp_path, tiny):
    result = fit(_config(seed=3), tmp_path / "run", dataset=tiny)
    accuracies = _accuracies(result)
    assert accuracies[1] == accuracies[2] == max(accuracies)  # epochs 2 and 3 tie for the best
    best = checkpoint_name("dense", 2, accuracies[1])
    assert result.best_checkpoint == tmp_path / "run" / "checkpoints" / best
    assert _checkpoints(tmp_path / "run") == [best, "resume.safetensors"]
    assert load_model(result.best_checkpoint).metrics == _strip_seconds(result.history)[1]


def test_checkpoint_every_writes_each_epoch_and_none_writes_nothing(tmp_path, tiny):
    result = fit(_config(checkpoint="every"), tmp_path / "every", dataset=tiny)
    names = [checkpoint_name("dense", row["epoch"], row["val_accuracy"]) for row in result.history]
    assert _checkpoints(tmp_path / "every") == sorted([*names, "resume.safetensors"])
    for name, row in zip(names, _strip_seconds(result.history)):
        assert load_model(tmp_path / "every" / "checkpoints" / name).metrics == row
    assert result.best_checkpoint.name == names[1]  # epoch 2 is the best
    fit(_config(checkpoint="none"), tmp_path / "none", dataset=tiny)
    assert not (tmp_path / "none" / "checkpoints").exists()


def test_the_resume_file_records_where_the_run_stands(tmp_path, tiny):
    with pytest.raises(KeyboardInterrupt):
        fit(_config(), tmp_path / "run", dataset=tiny, callbacks=[_Interrupt(after_epoch=3)])
    tensors, values = read_extras(tmp_path / "run" / "checkpoints" / "resume.safetensors")
    history = values["history"]
    assert values["epoch"] == 3 and [row["epoch"] for row in history] == [1, 2, 3]
    assert values["best"] == {"val_accuracy": history[1]["val_accuracy"], "epoch": 2, "stale": 1,
                              "path": checkpoint_name("dense", 2, history[1]["val_accuracy"])}
    assert {"rng.torch", "rng.shuffle"} <= set(tensors) and "rng.cuda" not in tensors
    assert any(key.startswith("optim.") and key.endswith(".momentum_buffer") for key in tensors)
    assert values["optimizer"]["param_groups"][0]["momentum"] == 0.9


@pytest.mark.parametrize("optimizer, extra", [
    ("sgd", {"nesterov": True, "weight_decay": 5e-4, "schedule": "cosine"}),
    ("adam", {"lr": 0.01, "augment": "flip+crop+erase"}),  # augmentation draws from the restored global generator
    ("adamw", {"lr": 0.01, "weight_decay": 0.01, "schedule": "linear", "warmup_epochs": 1.0}),
])
def test_every_optimizer_resumes_exactly(tmp_path, tiny, optimizer, extra):
    config = _config(optimizer=optimizer, checkpoint="every", **extra)
    whole = fit(config, tmp_path / "whole", dataset=tiny)
    resumed = _interrupted_then_resumed(config, tmp_path / "cut", tiny, after_epoch=2)
    assert _strip_seconds(resumed.history) == _strip_seconds(whole.history)
    a, b = _weights(whole.model), _weights(resumed.model)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert _checkpoints(tmp_path / "cut") == _checkpoints(tmp_path / "whole")


def test_early_stopping_survives_an_interruption(tmp_path, tiny):
    config = _config(epochs=8, early_stop=3)
    whole = fit(config, tmp_path / "whole", dataset=tiny)
    assert [row["epoch"] for row in whole.history] == [1, 2, 3, 4, 5]  # epoch 2 is the best; 3 more without better
    assert whole.stopped_early and whole.restored_best
    resumed = _interrupted_then_resumed(config, tmp_path / "cut", tiny, after_epoch=3)  # after the best epoch
    assert _strip_seconds(resumed.history) == _strip_seconds(whole.history)
    assert (resumed.stopped_early, resumed.restored_best) == (True, True)
    assert resumed.best_checkpoint.name == whole.best_checkpoint.name
    a, b = _weights(whole.model), _weights(resumed.model)  # the best epoch's weights, restored from its checkpoint
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_checkpoints_record_the_runs_config_and_what_its_images_look_like(tmp_path, tiny):
    import dataclasses
    import json

    from fmnist.data.dataset import Split
    from fmnist.image_spec import measure_spec

    light = dataclasses.replace(tiny, train=Split(255 - tiny.train.images, tiny.train.labels),
                                test=Split(255 - tiny.test.images, tiny.test.labels))  # dark garments on white
    config = _config(epochs=1)
    result = fit(config, tmp_path / "run", dataset=light)
    for path in (result.best_checkpoint, tmp_path / "run" / "checkpoints" / "resume.safetensors"):
        saved = load_model(path)
        assert saved.config == json.loads(json.dumps(config.to_dict(), default=str))
        assert saved.image_spec == measure_spec(light.train.images) and saved.image_spec.background == "light"


def test_a_run_whose_best_checkpoint_vanished_resumes_and_goes_on(tmp_path, tiny):
    config, out = _config(), tmp_path / "run"  # seed 2: epoch 1 is the best so far, epoch 2 beats it
    with pytest.raises(KeyboardInterrupt):
        fit(config, out, dataset=tiny, callbacks=[_Interrupt(after_epoch=1)])
    (best,) = [path for path in (out / "checkpoints").iterdir() if path.name != "resume.safetensors"]
    best.unlink()  # deleted by hand, or lost
    result = fit(config, out, dataset=tiny, resume=True)  # must neither load it nor fail to delete it
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.best_checkpoint.name == checkpoint_name("dense", 2, result.history[1]["val_accuracy"])
    assert _checkpoints(out) == [result.best_checkpoint.name, "resume.safetensors"]


def test_optimizer_state_round_trips_scalars_and_dotted_names():
    from fmnist.engine import resume

    weight, frozen = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight, frozen], lr=0.1, momentum=0.9)
    weight.grad = torch.ones(2)  # `frozen` has no gradient: no momentum buffer
    optimizer.step()
    optimizer.state[weight]["count"] = 7  # a plain number, as some optimizers keep
    optimizer.state[weight]["ema.count"] = 2  # dotted names, of a number and of a tensor
    optimizer.state[weight]["ema.buffer"] = torch.full((2,), 3.0)
    optimizer.state[frozen]["count"] = 1  # a parameter whose state is numbers only
    tensors, values = resume.optimizer_state(optimizer)
    assert values["scalars"] == {"0.count": 7, "0.ema.count": 2, "1.count": 1}
    assert set(tensors) == {"optim.0.momentum_buffer", "optim.0.ema.buffer"}

    others = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))]
    restored = torch.optim.SGD(others, lr=0.5, momentum=0.9)
    resume.restore_optimizer(restored, tensors, values)
    state = restored.state[others[0]]
    assert state["count"] == 7 and state["ema.count"] == 2 and torch.equal(state["ema.buffer"], torch.full((2,), 3.0))
    assert torch.equal(state["momentum_buffer"], optimizer.state[weight]["momentum_buffer"])
    assert dict(restored.state[others[1]]) == {"count": 1}
    assert restored.param_groups[0]["lr"] == 0.1


def test_batch_norm_statistics_are_right_after_a_few_steps(tmp_path, tiny):
    """Keras's momentum (0.99) alone leaves the running statistics near their start after 8 steps, and
    evaluation at chance; averaged over the first steps, they are the data's (engine/batch_norm.py)."""
    spec = {"conv0": {"pad": 1, "channels": 8, "filter": 3, "stride": 1, "pool": 2, "activation": "relu"},
            "fc0": {"neurons": 32, "activation": "relu"}, "fc1": {"neurons": 10, "activation": "softmax"}}
    from fmnist.models.spec import validate_spec

    config = TrainConfig(model=None, spec=validate_spec(spec), epochs=1, batch_size=32, optimizer="adam", device="cpu",
                         precision="fp32", checkpoint="none", seed=1)
    result = fit(config, tmp_path / "run", dataset=tiny)  # 256 images: 8 steps
    model = result.model
    batch_norms = [layer for layer in model.modules() if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm)]
    assert batch_norms and all(layer.momentum == 0.01 or layer.momentum >= 1 / 8 for layer in batch_norms)
    images = torch.from_numpy(tiny.train.images).unsqueeze(1)
    labels = torch.from_numpy(tiny.train.labels)
    with torch.no_grad():
        evaluated = (model.eval()(images).argmax(1) == labels).float().mean().item()
        per_batch = (model.train()(images).argmax(1) == labels).float().mean().item()
    assert evaluated > 0.5 and abs(evaluated - per_batch) < 0.1, (evaluated, per_batch)
