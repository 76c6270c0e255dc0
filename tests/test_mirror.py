"""`predict --mirror`: prepared photos predicted from the mean of their and their mirror image's logits;
dataset-like inputs exactly as they are; `auto` only for models trained with flips and without flip TTA."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fmnist
from fmnist import images, models
from fmnist.errors import FmnistError
from fmnist.inference import load_predictor, softmax
from fmnist.modelfile import save_model


def untrained(path: Path, name: str, augment: str, classes) -> Path:
    """A model file with seeded random weights and a training config saying `augment`: mirroring
    is arithmetic on logits, so it needs a model whose logits differ for an image and its mirror,
    not a good one."""
    architecture = models.architecture_for(name, num_classes=len(classes))
    torch.manual_seed(0)
    model = models.build(architecture).eval()
    return save_model(path, model, architecture, classes, config={"model": name, "augment": augment})


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory, fashion):
    return untrained(tmp_path_factory.mktemp("mirror") / "plain.safetensors", "baseline", "none", fashion.classes)


@pytest.fixture(scope="module")
def flip_model(tmp_path_factory, fashion):
    return untrained(tmp_path_factory.mktemp("mirror") / "flip.safetensors", "baseline", "flip+crop", fashion.classes)


def photo(image: np.ndarray) -> bytes:
    """A dark garment on a light, wide, JPEG backdrop: prepared (cropped, fitted), never passthrough."""
    big = Image.fromarray(255 - image).resize((112, 112), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (200, 150), 255)
    canvas.paste(big, (30, 20))
    buffer = io.BytesIO()
    canvas.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def probabilities(record) -> np.ndarray:
    """All class probabilities of a record made with top_k = the number of classes, by class index."""
    out = np.zeros(len(record.top_k))
    for entry in record.top_k:
        out[entry["index"]] = entry["probability"]
    return out


def test_dataset_like_inputs_are_predicted_exactly_as_they_are(tmp_path, flip_model, fashion):
    png = tmp_path / "test1.png"
    Image.fromarray(fashion.test.images[1]).save(png)
    inputs = [fashion.test.images[:5], png]
    predictor = load_predictor(flip_model, device="cpu")  # one auto mirrors photos for
    results = {mode: fmnist.predict(predictor, inputs, top_k=10, mirror=mode) for mode in ("on", "auto", "off")}
    assert results["off"][5].input["passthrough"]
    for mode, records in results.items():
        assert not any(record.mirrored for record in records), mode
        assert [r.top_k for r in records] == [r.top_k for r in results["off"]], mode  # exact, every probability


def test_mirror_on_averages_the_logits_of_a_photo_and_its_mirror(flip_model, fashion):
    shots = [photo(fashion.test.images[i]) for i in (0, 9)]  # an ankle boot and a sneaker
    predictor = load_predictor(flip_model, device="cpu")
    pixels = np.stack([images.load(shot).pixels for shot in shots])  # (2, 28, 28), what the model sees
    logits, mirrored = predictor.logits(pixels), predictor.logits(np.ascontiguousarray(pixels[:, :, ::-1]))
    assert np.abs(logits - mirrored).max() > 1e-3  # the check below can tell the two apart
    on = fmnist.predict(predictor, shots, top_k=10, mirror="on")
    off = fmnist.predict(predictor, shots, top_k=10, mirror="off")
    for i in range(2):
        assert on[i].mirrored and not off[i].mirrored and not on[i].input["passthrough"]
        np.testing.assert_allclose(probabilities(on[i]), softmax(0.5 * (logits[i:i + 1] + mirrored[i:i + 1]))[0],
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(probabilities(off[i]), softmax(logits[i:i + 1])[0], rtol=0, atol=1e-6)
    auto = fmnist.predict(predictor, shots, top_k=10)  # the default: a model trained with flips, no TTA
    assert [r.top_k for r in auto] == [r.top_k for r in on] and all(r.mirrored for r in auto)
    assert on[0].as_dict()["mirrored"] is True and off[0].as_dict()["mirrored"] is False
    with pytest.raises(FmnistError, match="mirror must be one of auto, on, off, got 'yes'"):
        fmnist.predict(predictor, shots, mirror="yes")


def test_auto_mirrors_only_models_trained_with_flips_and_without_tta(tmp_path, plain_model, flip_model, fashion):
    shot = photo(fashion.test.images[0])
    plain = load_predictor(plain_model)
    assert not plain.trained_with_flips() and not plain.mirror_symmetric()
    assert not fmnist.predict(plain, shot)[0].mirrored  # trained without flips: the mean would hurt it
    assert fmnist.predict(plain, shot, mirror="on")[0].mirrored  # unless asked
    assert fmnist.predict(flip_model, shot)[0].mirrored
    tta = untrained(tmp_path / "fast.safetensors", "fast", "flip", fashion.classes)  # flip TTA inside the model
    assert load_predictor(tta).mirror_symmetric()
    assert not fmnist.predict(tta, shot)[0].mirrored  # the mean would change nothing
