"""The peer of `fmnist serve` in benchmarks/serve.py: the same `.onnx` model served by BentoML.

    FMNIST_BENCH_ONNX=runs/baseline/model.onnx bentoml serve benchmarks/bentoml_service.py:Fmnist --port 3000

Written the way BentoML's documentation writes an image service (one `@bentoml.api` per input type, a
PIL image or a numpy array argument, a dict answer), doing less than fmnist does per image: it converts to
grayscale and resizes to 28x28, with no check of the header before decoding, no inversion or cropping,
no mirror test. It runs in its own virtual environment (BentoML pins its own Starlette and Pydantic):

    python -m venv /tmp/bento && /tmp/bento/bin/pip install bentoml onnxruntime pillow
"""

from __future__ import annotations

import json
import os

import bentoml
import numpy as np
from PIL.Image import Image as PILImage

MODEL = os.environ.get("FMNIST_BENCH_ONNX", "runs/baseline/model.onnx")
WORKERS = int(os.environ.get("FMNIST_BENCH_WORKERS", "1"))


def _records(session, classes: list[str], pixels: np.ndarray, top_k: int) -> list[dict]:
    logits = session.run(["logits"], {"pixels": pixels[:, None]})[0].astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = exp / exp.sum(axis=1, keepdims=True)
    order = np.argsort(-probabilities, axis=1)[:, :top_k]
    return [{"label": classes[row[0]], "index": int(row[0]), "probability": float(probabilities[i, row[0]]),
             "top_k": [{"label": classes[j], "index": int(j), "probability": float(probabilities[i, j])} for j in row]}
            for i, row in enumerate(order)]


@bentoml.service(workers=WORKERS, traffic={"timeout": 30})
class Fmnist:
    def __init__(self) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
        self.classes = json.loads(self.session.get_modelmeta().custom_metadata_map["classes"])

    @bentoml.api
    def predict(self, file: PILImage, top_k: int = 3) -> dict:
        pixels = np.asarray(file.convert("L").resize((28, 28)), dtype=np.uint8)[None]
        return {"records": _records(self.session, self.classes, pixels, top_k)}

    @bentoml.api
    def predict_arrays(self, arrays: np.ndarray, top_k: int = 3) -> dict:
        pixels = np.ascontiguousarray(arrays, dtype=np.uint8).reshape(-1, 28, 28)
        return {"records": _records(self.session, self.classes, pixels, top_k)}
