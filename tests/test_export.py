"""ONNX export through the API (`fmnist.export_onnx`): what the file holds, how it was checked, what it refuses.

An untrained baseline model (a convolution, then dense layers) keeps each export to a few seconds; test_predict.py exports trained models and
every architecture, test_promises_cli.py a graph that differs from PyTorch.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import fmnist
from fmnist import models
from fmnist.image_spec import ImageSpec


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    architecture = models.architecture_for(name="baseline")
    folder = tmp_path_factory.mktemp("model")
    return fmnist.save_model(folder / "baseline.safetensors", models.build(architecture), architecture,
                             list(fmnist.FASHION_CLASSES), config={"epochs": 1, "data": folder / "data"},
                             metrics={"test_accuracy": 0.5}, image_spec=ImageSpec(object_size=20))


def test_the_onnx_file_carries_the_model_file_and_matches_pytorch(tmp_path, model_file, fashion):
    images = fashion.test.images[:1001]  # more than one chunk of 1,000
    result = fmnist.export_onnx(model_file, tmp_path / "m.onnx", check_images=images, check_name="1,001 test images")
    assert (result.path, result.checked_images, result.checked_on) == (tmp_path / "m.onnx", 1001, "1,001 test images")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.onnx"]

    # The differences reported are the real ones, on every image.
    session = onnxruntime.InferenceSession(str(result.path))
    onnx_logits, onnx_probabilities = session.run(["logits", "probabilities"], {"pixels": images[:, None]})
    with torch.inference_mode():
        torch_logits = fmnist.load_model(model_file).model(torch.from_numpy(images[:, None])).numpy()
    torch_probabilities = torch.softmax(torch.from_numpy(torch_logits), dim=1).numpy()
    assert result.max_logit_difference == pytest.approx(np.abs(onnx_logits - torch_logits).max(), abs=1e-7)
    assert result.max_probability_difference == pytest.approx(
        np.abs(onnx_probabilities - torch_probabilities).max(), abs=1e-7)
    assert 0 < result.max_logit_difference < 1e-4 and result.same_predictions is True

    proto = onnx.load(str(result.path))
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert {key: value for key, value in metadata.items() if key not in ("architecture", "classes", "config",
                                                                         "metrics", "preprocessing")} == {
        "format": "fmnist.onnx", "format_version": "1", "fmnist_version": fmnist.__version__,
        "input_shape": "[1, 28, 28]", "source": "baseline.safetensors"}
    assert json.loads(metadata["architecture"]) == models.architecture_for(name="baseline")
    assert json.loads(metadata["classes"]) == list(fmnist.FASHION_CLASSES)
    assert json.loads(metadata["config"]) == {"epochs": 1, "data": str(model_file.parent / "data")}
    assert json.loads(metadata["metrics"]) == {"test_accuracy": 0.5}
    assert json.loads(metadata["preprocessing"])["image"]["object_size"] == 20
    assert proto.producer_name == "fmnist"
    assert proto.doc_string == ("fmnist model baseline: input pixels uint8 (N, 1, 28, 28) raw pixels; "
                                "outputs logits and probabilities (N, 10)")


def test_without_images_it_checks_1000_random_ones(tmp_path, model_file):
    # A ModelFile made in memory: no file name, a config that is not JSON yet.
    loaded = dataclasses.replace(fmnist.load_model(model_file), path=None, config={"data": tmp_path})
    result = fmnist.export_onnx(loaded, tmp_path / "m.onnx", opset=21)  # not the exporter's default (20)
    assert (result.checked_images, result.checked_on, result.same_predictions) == (1000, "1,000 random images", True)
    proto = onnx.load(str(result.path))
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert metadata["source"] == "" and json.loads(metadata["config"]) == {"data": str(tmp_path)}
    assert [(entry.domain, entry.version) for entry in proto.opset_import if entry.domain == ""] == [("", 21)]


class DataDependent(torch.nn.Module):
    """Python control flow on the pixel values: torch.export cannot trace it."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, pixels):
        return self.inner(pixels) if pixels.float().sum() > 0 else -self.inner(pixels)


