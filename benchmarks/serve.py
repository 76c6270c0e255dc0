"""`fmnist serve` under load: requests per second and latency from a second process on loopback.

    .venv/bin/python benchmarks/serve.py --onnx runs/baseline/model.onnx \
        --safetensors runs/baseline/model.safetensors [--bentoml /tmp/bento/bin/bentoml] [--seconds 5]

The server is a real `fmnist serve` process; the load comes from this process, a small asyncio HTTP/1.1
client of its own (keep-alive connections, requests built once, responses read by Content-Length:
far less CPU per request than a Python HTTP library, which matters when both share 2 cores). Each case
runs for --seconds after a one-second warm-up, --repeat times (the servers taking turns); every
response that is not 200 counts as an error.

Servers and cases (--only NAME,... runs some of them):
  onnx        the defaults (1 worker, onnxruntime's own threads): one 28x28 PNG (multipart) at concurrency 1,
              8, 64; a 400x500 photo-like JPEG (benchmarks/photos.py) at 8; a JSON batch of 256 images as
              nested lists ("arrays") at 1, 2, 8 and as packed base64 bytes ("pixels") at 2
  threads1    --threads 1 (each model call on one thread that does not spin): PNG at 1, 8, 64; JSON at 2
  batching    --batch-max 32 --batch-wait-ms 2: PNG at 1, 8, 64
  workers2    --workers 2: PNG at 1, 8, 64; JSON arrays and pixels at 2
  safetensors the .safetensors model (PyTorch): PNG at 8
  bentoml     the same .onnx model served by BentoML (benchmarks/bentoml_service.py, its own virtual
              environment: give its `bentoml` with --bentoml; access log off): PNG at 1, 8, 64; JSON at 2
For every server: the time from starting the process to its readiness answering 200, and its resident
memory (with its child processes) once ready. Writes benchmarks/results/serve.json (--out) and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402
from photos import photo_bytes  # noqa: E402

FMNIST = str(Path(sys.executable).parent / "fmnist")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of the process and its children (uvicorn's workers), MiB."""
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
                    .stdout.split()]
    total = 0
    for one in pids:
        try:
            status = Path(f"/proc/{one}/status").read_text()
        except OSError:
            continue
        total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
    return total / 1024


class Server:
    """A server process started for real, waited on until /readyz answers 200 (within 120 s)."""

    def __init__(self, command: list[str], port: int, env: dict | None = None):
        self.port = port
        started = time.perf_counter()
        # stderr to a file, not a pipe: nobody reads it while the server runs, and a full pipe would block it
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log,
                                        env={**os.environ, **(env or {})}, start_new_session=True)
        while True:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"{command[0]} failed: {self.log.read().decode(errors='replace')[-2000:]}")
            if time.perf_counter() - started > 120:
                self.stop()
                raise SystemExit(f"{' '.join(command)}: not ready after 120 s")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.01)
        self.ready_s = time.perf_counter() - started
        time.sleep(0.5)
        self.rss_mib = rss_mib(self.process.pid)

    @classmethod
    def fmnist(cls, model: Path, *options: str) -> "Server":
        port = free_port()
        return cls([FMNIST, "serve", str(model), "--port", str(port), "--quiet", "--max-files", "300", *options], port)

    @classmethod
    def bentoml(cls, bentoml: str, model: Path, workers: int = 1) -> "Server":
        port = free_port()
        env = {"FMNIST_BENCH_ONNX": str(model.resolve()), "FMNIST_BENCH_WORKERS": str(workers),
               "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": tempfile.mkdtemp(prefix="bentoml-home-"),
               "BENTOML_CONFIG_OPTIONS": "api_server.logging.access.enabled=false"}
        return cls([bentoml, "serve", f"{HERE / 'bentoml_service.py'}:Fmnist", "--port", str(port)], port, env=env)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            try:  # whatever it started (BentoML's workers) goes too
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.log.close()


def multipart(name: str, data: bytes, kind: str) -> tuple[bytes, str]:
    boundary = "fmnistbenchboundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {kind}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def request_bytes(port: int, path: str, body: bytes, content_type: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _worker(port: int, request: bytes, stop_at: float, record_from: float, latencies: list, errors: list):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            if started >= record_from:
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors.append(status)
    finally:
        writer.close()


def load(port: int, request: bytes, concurrency: int, seconds: float, warm_up: float = 1.0) -> dict:
    latencies, errors = [], []

    async def run():
        now = time.perf_counter()
        await asyncio.gather(*[_worker(port, request, now + warm_up + seconds, now + warm_up, latencies, errors)
                               for _ in range(concurrency)])
    asyncio.run(run())
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"concurrency": concurrency, "requests": len(ordered), "requests_per_s": len(ordered) / seconds,
            "p50_ms": pick(0.50), "p99_ms": pick(0.99), "errors": len(errors), "seconds": seconds}


