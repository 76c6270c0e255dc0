"""What stands between a client and the app: the request body limit (refused from Content-Length
before a byte is read, or as soon as a chunked body passes it), the bearer token, and the metrics
every request is counted in. Pure ASGI middleware: nothing here buffers a body."""

from __future__ import annotations

import hmac
import json
import os
import time

from fmnist.workflows.serve.uploads import too_large


class BodyTooLarge(Exception):
    """Raised from `receive` when a body without a (truthful) Content-Length passes the limit."""


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def _header(scope, name: bytes) -> bytes | None:
    """A request header's value (the first of that name; ASGI gives names lower-cased), or None."""
    return next((value for key, value in scope["headers"] if key == name), None)


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            message = too_large(self.max_bytes).message if declared.isdigit() else "malformed Content-Length header"
            return await _send_json(send, 413 if declared.isdigit() else 400, {"error": message},
                                    [(b"connection", b"close")])
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        return await self.app(scope, limited_receive, send)


class BearerToken:
    """Requests to the paths that predict need `Authorization: Bearer <token>` (when a token is set)."""

    def __init__(self, app, token: str | None, guarded=lambda path: path.endswith("/predict")):
        self.app, self.token, self.guarded = app, token, guarded

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.token is not None and self.guarded(scope["path"]):
            given = (_header(scope, b"authorization") or b"").decode("latin-1")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token.encode()):
                return await _send_json(send, 401, {"error": "missing or wrong bearer token (Authorization: Bearer ...)"},
                                        [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable


class Metrics:
    """Prometheus metrics of one app (its own registry: two apps in one process do not mix). With
    `--workers N`, prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the parent
    before the workers start) keeps each worker's values in a file, and a scrape of any worker sums
    them all."""

    def __init__(self):
        # prometheus-client is the serve extra's: imported when an app is made, not by `fmnist --help`
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("fmnist_requests", "HTTP requests by route and status", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("fmnist_request_seconds", "Time to answer a request, by route", ["route"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
                                 registry=self.registry)
        self.images = Counter("fmnist_images_predicted", "Images predicted, by model", ["model"], registry=self.registry)
        self.batch_sizes = Histogram("fmnist_batch_size", "Images per model call, by model", ["model"],
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest  # see __init__
        from prometheus_client.multiprocess import MultiProcessCollector

        if os.environ.get(MULTIPROCESS_DIRECTORY):  # every worker's files, summed
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class CountRequests:
    """Every request counted by its route template (never the raw path: unbounded labels), status and time."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "other"
            self.metrics.requests.labels(scope["method"], label, str(status[0])).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)
