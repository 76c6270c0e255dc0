"""The two runtimes behind one interface: a `.safetensors` model file in PyTorch, an `.onnx` file
(written by `fmnist export`) in onnxruntime. torch is imported only by the PyTorch runtime: the ONNX
path starts fast and runs where torch is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmnist._io import silenced_stderr
from fmnist.bounded import brief, one_line
from fmnist.errors import FmnistError, ModelFileError
from fmnist.image_spec import ImageSpec
from fmnist.model_metadata import checked_classes, checked_file, checked_image_spec, json_field

ONNX_FORMAT = "fmnist.onnx"  # the `format` metadata of an ONNX file written by `fmnist export`
ONNX_INPUT, ONNX_LOGITS, ONNX_PROBABILITIES = "pixels", "logits", "probabilities"


class Predictor:
    """A model ready to predict: class names, the ImageSpec its inputs must match, and logits."""

    runtime = "none"
    classes: list[str]
    image_spec: ImageSpec
    path: Path | None
    batch_size: int
    config: dict  # how the model was trained (the model file's training config; {} when unknown)
    _symmetric: bool | None = None

    def _run(self, pixels: np.ndarray) -> np.ndarray:  # (B, S, S) uint8 → (B, C) float32
        raise NotImplementedError

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """(N, C) float32 logits for uint8 images (N, S, S), in batches."""
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        if not len(pixels):
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate([self._run(pixels[i : i + self.batch_size]) for i in range(0, len(pixels), self.batch_size)])

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, C) softmax probabilities (float64 arithmetic, float32 result)."""
        return softmax(self.logits(pixels))

    def trained_with_flips(self) -> bool:
        """Whether its training config says it saw mirror images (flip augmentation)."""
        augment = self.config.get("augment", "none")
        return isinstance(augment, str) and "flip" in augment.split("+")

    def mirror_symmetric(self) -> bool:
        """Whether its logits for an image and its mirror image are the same: flip test-time
        augmentation inside the model (as in `fast`). Checked on one noise image, once."""
        if self._symmetric is None:
            size = self.image_spec.size
            noise = np.random.default_rng(0).integers(0, 256, size=(1, size, size), dtype=np.uint8)
            both = self.logits(np.concatenate([noise, noise[:, :, ::-1]]))
            self._symmetric = bool(np.allclose(both[0], both[1], rtol=1e-4, atol=1e-4))
        return self._symmetric

    def describe(self) -> str:
        return f"{self.path or 'model'} ({self.runtime})"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class TorchPredictor(Predictor):
    """A `.safetensors` model in PyTorch, run through a copy rewritten for inference
    (fmnist.inference.torch_model: channels-last, in-place activations, cheaper pooling and
    flattening); the caller's model is untouched."""

    runtime = "torch"

    def __init__(self, model_file, device: str = "auto", batch_size: int | None = None, threads: int | None = None):
        import torch  # here, not at the top: the ONNX runtime must not import torch

        from fmnist.device import resolve_device
        from fmnist.inference.torch_model import inference_copy

        if threads:  # process-wide in PyTorch
            torch.set_num_threads(threads)

        self.model_file = model_file
        self.classes = list(model_file.classes)
        self.config = dict(model_file.config)
        self.image_spec = model_file.image_spec
        self.path = model_file.path
        self.device = resolve_device(device)
        self.batch_size = batch_size or (128 if self.device.type == "cpu" else 2048)  # CPU: measured best of 64-1024
        self.model = inference_copy(model_file.model, self.device, input_size=self.image_spec.size)
        self._torch = torch

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        torch = self._torch
        if not pixels.flags.writeable:  # a read-only array (np.load with mmap_mode="r"): torch wants its own
            pixels = pixels.copy()
        with torch.inference_mode():
            x = torch.from_numpy(pixels).unsqueeze(1).to(self.device)  # (B, 1, S, S) uint8
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()


