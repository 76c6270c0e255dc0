"""Micro-batching (`fmnist serve --batch-max B --batch-wait-ms W`): model calls that arrive together,
from requests handled at the same time, run as one call.

Each request is decoded and prepared in its own thread, exactly as without batching; only the model
call is shared. The first call to arrive opens a batch; calls that arrive within W milliseconds join
it until it holds B images; then one call of the wrapped predictor runs on all of them and each caller
gets its own rows back (or the exception, if the model call failed). A call of more than B images
runs alone. Off by default: whether it pays is measured by benchmarks/serve.py.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from fmnist.inference import Predictor


@dataclass
class _Call:
    images: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class BatchingPredictor(Predictor):
    """A Predictor whose `logits` calls (all that fmnist.predict calls) are gathered into shared
    batches of at most `batch_max` images; everything else (classes, image spec, its file's metadata,
    whether it is mirror-symmetric, ...) is the wrapped predictor's own."""

    def __init__(self, predictor: Predictor, batch_max: int, wait_ms: float, observe=lambda images: None):
        if batch_max < 1 or wait_ms < 0:
            raise ValueError(f"batching needs batch_max >= 1 and wait_ms >= 0, got {batch_max} and {wait_ms}")
        self.inner, self.batch_max, self.wait = predictor, batch_max, wait_ms / 1000.0
        self.runtime = predictor.runtime
        self.observe = observe  # called with each batch's image count (the batch-size metric)
        self._calls: queue.Queue[_Call] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="fmnist-batcher", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str):  # only for what this object does not have itself
        return getattr(self.inner, name)

    def trained_with_flips(self) -> bool:
        return self.inner.trained_with_flips()

    def mirror_symmetric(self) -> bool:
        return self.inner.mirror_symmetric()

    def logits(self, images: np.ndarray) -> np.ndarray:
        if len(images) >= self.batch_max:  # a batch already: nothing to gather
            self.observe(len(images))
            return self.inner.logits(images)
        call = _Call(np.ascontiguousarray(images))
        self._calls.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def _run(self) -> None:
        carried: _Call | None = None  # a call that would have overfilled the last batch: the next one's first
        while True:
            calls = [carried if carried is not None else self._calls.get()]
            carried = None
            count, deadline = len(calls[0].images), time.monotonic() + self.wait
            while count < self.batch_max:
                left = deadline - time.monotonic()
                try:
                    call = self._calls.get(timeout=left) if left > 0 else self._calls.get_nowait()
                except queue.Empty:
                    break
                if count + len(call.images) > self.batch_max:
                    carried = call
                    break
                calls.append(call)
                count += len(call.images)
            self._predict(calls, count)

    def _predict(self, calls: list[_Call], count: int) -> None:
        try:
            self.observe(count)
            logits = self.inner.logits(np.concatenate([call.images for call in calls]))
            start = 0
            for call in calls:
                call.result = logits[start : start + len(call.images)]
                start += len(call.images)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller, who raises it
            for call in calls:
                call.error = exc
        finally:
            for call in calls:
                call.done.set()
