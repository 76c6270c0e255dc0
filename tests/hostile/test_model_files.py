"""Hostile model files: a `.safetensors` file whose metadata was edited by hand (the weights' SHA-256
does not cover it), and foreign `.onnx` files with fmnist metadata. Each is built small here and fed
to a real `fmnist` process under the harness's memory cap: one line, exit 2, nothing half-written.

A forger can recompute every digest (SHA-256 proves integrity, not authorship), so `forge` re-hashes
by default: what must stop these files is the structural checks, not the hash.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fmnist import models
from fmnist.data.dataset import FASHION_CLASSES
from fmnist.errors import FmnistError, ModelFileError
from fmnist.modelfile import CONTENT_KEY, _tensors_digest, content_digest, load_model, read_extras, save_model
from conftest import assert_nothing_half_written, assert_refused, run_bounded
from strategies import JUNK, specs

# A small CNN (about 8,000 parameters) as a spec: conv 4 channels → pool → fc 10.
SMALL_SPEC = {"conv0": {"pad": 1, "channels": 4, "filter": 3, "stride": 1, "pool": 2, "activation": "relu"},
              "fc0": {"neurons": 10, "activation": "softmax"}}
DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested 100,000 deep: a RecursionError for a recursive parser


def metadata_of(path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata())


def forge(source, target, rehash: bool = True, **changes) -> str:
    """A copy of model file `source` with metadata fields replaced (None removes one); its digest
    recomputed unless `rehash` is false. Returns the target path as a string."""
    metadata = metadata_of(source)
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value if isinstance(value, str) else json.dumps(value)
    if rehash and CONTENT_KEY in metadata:
        metadata[CONTENT_KEY] = content_digest(metadata)
    save_file(load_file(str(source)), str(target), metadata=metadata)
    return str(target)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    torch.manual_seed(0)
    architecture = models.architecture_for(spec=SMALL_SPEC)
    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    return save_model(path, models.build(architecture), architecture, FASHION_CLASSES, config={"epochs": 1})


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "shirt.png"
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(path)
    return path


def _commands(model, image, data, out):
    """The commands that read a model file, as (name, argv)."""
    return {"predict": ["predict", model, image],
            "evaluate": ["evaluate", model, "--data", data, "--quiet"],
            "export": ["export", model, "--data", data, "--out", out / "exported.onnx", "--quiet"]}


def _refused_everywhere(model, image, small_idx_dir, tmp_path, *fragments, commands=("predict", "evaluate", "export")):
    for name in commands:
        argv = _commands(model, image, small_idx_dir, tmp_path)[name]
        assert_refused(run_bounded(*argv), 2, str(model), *fragments)
    assert not (tmp_path / "exported.onnx").exists()
    assert_nothing_half_written(tmp_path)


# --------------------------------------------------------------------------- the reported failures


def test_a_huge_architecture_is_refused_before_it_is_built(small_model, image, small_idx_dir, tmp_path):
    """Two 200,000-neuron layers: the old code allocated 2.3 GB, then asked for 160 GB."""
    spec = json.loads(metadata_of(small_model)["architecture"])["spec"]
    spec.update(fc0={"fc0_neurons": 200_000, "fc0_activation": "relu"}, fc1={"fc1_neurons": 200_000, "fc1_activation": "relu"},
                fc2={"fc2_neurons": 10, "fc2_activation": "softmax"})
    model = forge(small_model, tmp_path / "huge.safetensors", architecture={"spec": spec, "kwargs": {"num_classes": 10}})
    _refused_everywhere(model, image, small_idx_dir, tmp_path, "parameters", "50,000,000")


def _image_size(model, target, size):
    preprocessing = json.loads(metadata_of(model)["preprocessing"])
    preprocessing["image"].update(size=size, object_size=min(size, 20))
    return forge(model, target, preprocessing=preprocessing)


def test_an_image_size_of_100000(small_model, image, tmp_path):
    """It asked for 10 GB on load."""
    model = _image_size(small_model, tmp_path / "size.safetensors", 100_000)
    assert_refused(run_bounded("predict", model, image), 2, "'preprocessing.image' has size 100000", "28x28")


@pytest.mark.parametrize("size", [32, 2, 27])
def test_an_image_size_the_model_does_not_take(small_model, tmp_path, size):
    """32 and 2 gave a shape-mismatch traceback."""
    model = _image_size(small_model, tmp_path / "size.safetensors", size)
    with pytest.raises(ModelFileError, match=f"'preprocessing.image' has size {size}, but fmnist models take 28x28"):
        load_model(model)


def test_metadata_nested_100000_deep_is_refused_by_every_command(small_model, image, small_idx_dir, tmp_path):
    """A RecursionError in predict, evaluate and export (and ONNX predict: see below)."""
    model = forge(small_model, tmp_path / "deep.safetensors", config=DEEP)
    _refused_everywhere(model, image, small_idx_dir, tmp_path, "'config'", "nested deeper than 32 levels")


@pytest.mark.parametrize("field", ["architecture", "classes", "metrics", "preprocessing", "input_shape", "extra.epoch"])
def test_every_metadata_field_is_bounded(small_model, tmp_path, field):
    model = forge(small_model, tmp_path / "deep.safetensors", **{field: DEEP})
    for read in (load_model, read_extras):
        with pytest.raises(ModelFileError, match=f"metadata field '{field}': nested deeper than 32 levels"):
            read(model)
    model = forge(small_model, tmp_path / "long.safetensors", **{field: json.dumps("x" * 5 * 2**20)})
    with pytest.raises(ModelFileError, match=f"metadata field '{field}': 5,242,882 bytes, more than the limit"):
        load_model(model)


def test_fewer_class_names_than_outputs(small_model, image, small_idx_dir, tmp_path):
    """The old code raised IndexError in predict and evaluate, and export wrote the file."""
    model = forge(small_model, tmp_path / "nine.safetensors", classes=list(FASHION_CLASSES[:9]))
    _refused_everywhere(model, image, small_idx_dir, tmp_path, "9 class names", "10 outputs")


def test_more_class_names_than_outputs(small_model, tmp_path):
    """20 names for 10 outputs was accepted silently."""
    model = forge(small_model, tmp_path / "twenty.safetensors", classes=[f"c{i}" for i in range(20)])
    with pytest.raises(ModelFileError, match="'classes' has 20 class names but the model has 10 outputs"):
        load_model(model)


def test_a_class_name_cannot_forge_output_lines(small_model, image, tmp_path):
    names = list(FASHION_CLASSES)
    names[3] = "Dress\nfmnist: error: forged"
    model = forge(small_model, tmp_path / "newline.safetensors", classes=names)
    line = assert_refused(run_bounded("predict", model, image), 2, "control characters")
    assert "\\n" in line


def test_metadata_edited_without_rehashing_is_refused(small_model, tmp_path):
    model = forge(small_model, tmp_path / "edited.safetensors", rehash=False, metrics={"test_accuracy": 0.999})
    with pytest.raises(ModelFileError, match="metadata do not match their recorded SHA-256"):
        load_model(model)
    with pytest.raises(ModelFileError, match="metadata do not match their recorded SHA-256"):
        read_extras(model)


def test_files_written_before_the_content_digest_still_load(small_model, tmp_path):
    """The rule for old files: no content digest, so the weights digest and the structural checks decide."""
    model = forge(small_model, tmp_path / "old.safetensors", **{CONTENT_KEY: None})
    assert load_model(model).classes == list(FASHION_CLASSES)
    edited = forge(model, tmp_path / "old-edited.safetensors", classes=list(FASHION_CLASSES[:9]))
    with pytest.raises(ModelFileError, match="9 class names"):
        load_model(edited)


def test_every_new_file_records_the_content_digest(small_model):
    metadata = metadata_of(small_model)
    assert metadata[CONTENT_KEY] == content_digest(metadata) and len(metadata[CONTENT_KEY]) == 64


def test_a_header_larger_than_the_bound_is_refused_unread(tmp_path):
    path = tmp_path / "big-header.safetensors"
    path.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    with pytest.raises(ModelFileError, match="header"):
        load_model(path)


# --------------------------------------------------------------------------- non-finite weights and outputs


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory):
    """A model saved as a diverged run saves it: every weight of its first convolution NaN."""
    torch.manual_seed(0)
    architecture = models.architecture_for(spec=SMALL_SPEC)
    model = models.build(architecture)
    with torch.no_grad():
        model.conv0.weight.fill_(float("nan"))
    path = tmp_path_factory.mktemp("nan") / "nan.safetensors"
    return save_model(path, model, architecture, FASHION_CLASSES)


def _warnings(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines() if line.startswith("fmnist: warning: ")]


def test_export_refuses_nan_weights(nan_model, small_idx_dir, tmp_path):
    """The parity check passed NaN ("max |difference| nan"): NaN never compares greater than 1e-4."""
    result = run_bounded("export", nan_model, "--data", small_idx_dir, "--out", tmp_path / "nan.onnx", "--quiet")
    assert_refused(result, 2, str(nan_model), "not finite (NaN/inf)", "nothing was exported")
    assert not (tmp_path / "nan.onnx").exists()
    assert_nothing_half_written(tmp_path)


def test_export_refuses_outputs_that_overflow(small_model, tmp_path):
    """Finite weights whose outputs are not (3e38 overflows float32 in the first convolution)."""
    from fmnist.export import export_onnx

    loaded = load_model(small_model)
    with torch.no_grad():
        loaded.model.conv0.weight.fill_(3e38)
    with pytest.raises(FmnistError, match=r"outputs are not finite \(NaN/inf\) on 64 images; nothing was written"):
        export_onnx(loaded, tmp_path / "inf.onnx", check_images=np.full((64, 28, 28), 255, np.uint8),
                    check_name="64 images")
    assert not (tmp_path / "inf.onnx").exists()
    assert_nothing_half_written(tmp_path)


def test_evaluate_warns_of_nan_weights(nan_model, small_idx_dir):
    """It reported 10 % accuracy with exit 0 and no word."""
    result = run_bounded("evaluate", nan_model, "--data", small_idx_dir, "--quiet")
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr[-2000:]
    assert _warnings(result.stderr) == [f"fmnist: warning: {nan_model}: the model's weights are not finite (NaN/inf): "
                                        "its scores mean nothing"]


def test_predict_warns_once_and_fails_each_image(nan_model, image):
    other = image.with_name("other.png")
    Image.fromarray(np.full((28, 28), 30, np.uint8)).save(other)  # the same file twice is predicted once
    result = run_bounded("predict", nan_model, image, other)
    assert result.returncode == 1 and b"Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(_warnings(result.stderr)) == 1 and "not finite" in _warnings(result.stderr)[0]
    errors = [line for line in result.stderr.decode().splitlines() if line.startswith("fmnist: error: ")]
    assert len(errors) == 2 and all("not finite" in line for line in errors)


def test_the_api_says_so_too(nan_model):
    with pytest.warns(UserWarning, match="not finite"):
        assert not load_model(nan_model).finite


# --------------------------------------------------------------------------- foreign ONNX files


def foreign_onnx(path, channels: int = 1, size: int = 28, outputs: int = 10, output: str = "logits", **metadata):
    """A small valid ONNX graph with fmnist metadata (pixels → float → flatten → MatMul → `output`),
    not written by `fmnist export`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fmnist.modelfile import preprocessing_record

    features = channels * size * size
    initializers = [numpy_helper.from_array(np.linspace(-1e-3, 1e-3, features * outputs, dtype=np.float32)
                                            .reshape(features, outputs), "weights"),
                    numpy_helper.from_array(np.array([-1, features], np.int64), "flat")]
    nodes = [helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["x", "flat"], ["rows"]),
             helper.make_node("MatMul", ["rows", "weights"], [output])]
    graph = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info("pixels", TensorProto.UINT8,
                                                                                ["N", channels, size, size])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", outputs])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    fields = {"format": "fmnist.onnx", "format_version": "1", "classes": json.dumps(list(FASHION_CLASSES)),
              "preprocessing": json.dumps(preprocessing_record())}
    for key, value in {**fields, **metadata}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def test_a_well_formed_foreign_onnx_file_predicts(tmp_path, image):
    result = run_bounded("predict", foreign_onnx(tmp_path / "fine.onnx"), image)
    assert result.returncode == 0 and result.stderr == b"", result.stderr


