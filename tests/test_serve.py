"""`fmnist serve`: every endpoint in-process (FastAPI's TestClient), every bad request's status and
message, the limits and the token rule; then a real server process, started and stopped by a signal."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import fmnist
from fmnist.errors import FmnistError
from fmnist.workflows.serve import AppSettings, Limits, ModelSet, ServeOptions, create_app
from fmnist.workflows.serve.server import check
from fmnist.workflows.serve.uploads import USAGE

FMNIST = str(Path(sys.executable).parent / "fmnist")
FORMATS = "not an image, or not one of the formats read (PNG, JPEG, BMP, GIF, TIFF, WebP)"


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring width x height, a tiny IDAT, IEND: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def app_client(serve_models):
    """A client of an app serving the ONNX model (default) and the .safetensors one."""
    safetensors, onnx = serve_models
    models = ModelSet([onnx, safetensors])
    with TestClient(create_app(models)) as client:
        assert models.wait(60), models.error
        yield client


@pytest.fixture(scope="module")
def samples(fashion):
    return {"pullover": png(fashion.test.images[1]), "trouser": png(fashion.test.images[2]),
            "broken": png(fashion.test.images[3])[:60]}


def test_health_readiness_models_docs_and_page(app_client, serve_models):
    assert app_client.get("/healthz").json() == {"status": "ok"}
    ready = app_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == ["tiny-onnx", "tiny"]
    listed = app_client.get("/models").json()
    assert listed["default"] == "tiny-onnx" and not listed["token_required"]
    onnx, torch = listed["models"]
    assert (onnx["runtime"], torch["runtime"]) == ("onnxruntime", "torch")
    for model in (onnx, torch):
        assert model["classes"][2] == "Pullover" and model["architecture"]["name"] == "baseline"
        assert model["image_spec"]["size"] == 28 and model["metrics"]["test_accuracy"] == 0.6
        assert "/" not in model["file"]  # the file's name, never where it is on the server
    schema = app_client.get("/openapi.json").json()
    assert {"/predict", "/models/{name}/predict", "/models", "/readyz", "/healthz", "/metrics"} <= set(schema["paths"])
    assert app_client.get("/docs").status_code == 200
    page = app_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/page/app.js" in page.text and "http" not in page.text.split("<footer>")[0]  # nothing from elsewhere
    assert "fetch(" in app_client.get("/page/app.js").text and app_client.get("/page/app.css").status_code == 200
    assert app_client.get("/page/../../etc/passwd").status_code == 404
    assert app_client.get("/nothing").json() == {"error": "Not Found"}


def test_multipart_one_and_many_files_give_predicts_records(app_client, samples, serve_models):
    _, onnx = serve_models
    expected = fmnist.predict(onnx, [samples["pullover"], samples["trouser"]], top_k=3)
    one = app_client.post("/predict", files={"file": ("pullover.png", samples["pullover"], "image/png")})
    assert one.status_code == 200, one.text
    record = one.json()["records"][0]
    assert record == {**expected[0].as_dict(), "path": "pullover.png"}
    many = app_client.post("/predict?top_k=2&show_input=true", files=[
        ("file", ("a.png", samples["pullover"], "image/png")), ("file", ("broken.png", samples["broken"], "image/png")),
        ("file", ("b.png", samples["trouser"], "image/png"))])
    assert many.status_code == 200, many.text
    first, broken, last = many.json()["records"]
    assert (first["path"], first["label"], last["path"], last["label"]) == ("a.png", expected[0].label, "b.png",
                                                                              expected[1].label)
    assert len(first["top_k"]) == 2 and broken == {"path": "broken.png", "error": broken["error"]}
    assert broken["error"].startswith("truncated or corrupt image")
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(first["input_png"]))))
    assert seen.shape == (28, 28) and np.array_equal(seen, expected[0].pixels)
    by_name = app_client.post("/models/tiny/predict", files={"file": ("p.png", samples["pullover"], "image/png")})
    assert by_name.json()["model"] == "tiny" and by_name.json()["records"][0]["index"] == expected[0].index


def test_json_base64_images_and_arrays(app_client, samples, fashion, serve_models):
    _, onnx = serve_models
    encoded = [base64.b64encode(samples["pullover"]).decode(), "data:image/png;base64,"
               + base64.b64encode(samples["trouser"]).decode()]
    answer = app_client.post("/predict", json={"images": encoded})
    assert answer.status_code == 200, answer.text
    assert [r["path"] for r in answer.json()["records"]] == ["images[0]", "images[1]"]
    arrays = fashion.test.images[:256]
    expected = fmnist.predict(onnx, arrays)
    answer = app_client.post("/predict?top_k=1", json={"arrays": arrays.tolist()})
    records = answer.json()["records"]
    assert len(records) == 256 and [r["index"] for r in records] == [r.index for r in expected]
    assert records[0] == {**expected[0].as_dict(), "top_k": expected[0].as_dict()["top_k"][:1]}
    packed = app_client.post("/predict?top_k=1", json={"pixels": base64.b64encode(arrays.tobytes()).decode()})
    assert packed.status_code == 200 and packed.json()["records"] == records


@pytest.mark.parametrize("request_kwargs, status, message", [
    ({"files": {"file": ("x.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "image/eps")}},
     415, f"x.eps: {FORMATS}"),
    ({"files": {"file": ("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "image/svg+xml")}},
     415, f"x.svg: {FORMATS}"),
    ({"files": {"file": ("empty.png", b"", "image/png")}}, 422, "empty.png: empty file (0 bytes)"),
    ({"files": {"file": ("bomb.png", png_header_only(30000, 30000), "image/png")}}, 413,
     "bomb.png: image too large: 900,000,000 pixels (the limit is 50,000,000); refused before decoding"),
    ({"files": [("file", (f"{i}.png", b"x", "image/png")) for i in range(65)]}, 413,
     "too many files: at most 64 in one request"),
    ({"data": {"name": "no file"}}, 415, None),
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, None),
    ({"content": b"{nope", "headers": {"content-type": "application/json"}}, 422,
     "malformed JSON body: JSON is malformed: object keys must be strings (byte 1)"),
    ({"json": {"pictures": []}}, 422, None),
    ({"json": {"images": ["not base64!"]}}, 422, "images[0]: not valid base64"),
    ({"json": {"arrays": [[[0] * 27] * 28]}}, 422, "arrays: each array must be 28x28 integers, got shape (28, 27) at arrays[0]"),
    ({"json": {"arrays": [[[300] * 28] * 28]}}, 422,
     "arrays: pixel values must be integers 0-255 (Expected `int` <= 255 - at `$.arrays[0][0][0]`)"),
    ({"json": {"arrays": [[[0] * 28] * 27 + [[0] * 27 + [1.5]]]}}, 422,
     "arrays: pixel values must be integers 0-255 (Expected `int`, got `float` - at `$.arrays[0][27][27]`)"),
    ({"json": {"arrays": [[[True] * 28] * 28]}}, 422,
     "arrays: pixel values must be integers 0-255 (Expected `int`, got `bool` - at `$.arrays[0][0][0]`)"),
    ({"json": {"arrays": [[[0] * 28] * 28, [[0] * 28] * 3]}}, 422,
     "arrays: each array must be 28x28 integers, got shape (3, 28) at arrays[1]"),
    ({"json": {"arrays": [[[0] * 28] * 27 + [[0] * 29]]}}, 422,
     "arrays: each array must be 28x28 integers, got shape (28, 28/29) at arrays[0]"),
    ({"json": {"arrays": [[0] * 28] * 28}}, 422,
     "arrays: expected lists of 28 rows of 28 integers 0-255 each (Expected `array`, got `int` - at `$.arrays[0][0]`)"),
    ({"json": {"arrays": []}}, 422, "malformed request: 'arrays' must not be empty"),
    ({"json": {"pixels": ""}}, 422, "malformed request: 'pixels' must not be empty"),
    ({"json": {"pixels": "not base64!"}}, 422, "pixels: not valid base64"),
    ({"json": {"pixels": base64.b64encode(bytes(784 + 28)).decode()}}, 422,
     "pixels: expected N x 28 x 28 = a multiple of 784 bytes, got 812"),
    ({"json": {"pixels": [1, 2]}}, 422, f"malformed request: Expected `str | null`, got `array` - at `$.pixels`; {USAGE}"),
    ({"json": {"arrays": [[[0]]], "images": ["aGVsbG8="]}}, 422, f"malformed request: {USAGE}"),
    ({"json": {"images": [3]}}, 422, f"malformed request: Expected `str`, got `int` - at `$.images[0]`; {USAGE}"),
    ({"json": [1, 2]}, 422, f"malformed request: Expected `object`, got `array`; {USAGE}"),
    ({"content": b"[" * 200000, "headers": {"content-type": "application/json"}}, 422,
     f"malformed request: Expected `object`, got `array`; {USAGE}"),
    ({"json": {"images": ["aGVsbG8="] * 65}}, 413, "too many images: at most 64 in one request"),
])
def test_bad_requests_get_their_status_and_one_line_error(app_client, request_kwargs, status, message):
    answer = app_client.post("/predict", **request_kwargs)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert isinstance(body["error"], str) and "Traceback" not in answer.text
    if message is not None:
        assert body["error"] == message


@pytest.mark.parametrize("query, message", [
    ("top_k=0", "top_k must be between 1 and 10, got 0"), ("top_k=11", "top_k must be between 1 and 10, got 11"),
    ("invert=sideways", "invert must be one of auto, always, never, got 'sideways'"),
    ("top_k=three", "malformed request: top_k: Input should be a valid integer, unable to parse string as an integer"),
])
def test_bad_queries(app_client, samples, query, message):
    answer = app_client.post(f"/predict?{query}", files={"file": ("p.png", samples["pullover"], "image/png")})
    assert (answer.status_code, answer.json()) == (422, {"error": message})


def test_unknown_model_and_wrong_method(app_client, samples):
    answer = app_client.post("/models/nope/predict", files={"file": ("p.png", samples["pullover"], "image/png")})
    assert (answer.status_code, answer.json()) == (404, {"error": "no model named 'nope' (served: tiny-onnx, tiny)"})
    assert app_client.get("/predict").status_code == 405


def test_a_huge_png_is_refused_from_its_header(app_client, monkeypatch):
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    answer = app_client.post("/predict", files={"file": ("bomb.png", png_header_only(30000, 30000), "image/png")})
    assert answer.status_code == 413 and "refused before decoding" in answer.json()["error"]


def _asgi(app, headers: list, chunks, limit_chunks: int = 1000):
    """Call the app directly: (status, JSON body, chunks the app asked for)."""
    sent, asked = [], [0]

    async def receive():
        asked[0] += 1
        if asked[0] > limit_chunks:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": "/predict",
             "raw_path": b"/predict", "root_path": "", "scheme": "http", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), asked[0]


def test_a_body_over_the_limit_is_refused_without_reading_it(app_client):
    app = create_app(app_client.app.state.models, AppSettings(limits=Limits(max_body_bytes=1 << 20)))
    limit = "request body too large: the limit is 1 MiB"
    declared = [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"100000000")]
    assert _asgi(app, declared, b"x" * 65536) == (413, {"error": limit}, 0)  # from Content-Length: nothing read
    chunked = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    status, body, asked = _asgi(app, chunked, b"x" * 65536)  # 64 KiB chunks without end
    assert (status, body) == (413, {"error": limit}) and asked == 17  # stops at the first chunk past 1 MiB


def test_the_token_rule(app_client, samples, tmp_path):
    app = create_app(app_client.app.state.models, AppSettings(token="s3cret-token"))
    client = TestClient(app)
    upload = {"files": {"file": ("p.png", samples["pullover"], "image/png")}}
    assert client.post("/predict", **upload).status_code == 401
    wrong = client.post("/predict", headers={"authorization": "Bearer nope"}, **upload)
    assert wrong.status_code == 401 and wrong.json()["error"].startswith("missing or wrong bearer token")
    assert client.post("/models/tiny/predict", headers={"authorization": "Bearer s3cret-token"}, **upload).status_code == 200
    assert client.get("/models").json()["token_required"] and client.get("/healthz").status_code == 200
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with pytest.raises(FmnistError, match="--host 0.0.0.0 is reachable from other machines: give --token-file"):
        check(ServeOptions([Path("m.onnx")], host="0.0.0.0"))
    assert check(ServeOptions([Path("m.onnx")], host="0.0.0.0", token_file=token_file)).token == "s3cret-token"
    assert check(ServeOptions([Path("m.onnx")], host="0.0.0.0", insecure=True)).token is None
    assert check(ServeOptions([Path("m.onnx")], host="::1")).token is None
    refused = subprocess.run([FMNIST, "serve", "m.onnx", "--host", "10.1.2.3"], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--token-file" in refused.stderr


def test_threads_per_model_call(serve_models, fashion):
    """--threads N: each ONNX call on N threads, which sleep between calls (a server shares its cores with
    the requests' own work); 0, the default, leaves onnxruntime's own choice; the answers do not change."""
    safetensors, onnx = serve_models
    with pytest.raises(FmnistError, match="--threads must be 0"):
        check(ServeOptions([Path("m.onnx")], threads=-1))
    assert ServeOptions([Path("m.onnx")]).threads == 0
    models = ModelSet([onnx], threads=1)
    models.load()
    predictor = models.get(None).predictor
    options = predictor.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    default = fmnist.inference.load_predictor(onnx)
    assert default.session.get_session_options().intra_op_num_threads == 0  # onnxruntime's own choice
    images = fashion.test.images[:300]
    np.testing.assert_allclose(predictor.probabilities(images), default.probabilities(images), rtol=1e-5, atol=1e-6)
    with pytest.raises(FmnistError, match="threads must be at least 1, got 0"):
        fmnist.inference.load_predictor(onnx, threads=0)


def test_only_tiny_inputs_skip_the_worker_thread(samples, fashion):
    """`tiny` decides from a PNG's header alone: a 28x28 PNG is predicted on the event loop, a file that is
    small but declares a huge image (a decompression bomb) or any other format goes to a thread."""
    from fmnist.workflows.serve.uploads import Upload, tiny

    assert tiny(Upload("p.png", samples["pullover"]))
    assert not tiny(Upload("bomb.png", png_header_only(30000, 30000)))  # a few dozen bytes, 900 megapixels
    assert tiny(Upload("edge.png", png_header_only(64, 64))) and not tiny(Upload("big.png", png_header_only(65, 64)))
    jpeg = io.BytesIO()
    Image.fromarray(fashion.test.images[1]).save(jpeg, format="JPEG")
    assert not tiny(Upload("p.jpg", jpeg.getvalue())) and not tiny(Upload("short.png", samples["pullover"][:20]))
    assert tiny(Upload(None, arrays=fashion.test.images[:64])) and not tiny(Upload(None, arrays=fashion.test.images[:65]))


def test_cors_only_when_asked(app_client):
    assert "access-control-allow-origin" not in app_client.get("/models", headers={"origin": "https://x.test"}).headers
    app = create_app(app_client.app.state.models, AppSettings(cors_origins=("https://x.test",)))
    allowed = TestClient(app).get("/models", headers={"origin": "https://x.test"})
    assert allowed.headers["access-control-allow-origin"] == "https://x.test"


def test_not_ready_until_loaded(serve_models):
    app = create_app(ModelSet([serve_models[1]]))
    client = TestClient(app)  # no lifespan: loading never starts
    assert client.get("/readyz").status_code == 503 and client.get("/healthz").status_code == 200
    answer = client.post("/predict", json={"arrays": [[[0] * 28] * 28]})
    assert answer.status_code == 503 and "loading" in answer.json()["error"]


def test_metrics_count_requests_and_images(app_client, samples):
    app_client.post("/predict", files={"file": ("p.png", samples["pullover"], "image/png")})
    text = app_client.get("/metrics").text
    assert 'fmnist_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'fmnist_images_predicted_total{model="tiny-onnx"}' in text
    assert 'fmnist_request_seconds_bucket{le="0.001",route="/predict"}' in text
    assert 'fmnist_batch_size_count{model="tiny-onnx"}' in text


# --------------------------------------------------------------------------- a real server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(*args) -> tuple[subprocess.Popen, str]:
    """`fmnist serve ARGS` on a free loopback port, once /readyz says ready: (process, base URL)."""
    port = free_port()
    process = subprocess.Popen([FMNIST, "serve", *map(str, args), "--port", str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"fmnist serve exited {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("fmnist serve did not get ready in 60 s")


def stop_server(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, stderr


def test_a_real_server_predicts_counts_and_stops_on_sigterm(serve_models, samples):
    process, url = start_server(serve_models[1])
    try:
        answer = httpx.post(f"{url}/predict", files={"file": ("photo.png", samples["pullover"], "image/png")})
        assert answer.status_code == 200 and answer.json()["records"][0]["path"] == "photo.png"
        metrics = httpx.get(f"{url}/metrics").text
        assert 'fmnist_images_predicted_total{model="tiny"} 1.0' in metrics
    finally:
        code, stderr = stop_server(process)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "fmnist serve: tiny (onnxruntime)" in stderr


@pytest.mark.slow
def test_two_workers_share_the_load_and_their_metrics_are_summed(serve_models, samples):
    process, url = start_server(serve_models[1], "--workers", "2", "--batch-max", "8")
    try:
        ready, deadline = 0, time.monotonic() + 60
        while ready < 8 and time.monotonic() < deadline:  # both workers: each loads its own models
            ready = ready + 1 if httpx.get(f"{url}/readyz").status_code == 200 else 0
        assert ready == 8
        with httpx.Client() as client:  # new connections: uvicorn's workers take turns accepting them
            for _ in range(12):
                # eight ready answers may all have come from one worker: the other answers 503 until its models
                # are loaded, and a client tries again (a 503 predicts nothing, so the count stays exact)
                for _attempt in range(100):
                    answer = httpx.post(f"{url}/predict", files={"file": ("photo.png", samples["pullover"], "image/png")})
                    if answer.status_code != 503:
                        break
                    time.sleep(0.1)
                assert answer.status_code == 200, answer.text
            scrapes = [client.get(f"{url}/metrics", headers={"connection": "close"}).text for _ in range(4)]
        for metrics in scrapes:  # whichever worker answers, it reports all 12
            assert 'fmnist_images_predicted_total{model="tiny"} 12.0' in metrics
    finally:
        code, stderr = stop_server(process)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "2 workers" in stderr


def test_a_photo_gets_the_records_fmnist_predict_gives_mirroring_included(tmp_path, fashion):
    """Serve decoded uploads itself and predicted them as one array batch, which is never mirrored:
    a model trained with flips answered `mirrored: false` with other probabilities than `fmnist predict`."""
    from test_mirror import photo, untrained

    model = untrained(tmp_path / "flip.safetensors", "baseline", "flip+crop", fashion.classes)
    upload = photo(fashion.test.images[0])
    expected = fmnist.predict(model, [upload], top_k=10)[0]
    models = ModelSet([model])
    with TestClient(create_app(models)) as client:
        assert models.wait(60), models.error
        answer = client.post("/predict?top_k=10", files={"file": ("shoe.jpg", upload, "image/jpeg")})
    assert answer.status_code == 200, answer.text
    record = answer.json()["records"][0]
    assert expected.mirrored and record["mirrored"] is True and record["path"] == "shoe.jpg"
    assert [entry["label"] for entry in record["top_k"]] == [entry["label"] for entry in expected.top_k]
    assert [entry["probability"] for entry in record["top_k"]] == pytest.approx(
        [entry["probability"] for entry in expected.top_k], abs=1e-6)
