"""Micro-batching of `fmnist serve` (`--batch-max`, `--batch-wait-ms`): model calls that arrive together
run as one, each caller gets its own rows; the served answers are those of the unbatched server."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fmnist.errors import FmnistError
from fmnist.inference import Predictor
from fmnist.workflows.serve import ModelSet, ServeOptions, create_app
from fmnist.workflows.serve.batching import BatchingPredictor
from fmnist.workflows.serve.server import check


class Recording(Predictor):
    """A stand-in model: each image's logits are its pixel sum and its first pixel; calls are recorded."""

    classes = ("a", "b")
    runtime = "test"

    def __init__(self, fail: bool = False):
        self.calls: list[int] = []
        self.fail = fail

    def logits(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        if self.fail:
            raise RuntimeError("the model broke")
        flat = images.reshape(len(images), -1).astype(np.float32)
        return np.stack([flat.sum(axis=1), flat[:, 0]], axis=1)


def _images(first: int, count: int) -> np.ndarray:
    return np.stack([np.full((4, 4), first + index, dtype=np.uint8) for index in range(count)])


def test_calls_arriving_together_share_one_model_call_and_get_their_own_rows():
    inner, sizes = Recording(), []
    batching = BatchingPredictor(inner, batch_max=8, wait_ms=500, observe=sizes.append)
    start = threading.Barrier(8)

    def call(index: int) -> np.ndarray:
        start.wait()
        return batching.logits(_images(10 * index, 1))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    for index, logits in enumerate(results):
        assert logits.tolist() == [[16.0 * 10 * index, 10.0 * index]]  # its own row, not a neighbour's
    assert sum(inner.calls) == 8 and len(inner.calls) < 8 and max(inner.calls) <= 8
    assert sizes == inner.calls and batching.classes == ("a", "b") and batching.runtime == "test"


def test_a_batch_never_passes_batch_max_and_a_large_call_runs_alone():
    inner = Recording()
    batching = BatchingPredictor(inner, batch_max=4, wait_ms=300)
    start = threading.Barrier(2)

    def call(first: int) -> np.ndarray:
        start.wait()
        return batching.logits(_images(first, 3))

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(call, (0, 100)))
    assert sorted(inner.calls) == [3, 3]  # 3 + 3 would overfill a batch of 4: two calls
    assert [row[1] for row in results[1].tolist()] == [100.0, 101.0, 102.0]
    assert batching.logits(_images(0, 5)).shape == (5, 2) and inner.calls[-1] == 5


def test_a_failing_model_call_fails_every_call_in_its_batch():
    batching = BatchingPredictor(Recording(fail=True), batch_max=4, wait_ms=100)
    start = threading.Barrier(2)

    def call(_):
        start.wait()
        with pytest.raises(RuntimeError, match="the model broke"):
            batching.logits(_images(0, 1))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(call, range(2)))


def test_a_batching_server_answers_as_an_unbatched_one(serve_models, fashion):
    _, onnx = serve_models
    files = []
    for index in range(6):
        buffer = io.BytesIO()
        Image.fromarray(fashion.test.images[index]).save(buffer, format="PNG")
        files.append(buffer.getvalue())

    def answers(models: ModelSet) -> tuple[list, str]:
        with TestClient(create_app(models)) as client:
            assert models.wait(60), models.error
            with ThreadPoolExecutor(6) as pool:
                replies = list(pool.map(lambda data: client.post("/predict", files={"file": ("x.png", data)}), files))
            assert all(reply.status_code == 200 for reply in replies)
            return [reply.json()["records"] for reply in replies], client.get("/metrics").text

    plain, _ = answers(ModelSet([onnx]))
    batched, metrics = answers(ModelSet([onnx], batch_max=8, batch_wait_ms=50))
    for one, other in zip(plain, batched):
        assert one[0]["label"] == other[0]["label"]
        assert one[0]["probability"] == pytest.approx(other[0]["probability"], abs=1e-6)
    count = next(line for line in metrics.splitlines() if line.startswith('fmnist_batch_size_count{model="tiny"}'))
    assert 1 <= float(count.split()[-1]) <= 6  # model calls: 6 requests in at most 6 calls


def test_batching_options_are_checked():
    for options, message in [(dict(batch_max=-1), "--batch-max must be 0 (off) or more"),
                             (dict(batch_wait_ms=5000), "--batch-wait-ms 0-1000")]:
        with pytest.raises(FmnistError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check(ServeOptions([Path("m.onnx")], **options))
    with pytest.raises(ValueError, match="batch_max >= 1"):
        BatchingPredictor(Recording(), batch_max=0, wait_ms=1)
