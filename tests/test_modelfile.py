"""Model files: self-describing, never unpickled, and refused when damaged."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from fmnist import models
from fmnist.modelfile import CONTENT_KEY, ModelFileError, content_digest, load_model, save_model


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    architecture = models.architecture_for(name="baseline")
    model = models.build(architecture)
    path = save_model(tmp_path / "m.safetensors", model, architecture, [f"c{i}" for i in range(10)],
                      config={"epochs": 1}, metrics={"test_accuracy": 0.5})
    return path, model


def _metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def test_round_trip_rebuilds_the_same_model(saved):
    path, model = saved
    loaded = load_model(path)
    assert loaded.name == "baseline" and loaded.classes[3] == "c3"
    assert loaded.metrics == {"test_accuracy": 0.5} and loaded.config == {"epochs": 1}
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    model.eval()
    assert torch.equal(loaded.model(x), model(x))
    meta = _metadata(path)
    assert json.loads(meta["input_shape"]) == [1, 28, 28] and "preprocessing" in meta and meta["fmnist_version"]
    assert "(uint8 or float)" in json.loads(meta["preprocessing"])["input"]  # what the PyTorch model takes
    assert torch.equal(loaded.model(x.float()), loaded.model(x))


def test_spec_models_round_trip(tmp_path):
    architecture = models.architecture_for(spec=models.DEFAULT_SPEC)
    model = models.build(architecture)
    path = save_model(tmp_path / "s.safetensors", model, architecture, [str(i) for i in range(10)])
    loaded = load_model(path)
    assert loaded.architecture == architecture
    assert models.keras_param_counts(loaded.model)[0] == 3_467_402


def test_truncated_file(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ModelFileError, match=r"m\.safetensors: not a valid safetensors file, or truncated"):
        load_model(path)


def test_garbage_and_empty_files(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"definitely not a model")
    with pytest.raises(ModelFileError, match="not a valid safetensors file"):
        load_model(path)
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty file"):
        load_model(path)
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "missing.safetensors")


def test_tampered_weights_are_refused(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside the last tensor's data
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="altered after saving"):
        load_model(path)


def test_file_without_fmnist_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(ModelFileError, match="not an fmnist model file"):
        load_model(path)


def _rewrite(path, **changes):
    """Edit the metadata and recompute its digest, as a forger can: the checks must not rest on the hash."""
    tensors, meta = load_file(str(path)), _metadata(path)
    meta.update(changes)
    meta[CONTENT_KEY] = content_digest(meta)
    save_file(tensors, str(path), metadata=meta)


def test_wrong_shape_for_the_recorded_architecture(saved):
    path, _ = saved
    _rewrite(path, architecture=json.dumps({"name": "baseline", "kwargs": {"num_classes": 5}}), classes=json.dumps(list("abcde")))
    with pytest.raises(ModelFileError, match=r"tensor 'dense2\.bias' has shape \(10,\), the architecture expects \(5,\)"):
        load_model(path)


def test_weights_of_another_architecture(saved):
    path, _ = saved
    _rewrite(path, architecture=json.dumps({"name": "dense", "kwargs": {}}))
    with pytest.raises(ModelFileError, match="weights do not fit the architecture"):
        load_model(path)


def test_broken_metadata(saved):
    path, _ = saved
    _rewrite(path, classes="[not json")
    with pytest.raises(ModelFileError, match="metadata field 'classes': not valid JSON"):
        load_model(path)
    _rewrite(path, classes=json.dumps([f"c{i}" for i in range(10)]), architecture=json.dumps({"name": "nope"}))
    with pytest.raises(ModelFileError, match="cannot rebuild the architecture"):
        load_model(path)
    _rewrite(path, architecture=json.dumps({"name": "baseline", "kwargs": {}}), config="{broken")
    with pytest.raises(ModelFileError, match="metadata field 'config': not valid JSON"):
        load_model(path)


def test_the_top_level_api_exposes_model_files(saved):
    import fmnist

    path, _ = saved
    assert fmnist.load_model is load_model
    assert fmnist.load_model(path).name == "baseline"
    assert "baseline" in fmnist.models.names()