def test_a_model_the_exporter_cannot_handle_is_one_line_and_writes_nothing(tmp_path, model_file):
    loaded = fmnist.load_model(model_file)
    for path, named in ((model_file, str(model_file)), (None, "model")):
        broken = dataclasses.replace(loaded, model=DataDependent(loaded.model), path=path)
        with pytest.raises(fmnist.FmnistError) as caught:
            fmnist.export_onnx(broken, tmp_path / "m.onnx")
        message = str(caught.value)
        assert message.startswith(f"{named}: ONNX export failed (Failed to export the model with torch.export")
        assert "\n" not in message and message.endswith(")")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_packages_are_named(tmp_path, model_file, monkeypatch):
    for package in ("onnxscript", "onnxruntime"):
        monkeypatch.setitem(sys.modules, package, None)  # `import` raises ImportError, as when not installed
    with pytest.raises(fmnist.FmnistError) as caught:
        fmnist.export_onnx(model_file, tmp_path / "m.onnx")
    assert str(caught.value) == "ONNX export needs onnxscript, onnxruntime: pip install 'fmnist[onnx]'"
    assert list(tmp_path.iterdir()) == []


def test_the_graph_names_its_input_and_batch_and_the_metadata_is_canonical_json(tmp_path, model_file, fashion):
    from fmnist.modelfile import preprocessing_record

    loaded = fmnist.load_model(model_file)
    unsorted = dataclasses.replace(loaded, config={"seed": 3, "epochs": 1}, metrics={"val_loss": 0.5, "test_loss": 0.4},
                                   architecture={key: loaded.architecture[key] for key in sorted(loaded.architecture, reverse=True)})
    result = fmnist.export_onnx(unsorted, tmp_path / "m.onnx", check_images=fashion.test.images[:20])
    assert result.checked_on == ""  # images given without a name
    session = onnxruntime.InferenceSession(str(result.path))
    (pixels,) = session.get_inputs()
    assert (pixels.name, pixels.type, pixels.shape) == ("pixels", "tensor(uint8)", ["batch", 1, 28, 28])
    metadata = {entry.key: entry.value for entry in onnx.load(str(result.path)).metadata_props}
    for key in ("architecture", "preprocessing", "config", "metrics"):  # the same bytes for the same model
        assert metadata[key] == json.dumps(json.loads(metadata[key]), sort_keys=True), key
    assert json.loads(metadata["preprocessing"]) == preprocessing_record(ImageSpec(object_size=20), onnx=True)
    assert json.loads(metadata["preprocessing"]) != preprocessing_record(ImageSpec(object_size=20), onnx=False)


def _scaled(model_file, factor: float):
    loaded = fmnist.load_model(model_file)
    model = models.build(loaded.architecture)
    model.load_state_dict(loaded.model.state_dict())
    with torch.no_grad():
        last = [module for module in model.modules() if isinstance(module, torch.nn.Linear)][-1]
        last.weight.mul_(factor)
    return dataclasses.replace(loaded, model=model.eval())


def test_a_model_with_non_finite_weights_or_outputs_is_refused_and_nothing_is_written(tmp_path, model_file):
    nan = _scaled(model_file, float("nan"))
    for path, named in ((model_file, str(model_file)), (None, "model")):
        with pytest.raises(fmnist.FmnistError) as caught:
            fmnist.export_onnx(dataclasses.replace(nan, path=path, finite=False), tmp_path / "m.onnx")
        assert str(caught.value) == f"{named}: the model's weights are not finite (NaN/inf); nothing was exported"
    saved = fmnist.save_model(tmp_path.parent / f"{tmp_path.name}-nan.safetensors", nan.model, nan.architecture,
                              list(nan.classes))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # by path: refused with its one line, never warned about first
        with pytest.raises(fmnist.FmnistError, match="the model's weights are not finite"):
            fmnist.export_onnx(saved, tmp_path / "m.onnx")
    huge = dataclasses.replace(_scaled(model_file, 1e38), finite=True)  # finite weights, infinite logits
    with pytest.raises(fmnist.FmnistError) as caught:
        fmnist.export_onnx(huge, tmp_path / "m.onnx")
    assert str(caught.value) == (f"{tmp_path / 'm.onnx'}: the model's outputs are not finite (NaN/inf) on "
                                 "1,000 random images; nothing was written")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("message, shown", [("", "RuntimeError"), ("first line\nsecond line", "first line")])
def test_an_exporter_failure_shows_its_first_line(tmp_path, model_file, monkeypatch, message, shown):
    def failing(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(torch.onnx, "export", failing)
    with pytest.raises(fmnist.FmnistError) as caught:
        fmnist.export_onnx(model_file, tmp_path / "m.onnx")
    assert str(caught.value) == f"{model_file}: ONNX export failed ({shown})"
