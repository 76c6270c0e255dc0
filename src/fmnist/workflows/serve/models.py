"""The models a server holds, by name: loaded (onnxruntime for `.onnx`, the PyTorch inference copy
for `.safetensors`), warmed up, and described for `GET /models` from what their files say."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmnist.errors import FmnistError
from fmnist.inference import Predictor, load_predictor
from fmnist.workflows.serve.batching import BatchingPredictor

# Images run through each model before it counts as ready: onnxruntime and PyTorch allocate their
# buffers and pick their kernels on the first calls, which would otherwise land on the first users.
WARM_UP_BATCHES = (1, 8, 64)


def model_names(paths: list[str | Path]) -> list[str]:
    """A name per model file: its stem, or its parent folder's name when the stem is the generic
    `model` (runs/baseline/model.onnx → baseline); -2, -3 when two files share a name."""
    names: list[str] = []
    for path in map(Path, paths):
        stem = path.stem if path.stem != "model" or not path.parent.name else path.parent.name
        if path.suffix.lower() == ".onnx" and any(Path(other).stem == path.stem and Path(other).parent == path.parent
                                                  and Path(other).suffix.lower() != ".onnx" for other in paths):
            stem += "-onnx"  # model.safetensors and model.onnx side by side
        candidate, counter = stem, 1
        while candidate in names:
            counter += 1
            candidate = f"{stem}-{counter}"
        names.append(candidate)
    return names


@dataclass
class ServedModel:
    name: str
    predictor: Predictor
    batched: bool = False  # its model calls go through a BatchingPredictor, which counts them itself

    def describe(self) -> dict:
        """What `GET /models` says about the model: from its file, never its path on the server."""
        predictor = self.predictor
        metadata = getattr(predictor, "metadata", None)  # an ONNX file's metadata_props
        model_file = getattr(predictor, "model_file", None)  # a loaded .safetensors model file
        source = metadata if metadata is not None else vars(model_file) if model_file is not None else {}
        return {
            "name": self.name,
            "file": predictor.path.name if predictor.path is not None else None,
            "runtime": predictor.runtime,
            "classes": list(predictor.classes),
            "architecture": source.get("architecture") or {},
            "metrics": source.get("metrics") or {},
            "image_spec": predictor.image_spec.to_dict(),
        }


@dataclass
class ModelSet:
    """The served models, loaded in the background: `ready` once every one is loaded and warmed up."""

    sources: list  # paths, or Predictors already loaded (the CLI checks the files before it binds)
    names: list[str] = field(default_factory=list)
    models: dict[str, ServedModel] = field(default_factory=dict)
    error: str | None = None  # why loading failed
    seconds: float | None = None  # how long loading and warming up took
    batch_max: int = 0  # > 1: micro-batching of model calls up to this many images (batching.py); 0 or 1: off
    batch_wait_ms: float = 2.0  # how long a batch waits for more calls after its first
    threads: int | None = None  # CPU threads per model call (None: the runtime's default, one per core)
    on_batch: Callable[[str, int], None] = lambda name, images: None  # each model call's (model, images)
    _done: threading.Event = field(default_factory=threading.Event)
    _loader: threading.Thread | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise FmnistError("serve: give at least one model file")
        if not self.names:
            self.names = model_names([getattr(s, "path", None) or s for s in self.sources])

    @property
    def ready(self) -> bool:
        return self._done.is_set() and self.error is None

    def start(self) -> None:
        """Load in the background, once: nothing happens when loading has begun or is done already (the
        CLI loads before it binds the port; the app's start-up then finds the models there)."""
        if self._loader is None and not self._done.is_set():
            self._loader = threading.Thread(target=self.load, name="fmnist-load-models", daemon=True)
            self._loader.start()

    def load(self) -> None:
        started = time.monotonic()
        try:
            for name, source in zip(self.names, self.sources):
                predictor = load_predictor(source, device="cpu", threads=self.threads)
                size = predictor.image_spec.size
                for count in WARM_UP_BATCHES:
                    predictor.probabilities(np.zeros((count, size, size), dtype=np.uint8))
                if self.batch_max > 1:
                    predictor = BatchingPredictor(predictor, self.batch_max, self.batch_wait_ms,
                                                  observe=lambda images, name=name: self.on_batch(name, images))
                self.models[name] = ServedModel(name, predictor, batched=self.batch_max > 1)
        except FmnistError as exc:
            self.error = str(exc)
        finally:
            self.seconds = time.monotonic() - started
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout) and self.error is None

    def get(self, name: str | None) -> ServedModel | None:
        if name is None:
            return self.models.get(self.names[0])
        return self.models.get(name)
