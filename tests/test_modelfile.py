"""Model files: self-describing, never unpickled, and refused when damaged."""

from __future__ import annotations

import json
import re
import resource

import pytest
import torch
from safetensors.torch import load_file, save_file

import fmnist
from fmnist import models
from fmnist.image_spec import FASHION_SPEC, ImageSpec
from fmnist.modelfile import (
    CONTENT_KEY,
    ModelFileError,
    content_digest,
    load_model,
    preprocessing_record,
    read_extras,
    save_model,
)


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


# --- every refusal, word for word, and what a file records (issue 11's mutation run) ---------------------


def _rewrite_without(path, *keys, **changes):
    tensors, meta = load_file(str(path)), _metadata(path)
    meta.update(changes)
    meta = {key: value for key, value in meta.items() if key not in keys}
    if CONTENT_KEY in meta:  # recomputed, as a forger can
        meta[CONTENT_KEY] = content_digest(meta)
    save_file(tensors, str(path), metadata=meta)


def _refusal(path) -> str:
    with pytest.raises(ModelFileError) as caught:
        load_model(path)
    return str(caught.value)


REFUSALS = {
    "not fmnist": ({"format": "safetensors"}, "no fmnist metadata: not an fmnist model file"),
    "future version": ({"format_version": "2"}, "format version '2' is not supported (this fmnist reads 1)"),
    "architecture not an object": ({"architecture": '["baseline"]'}, "metadata field 'architecture' must be a JSON object, got ['baseline']"),
    "one class": ({"classes": '["only"]'}, "metadata 'classes' must be a list of at least two names"),
    "a class that is not a name": ({"classes": json.dumps(["c0", 1, *map(str, range(2, 10))])},
                                   "metadata 'classes' must be a list of at least two names"),
    "colour input": ({"input_shape": "[3, 32, 32]"},
                     "input shape [3, 32, 32] is not supported (fmnist models take [1, 28, 28])"),
    "broken config": ({"config": "{broken"}, ("metadata field 'config': not valid JSON (Expecting property name enclosed in double quotes "
                                          "at line 1, column 2)")),
    "broken classes": ({"classes": "[not json"}, "metadata field 'classes': not valid JSON (Expecting value at line 1, column 2)"),
    "broken metrics": ({"metrics": "{"}, ("metadata field 'metrics': not valid JSON (Expecting property name enclosed in double quotes "
                                          "at line 1, column 2)")),
    "input shape as text": ({"input_shape": '"1x28x28"'}, "metadata field 'input_shape' must be a JSON array, got '1x28x28'"),
    "preprocessing not an object": ({"preprocessing": "[]"}, "metadata field 'preprocessing' must be a JSON object, got []"),
    "fewer classes than outputs": ({"architecture": json.dumps({"name": "baseline", "kwargs": {"num_classes": 5}}),
                                    "classes": json.dumps(list("abcde"))},
                                   "tensor 'dense2.bias' has shape (10,), the architecture expects (5,)"),
    "image spec not an object": ({"preprocessing": '{"image": "big"}'},
                                 "metadata 'preprocessing.image' must be a JSON object"),
    "impossible image spec": ({"preprocessing": '{"image": {"size": 28, "object_size": 99}}'},
                              ("metadata 'preprocessing.image' is invalid "
                              "(image spec: object_size must be an integer in 1..28, got 99)")),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_each_refusal_is_one_line_naming_the_file(saved, case):
    path, _ = saved
    changes, problem = REFUSALS[case]
    _rewrite(path, **changes)
    assert _refusal(path) == f"{path}: {problem}"


def test_missing_fields_are_named_and_optional_ones_have_defaults(saved):
    path, _ = saved
    _rewrite_without(path, "config", "metrics", "preprocessing", "fmnist_version")
    loaded = load_model(path)  # a file from before these were recorded
    assert (loaded.config, loaded.metrics, loaded.image_spec, loaded.version) == ({}, {}, FASHION_SPEC, "")
    _rewrite_without(path, "classes", "input_shape")
    assert _refusal(path) == f"{path}: metadata is missing classes, input_shape"


def test_a_loaded_file_says_what_it_holds(tmp_path):
    spec = ImageSpec(object_size=20, background="light")
    architecture = models.architecture_for(name="dense", num_classes=2)  # two classes are enough
    path = save_model(tmp_path / "m.safetensors", models.build(architecture), architecture, ["no", "yes"],
                      config={"data": tmp_path / "data"}, image_spec=spec)  # a path in the config is saved as text
    loaded = load_model(path)
    assert (loaded.path, loaded.classes, loaded.input_shape, loaded.version) == (path, ["no", "yes"], [1, 28, 28],
                                                                                 fmnist.__version__)
    assert loaded.image_spec == spec and loaded.config == {"data": str(tmp_path / "data")}
    assert json.loads(_metadata(path)["preprocessing"]) == {
        "input": "raw pixel values 0-255 (uint8 or float), shape (N, 1, 28, 28), dark object on light background",
        "inside_model": "x / 255", "image": {"size": 28, "object_size": 20, "background": "light", "tolerance": 0.05}}
    assert json.loads(_metadata(save_model(tmp_path / "d.safetensors", loaded.model, architecture, ["no", "yes"]))[
        "preprocessing"])["input"].endswith("(N, 1, 28, 28), light object on dark background")
    on_meta = load_model(path, device="meta")  # the device asked for, not the CPU it was saved from
    assert {tensor.device.type for tensor in on_meta.model.state_dict().values()} == {"meta"}


def test_weights_reinterpreted_or_reshaped_are_refused(saved):
    """The checksum covers each tensor's dtype and shape, not only its bytes."""
    path, _ = saved
    tensors, meta = load_file(str(path)), _metadata(path)
    save_file({**tensors, "dense2.bias": tensors["dense2.bias"].view(torch.int32)}, str(path), metadata=meta)
    assert _refusal(path) == f"{path}: weights do not match their recorded SHA-256: the file was altered after saving"
    save_file({**tensors, "dense1.weight": tensors["dense1.weight"].reshape(-1)}, str(path), metadata=meta)
    assert _refusal(path) == f"{path}: tensor 'dense1.weight' has shape (540800,), the architecture expects (100, 5408)"


def test_weights_of_another_architecture_are_listed(tmp_path):
    architecture = models.architecture_for(name="conv3")
    path = save_model(tmp_path / "m.safetensors", models.build(architecture), architecture, list("abcdefghij"))
    _rewrite(path, architecture=json.dumps(models.architecture_for(name="fast")))
    assert _refusal(path) == (
        f"{path}: weights do not fit the architecture: missing tensors blocks.0.0.weight, blocks.0.2.bias, "
        "blocks.0.2.num_batches_tracked; unexpected tensors 'conv1.bias', 'conv1.weight', 'conv2.bias'")
    _rewrite(path, architecture=json.dumps({"name": "nope"}))
    assert _refusal(path).startswith(f"{path}: cannot rebuild the architecture (unknown model 'nope'; known models: ")


def test_an_unreadable_file_says_what_the_reader_said(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"definitely not a model")
    assert _refusal(path) == (f"{path}: not a valid safetensors file, or truncated (a header of "
                              "7,310,584,018,064,794,980 bytes announced, more than the file holds)")
    path.write_bytes((12).to_bytes(8, "little") + b"not json :-)")  # a header of the right length
    assert re.fullmatch(rf"{re.escape(str(path))}: not a valid safetensors file, or truncated "
                        r"\(Error while deserializing header: [^()]+\)", _refusal(path))


def test_resume_state_travels_beside_the_weights(saved, tmp_path):
    _, model = saved
    architecture = models.architecture_for(name="baseline")
    momentum = torch.arange(6.0).reshape(2, 3)
    path = save_model(tmp_path / "resume.safetensors", model, architecture, list("abcdefghij"),
                      extra_tensors={"optim.0.momentum_buffer": momentum},
                      extra_metadata={"epoch": 3, "best": {"path": None, "stale": 1}, "out": tmp_path / "run"})
    tensors, values = read_extras(path)
    assert list(tensors) == ["optim.0.momentum_buffer"] and torch.equal(tensors["optim.0.momentum_buffer"], momentum)
    assert values == {"epoch": 3, "best": {"path": None, "stale": 1}, "out": str(tmp_path / "run")}
    assert load_model(path).name == "baseline"  # the extras are not weights
    _rewrite(path, **{"extra.epoch": "three"})
    with pytest.raises(ModelFileError) as caught:
        read_extras(path)
    assert str(caught.value) == f"{path}: metadata field 'extra.epoch': not valid JSON (Expecting value at line 1, column 1)"


def test_a_full_disk_while_saving_is_one_line_naming_the_file(tmp_path):
    architecture = models.architecture_for(name="dense")
    path = tmp_path / "m.safetensors"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # this process ignores SIGXFSZ: writes fail
    try:
        with pytest.raises(ModelFileError) as caught:
            save_model(path, models.build(architecture), architecture, list("abcdefghij"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(caught.value).startswith(f"{path}: cannot write (") and "File too large" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_more_refusals_word_for_word(saved):
    path, _ = saved
    tensors, meta = load_file(str(path)), _metadata(path)
    save_file(tensors, str(path), metadata={**meta, "metrics": '{"test_accuracy": 0.999}'})  # not rehashed
    assert _refusal(path) == f"{path}: metadata do not match their recorded SHA-256: the file was altered after saving"
    names = [f"c{i}" for i in range(10)]
    for changes, problem in (
        ({"classes": '"abcdefghij"'}, "metadata field 'classes' must be a JSON array, got 'abcdefghij'"),
        ({"config": "[1]"}, "metadata field 'config' must be a JSON object, got [1]"),
        ({"metrics": "3"}, "metadata field 'metrics' must be a JSON object, got 3"),
        ({"classes": json.dumps([*names[:3], "Dress\nforged", *names[4:]])},
         "metadata 'classes' holds a name with control characters: 'Dress\\nforged'"),
        ({"classes": json.dumps(names + ["c10"])},
         "metadata 'classes' has 11 class names but the model has 10 outputs: the names do not belong to these weights"),
        ({"preprocessing": json.dumps({"image": {"size": 32, "object_size": 20}})},
         "metadata 'preprocessing.image' has size 32, but fmnist models take 28x28 images"),
    ):
        _rewrite(path, **{"classes": json.dumps(names), "config": "{}", "metrics": "{}", "preprocessing": "{}", **changes})
        assert _refusal(path) == f"{path}: {problem}"


def test_the_recorded_version_is_cut_to_100_characters(saved):
    path, _ = saved
    _rewrite(path, fmnist_version="9" * 150)
    assert load_model(path).version == "9" * 100


def test_the_content_digest_is_of_compact_sorted_json_so_old_files_keep_loading():
    """Every file written so far carries this digest: computed any other way, they would all be refused."""
    import hashlib

    metadata = {"b": "2", "a": "1", CONTENT_KEY: "not hashed"}
    assert content_digest(metadata) == hashlib.sha256(b'{"a":"1","b":"2"}').hexdigest()


def test_the_same_model_gives_the_same_metadata_whatever_the_key_order(tmp_path):
    architecture = models.architecture_for(name="dense", num_classes=2)
    model = models.build(architecture)
    reordered = dict(reversed(list(architecture.items())))
    first = save_model(tmp_path / "a.safetensors", model, architecture, ["no", "yes"],
                       config={"lr": 0.1, "epochs": 2}, metrics={"test_loss": 0.3, "test_accuracy": 0.9})
    second = save_model(tmp_path / "b.safetensors", model, reordered, ["no", "yes"],
                        config={"epochs": 2, "lr": 0.1}, metrics={"test_accuracy": 0.9, "test_loss": 0.3})
    assert list(architecture) != list(reordered)
    first, second = _metadata(first), _metadata(second)
    assert first["architecture"] == second["architecture"] == json.dumps(architecture, sort_keys=True)
    assert first["config"] == second["config"] == '{"epochs": 2, "lr": 0.1}'
    assert first["metrics"] == second["metrics"] == '{"test_accuracy": 0.9, "test_loss": 0.3}'
    assert first["preprocessing"] == json.dumps(preprocessing_record(), sort_keys=True)
    assert list(json.loads(first["preprocessing"])) == ["image", "input", "inside_model"]


def test_the_header_length_is_checked_against_the_file_and_the_bound(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes((5).to_bytes(8, "little") + b"{}  ")  # 5 announced, 4 held
    assert _refusal(path) == (f"{path}: not a valid safetensors file, or truncated (a header of 5 bytes announced, "
                              "more than the file holds)")
    for header in (16 * 2**20, 16 * 2**20 + 1):  # the bound, 16 MiB, and one byte more, in a sparse file
        with open(path, "wb") as handle:
            handle.write(header.to_bytes(8, "little") + b"{")
            handle.truncate(8 + header + 100)
        if header > 16 * 2**20:
            assert _refusal(path) == (f"{path}: a safetensors header of 16,777,217 bytes, more than the limit of "
                                      "16,777,216: not a model file fmnist wrote")
        else:
            assert _refusal(path).startswith(f"{path}: not a valid safetensors file, or truncated (")


def test_non_finite_weights_load_with_one_warning(tmp_path):
    import warnings

    from fmnist.errors import FmnistWarning

    architecture = models.architecture_for(name="dense", num_classes=2)
    model = models.build(architecture)
    fine = save_model(tmp_path / "fine.safetensors", model, architecture, ["no", "yes"])
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = save_model(tmp_path / "nan.safetensors", model, architecture, ["no", "yes"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_model(fine).finite and not load_model(path, warn=False).finite
        assert caught == []
        assert not load_model(path).finite
    assert [(warning.category, str(warning.message)) for warning in caught] == [
        (FmnistWarning, f"{path}: the model's weights are not finite (NaN/inf): its scores mean nothing")]


def test_a_file_past_1_gib_is_refused_from_its_size(tmp_path):
    path = tmp_path / "huge.safetensors"
    for size in (2**30, 2**30 + 1):  # sparse: nothing is written, the size is what counts
        with open(path, "wb") as handle:
            handle.write((16).to_bytes(8, "little"))
            handle.truncate(size)
        refusal = _refusal(path)
        assert (refusal == f"{path}: 1,073,741,825 bytes, more than the limit of 1,073,741,824 for a model file"
                if size > 2**30 else "more than the limit" not in refusal)


def test_the_onnx_preprocessing_record_says_uint8_only():
    assert preprocessing_record(onnx=True) == {
        "input": "raw pixel values 0-255 (uint8), shape (N, 1, 28, 28), light object on dark background",
        "inside_model": "x / 255", "image": FASHION_SPEC.to_dict()}
    light = ImageSpec(background="light")
    assert preprocessing_record(light, onnx=True)["input"] == (
        "raw pixel values 0-255 (uint8), shape (N, 1, 28, 28), dark object on light background")
    assert preprocessing_record(light)["input"] == (
        "raw pixel values 0-255 (uint8 or float), shape (N, 1, 28, 28), dark object on light background")