@pytest.mark.parametrize("kind, fragments", [
    ({"size": 32}, ["one uint8 input 'pixels' of shape (N, 1, 28, 28)", "found shape (N, 1, 32, 32)"]),
    ({"channels": 3}, ["found shape (N, 3, 28, 28)"]),
    ({"output": "scores"}, ["expected a float output 'logits'", "'scores'"]),
    ({"outputs": 9}, ["10 class names", "9 outputs"]),
    ({"classes": DEEP}, ["'classes'", "nested deeper than"]),
    ({"config": DEEP}, ["'config'", "nested deeper than"]),
    ({"size": 32, "preprocessing": json.dumps({"image": {"size": 32, "object_size": 32}})},
     ["'preprocessing.image' has size 32", "28x28"]),
])
def test_foreign_onnx_files_are_refused_in_one_line(tmp_path, image, kind, fragments):
    """A 32x32 or 3-channel input, or no `logits` output, gave an onnxruntime traceback."""
    graph = {key: value for key, value in kind.items() if key in ("channels", "size", "outputs", "output")}
    metadata = {key: value for key, value in kind.items() if key not in graph}
    path = foreign_onnx(tmp_path / "foreign.onnx", **graph, **metadata)
    assert_refused(run_bounded("predict", path, image), 2, str(path), *fragments)


