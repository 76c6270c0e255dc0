"""Prediction on real-world images (API and CLI), both runtimes, ONNX export, and every bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from forked import fmnist_process
from PIL import Image

import fmnist
from fmnist import images, models
from fmnist.engine.config import TrainConfig
from fmnist.engine.evaluate import predict_logits
from fmnist.engine.trainer import fit
from fmnist.errors import FmnistError, ModelFileError
from fmnist.inference.torch_model import StridedMaxPool2d, inference_copy
from fmnist.inference import OnnxPredictor, TorchPredictor, load_predictor, softmax
from fmnist.modelfile import CONTENT_KEY, content_digest, load_model, save_model

FMNIST = str(Path(sys.executable).parent / "fmnist")


def run(*args, input=None, check_code=0, env=None, prefix=()):
    """`fmnist ARGS` in a process of its own (forked.py), or after `prefix` (a command that runs it) by subprocess."""
    if prefix:
        result = subprocess.run([*prefix, FMNIST, *map(str, args)], capture_output=True, input=input, timeout=300,
                                env=env)
        result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    else:
        result = fmnist_process(*args, input=input, env=env)
    assert result.returncode == check_code, (result.returncode, result.stdout, result.stderr)
    return result


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, fashion):
    """A baseline trained for 2 epochs on 6,000 real training images (about 85 % test accuracy)."""
    out = tmp_path_factory.mktemp("model")
    config = TrainConfig(model="baseline", epochs=2, batch_size=64, device="cpu", seed=5, checkpoint="none")
    result = fit(config, out / "run", dataset=fashion.limit(train=6000, test=500))
    path = out / "model.safetensors"
    save_model(path, result.model, result.architecture, fashion.classes, config=config.to_dict(),
               image_spec=result.image_spec)
    return path


@pytest.fixture(scope="module")
def onnx_path(model_path, fashion):
    result = fmnist.export_onnx(model_path, model_path.with_suffix(".onnx"), check_images=fashion.test.images,
                                check_name="the test images")
    assert result.checked_images == 10_000 and result.same_predictions
    return result.path


def photo_jpeg(image: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone-style photo of a dataset image: enlarged, dark on a light tinted backdrop, margins, JPEG."""
    scale = int(rng.integers(6, 13))
    big = np.asarray(Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC), np.float32)
    backdrop = rng.uniform(210, 250)
    top, bottom, left, right = rng.integers(10, 120, size=4)
    canvas = np.full((28 * scale + top + bottom, 28 * scale + left + right), backdrop, np.float32)
    canvas[top : top + 28 * scale, left : left + 28 * scale] = backdrop * (1 - big / 255.0)
    rgb = np.clip(canvas[..., None] * rng.uniform(0.9, 1.1, size=3) + rng.normal(0, 2, canvas.shape + (3,)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(np.rint(rgb).astype(np.uint8)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the API


def test_a_png_predicts_exactly_what_its_array_predicts(tmp_path, model_path, onnx_path, fashion):
    """Write-up 000's check: test image 1, saved as a PNG, is a Pullover (class 2)."""
    path = tmp_path / "sample_image.png"
    Image.fromarray(fashion.test.images[1]).save(path)
    for model in (model_path, onnx_path):
        from_file, from_array = fmnist.predict(model, [path, fashion.test.images[1:2]], top_k=10)
        assert (from_file.label, from_file.index) == ("Pullover", 2) == (from_array.label, from_array.index)
        file_probabilities = {e["index"]: e["probability"] for e in from_file.top_k}
        array_probabilities = {e["index"]: e["probability"] for e in from_array.top_k}
        assert file_probabilities.keys() == array_probabilities.keys() == set(range(10))
        assert max(abs(file_probabilities[i] - array_probabilities[i]) for i in range(10)) <= 1e-5
        assert from_file.path == str(path) and from_array.path is None
        assert from_file.input["passthrough"] and from_array.input is None


def test_records_match_the_model_on_the_whole_test_set(model_path, fashion):
    loaded = load_model(model_path)
    records = fmnist.predict(loaded, fashion.test.images)
    assert len(records) == 10_000
    logits = predict_logits(loaded.model, __import__("torch").from_numpy(fashion.test.images).unsqueeze(1))
    expected = softmax(logits.numpy())
    assert [r.index for r in records] == expected.argmax(1).tolist()
    assert np.allclose([r.probability for r in records], expected.max(1), atol=1e-5)
    first = records[0].as_dict()
    assert set(first) == {"path", "label", "index", "probability", "top_k", "mirrored"} and not first["mirrored"]
    assert [e["probability"] for e in first["top_k"]] == sorted((e["probability"] for e in first["top_k"]), reverse=True)
    assert first["top_k"][0] == {"label": first["label"], "index": first["index"], "probability": first["probability"]}


def test_photos_are_predicted_almost_as_well_as_the_arrays(model_path, onnx_path, fashion):
    """Dark garments on light, tinted, non-square JPEG backdrops: fmnist's preparation keeps the
    model's accuracy; the write-ups' load_img(grayscale, 28x28)/255 falls to near chance."""
    rng = np.random.default_rng(7)
    chosen = rng.choice(10_000, size=300, replace=False)
    labels = fashion.test.labels[chosen]
    photos = [photo_jpeg(image, rng) for image in fashion.test.images[chosen]]
    predictor = load_predictor(onnx_path)
    array_accuracy = np.mean([r.index for r in fmnist.predict(predictor, fashion.test.images[chosen])] == labels)
    photo_accuracy = np.mean([r.index for r in fmnist.predict(predictor, photos)] == labels)
    naive = np.stack([np.asarray(Image.open(io.BytesIO(p)).convert("L").resize((28, 28))) for p in photos])
    naive_accuracy = np.mean([r.index for r in fmnist.predict(predictor, naive)] == labels)
    assert array_accuracy > 0.75
    assert photo_accuracy >= array_accuracy - 0.05, (photo_accuracy, array_accuracy)
    assert naive_accuracy < 0.4, naive_accuracy
    same = fmnist.predict(model_path, photos[:50])  # the PyTorch runtime prepares and predicts alike
    assert [r.index for r in same] == [r.index for r in fmnist.predict(predictor, photos[:50])]


def test_inputs_of_every_kind(tmp_path, onnx_path, fashion):
    folder = tmp_path / "shop"
    (folder / "tops").mkdir(parents=True)
    for i in (10, 2, 1):
        Image.fromarray(fashion.test.images[i]).save(folder / "tops" / f"item{i}.png")
    (folder / "readme.txt").write_text("not an image, and not picked up by the directory search")
    pil = Image.fromarray(fashion.test.images[3])
    encoded = io.BytesIO()
    pil.save(encoded, format="PNG")
    rgb = np.stack([255 - fashion.test.images[4]] * 3, axis=-1)  # (28, 28, 3): an image to prepare
    records = fmnist.predict(onnx_path, [folder, pil, encoded.getvalue(), fashion.test.images[5], rgb,
                                         fashion.test.images[6:8]])
    expected = fmnist.predict(onnx_path, fashion.test.images[[1, 2, 10, 3, 3, 5, 4, 6, 7]])
    assert [r.path for r in records[:3]] == [str(folder / "tops" / f"item{i}.png") for i in (1, 2, 10)]
    assert [r.index for r in records] == [r.index for r in expected]
    assert records[6].input["inverted"] and records[6].input["mode"] == "RGB"
    single = fmnist.predict(onnx_path, folder / "tops" / "item1.png")  # no list needed for one input
    assert len(single) == 1 and single[0].index == records[0].index


def test_read_only_arrays_and_premultiplied_images(model_path, onnx_path, fashion):
    import warnings

    frozen = fashion.test.images[:50].copy()
    frozen.flags.writeable = False  # as np.load(..., mmap_mode="r") returns them
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns about non-writable arrays; fmnist must not trigger it
        assert [r.index for r in fmnist.predict(model_path, frozen)] == [r.index for r in
                                                                         fmnist.predict(model_path, frozen.copy())]
    image = fashion.test.images[1]
    la = Image.fromarray(np.dstack([255 - image, np.full_like(image, 255)]), mode="LA").convert("La")
    assert fmnist.predict(onnx_path, la)[0].index == 2  # Pullover, premultiplied grey + alpha


def test_bad_api_inputs(onnx_path, fashion, tmp_path):
    with pytest.raises(FmnistError, match=r"uint8 pixel values 0-255, got float32 \(pixels in 0-1\? multiply by 255"):
        fmnist.predict(onnx_path, fashion.test.images[:4].astype(np.float32) / 255)
    with pytest.raises(FmnistError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        fmnist.predict(onnx_path, np.zeros((2, 3, 28, 28), np.uint8))
    with pytest.raises(FmnistError, match="expected paths, PIL images"):
        fmnist.predict(onnx_path, [3.5])
    with pytest.raises(FmnistError, match="expected a path"):
        fmnist.predict(object(), fashion.test.images[:1])
    with pytest.raises(FmnistError, match="top_k must be a positive integer"):
        fmnist.predict(onnx_path, fashion.test.images[:1], top_k=0)
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(fmnist.DataError, match="bad.png: not an image"):
        fmnist.predict(onnx_path, [fashion.test.images[0], tmp_path / "bad.png"])
    records = fmnist.predict(onnx_path, [tmp_path / "bad.png", fashion.test.images[0]], on_error="record")
    assert records[0].error.startswith("not an image") and not records[0].ok
    assert records[0].as_dict() == {"path": str(tmp_path / "bad.png"), "error": records[0].error}
    assert records[1].ok


def test_the_fast_torch_path_equals_the_model_for_every_architecture(fashion):
    import torch

    batch = torch.from_numpy(fashion.test.images[:64]).unsqueeze(1)
    specs = [models.architecture_for(name=name) for name in models.names()]
    specs.append(models.architecture_for(spec=models.DEFAULT_SPEC))
    for architecture in specs:
        torch.manual_seed(0)
        model = models.build(architecture).eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.inference_mode():
            expected = model(batch)
            fast = inference_copy(model, torch.device("cpu"))
            got = fast(batch.contiguous(memory_format=torch.channels_last))
            again = fast(batch.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(got, expected, atol=1e-5), architecture
        assert torch.equal(got, again)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model is untouched
        assert not any(getattr(m, "inplace", False) for m in model.modules())
    class Residual(torch.nn.Module):  # x + f(x): f's in-place ReLU must not write into x
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.ReLU())

        def forward(self, x):
            return x + self.body(x)

    residual = Residual().eval()
    values = torch.randn(2, 3, 4, 4)
    assert torch.equal(inference_copy(residual, torch.device("cpu"), input_size=4)(values.clone()), residual(values))
    pool = StridedMaxPool2d(3)
    odd = torch.randn(4, 5, 11, 13).contiguous(memory_format=torch.channels_last)
    assert torch.equal(pool(odd), torch.nn.functional.max_pool2d(odd, 3))  # floor for sizes not divisible by k


# --------------------------------------------------------------------------- ONNX


def test_onnx_matches_pytorch_on_the_test_set_at_any_batch_size(model_path, onnx_path, fashion):
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    assert [(i.name, i.type, i.shape[1:]) for i in inputs] == [("pixels", "tensor(uint8)", [1, 28, 28])]
    assert isinstance(inputs[0].shape[0], str)  # a dynamic batch axis
    loaded = load_model(model_path)
    pixels = fashion.test.images[:, None]
    logits, probabilities = session.run(["logits", "probabilities"], {"pixels": pixels})
    with torch.inference_mode():
        expected = loaded.model(torch.from_numpy(pixels)).numpy()
    assert np.abs(logits - expected).max() <= 1e-4
    assert np.abs(probabilities - softmax(expected)).max() <= 1e-4
    for size in (1, 3, 257):
        assert np.abs(session.run(["logits"], {"pixels": pixels[:size]})[0] - expected[:size]).max() <= 1e-4
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["format"] == "fmnist.onnx"
    assert json.loads(metadata["classes"]) == list(fashion.classes)
    assert json.loads(metadata["preprocessing"])["image"] == images.FASHION_SPEC.to_dict()
    # the graph takes uint8 only, and its metadata says so (the PyTorch model also takes floats)
    assert json.loads(metadata["preprocessing"])["input"].startswith("raw pixel values 0-255 (uint8), ")
    predictor = OnnxPredictor(onnx_path)
    assert predictor.classes == list(fashion.classes) and predictor.image_spec == images.FASHION_SPEC


@pytest.mark.slow
def test_every_architecture_exports(tmp_path, fashion):
    import torch

    check = fashion.test.images[:256]
    for architecture in ([models.architecture_for(name=name) for name in models.names()]
                         + [models.architecture_for(spec=models.DEFAULT_SPEC)]):
        torch.manual_seed(1)
        model = models.build(architecture).eval()
        name = architecture.get("name", "spec")
        path = save_model(tmp_path / f"{name}.safetensors", model, architecture, fashion.classes)
        result = fmnist.export_onnx(path, tmp_path / f"{name}.onnx", check_images=check, check_name="256 images")
        assert result.max_logit_difference <= 1e-4 and result.max_probability_difference <= 1e-4, name
        torch_records = fmnist.predict(TorchPredictor(load_model(path)), check[:32], top_k=10)
        onnx_records = fmnist.predict(result.path, check[:32], top_k=10)
        for a, b in zip(torch_records, onnx_records):
            assert abs(a.probability - b.probability) <= 1e-4, name


def test_bad_onnx_files(tmp_path, onnx_path):
    import onnx

    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07 definitely not a protobuf graph" * 10)
    with pytest.raises(ModelFileError, match="garbage.onnx: not a valid ONNX model"):
        load_predictor(tmp_path / "garbage.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty.onnx: empty file"):
        load_predictor(tmp_path / "empty.onnx")
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ModelFileError, match="foreign.onnx: no fmnist metadata"):
        load_predictor(tmp_path / "foreign.onnx")


# --------------------------------------------------------------------------- the CLI


def test_cli_predicts_files_and_directories(tmp_path, onnx_path, model_path, fashion):
    for i in range(4):
        Image.fromarray(fashion.test.images[i]).save(tmp_path / f"test{i}.png")
    expected = fmnist.predict(onnx_path, fashion.test.images[:4])
    result = run("predict", onnx_path, tmp_path, "--top-k", "2")
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and result.stderr == ""
    for line, record, i in zip(lines, expected, range(4)):
        head = f"{tmp_path / f'test{i}.png'}: {record.label} ({record.index}) {record.probability:.1%}"
        assert line.startswith(head + "  top-2: " + f"{record.label} {record.probability:.1%}, "), line
    torch_lines = run("predict", model_path, tmp_path / "test1.png", "--top-k", "1").stdout.splitlines()
    assert len(torch_lines) == 1 and torch_lines[0].startswith(f"{tmp_path / 'test1.png'}: Pullover (2) ")
    assert "top-" not in torch_lines[0]


def test_cli_json_and_stdin(onnx_path, fashion):
    encoded = io.BytesIO()
    Image.fromarray(255 - fashion.test.images[1]).save(encoded, format="PNG")  # dark on white
    result = run("predict", onnx_path, "-", "--json", input=encoded.getvalue())
    records = json.loads(result.stdout)
    assert len(records) == 1
    record = records[0]
    assert set(record) == {"path", "label", "index", "probability", "top_k", "mirrored", "input"}
    assert record["path"] == "-" and (record["label"], record["index"]) == ("Pullover", 2)
    assert record["input"]["inverted"] and len(record["top_k"]) == 3
    assert json.loads(run("predict", onnx_path, "-", "--json", "--invert", "never",
                          input=encoded.getvalue()).stdout)[0]["input"]["inverted"] is False


def test_cli_mirrors_prepared_photos_with_onnx_models(tmp_path, onnx_path, fashion):
    """`--mirror on` predicts a photo from the mean of its and its mirror image's logits (in
    onnxruntime), never a dataset-like 28x28 image; `auto` leaves a model trained without flips alone."""
    (tmp_path / "boot.jpg").write_bytes(photo_jpeg(fashion.test.images[0], np.random.default_rng(1)))
    Image.fromarray(fashion.test.images[1]).save(tmp_path / "test1.png")
    pixels = images.load(tmp_path / "boot.jpg").pixels[None]
    predictor = OnnxPredictor(onnx_path)
    expected = softmax(0.5 * (predictor.logits(pixels) + predictor.logits(np.ascontiguousarray(pixels[:, :, ::-1]))))
    for args, mirrored in ((("--mirror", "on"), [True, False]), ((), [False, False])):
        records = json.loads(run("predict", onnx_path, tmp_path / "boot.jpg", tmp_path / "test1.png", "--json",
                                 "--quiet", "--top-k", "10", *args).stdout)
        assert [r["mirrored"] for r in records] == mirrored
        assert records[1]["top_k"] == fmnist.predict(predictor, fashion.test.images[1], top_k=10)[0].top_k
    boot = {entry["index"]: entry["probability"] for entry in json.loads(run(
        "predict", onnx_path, tmp_path / "boot.jpg", "--json", "--top-k", "10", "--mirror", "on").stdout)[0]["top_k"]}
    np.testing.assert_allclose([boot[i] for i in range(10)], expected[0], rtol=0, atol=1e-6)


def test_cli_bad_files_fail_alone(tmp_path, onnx_path, fashion):
    good = tmp_path / "good.png"
    Image.fromarray(fashion.test.images[1]).save(good)
    whole = good.read_bytes()
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello, I am not a JPEG")
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty-dir").mkdir()
    big = tmp_path / "huge.png"
    from test_images import _png_header

    big.write_bytes(_png_header(12_000, 12_000))  # 144 Mpixels: PIL would only warn; fmnist refuses
    noisy = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    tiff = io.BytesIO()
    Image.fromarray(noisy).save(tiff, format="TIFF", compression="tiff_lzw")
    broken_tiff = bytearray(tiff.getvalue())
    for i in range(300, 2000, 7):
        broken_tiff[i] ^= 0x5A  # libtiff would print its own complaint about this on stderr
    (tmp_path / "lzw.tif").write_bytes(bytes(broken_tiff))
    odd_exif = tmp_path / "odd-exif.jpg"  # a photo Pillow warns about (corrupt EXIF) but reads fine
    Image.fromarray(255 - fashion.test.images[1]).resize((112, 112)).save(
        odd_exif, format="JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00")
    gif = tmp_path / "animated.gif"
    Image.fromarray(fashion.test.images[1]).save(gif, save_all=True, append_images=[Image.fromarray(fashion.test.images[0])])
    paths = [tmp_path / "zero.png", good, tmp_path / "text.jpg", tmp_path / "cut.png", tmp_path / "empty-dir",
             big, tmp_path / "missing.png", gif, tmp_path / "lzw.tif", odd_exif, ""]
    result = run("predict", onnx_path, *paths, "--top-k", "1", check_code=1)
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == [str(good), str(gif), str(odd_exif)]
    assert all(": Pullover (2) " in line for line in result.stdout.splitlines())  # the GIF's first frame
    errors = result.stderr.splitlines()
    assert len(errors) == 8, result.stderr
    expected = [("zero.png", "empty file"), ("text.jpg", "not an image"), ("cut.png", "truncated or corrupt image"),
                ("empty-dir", "no image files in this directory"), ("huge.png", "image too large"),
                ("missing.png", "no such file"), ("lzw.tif", "truncated or corrupt image")]
    assert errors[-1] == "fmnist: error: : empty path"
    for line, (name, problem) in zip(errors, expected):
        assert line.startswith(f"fmnist: error: {tmp_path / name}: {problem}"), line
    assert "Traceback" not in result.stderr


def test_cli_unreadable_file(tmp_path, onnx_path, fashion):
    """No read permission: as root, the command runs as `nobody` so the permission bites."""
    shared = Path(tempfile.mkdtemp(prefix="fmnist-perm-"))
    try:
        os.chmod(shared, 0o755)
        model = shutil.copy(onnx_path, shared / "model.onnx")
        os.chmod(model, 0o644)
        for name in ("locked.png", "open.png", "closed/inside.png"):
            (shared / name).parent.mkdir(exist_ok=True)
            Image.fromarray(fashion.test.images[1]).save(shared / name)
        os.chmod(shared / "open.png", 0o644)
        os.chmod(shared / "locked.png", 0o000)
        os.chmod(shared / "closed", 0o000)  # a folder that cannot be searched
        prefix = ()
        if os.geteuid() == 0:
            prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
            probe = subprocess.run([*prefix, sys.executable, "-c", "import fmnist.inference"], capture_output=True)
            if shutil.which("setpriv") is None or probe.returncode != 0:
                pytest.skip("running as root and cannot run fmnist as an unprivileged user")
        home = shared / "home"  # a home the unprivileged user can write (onnxruntime keeps a file there)
        home.mkdir()
        if os.geteuid() == 0:
            os.chown(home, 65534, 65534)
        # The caches and configuration in it too: the tests' own (conftest) are not the other user's to write.
        env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
                   XDG_CONFIG_HOME=str(home / ".config"), MPLCONFIGDIR=str(home / ".config" / "matplotlib"))
        result = run("predict", shared / "model.onnx", shared / "locked.png", shared / "open.png", check_code=1,
                     env=env, prefix=prefix)
        assert result.stderr.strip() == f"fmnist: error: {shared / 'locked.png'}: permission denied"
        assert result.stdout.startswith(f"{shared / 'open.png'}: Pullover (2)")
        os.chmod(shared / "locked.png", 0o644)
        result = run("predict", shared / "model.onnx", shared, check_code=1, env=env, prefix=prefix)
        assert result.stderr.strip() == f"fmnist: error: {shared / 'closed'}: permission denied"
        assert len(result.stdout.splitlines()) == 2  # locked.png (readable now) and open.png
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--invert", "sideways"], "--invert: expected one of auto, always, never, got 'sideways'"),
        (["--top-k", "0"], "--top-k must be at least 1, got 0"),
        (["--mirror", "sideways"], "--mirror: expected one of auto, on, off, got 'sideways'"),
        (["--device", "tpu"], "--device tpu: expected one of auto, cpu, cuda"),
    ],
)
def test_cli_usage_errors_exit_2(onnx_path, tmp_path, args, fragment):
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    result = run("predict", onnx_path, tmp_path / "x.png", *args, check_code=2)
    assert result.stderr.strip().splitlines() == [f"fmnist: error: {fragment}"]


