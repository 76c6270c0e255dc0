"""The FastAPI app: the prediction API, health and readiness, the models, metrics, and the page.

    POST /predict, /models/{name}/predict   images (multipart or JSON) → one record per input
    GET  /healthz   the process answers          GET /readyz   200 once every model is loaded and warm
    GET  /models    what each model file says    GET /metrics  Prometheus text
    GET  /          the page (drop, paste or pick images); /docs and /openapi.json: the API

Every error is JSON `{"error": "..."}` with a 4xx status: 413 too large, 415 not an image format fmnist
reads (or not a body it reads), 422 malformed; never a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import msgspec
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from fmnist import __version__
from fmnist.workflows.serve.guards import BearerToken, BodyLimit, BodyTooLarge, CountRequests, Metrics
from fmnist.workflows.serve.models import ModelSet
from fmnist.workflows.serve.predicting import predict_uploads
from fmnist.workflows.serve.uploads import (Limits, RequestError, content_kind, read_json, read_multipart, tiny,
                                           too_large)

log = logging.getLogger("fmnist.serve")
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/page/app.js": ("app.js", "text/javascript"),
              "/page/app.css": ("app.css", "text/css")}


@dataclass(frozen=True)
class AppSettings:
    limits: Limits = Limits()
    token: str | None = None  # the bearer token /predict requires, when set
    cors_origins: tuple[str, ...] = ()  # no CORS headers at all unless origins are given


def create_app(models: ModelSet, settings: AppSettings = AppSettings()) -> FastAPI:
    """The app for `models` (loading starts with the app's lifespan unless it has already run)."""
    metrics = Metrics()
    models.on_batch = lambda name, images: metrics.batch_sizes.labels(name).observe(images)
    page = {path: (resources.files(__package__).joinpath("page", name).read_bytes(), kind)
            for path, (name, kind) in PAGE_FILES.items()}  # read once: no request path reaches the filesystem

    async def lifespan(app):
        models.start()  # unless loading has begun or is done
        yield

    app = FastAPI(title="fmnist", version=__version__, lifespan=lifespan,
                  description="Predict Fashion-MNIST classes of images with fmnist models.")

    @app.exception_handler(RequestError)
    async def request_error(request, exc: RequestError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request, exc):
        return JSONResponse({"error": too_large(settings.limits.max_body_bytes).message}, status_code=413,
                            headers={"connection": "close"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())[1:])) or 'request'}: {e.get('msg')}"
                             for e in exc.errors())
        return JSONResponse({"error": f"malformed request: {problems}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request, exc: Exception):  # a bug: logged here, one line to the client
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error (the server's log has the details)"}, status_code=500)

    @app.get("/healthz", summary="The process is up")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Every model is loaded and warmed up (503 until then)")
    async def readyz():
        if models.ready:
            return {"status": "ready", "models": models.names, "seconds": round(models.seconds or 0.0, 3)}
        status = "failed: " + models.error if models.error else "loading"
        return JSONResponse({"status": status, "error": f"not ready ({status})"}, status_code=503)

    @app.get("/models", summary="The models served, as their files describe them")
    async def list_models():
        return {"models": [models.models[name].describe() for name in models.names if name in models.models],
                "default": models.names[0], "ready": models.ready, "token_required": settings.token is not None,
                "limits": {"max_body_bytes": settings.limits.max_body_bytes, "max_files": settings.limits.max_files}}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus():
        data, kind = metrics.exposition()
        return Response(data, media_type=kind)

    async def run_prediction(request: Request, name: str | None, top_k: int, invert: str, show_input: bool):
        if not models.ready:
            raise RequestError(503, "models are still loading: try again when /readyz says ready"
                               if models.error is None else f"no model could be loaded: {models.error}")
        model = models.get(name)
        if model is None:
            raise RequestError(404, f"no model named {name!r} (served: {', '.join(models.names)})")
        kind = content_kind(request.headers.get("content-type"))
        if kind == "multipart":
            uploads = await read_multipart(request, settings.limits)
        else:
            uploads = read_json(await request.body(), settings.limits, model.predictor.image_spec.size)
        if not model.batched and all(map(tiny, uploads)):  # well under a millisecond: no thread hop
            outcome = predict_uploads(model, uploads, top_k, invert, show_input)
        else:  # decoding a photo takes milliseconds: off the event loop, so other requests go on meanwhile
            outcome = await run_in_threadpool(predict_uploads, model, uploads, top_k, invert, show_input)
        if outcome.images:
            metrics.images.labels(model.name).inc(outcome.images)
            if not model.batched:  # one model call per request; a batched model counts its shared calls
                metrics.batch_sizes.labels(model.name).observe(outcome.images)
        return RecordsResponse(outcome.body, status_code=outcome.status)

    top_k_query = Query(3, description="How many classes to list per image.")
    invert_query = Query("auto", description="auto (invert when the border is lighter than the object), always, never.")
    show_query = Query(False, description="Add each input's 28x28 image, as the model saw it, as a base64 PNG.")
    body_doc = {"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        "application/json": {"schema": {"type": "object", "properties": {
            "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
            "arrays": {"type": "array", "items": {"type": "array", "items": {"type": "array",
                                                                             "items": {"type": "integer"}}}},
            "pixels": {"type": "string", "format": "byte",
                       "description": "N images as raw uint8 bytes (N x 28 x 28, row-major), base64"}}}}},
        "required": True}}

    @app.post("/predict", summary="Predict images with the default (first) model", openapi_extra=body_doc)
    async def predict(request: Request, top_k: int = top_k_query, invert: str = invert_query,
                      show_input: bool = show_query):
        return await run_prediction(request, None, top_k, invert, show_input)

    @app.post("/models/{name}/predict", summary="Predict images with the model of this name", openapi_extra=body_doc)
    async def predict_with(name: str, request: Request, top_k: int = top_k_query, invert: str = invert_query,
                           show_input: bool = show_query):
        return await run_prediction(request, name, top_k, invert, show_input)

    for path, (data, kind) in page.items():
        app.add_api_route(path, _static(data, kind), methods=["GET"], include_in_schema=False)

    app.add_middleware(BearerToken, token=settings.token)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(CountRequests, metrics=metrics)
    app.state.models, app.state.metrics = models, metrics
    return app


class RecordsResponse(JSONResponse):
    """The answer of /predict, encoded by msgspec: several times faster than the json module for a batch's
    records (lists, dicts, strings and floats: nothing else reaches it)."""

    def render(self, content) -> bytes:
        return msgspec.json.encode(content)


def _static(data: bytes, kind: str):
    async def serve_file():
        return Response(data, media_type=kind, headers={"cache-control": "no-cache"})
    return serve_file
