"""`fmnist serve`: an HTTP API and a page for predicting images with fmnist models (FastAPI + uvicorn).

    models.py      the models by name: loaded in the background, warmed up, described from their files
    uploads.py     a request's body → named inputs, within the limits (nothing decoded yet)
    predicting.py  inputs → records (`fmnist predict --json`'s), statuses for requests nothing came of
    guards.py      body limit, bearer token, Prometheus metrics: ASGI middleware
    app.py         the routes; page/ holds the page's HTML, JS and CSS (package data, no CDN)
    server.py      option checks (loopback unless a token), uvicorn, workers
"""

from fmnist.workflows.serve.app import AppSettings, create_app
from fmnist.workflows.serve.models import ModelSet
from fmnist.workflows.serve.server import ServeOptions, serve
from fmnist.workflows.serve.uploads import Limits

__all__ = ["AppSettings", "Limits", "ModelSet", "ServeOptions", "create_app", "serve"]