# --------------------------------------------------------------------------- property-based fuzzing

JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=25)
SIZES = st.one_of(st.sampled_from([28, 20, 1, 2, 32, 0, -28, 100_000]), JUNK)
FIELDS = {
    "architecture": st.one_of(
        JSON, st.builds(lambda spec, kwargs: {"spec": spec, "kwargs": kwargs}, specs(),
                        st.dictionaries(st.sampled_from(["num_classes", "in_channels", "x"]), SIZES, max_size=2)),
        st.builds(lambda name, kwargs: {"name": name, "kwargs": kwargs}, st.sampled_from([*models.names(), "nope"]),
                  st.dictionaries(st.sampled_from(["num_classes", "in_channels", "tta", "activation"]), SIZES | JSON,
                                  max_size=2))),
    "classes": st.one_of(st.lists(st.text(max_size=8), min_size=8, max_size=12), JSON),
    "input_shape": st.one_of(st.lists(st.sampled_from([1, 3, 28, 32, 0, -1]), max_size=4), JSON),
    "preprocessing": st.one_of(JSON, st.builds(lambda image: {"image": image}, st.one_of(JSON, st.fixed_dictionaries(
        {}, optional={"size": SIZES, "object_size": SIZES, "background": st.sampled_from(["dark", "light", "grey"]),
                      "tolerance": st.floats(-1, 1), "shape": JSON})))),
    "config": JSON, "metrics": JSON, "extra.epoch": JSON, "extra.history": JSON,
}
RAW = st.one_of(st.text(max_size=20), st.integers(0, 300).map(lambda depth: "[" * depth + "]" * depth),
                st.integers(0, 300).map(lambda depth: '{"a": ' * depth + "1" + "}" * depth),
                st.builds(lambda: json.dumps("x" * (4 * 2**20 + 1))))