def test_cli_bad_model_files_exit_2(tmp_path):
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 40)
    result = run("predict", tmp_path / "model.safetensors", tmp_path / "x.png", check_code=2)
    assert result.stderr.startswith(f"fmnist: error: {tmp_path / 'model.safetensors'}: ")
    result = run("predict", tmp_path / "none.onnx", tmp_path / "x.png", check_code=2)
    assert result.stderr.strip() == f"fmnist: error: {tmp_path / 'none.onnx'}: no such file"


def test_show_input_saves_what_the_model_saw(tmp_path, onnx_path, fashion):
    rng = np.random.default_rng(3)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"shot{i}.jpg").write_bytes(photo_jpeg(fashion.test.images[i], rng))
    (photos / "z-nested").mkdir()  # searched after the files beside it (natural order of the paths)
    (photos / "z-nested" / "shot0.jpg").write_bytes(photo_jpeg(fashion.test.images[3], rng))
    (photos / "z-nested" / "inputs.jpg").write_bytes(photo_jpeg(fashion.test.images[4], rng))  # no clash
    (photos / "z-nested" / "$5 sale$^$.jpg").write_bytes(photo_jpeg(fashion.test.images[5], rng))  # no maths
    seen = tmp_path / "seen"
    result = run("predict", onnx_path, photos, "--json", "--show-input", seen, "--quiet")
    assert result.stderr == ""
    first = json.loads(result.stdout)
    assert sorted(p.name for p in seen.iterdir()) == ["images", "inputs.png", "report.html"]
    names = sorted(p.name for p in (seen / "images").iterdir())
    assert names == ["$5 sale$^$.png", "inputs.png", "shot0-2.png", "shot0.png", "shot1.png", "shot2.png"]
    assert Image.open(seen / "images" / "shot1.png").size == (28, 28)
    again = json.loads(run("predict", onnx_path, *(seen / "images" / f"shot{i}.png" for i in range(3)),
                           "--json").stdout)
    assert [Path(r["path"]).name for r in first] == ["shot0.jpg", "shot1.jpg", "shot2.jpg", "$5 sale$^$.jpg",
                                                     "inputs.jpg", "shot0.jpg"]
    for before, after in zip(first[:3], again):
        assert after["input"]["passthrough"] and after["index"] == before["index"]
        assert abs(after["probability"] - before["probability"]) <= 1e-5
    montage = Image.open(seen / "inputs.png")
    assert montage.size[0] > 600 and montage.size[1] > 150
    assert "data:image/png;base64," in (seen / "report.html").read_text()