class OnnxPredictor(Predictor):
    """An `.onnx` file written by `fmnist export`, run by onnxruntime (torch is not imported).

    The file may come from anyone: its metadata is read within bounds (fmnist.model_metadata), its
    graph must take uint8 `pixels` (N, 1, S, S), S the image size, and give float `logits` (N, C),
    one per class name, and one image is run through it before it is accepted."""

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "auto", batch_size: int | None = None,
                 threads: int | None = None):
        path = checked_file(path)
        try:
            with silenced_stderr():  # its import warns on stderr when the home folder is not writable
                import onnxruntime  # an optional dependency (the onnx extra)
        except ImportError:
            raise FmnistError(f"{path}: running an ONNX model needs onnxruntime (pip install 'fmnist[onnx]')") from None
        # No usage telemetry from a command-line tool; and errors only on stderr: otherwise every run
        # with a read-only home directory warns that the telemetry ID could not be saved.
        onnxruntime.disable_telemetry_events()
        onnxruntime.set_default_logger_severity(3)
        providers = _onnx_providers(onnxruntime, device)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads:  # a server: each call on `threads` threads that sleep, not spin, between calls
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise ModelFileError(path, f"not a valid ONNX model ({one_line(exc)})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if metadata.get("format") != ONNX_FORMAT:
            raise ModelFileError(path, "no fmnist metadata: not an ONNX file written by `fmnist export`")
        self.classes = checked_classes(path, json_field(path, metadata, "classes", list), None)
        self.image_spec = checked_image_spec(path, json_field(path, metadata, "preprocessing", dict, default={}))
        self.metadata = {key: json_field(path, metadata, key) if key in ("architecture", "config", "metrics") else value
                         for key, value in metadata.items()}
        self.config = self.metadata.get("config") if isinstance(self.metadata.get("config"), dict) else {}
        self.path = path
        self.device = "cuda" if providers[0].startswith("CUDA") else "cpu"
        self.batch_size = batch_size or 64  # measured: small batches stay in cache (52k images/s at 64, 37k at 1024)
        self._check_graph(self.image_spec.size, len(self.classes))

    def _check_graph(self, size: int, classes: int) -> None:
        """The graph's input is uint8 `pixels` (N, 1, size, size) with a free N, its output float `logits`
        (N, classes); one black image goes through it, and must come out as (1, classes)."""
        inputs, outputs = self.session.get_inputs(), {item.name: item for item in self.session.get_outputs()}
        expected = f"one uint8 input {ONNX_INPUT!r} of shape (N, 1, {size}, {size})"
        if len(inputs) != 1 or inputs[0].name != ONNX_INPUT or inputs[0].type != "tensor(uint8)":
            found = ", ".join(f"{brief(item.name)} {item.type}" for item in inputs[:3])
            raise ModelFileError(self.path, f"expected {expected}, found {found or 'no input'}")
        shape = list(inputs[0].shape)
        if len(shape) != 4 or isinstance(shape[0], int) or shape[1:] != [1, size, size]:
            raise ModelFileError(self.path, f"expected {expected}, found shape ({', '.join(map(str, shape))})")
        if ONNX_LOGITS not in outputs or outputs[ONNX_LOGITS].type != "tensor(float)":
            raise ModelFileError(self.path, f"expected a float output {ONNX_LOGITS!r} (N, {classes}), found "
                                            f"{', '.join(brief(name) for name in list(outputs)[:3]) or 'none'}")
        width = outputs[ONNX_LOGITS].shape[-1] if len(outputs[ONNX_LOGITS].shape) == 2 else None
        if isinstance(width, int):  # a named (free) width is checked on the black image below
            checked_classes(self.path, self.classes, width)
        self._run(np.zeros((1, size, size), dtype=np.uint8))

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        try:
            logits = self.session.run([ONNX_LOGITS], {ONNX_INPUT: pixels[:, None]})[0]  # (B, 1, S, S) → (B, C)
        except Exception as exc:  # onnxruntime's own exception types: a graph that cannot run these inputs
            raise ModelFileError(self.path, f"onnxruntime cannot run the model ({one_line(exc)})") from None
        if np.shape(logits) != (len(pixels), len(self.classes)):
            raise ModelFileError(self.path, f"the model's {ONNX_LOGITS!r} have shape {np.shape(logits)}, expected "
                                            f"({len(pixels)}, {len(self.classes)}): one per class name")
        return np.asarray(logits, dtype=np.float32)


def _onnx_providers(onnxruntime, device: str) -> list[str]:
    available = onnxruntime.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise FmnistError(f"--device {device}: this onnxruntime has no CUDA support (install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise FmnistError(f"--device {device}: expected one of auto, cpu, cuda")
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def load_predictor(model, device: str = "auto", batch_size: int | None = None, threads: int | None = None) -> Predictor:
    """A Predictor for a model path (`.onnx` → onnxruntime, else a `.safetensors` model file), a
    loaded `ModelFile`, or a Predictor (returned as it is).

    threads: how many CPU threads one model call uses (None: the runtime's default, every core). For
    PyTorch this is the process's intra-op thread count (torch.set_num_threads), for every model in it."""
    if threads is not None and threads < 1:
        raise FmnistError(f"threads must be at least 1, got {threads}")
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.suffix.lower() == ".onnx":
            return OnnxPredictor(path, device=device, batch_size=batch_size, threads=threads)
        from fmnist.modelfile import load_model  # imports torch: only for .safetensors files

        return TorchPredictor(load_model(path), device=device, batch_size=batch_size, threads=threads)
    if type(model).__name__ == "ModelFile" and hasattr(model, "model") and hasattr(model, "classes"):
        return TorchPredictor(model, device=device, batch_size=batch_size, threads=threads)
    raise FmnistError(f"model: expected a path (.safetensors or .onnx), a ModelFile (fmnist.load_model) or a "
                    f"Predictor, got {type(model).__name__}")