def dumps(value) -> str:
    """json.dumps, but an integer of over 4,300 digits (which json refuses to write) as its digits."""
    try:
        return json.dumps(value)
    except ValueError:
        return "9" * 4400


@st.composite
def forged_files(draw, metadata: dict[str, str], tensors: dict):
    """A model file's (metadata, tensors) with fields replaced by structured or raw junk, deleted,
    tensors dropped or reshaped; the digests recomputed (a forger's) or not."""
    metadata, tensors = dict(metadata), dict(tensors)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted({*metadata, *FIELDS})))
        how = draw(st.sampled_from(["structured", "structured", "raw", "delete"]))
        if how == "delete":
            metadata.pop(key, None)
        elif how == "raw" or key not in FIELDS:
            metadata[key] = draw(RAW)
        else:
            metadata[key] = dumps(draw(FIELDS[key]))
    if draw(st.integers(0, 4)) == 0:
        name = draw(st.sampled_from(sorted(tensors)))
        change = draw(st.sampled_from(["drop", "flatten", "half", "nan", "rename"]))
        tensor = tensors.pop(name)
        if change == "flatten":
            tensors[name] = tensor.reshape(-1)
        elif change == "half":
            tensors[name] = tensor.half()
        elif change == "nan":
            tensors[name] = torch.full_like(tensor, float("nan")) if tensor.is_floating_point() else tensor
        elif change == "rename":
            tensors[name + "x"] = tensor
    if draw(st.booleans()):
        metadata["weights_sha256"] = _tensors_digest({k: v for k, v in tensors.items() if not k.startswith("extra.")})
        metadata[CONTENT_KEY] = content_digest(metadata)
    return metadata, tensors