def test_the_onnx_path_never_imports_torch(tmp_path, onnx_path, fashion):
    Image.fromarray(fashion.test.images[1]).save(tmp_path / "one.png")
    code = ("import sys\nfrom fmnist.cli import main\n"
            f"sys.argv = ['fmnist', 'predict', {str(onnx_path)!r}, {str(tmp_path / 'one.png')!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('torch imported:', 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "torch imported: False"
    assert "Pullover (2)" in result.stdout


@pytest.mark.slow
def test_export_command(tmp_path, model_path, small_idx_dir):
    target = tmp_path / "exported.onnx"
    result = run("export", model_path, "--out", target, "--data", small_idx_dir)
    assert target.is_file() and not list(tmp_path.glob("*.part"))
    assert "onnxruntime matches PyTorch on the 100 test images" in result.stdout
    assert "same predictions" in result.stdout
    run("export", model_path, "--format", "tflite", check_code=2)
    result = run("export", tmp_path / "missing.safetensors", check_code=2)
    assert result.stderr.strip() == f"fmnist: error: {tmp_path / 'missing.safetensors'}: no such file"


def test_model_files_record_the_image_spec(tmp_path, model_path, fashion):
    """The spec a model file records (what its training images looked like) is written by save_model,
    read back by load_model, carried into the ONNX file, and used by predict to prepare images."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    trained = load_model(model_path)
    assert trained.image_spec == images.FASHION_SPEC  # measured from Fashion-MNIST by the trainer
    dark_on_white = images.ImageSpec(object_size=20, background="light")  # anything but the default
    path = save_model(tmp_path / "light.safetensors", trained.model, trained.architecture, trained.classes,
                      image_spec=dark_on_white)
    assert load_model(path).image_spec == dark_on_white
    exported = fmnist.export_onnx(path, tmp_path / "light.onnx", check_images=fashion.test.images[:16],
                                  check_name="16 test images")
    assert OnnxPredictor(exported.path).image_spec == dark_on_white
    # predict prepares a photo (a dark garment on a light backdrop) by the file's spec: for the
    # Fashion-MNIST model inverted and fitted to 28 px; for this one kept dark on white, in 20 px.
    shot = photo_jpeg(fashion.test.images[1], np.random.default_rng(0))
    fashion_input = fmnist.predict(model_path, [shot])[0]
    assert fashion_input.input["inverted"] and fashion_input.pixels[0, 0] == 0
    assert _object_extent(fashion_input.pixels, background=0) >= 27
    for model in (path, exported.path):
        record = fmnist.predict(model, [shot])[0]
        assert not record.input["inverted"] and record.pixels[0, 0] == 255, model
        assert _object_extent(record.pixels, background=255) in (19, 20, 21), model

    with safe_open(str(model_path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}

    def sealed(fields):  # metadata edited by hand, its digest recomputed
        return dict(fields, **{CONTENT_KEY: content_digest(fields)})

    digits = sealed(dict(metadata, preprocessing=json.dumps({"image": {"size": 28, "object_size": 20,
                                                                       "background": "dark", "tolerance": 0.05}})))
    save_file(tensors, str(tmp_path / "digits.safetensors"), metadata=digits)
    assert load_model(tmp_path / "digits.safetensors").image_spec == images.ImageSpec(object_size=20)
    # written before the spec (and the content digest) were recorded
    old = {k: v for k, v in metadata.items() if k not in ("preprocessing", CONTENT_KEY)}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=old)
    assert load_model(tmp_path / "old.safetensors").image_spec == images.FASHION_SPEC
    broken = sealed(dict(metadata, preprocessing=json.dumps({"image": {"size": 28, "object_size": 99}})))
    save_file(tensors, str(tmp_path / "broken.safetensors"), metadata=broken)
    with pytest.raises(ModelFileError, match=r"broken.safetensors: metadata 'preprocessing.image' is invalid"):
        load_model(tmp_path / "broken.safetensors")


def _object_extent(pixels: np.ndarray, background: int) -> int:
    """The longest side, in pixels, of what differs from the background by more than 12 grey levels."""
    differs = np.abs(pixels.astype(int) - background) > 12
    rows, cols = np.flatnonzero(differs.any(1)), np.flatnonzero(differs.any(0))
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)
