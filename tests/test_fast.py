"""The speed path: on-device augmentation, the linear schedule, precision, recipes, fmnist's own models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmnist import device as device_module
from fmnist import models
from fmnist.engine.augment import Augment
from fmnist.device import resolve_precision
from fmnist.engine.config import ConfigError, TrainConfig, build_config
from fmnist.engine.recipes import FP32_VALUES, RECIPES
from fmnist.engine.schedule import lr_factor
from fmnist.engine.trainer import fit
from fmnist.errors import FmnistError


@pytest.fixture(scope="module")
def batch(fashion):
    return torch.from_numpy(fashion.train.images[:256]).unsqueeze(1)  # (256, 1, 28, 28) uint8


def test_flip_and_translation_move_pixels_exactly(batch):
    torch.manual_seed(0)
    flipped = Augment(flip=True)(batch)
    same = (flipped == batch).flatten(1).all(1)
    mirrored = (flipped == torch.flip(batch, dims=[3])).flatten(1).all(1)
    assert (same | mirrored).all() and 60 < int(mirrored.sum()) < 196  # each image either, about half mirrored
    torch.manual_seed(1)
    moved = Augment(pad=2)(batch)
    for image, original in zip(moved[:64], batch[:64]):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(image[0], _shifted(original[0], dy, dx))]
        assert matches, "every output is the input shifted by at most 2 pixels, black shifted in"
    assert moved.dtype == torch.uint8 and moved.shape == batch.shape


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """image[r, c] = original[r + dy, c + dx], black outside."""
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
    return padded[2 + dy : 2 + dy + 28, 2 + dx : 2 + dx + 28]


def test_augmentation_is_seeded_and_erasing_blanks_a_rectangle(batch):
    augment = Augment.named("flip+crop+erase")
    torch.manual_seed(5)
    first = augment(batch)
    torch.manual_seed(5)
    assert torch.equal(first, augment(batch))
    erased = Augment(erase=1.0)(batch)
    blanked = (erased == 0) & (batch > 0)
    assert blanked.flatten(1).any(1).float().mean() > 0.9  # (almost) every image lost some garment pixels
    assert not ((erased != 0) & (erased != batch)).any()  # erasing only ever sets pixels to black
    assert Augment.named("none").active is False and Augment.named("none")(batch) is batch
    with pytest.raises(FmnistError, match="augment: expected one of"):
        Augment.named("rotate")


def test_the_linear_schedule_warms_up_then_decays_to_zero():
    config = TrainConfig(schedule="linear", epochs=4, warmup_epochs=1.0)
    factors = [lr_factor(config, step, 40, 10) for step in range(40)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and all(a > b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] == pytest.approx(1 / 30)
    short = [lr_factor(TrainConfig(schedule="linear", epochs=4, warmup_epochs=0.05), step, 40, 10) for step in range(40)]
    assert max(short) == 1.0  # a warm-up shorter than one step never overshoots the rate
    with pytest.raises(ConfigError, match="warmup_epochs: must be below epochs .2. for the linear schedule"):
        TrainConfig(schedule="linear", epochs=2, warmup_epochs=2)
    assert TrainConfig(schedule="cosine", epochs=1, warmup_epochs=1.0).epochs == 1  # only linear warms up
    with pytest.raises(ConfigError, match="epochs: must be a positive integer, got 'ten'"):
        TrainConfig(epochs="ten")


def test_precision_choices(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    for native, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
        assert resolve_precision("auto", cpu) is expected
        monkeypatch.setattr(device_module, "cuda_has_native_bf16", lambda device: native)
        assert resolve_precision("auto", cuda) is expected
    monkeypatch.setattr(device_module, "describe_device", lambda device: "cuda (Tesla V100)")
    with pytest.raises(FmnistError, match=r"precision bf16: cuda \(Tesla V100\) has no native bf16"):
        resolve_precision("bf16", cuda)  # emulated bf16 on a pre-Ampere GPU is slower than fp32: refused
    with pytest.raises(ConfigError, match="precision: expected one of auto, fp32, bf16"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize(("cap", "native_if_the_cpu_has_it"), [("AVX2", False), ("avx512_core", False),
                                                                ("AVX512_CORE_BF16", True), ("AVX512_CORE_AMX", True),
                                                                ("ALL", True), ("", True)])
def test_a_onednn_instruction_set_cap_without_bf16_means_no_native_bf16(monkeypatch, tmp_path, cap,
                                                                          native_if_the_cpu_has_it):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f avx512_bf16\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path,
                                                                         *a, **k))
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)  # how benchmarks emulate an AVX2-only CPU (machine.ISAS)
    assert device_module.cpu_has_native_bf16() is native_if_the_cpu_has_it
    assert resolve_precision("auto", torch.device("cpu")) is (torch.bfloat16 if native_if_the_cpu_has_it else None)


def test_recipes_layer_under_config_files_and_options(tmp_path, monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)  # the recipe's own values on any CPU
    fast = build_config(recipe="fast", device="cpu")
    assert fast.recipe == "fast" and fast.model == RECIPES["fast"]["model"]
    assert fast.augment == RECIPES["fast"]["augment"]
    overridden = build_config(recipe="fast", epochs=3)
    assert overridden.epochs == 3 and overridden.batch_size == fast.batch_size
    file = tmp_path / "mine.yaml"
    file.write_text("recipe: fast\nlabel_smoothing: 0.0\n")
    from_file = build_config(file, device="cpu")
    assert from_file.label_smoothing == 0.0 and from_file.model == fast.model
    assert build_config(recipe="fast", model="baseline").model == "baseline"
    with pytest.raises(FmnistError, match="unknown recipe 'slow'; known recipes: fast"):
        build_config(recipe="slow")


@pytest.mark.parametrize("native,given,fp32", [
    (True, {}, False), (False, {}, True),  # --precision auto: what this CPU computes natively decides
    (True, {"precision": "fp32"}, True), (False, {"precision": "bf16"}, False),  # the precision asked for decides
])
def test_the_fast_recipe_takes_its_fp32_values_where_it_trains_in_fp32(monkeypatch, tmp_path, native, given, fp32):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    config = build_config(recipe="fast", device="cpu", **given)
    expected = {**RECIPES["fast"], **(FP32_VALUES["fast"] if fp32 else {})}
    assert FP32_VALUES["fast"]["model"] != RECIPES["fast"]["model"]  # else this test could not tell the sets apart
    assert {key: getattr(config, key) for key in expected if key != "precision"} == \
        {key: value for key, value in expected.items() if key != "precision"}
    assert config.model == ("fast-narrow" if fp32 else "fast")
    assert config.precision == ("fp32" if fp32 else given.get("precision", "auto"))  # config.yaml says what it chose
    # A model of the user's keeps the recipe's own values: the fp32 set is one piece, chosen for its model.
    chosen = build_config(recipe="fast", device="cpu", model="fast", **given)
    assert (chosen.model, chosen.lr) == ("fast", RECIPES["fast"]["lr"])
    # A config file's precision counts as the options' does.
    file = tmp_path / "run.yaml"
    file.write_text(f"recipe: fast\nprecision: {'fp32' if fp32 else 'bf16'}\n")
    assert build_config(file, device="cpu").model == config.model


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_cannot_be_resolved_leaves_the_recipe_as_it_is():
    config = build_config(recipe="fast", device="cuda", precision="fp32")  # the trainer's set-up names the missing GPU
    assert (config.model, config.lr, config.precision) == ("fast", RECIPES["fast"]["lr"], "fp32")


def test_fast_narrow_is_fast_with_fewer_channels():
    narrow, fast = models.create("fast-narrow"), models.create("fast")
    assert [m.out_channels for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)] == [8, 16, 48, 128]
    assert [type(m) for m in narrow.modules()] == [type(m) for m in fast.modules()]
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    assert narrow.eval()(x).shape == (2, 10)


def test_model_options_reach_the_factory_and_are_checked(tmp_path):
    architecture = models.architecture_for(name="fast", options={"tta": False})
    assert architecture == {"name": "fast", "kwargs": {"num_classes": 10, "tta": False}}
    assert models.build(architecture).tta is False
    with pytest.raises(FmnistError, match="model 'baseline' got unknown argument.s. tta"):
        models.architecture_for(name="baseline", options={"tta": False})
    with pytest.raises(FmnistError, match="model options cannot set num_classes"):
        models.architecture_for(name="fast", options={"num_classes": 3})
    file = tmp_path / "fast.yaml"
    file.write_text("recipe: fast\nmodel_options: {tta: false}\n")
    assert build_config(file).model_options == {"tta": False}
    # Options that do not fit the model an option switched to fail when the config is built, naming the file.
    with pytest.raises(ConfigError, match=r"fast.yaml: model_options: model 'baseline' got unknown argument.s. tta"):
        build_config(file, model="baseline")


def test_flip_tta_averages_the_mirror_image_in_eval_only(batch):
    torch.manual_seed(0)
    model = models.create("fast").eval()
    mirrored = torch.flip(batch[:8], dims=[3])
    with torch.no_grad():
        assert torch.allclose(model(batch[:8]), model(mirrored), atol=1e-5)  # symmetric by construction
        plain = model.logits(batch[:8])
        assert torch.allclose(model(batch[:8]), 0.5 * (plain + model.logits(mirrored)), atol=1e-6)
        model.train()
        assert torch.allclose(model(batch[:8]), model.logits(batch[:8]))


def test_feature_maps_of_a_tta_model_are_of_the_image_not_its_mirror(batch):
    from fmnist.engine.features import feature_maps

    torch.manual_seed(0)
    model = models.create("fast").eval()
    images = batch[:3, 0].numpy()
    maps = dict(feature_maps(model, images))
    with torch.no_grad():
        conv = model.stem[0](model.rescale(batch[:3]))  # the first convolution, on the image as given
    assert list(maps)[0] == "stem.0" and np.allclose(maps["stem.0"], conv.numpy(), atol=1e-5)


@pytest.mark.slow
def test_a_short_fast_run_learns_with_augmentation(tmp_path, fashion):
    small = fashion.limit(train=2000, test=500)
    config = build_config(recipe="fast", epochs=3, batch_size=64, device="cpu", checkpoint="none", precision="fp32",
                          seed=3)
    result = fit(config, tmp_path / "run", dataset=small)
    assert result.history[-1]["val_accuracy"] > 0.7  # 2,000 images, 3 epochs: far above chance
    torch.manual_seed(0)  # the run seeds itself: what came before must not matter
    again = fit(config, tmp_path / "again", dataset=small)
    assert [r["val_accuracy"] for r in again.history] == [r["val_accuracy"] for r in result.history]


def test_bf16_autocast_trains_where_asked(tmp_path, fashion):
    """bf16 on any CPU when asked (emulated, so slow, where the CPU lacks AVX512-BF16: kept small)."""
    config = build_config(recipe="fast", epochs=2, batch_size=64, device="cpu", checkpoint="none", precision="bf16",
                          lr=0.02, seed=3)  # the recipe's 0.1 makes 8 steps on 256 images diverge or not by thread count
    result = fit(config, tmp_path / "run", dataset=fashion.limit(train=256, test=100))
    torch.manual_seed(3)  # the weights fit started from: it seeds, then builds the model
    initial = models.build(models.architecture_for(name="fast")).state_dict()
    assert result.precision == "bf16"
    losses = [r["loss"] for r in result.history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses  # it learns
    assert not torch.equal(result.model.state_dict()["head.weight"], initial["head.weight"])  # it learned, in fp32


def test_flips_on_other_classes_get_a_note(tmp_path, fashion):
    from dataclasses import replace

    from fmnist.engine.progress import NullProgress

    class Notes(NullProgress):
        def __init__(self):
            self.notes = []

        def note(self, message):
            self.notes.append(message)

    small = fashion.limit(train=200, test=50)
    digits = replace(small, classes=tuple(str(i) for i in range(10)))
    config = build_config(recipe="fast", epochs=2, batch_size=64, device="cpu", checkpoint="none")
    for data, expected in ((small, False), (digits, True)):
        notes = Notes()
        fit(config, tmp_path / str(expected), dataset=data, progress=notes)
        assert any("mirrored" in note for note in notes.notes) is expected


def test_summary_of_a_tta_model_lists_each_layer_once():
    summary = models.summarize(models.create("fast"))
    names = [row.name for row in summary.rows]
    assert len(names) == len(set(names)) and names[-1] == "head"
    assert sum(row.params for row in summary.rows) == summary.total == 99_152


def test_a_one_epoch_fast_run_from_the_command_line(tmp_path, small_idx_dir):
    """The first smoke run a user tries was refused (warm-up 1 epoch, not below 1): the recipe's
    warm-up keeps its share of the run, 1/8 of the one epoch."""
    import json

    from test_cli import run

    out = tmp_path / "run"
    result = run("train", "--recipe", "fast", "--epochs", "1", "--data", small_idx_dir, "--limit", "512",
                 "--precision", "fp32", "--out", out, "--quiet")
    assert "test accuracy" in result.stdout.lower(), result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and 0 <= metrics["test_accuracy"] <= 1
    from fmnist.modelfile import load_model

    assert load_model(out / "model.safetensors").config["warmup_epochs"] == pytest.approx(
        RECIPES["fast"]["warmup_epochs"] / RECIPES["fast"]["epochs"])