@pytest.fixture(scope="module")
def fuzz_base(small_model, tmp_path_factory):
    return metadata_of(small_model), load_file(str(small_model)), tmp_path_factory.mktemp("fuzz") / "forged.safetensors"


@pytest.mark.fuzz
@given(data=st.data())
def test_any_metadata_gives_a_model_or_an_fmnist_error(fuzz_base, data):
    """load_model and read_extras of a forged file: a model that fits its metadata, or FmnistError."""
    metadata, tensors, path = fuzz_base
    metadata, tensors = data.draw(forged_files(metadata, tensors))
    save_file(tensors, str(path), metadata=metadata)
    try:
        loaded = load_model(path, warn=False)
        read_extras(path)
    except FmnistError as exc:
        assert "Traceback" not in str(exc) and len(str(exc)) < 1000, str(exc)[:2000]
        return
    event("loaded")
    logits = loaded.model(torch.zeros(2, *loaded.input_shape, dtype=torch.uint8))
    assert logits.shape == (2, len(loaded.classes)) and loaded.image_spec.size == 28


@pytest.mark.fuzz
@given(data=st.data())
def test_any_onnx_metadata_gives_a_predictor_or_an_fmnist_error(tmp_path_factory, data):
    """The same for the ONNX runtime: a foreign graph whose metadata fields are fuzzed."""
    from fmnist.inference import OnnxPredictor

    fields = {}
    for key in data.draw(st.lists(st.sampled_from(["classes", "preprocessing", "config", "format"]), max_size=3)):
        fields[key] = data.draw(st.one_of(FIELDS.get(key, JSON).map(dumps), RAW)) if key != "format" else ""
    path = tmp_path_factory.getbasetemp() / "fuzz-onnx.onnx"
    try:
        predictor = OnnxPredictor(foreign_onnx(path, **fields), device="cpu")
    except FmnistError as exc:
        assert len(str(exc)) < 1000, str(exc)[:2000]
        return
    assert predictor.logits(np.zeros((3, 28, 28), np.uint8)).shape == (3, len(predictor.classes))