SERVERS = ("onnx", "threads1", "batching", "workers2", "safetensors", "bentoml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--safetensors", type=Path, required=True)
    parser.add_argument("--bentoml", help="the `bentoml` command of a virtual environment with BentoML and "
                                          "onnxruntime: adds BentoML serving the same .onnx model")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case (after 1 s of warm-up)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every server and case (mean ± std)")
    parser.add_argument("--only", default=",".join(SERVERS), help=f"servers to measure, of {', '.join(SERVERS)}")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(only) - set(SERVERS):
        parser.error(f"--only: unknown {sorted(unknown)}")
    if "bentoml" in only and not args.bentoml:
        only.remove("bentoml")

    import fmnist
    test = fmnist.load_dataset(download=False).test
    buffer = io.BytesIO()
    Image.fromarray(test.images[1]).save(buffer, format="PNG")
    small_png = buffer.getvalue()
    photo = Image.open(io.BytesIO(photo_bytes(test.images[1], np.random.default_rng(1)))).resize((400, 500))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=85)
    jpeg = buffer.getvalue()
    arrays = json.dumps({"arrays": test.images[:256].tolist()}).encode()
    bento_arrays = json.dumps({"arrays": test.images[:256].tolist(), "top_k": 1}).encode()

    results = {"machine": machine(), "command": " ".join(sys.argv), "servers": {}, "cases": []}
    png_request = multipart("one.png", small_png, "image/png")
    json_request = (arrays, "application/json")
    pixels_request = (json.dumps({"pixels": base64.b64encode(test.images[:256].tobytes()).decode()}).encode(),
                      "application/json")
    plans = {  # server name → (how to start it, [(case, path, request, concurrency, images per request)])
        "onnx": (lambda: Server.fmnist(args.onnx),
                 [("28x28 PNG", "/predict", png_request, c, 1) for c in (1, 8, 64)]
                 + [("400x500 JPEG photo", "/predict", multipart("photo.jpg", jpeg, "image/jpeg"), 8, 1)]
                 + [("JSON 256 arrays", "/predict?top_k=1", json_request, c, 256) for c in (1, 2, 8)]
                 + [("JSON 256 pixels", "/predict?top_k=1", pixels_request, 2, 256)]),
        "threads1": (lambda: Server.fmnist(args.onnx, "--threads", "1"),
                     [("28x28 PNG", "/predict", png_request, c, 1) for c in (1, 8, 64)]
                     + [("JSON 256 arrays", "/predict?top_k=1", json_request, 2, 256)]),
        "batching": (lambda: Server.fmnist(args.onnx, "--batch-max", "32", "--batch-wait-ms", "2"),
                     [("28x28 PNG", "/predict", png_request, c, 1) for c in (1, 8, 64)]),
        "workers2": (lambda: Server.fmnist(args.onnx, "--workers", "2"),
                     [("28x28 PNG", "/predict", png_request, c, 1) for c in (1, 8, 64)]
                     + [("JSON 256 arrays", "/predict?top_k=1", json_request, 2, 256)]
                     + [("JSON 256 pixels", "/predict?top_k=1", pixels_request, 2, 256)]),
        "safetensors": (lambda: Server.fmnist(args.safetensors),
                        [("28x28 PNG", "/predict", png_request, 8, 1)]),
        "bentoml": (lambda: Server.bentoml(args.bentoml, args.onnx),
                    [("28x28 PNG", "/predict", multipart("one.png", small_png, "image/png"), c, 1) for c in (1, 8, 64)]
                    + [("JSON 256 arrays", "/predict_arrays", (bento_arrays, "application/json"), 2, 256)]),
    }
    for repeat in range(1, args.repeat + 1):  # the servers take turns, so a slow minute is spread over all
        for name in only:
            start, cases = plans[name]
            server = start()
            results["servers"].setdefault(name, []).append({"ready_s": server.ready_s, "rss_mib": server.rss_mib})
            try:
                for case, path, (body, kind), concurrency, images in cases:
                    measured = load(server.port, request_bytes(server.port, path, body, kind), concurrency,
                                    args.seconds)
                    measured.update(server=name, case=case, repeat=repeat,
                                    images_per_s=measured["requests_per_s"] * images)
                    results["cases"].append(measured)
                    print(f"# {repeat} {name} {case} c={concurrency}: {measured['images_per_s']:,.0f} images/s, "
                          f"p99 {measured['p99_ms']:.1f} ms, {measured['errors']} errors", file=sys.stderr, flush=True)
            finally:
                results["servers"][name][-1]["exit_status"] = server.stop()
    spread = lambda values, digits=0: (f"{statistics.mean(values):,.{digits}f}"  # noqa: E731
                                       + (f" ± {statistics.stdev(values):,.{digits}f}" if len(values) > 1 else ""))
    print(f"mean ± standard deviation over {args.repeat} run(s) of {args.seconds:g} s per case\n")
    print("| server | case | concurrency | requests/s | images/s | p50 ms | p99 ms | errors |\n"
          "|---|---|---|---|---|---|---|---|")
    keys = dict.fromkeys((case["server"], case["case"], case["concurrency"]) for case in results["cases"])
    for name, case, concurrency in keys:
        runs = [one for one in results["cases"]
                if (one["server"], one["case"], one["concurrency"]) == (name, case, concurrency)]
        print(f"| {name} | {case} | {concurrency} | {spread([r['requests_per_s'] for r in runs])} | "
              f"{spread([r['images_per_s'] for r in runs])} | {spread([r['p50_ms'] for r in runs], 1)} | "
              f"{spread([r['p99_ms'] for r in runs], 1)} | {sum(r['errors'] for r in runs)} |")
    results["machine"]["load_average_after"] = os.getloadavg()
    print("\n| server | ready s | resident MiB | exit status on SIGTERM |\n|---|---|---|---|")
    for name, starts in results["servers"].items():
        print(f"| {name} | {spread([one['ready_s'] for one in starts], 2)} | "
              f"{spread([one['rss_mib'] for one in starts])} | {sorted({one['exit_status'] for one in starts})} |")
    print(f"\nload average before/after: {results['machine']['load_average']} / "
          f"{results['machine']['load_average_after']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    partial.replace(args.out)


if __name__ == "__main__":
    main()
