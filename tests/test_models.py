"""The model library: every registered model, the spec builder and its errors, the Keras-style summary."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from torch import nn

from fmnist import models
from fmnist.errors import FmnistError
from fmnist.models import DEFAULT_SPEC, SpecError
from fmnist.models.layers import Dropout, Flatten, Rescale, dense, glorot_uniform_, he_normal_, he_uniform_

# (total, trainable) as the write-ups' Keras model.summary() reports them.
KERAS_COUNTS = {
    "baseline": (542_230, 542_230),
    "dense": (101_770, 101_770),
    "conv64x2": (243_786, 243_786),
    "conv3": (241_546, 241_546),
    "conv3-dropout": (241_546, 241_546),
    "minivgg": (1_679_082, 1_677_674),
    "fmnistcnn": (3_467_402, 3_452_874),
}


def _fast_counts(widths: tuple[int, ...]) -> tuple[int, int]:
    """fmnist's own FastNet: bias-free 3x3 convs, BatchNorm (2 trainable + 2 running values per
    channel), a bias-free linear head; as Keras would count them."""
    convs = 9 * widths[0] + sum(9 * a * b for a, b in zip(widths, widths[1:]))
    trainable = convs + 2 * sum(widths) + widths[-1] * 10
    return trainable + 2 * sum(widths), trainable


# fmnist's own models (not in a write-up): (total, trainable), worked out above.
OWN_COUNTS = {"fast": _fast_counts((16, 32, 64, 128)), "fast-wide": _fast_counts((32, 64, 128, 256)),
              "fast-narrow": _fast_counts((8, 16, 48, 128))}

SMALL_SPEC = {
    "conv0": {"pad": 0, "channels": 4, "filter": 3, "stride": 1, "pool": 2, "activation": "elu"},
    "conv1": {"conv1_pad": 1, "conv1_channels": 8, "conv1_filter": 3, "conv1_stride": 2, "conv1_pool": 1,
              "conv1_activation": "leaky_relu"},
    "fc0": {"neurons": 16, "activation": "gelu"},
    "fc1": {"fc1_neurons": 10, "fc1_activation": "softmax"},
    "dropout": 0.2,
}


def pixels(n: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=generator)


def small_spec_params() -> int:
    # conv0: 1→4, 28→26, pool→13; conv1: pad 1, stride 2 → 7; flatten 8*7*7 = 392
    conv = (9 * 4 + 4) + 2 * 4 * 2 + (9 * 4 * 8 + 8) + 2 * 8 * 2  # kernels+biases, BN gamma/beta/mean/var
    fc = 4 * 392 + (392 * 16 + 16) + 4 * 16 + (16 * 10 + 10)
    return conv + fc


def test_registry_holds_every_write_up_model_and_fmnists_own():
    assert models.names() == sorted({**KERAS_COUNTS, **OWN_COUNTS})
    assert OWN_COUNTS["fast"] == (99_152, 98_672) and OWN_COUNTS["fast-narrow"] == (65_512, 65_112)  # README's table
    assert all(models.describe(name) for name in models.names())


@pytest.mark.parametrize("name", models.names())
def test_forward_gives_finite_logits_for_raw_pixels(name):
    torch.manual_seed(0)
    model = models.create(name).eval()
    logits = model(pixels(5))
    assert logits.shape == (5, 10) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    # uint8 and float pixels are the same input: the model does its own scaling.
    assert torch.allclose(model(pixels(5).float()), logits)


@pytest.mark.parametrize("name", models.names())
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = models.create(name)
    labels = torch.arange(4) % 10
    # Train mode, as in training: BatchNorm uses batch statistics, dropout is active.
    model.train()
    nn.functional.cross_entropy(model(pixels(4)), labels).backward()
    for key, param in model.named_parameters():
        assert param.grad is not None, f"{key} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{key} has a non-finite gradient"
    # Non-zero is checked in eval mode: in train mode a conv bias directly followed by BatchNorm
    # (fmnistcnn's conv blocks, as in 002) is cancelled by the batch mean, so its true gradient is 0.
    model.zero_grad()
    model.eval()
    nn.functional.cross_entropy(model(pixels(4)), labels).backward()
    for key, param in model.named_parameters():
        assert param.grad.abs().sum() > 0, f"{key} has an all-zero gradient"


@pytest.mark.parametrize("name", models.names())
def test_keras_parameter_counts_match_the_write_ups(name):
    total, trainable, non_trainable = models.keras_param_counts(models.create(name))
    assert (total, trainable) == {**KERAS_COUNTS, **OWN_COUNTS}[name]
    assert non_trainable == total - trainable


@pytest.mark.parametrize("name", models.names())
def test_same_seed_same_weights(name):
    torch.manual_seed(123)
    first = models.create(name).state_dict()
    torch.manual_seed(123)
    second = models.create(name).state_dict()
    torch.manual_seed(124)
    other = models.create(name).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


@pytest.mark.parametrize("name", models.names())
def test_architecture_round_trips_through_json(name):
    architecture = models.architecture_for(name=name)
    assert architecture == {"name": name, "kwargs": {"num_classes": 10}}
    restored = json.loads(json.dumps(architecture))
    torch.manual_seed(7)
    rebuilt = models.build(restored).state_dict()
    torch.manual_seed(7)
    direct = models.create(name).state_dict()
    assert rebuilt.keys() == direct.keys()
    assert all(torch.equal(rebuilt[key], direct[key]) for key in rebuilt)


@pytest.mark.parametrize("name", models.names())
def test_num_classes_sets_the_output_width(name):
    model = models.create(name, num_classes=3).eval()
    assert model(pixels(2)).shape == (2, 3)


def test_unknown_model_lists_known_names():
    with pytest.raises(FmnistError, match=r"unknown model 'resnet9'; known models: baseline, conv3, conv3-dropout"):
        models.create("resnet9")
    with pytest.raises(FmnistError, match="known models: .*minivgg"):
        models.architecture_for(name="resnet9")


def test_unknown_or_bad_factory_arguments_are_errors():
    with pytest.raises(FmnistError, match=r"unknown argument\(s\) dropout; it accepts: num_classes, in_channels"):
        models.create("baseline", dropout=0.5)
    with pytest.raises(FmnistError, match="model 'fast': activation: expected one of relu, gelu, got 'tanh'"):
        models.create("fast", activation="tanh")
    with pytest.raises(FmnistError, match="num_classes must be a positive integer"):
        models.create("baseline", num_classes="10")


def test_build_rejects_malformed_architectures():
    with pytest.raises(FmnistError, match="exactly one of 'name' or 'spec'"):
        models.build({"kwargs": {}})
    with pytest.raises(FmnistError, match="unknown key"):
        models.build({"name": "baseline", "weights": "x"})
    with pytest.raises(FmnistError, match="exactly one of a model name or a spec"):
        models.architecture_for(name="baseline", spec=DEFAULT_SPEC)
    with pytest.raises(SpecError, match="fc1: fc1_neurons is 10 but the data has 5 classes"):
        models.architecture_for(spec=SMALL_SPEC, num_classes=5)


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        models.register("baseline", "again")(lambda num_classes=10, in_channels=1: nn.Identity())


# ----- layers -------------------------------------------------------------------------------------

def test_rescale_maps_raw_pixels_to_unit_range_without_state():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    out = Rescale()(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out.flatten(), torch.tensor([0.0, 0.2, 1.0]))
    assert Rescale().state_dict() == {}
    assert not any(key.startswith("rescale") for key in models.create("minivgg").state_dict())


def test_keras_initialisers_have_keras_ranges():
    torch.manual_seed(0)
    layer = nn.Linear(600, 400)  # fan_in 600, fan_out 400
    glorot_uniform_(layer)
    assert layer.weight.abs().max() <= math.sqrt(6 / 1000) and layer.weight.abs().max() > 0.95 * math.sqrt(6 / 1000)
    assert torch.count_nonzero(layer.bias) == 0
    he_uniform_(layer)
    assert layer.weight.abs().max() <= math.sqrt(6 / 600) and layer.weight.abs().max() > 0.95 * math.sqrt(6 / 600)
    he_normal_(layer)
    std = math.sqrt(2 / 600)
    assert abs(layer.weight.std().item() - std) < 0.02 * std  # truncation is compensated, as in Keras
    assert layer.weight.abs().max() <= 2 * std / 0.87962566103423978 + 1e-6
    # PyTorch's default bias init is random; Keras's is zero.
    assert torch.count_nonzero(dense(10, 10).bias) == 0


def test_batchnorm_uses_keras_momentum_and_epsilon():
    norms = [m for m in models.create("minivgg").modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 5
    assert all(m.momentum == 0.01 and m.eps == 1e-3 for m in norms)


# ----- spec ---------------------------------------------------------------------------------------

def test_default_spec_is_write_up_002s_model():
    model = models.build_from_spec(DEFAULT_SPEC)
    assert models.keras_param_counts(model) == (3_467_402, 3_452_874, 14_528)
    assert "fc2_act" not in dict(model.named_children())  # the final softmax is left to the loss
    assert isinstance(model.conv0_pool, nn.MaxPool2d) and model.conv0_pool.kernel_size == 1


def test_validate_spec_normalises_to_long_keys_and_json():
    normalised = models.validate_spec(SMALL_SPEC)
    assert list(normalised) == ["conv0", "conv1", "fc0", "fc1", "dropout"]
    assert normalised["conv0"] == {"conv0_pad": 0, "conv0_channels": 4, "conv0_filter": 3, "conv0_stride": 1,
                                   "conv0_pool": 2, "conv0_activation": "elu"}
    assert normalised["fc0"] == {"fc0_neurons": 16, "fc0_activation": "gelu"}
    assert json.loads(json.dumps(normalised)) == normalised
    assert models.validate_spec(normalised) == normalised
    assert models.validate_spec(DEFAULT_SPEC) == DEFAULT_SPEC


@pytest.mark.parametrize("suffix, dump", [(".yaml", yaml.safe_dump), (".json", json.dumps), (".txt", json.dumps)])
def test_spec_files_load_and_build(tmp_path, suffix, dump):
    path = tmp_path / f"small{suffix}"
    path.write_text(dump(SMALL_SPEC))
    spec = models.load_spec(path)
    assert spec == models.validate_spec(SMALL_SPEC)
    model = models.build(json.loads(json.dumps(models.architecture_for(spec=spec))))
    assert models.keras_param_counts(model)[0] == small_spec_params()
    assert model.fc0_drop.p == 0.2 and isinstance(model.conv1_act, nn.LeakyReLU)
    logits = model.eval()(pixels(3))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()


def test_spec_output_layer_must_match_num_classes():
    with pytest.raises(SpecError, match="fc1: fc1_neurons is 10 but the model needs 4 outputs"):
        models.build_from_spec(SMALL_SPEC, num_classes=4)


def _spec_with(**changes):
    spec = json.loads(json.dumps(DEFAULT_SPEC))
    for key, value in changes.items():
        block, _, field = key.partition("__")
        if field:
            spec[block][field] = value
        elif value is None:
            del spec[block]
        else:
            spec[block] = value
    return spec


def _without(block, field):
    spec = json.loads(json.dumps(DEFAULT_SPEC))
    del spec[block][field]
    return spec


def _shrinking():
    spec = {f"conv{i}": {"pad": 0, "channels": 8, "filter": 3, "stride": 1, "pool": 2, "activation": "relu"}
            for i in range(3)}  # 28 → 26 → 13 → 11 → 5 → 3 → 1
    spec["conv3"] = {"pad": 0, "channels": 8, "filter": 3, "stride": 1, "pool": 1, "activation": "relu"}
    spec["fc0"] = {"neurons": 10, "activation": "softmax"}
    return spec


@pytest.mark.parametrize("spec, message", [
    (_spec_with(head={"x": 1}), r"unknown top-level key 'head'"),
    (_spec_with(conv0__conv0_kernel=3), r"conv0: unknown key 'conv0_kernel'"),
    (_spec_with(fc1__fc0_neurons=3), r"fc1: unknown key 'fc0_neurons'"),
    (_without("conv1", "conv1_filter"), r"conv1: missing key 'conv1_filter'"),
    (_spec_with(conv0__conv0_channels=0), r"conv0: conv0_channels must be positive, got 0"),
    (_spec_with(conv2__conv2_stride=-1), r"conv2: conv2_stride must be positive"),
    (_spec_with(conv1__conv1_pool=0), r"conv1: conv1_pool must be positive"),
    (_spec_with(fc0__fc0_neurons=0), r"fc0: fc0_neurons must be positive"),
    (_spec_with(conv0__conv0_pad=-1), r"conv0: conv0_pad must be >= 0, got -1"),
    (_spec_with(conv0__conv0_filter="3"), r"conv0: conv0_filter must be an integer, got '3'"),
    (_spec_with(conv0__conv0_channels=True), r"conv0: conv0_channels must be an integer"),
    (_spec_with(fc0=[512, "relu"]), r"fc0: expected a mapping"),
    (_spec_with(dropout=1.5), r"dropout must be a number in \[0, 1\), got 1.5"),
    (_spec_with(conv1__conv1_activation="swish"), r"conv1: unknown activation 'swish' in conv1_activation"),
    (_spec_with(fc0__fc0_activation="softmax"), r"fc0: fc0_activation 'softmax' is only allowed in the last"),
    (_spec_with(fc2__fc2_activation="relu"), r"fc2: the last fc block outputs logits"),
    (_spec_with(conv1=None), r"conv1 is missing: conv blocks must be numbered conv0..convN without gaps"),
    (_spec_with(fc0=None), r"fc0 is missing: fc blocks must be numbered"),
    ({"conv0": DEFAULT_SPEC["conv0"]}, r"no fc block"),
    (_spec_with(conv0__pad=1), r"conv0: conv0_pad is given twice \(as 'conv0_pad' and 'pad'\)"),
    (_shrinking(), r"conv3: feature map shrinks to 0x0 \(input 1x1, filter 3, pad 0, stride 1\)"),
    (_spec_with(conv2__conv2_pool=15), r"conv2: feature map shrinks to 0x0 at the pool \(input 14x14, pool 15\)"),
    ([1, 2], r"spec: expected a mapping"),
])
def test_invalid_specs_name_the_key(spec, message):
    with pytest.raises(SpecError, match=message):
        models.validate_spec(spec)


def test_load_spec_errors_name_the_file(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("conv0: {pad: 1\nfc0: [")
    with pytest.raises(SpecError, match=r"bad\.yaml: not valid YAML \(.*line \d+"):
        models.load_spec(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"fc0": ')
    with pytest.raises(SpecError, match=r"bad\.json: not valid JSON \(.*line 1"):
        models.load_spec(bad_json)
    invalid = tmp_path / "invalid.yml"
    invalid.write_text(yaml.safe_dump({"fc0": {"neurons": 10}}))
    with pytest.raises(SpecError, match=r"invalid\.yml: fc0: missing key 'fc0_activation'"):
        models.load_spec(invalid)
    with pytest.raises(SpecError, match=r"missing\.yaml: no such file$"):
        models.load_spec(tmp_path / "missing.yaml")


# ----- summary ------------------------------------------------------------------------------------

def test_baseline_summary_is_keras_like():
    model = models.create("baseline").train()
    summary = models.summarize(model)
    text = models.format_summary(summary, "baseline")
    assert 'Model: "baseline"' in text
    assert "Total params: 542,230" in text
    assert "Trainable params: 542,230" in text and "Non-trainable params: 0" in text
    rows = {row.name: row for row in summary.rows}
    assert rows["conv1"].output_shape == (None, 32, 26, 26) and rows["conv1"].params == 320
    assert "(None, 32, 26, 26)" in text and "(None, 5408)" in text
    assert [row.name for row in summary.rows][:3] == ["rescale", "conv1", "conv1_relu"]
    assert model.training  # summarize ran in eval mode and put the mode back


def test_summary_rows_sum_to_total_with_batchnorm_statistics():
    model = models.create("fmnistcnn").eval()
    summary = models.summarize(model)
    assert sum(row.params for row in summary.rows) == summary.total == 3_467_402
    assert (summary.trainable, summary.non_trainable) == (3_452_874, 14_528)
    rows = {row.name: row for row in summary.rows}
    assert rows["fc0_bn"].params == 25_088  # gamma, beta, moving mean, moving variance: 4 x 6272
    assert rows["conv2_pool"].output_shape == (None, 128, 7, 7)
    assert not model.training
    assert "Non-trainable params: 14,528" in models.format_summary(summary, "fmnistcnn")


def test_flatten_sends_its_gradient_back_channels_last_with_the_same_values():
    """The trainer's activations are channels-last; the flattened copy's gradient used to come back in the
    plain layout, and the max-pool before it converted its whole input to match, every step."""
    torch.manual_seed(0)
    weight, source = torch.randn(5, 8 * 6 * 6), torch.randn(4, 8, 6, 6)

    def gradient_reaching_the_layer_before(flatten: nn.Module, memory_format) -> torch.Tensor:
        leaf = source.clone().requires_grad_()
        activations = leaf * 2.0  # stands for the max-pool: not a leaf, so its gradient keeps the layout it gets
        activations = activations.contiguous(memory_format=memory_format)
        flat, seen = flatten(activations), []
        activations.register_hook(seen.append)  # after the layer's own: what the layer before receives
        (flat @ weight.T).square().sum().backward()
        return seen[0]

    ours = gradient_reaching_the_layer_before(Flatten(), torch.channels_last)
    torchs = gradient_reaching_the_layer_before(nn.Flatten(), torch.channels_last)
    assert ours.is_contiguous(memory_format=torch.channels_last) and not ours.is_contiguous()
    assert torchs.is_contiguous() and not torchs.is_contiguous(memory_format=torch.channels_last)  # the copy it cost
    assert torch.equal(ours, torchs)
    assert gradient_reaching_the_layer_before(Flatten(), torch.contiguous_format).is_contiguous()  # left as it is
    # torch.func's transforms (the stacked folds' vmap) run it as before
    grads = torch.func.vmap(torch.func.grad(lambda t: Flatten()(t).square().sum()))(source.to(memory_format=torch.channels_last))
    assert torch.allclose(grads, 2 * source)


@pytest.mark.parametrize("name", ["baseline", "minivgg", "conv3"])
def test_write_up_models_flatten_with_the_layout_keeping_flatten(name):
    model = models.create(name).to(memory_format=torch.channels_last)  # as the trainer keeps it
    flattens = [module for module in model.modules() if isinstance(module, Flatten)]
    assert len(flattens) == 1
    received = []

    def watch(module, inputs, output) -> None:  # after Flatten's own hook: what the layer before it receives
        inputs[0].register_hook(received.append)

    flattens[0].register_forward_hook(watch)
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    model(images).sum().backward()
    assert received[0].dim() == 4 and received[0].is_contiguous(memory_format=torch.channels_last)
    assert not received[0].is_contiguous()


def test_dropout_keeps_one_minus_p_of_the_activations_and_scales_them():
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    y = Dropout(0.25).train()(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005  # binomial std: 0.001
    assert torch.equal(y[kept], torch.full((int(kept.sum()),), 1 / 0.75))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient flows through what was kept, scaled alike


def test_dropout_draws_from_the_seeded_generator_keeps_the_layout_and_is_off_in_eval():
    x = torch.ones(4, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    first = Dropout(0.5).train()(x)
    torch.manual_seed(3)
    again = Dropout(0.5).train()(x)
    following = Dropout(0.5).train()(x)
    assert torch.equal(first, again) and not torch.equal(first, following)
    assert first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous()
    assert Dropout(0.5).eval()(x) is x and Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_dropout_in_bf16_keeps_bf16_and_scales_by_one_over_one_minus_p():
    torch.manual_seed(0)
    y = Dropout(0.25).train()(torch.ones(20_000, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert set(y.unique().tolist()) == {0.0, torch.tensor(1 / 0.75).bfloat16().item()}
    assert abs((y != 0).float().mean().item() - 0.75) < 0.02


@pytest.mark.filterwarnings("error")  # torch warns when an operator has no batching rule and runs model by model
def test_dropout_draws_a_mask_per_stacked_model():
    stacked = torch.func.vmap(Dropout(0.5).train(), randomness="different")(torch.ones(3, 20_000))
    assert not torch.equal(stacked[0], stacked[1]) and not torch.equal(stacked[1], stacked[2])
    assert all(abs((row != 0).float().mean().item() - 0.5) < 0.02 for row in stacked)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_keeps_where_a_float32_draw_of_the_seeded_generator_is_at_least_p(dtype):
    # p = 0.3 is not a bf16 number: a mask drawn in bf16, or by torch's own dropout, keeps other elements
    x = torch.randn(4, 8, 5, 5).to(dtype).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(5)
    got = Dropout(0.3).train()(x)
    torch.manual_seed(5)
    kept = (torch.rand(4, 5, 5, 8) >= 0.3).permute(0, 3, 1, 2)  # drawn in channels-last memory order
    expected = torch.where(kept, x.float() * (1 / 0.7), 0.0).to(dtype)
    assert torch.equal(got, expected)
