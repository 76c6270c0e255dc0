"""Hostile `--spec` files: sizes that ask for gigabytes, nesting that ends in a RecursionError, shapes
that are not mappings. Each is refused in one line before anything is built."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from fmnist import models
from fmnist.errors import FmnistError
from fmnist.models import SpecError
from fmnist.limits import MAX_BLOCKS, MAX_SPEC_BYTES
from conftest import assert_nothing_half_written, assert_refused, run_bounded
from strategies import specs

CONV = {"pad": 1, "filter": 3, "stride": 1, "activation": "relu"}
OUT = {"neurons": 10, "activation": "softmax"}


def write(path, spec) -> str:
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return str(path)


def test_a_conv_with_100000_channels(tmp_path):
    """It passed validation, then asked for 10 GB: its activations are 941 MB per image."""
    spec = write(tmp_path / "wide.yaml", {"conv0": {**CONV, "channels": 100_000, "pool": 28}, "fc0": OUT})
    assert_refused(run_bounded("summary", spec), 2, "wide.yaml: spec: the activations of one image take 899 MiB",
                   "more than the limit of 32 MiB", "conv0 alone: 898 MiB")


def test_specs_asking_for_hundreds_of_gigabytes(tmp_path):
    """Two dense layers of a million neurons: a trillion parameters."""
    spec = write(tmp_path / "dense.yaml", {"fc0": {"neurons": 10**6, "activation": "relu"},
                                           "fc1": {"neurons": 10**6, "activation": "relu"}, "fc2": OUT})
    out = tmp_path / "run"
    assert_refused(run_bounded("train", "--spec", spec, "--out", out, "--quiet"), 2,
                   "spec: 1,000,804,003,146 parameters, more than the limit of 50,000,000", "fc1 alone")
    assert not out.exists()
    assert_nothing_half_written(tmp_path)


@pytest.mark.parametrize("name, text", [
    ("flow.yaml", "conv0: " + "[" * 5000 + "]" * 5000),
    ("shallow-flow.yaml", "conv0: " + "[" * 900 + "]" * 900),  # under libyaml's own limit
    ("flow.json", '{"conv0": ' + "[" * 5000 + "]" * 5000 + "}"),
    ("block.yaml", "conv0:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(600)) + "  " * 601 + "x\n"),
    ("mapping.json", '{"conv0": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}"),
    ("unknown-suffix", "[" * 5000 + "]" * 5000),
])
def test_deep_nesting_is_one_line(tmp_path, name, text):
    """A spec nested 5,000 deep printed 2,992 lines of RecursionError. (libyaml's scanner stops flow
    nesting at 1,000 levels, before fmnist's scan of its tokens sees level 33.)"""
    path = write(tmp_path / name, text)
    with pytest.raises(SpecError, match=f"{name}: (nested deeper than 32 levels|not valid YAML .exceeded maximum nesting)"):
        models.load_spec(path)


def test_deep_nesting_through_the_cli(tmp_path):
    path = write(tmp_path / "deep.yaml", "conv0: " + "[" * 5000 + "]" * 5000)
    assert_refused(run_bounded("summary", path), 2, "deep.yaml: not valid YAML (exceeded maximum nesting depth")


@pytest.mark.parametrize("spec, message", [
    ([1, 2], "spec: expected a mapping of blocks"),
    ("just text", "spec: expected a mapping of blocks"),
    (None, "spec: expected a mapping of blocks"),
    ({"conv0": [1, 2], "fc0": OUT}, "conv0: expected a mapping"),
    ({"conv0": None, "fc0": OUT}, "conv0: expected a mapping"),
    ({"fc0": "neurons"}, "fc0: expected a mapping"),
    ({"fc0": {**OUT, "neurons": {"deep": [1]}}}, "fc0: fc0_neurons must be an integer"),
    ({"fc0": {**OUT, "neurons": 10**5000}}, "fc0: fc0_neurons must be at most 2,147,483,647"),
    ({"fc0": {**OUT, "neurons": -10**5000}}, "fc0: fc0_neurons must be positive"),
    ({"conv0": {**CONV, "channels": 4, "pool": 1, "pad": 2**31}, "fc0": OUT}, "conv0_pad must be at most"),
    ({f"fc{i}": {"neurons": 10, "activation": "relu" if i < MAX_BLOCKS else "softmax"} for i in range(MAX_BLOCKS + 1)},
     f"{MAX_BLOCKS + 1} blocks, more than the limit of {MAX_BLOCKS}"),
    ({"conv" + "9" * 5000: CONV, "fc0": OUT}, "unknown top-level key"),
    ({("a", "b"): 1, "fc0": OUT}, "unknown top-level key"),
])
def test_non_mappings_and_huge_numbers(spec, message):
    with pytest.raises(SpecError, match=message) as caught:
        models.validate_spec(spec)
    assert len(str(caught.value)) < 300 and "\n" not in str(caught.value)


def test_huge_numbers_in_files(tmp_path):
    digits = "9" * 5000  # Python refuses to parse an integer of more than 4,300 digits
    with pytest.raises(SpecError, match=r"big\.json: not valid JSON \(Exceeds the limit"):
        models.load_spec(write(tmp_path / "big.json", f'{{"fc0": {{"neurons": {digits}, "activation": "softmax"}}}}'))
    with pytest.raises(SpecError, match=r"big\.yaml: not valid YAML \(Exceeds the limit"):
        models.load_spec(write(tmp_path / "big.yaml", f"fc0: {{neurons: {digits}, activation: softmax}}"))


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path):
    """Nine levels of nine aliases: 387 million strings if anything expanded (or printed) them."""
    levels = ["&l0 [x, x, x, x, x, x, x, x, x]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = f"conv0: {{pad: [{', '.join(levels)}], channels: 4, filter: 3, stride: 1, pool: 2, activation: relu}}\n"
    path = write(tmp_path / "bomb.yaml", text + "fc0: {neurons: 10, activation: softmax}\n")
    with pytest.raises(SpecError, match=r"bomb\.yaml: conv0: conv0_pad must be an integer, got \[\[") as caught:
        models.load_spec(path)
    assert len(str(caught.value)) < 300


def test_a_spec_file_over_the_size_bound(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_SPEC_BYTES // 10 + 1) + yaml.safe_dump({"fc0": OUT}))
    with pytest.raises(SpecError, match=r"big\.yaml: file too large: 1,048,6\d\d bytes \(the limit is 1 MiB\); refused before reading it"):
        models.load_spec(path)


def test_the_bound_leaves_headroom_above_every_shipped_model():
    for name in models.names():
        parameters = models.keras_param_counts(models.skeleton(models.architecture_for(name=name)))[0]
        assert parameters * 10 < models.MAX_PARAMETERS, name
    parameters, activations = models.spec_footprint(models.DEFAULT_SPEC)
    assert (parameters, activations) == (3_467_402, 1_654_904)  # fmnistcnn: the largest
    assert parameters * 10 < models.MAX_PARAMETERS and activations * 10 < models.MAX_ACTIVATION_BYTES


def test_registered_models_are_bounded_too():
    with pytest.raises(FmnistError, match="architecture: 101,541,220 parameters, more than the limit of 50,000,000"):
        models.build({"name": "baseline", "kwargs": {"num_classes": 1_000_000}})
    with pytest.raises(FmnistError, match="num_classes must be a positive integer up to"):
        models.build({"name": "baseline", "kwargs": {"num_classes": 10**30}})


def test_a_spec_file_is_json_when_it_says_so(tmp_path):
    assert models.load_spec(write(tmp_path / "s.json", json.dumps({"fc0": OUT})))["fc0"]["fc0_neurons"] == 10


# --------------------------------------------------------------------------- property-based fuzzing

def _activation_bytes(model) -> int:
    """Every leaf module's output for one image, counted on the meta device (no memory)."""
    import torch

    sizes = []
    hooks = [module.register_forward_hook(lambda module, args, output: sizes.append(output.numel()))
             for module in model.modules() if not list(module.children())]
    model.eval()(torch.zeros(1, 1, 28, 28, dtype=torch.uint8, device="meta"))
    for hook in hooks:
        hook.remove()
    return 4 * sum(sizes)


@pytest.mark.fuzz
@given(specs())
def test_the_spec_builder_gives_a_model_or_an_fmnist_error(spec):
    """Any spec: validate_spec, architecture_for and build (on the meta device) return or raise an
    FmnistError; and what validate_spec counts is what the model built from it holds."""
    try:
        normalised = models.validate_spec(spec)
        parameters, activations = models.spec_footprint(normalised)
        assert parameters <= models.MAX_PARAMETERS and activations <= models.MAX_ACTIVATION_BYTES
        architecture = models.architecture_for(spec=spec, num_classes=models.spec_num_classes(normalised))
        skeleton = models.skeleton(json.loads(json.dumps(architecture)))
    except FmnistError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400, str(exc)
        return
    event("valid spec")
    assert models.keras_param_counts(skeleton)[0] == parameters
    assert _activation_bytes(skeleton) == activations
    if parameters <= 100_000:  # a real build of a small one: the same model
        assert models.keras_param_counts(models.build(architecture))[0] == parameters


@pytest.mark.fuzz
@given(st.one_of(st.text(alphabet="[]{}:,-&*!| \n\"'#abconvf0123456789.", max_size=200),
                 st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=5)),
                              lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3),
                              max_leaves=40).map(json.dumps)),
       st.sampled_from(["spec.yaml", "spec.json", "spec.txt"]))
def test_any_spec_file_gives_a_spec_or_an_fmnist_error(tmp_path_factory, text, name):
    path = tmp_path_factory.getbasetemp() / "fuzz" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    try:
        models.load_spec(path)
    except FmnistError as exc:
        assert "\n" not in str(exc), str(exc)
