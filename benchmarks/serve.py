"""`fmnist serve` under load: requests per second and latency from a second process on loopback.

    .venv/bin/python benchmarks/serve.py --onnx runs/baseline/model.onnx \
        --safetensors runs/baseline/model.safetensors [--seconds 5]

The server is a real `fmnist serve` process; the load comes from this process, a small asyncio HTTP/1.1
client of its own (keep-alive connections, requests built once, responses read by Content-Length:
far less CPU per request than a Python HTTP library, which matters when both share 2 cores). Each case
runs for --seconds after a one-second warm-up; every response that is not 200 counts as an error.

Cases: one 28x28 PNG (multipart) at concurrency 1, 8 and 64; one 400x500 photo-like JPEG
(benchmarks/photos.py) at 8; a JSON batch of 256 arrays at 2 (images/s); 2 workers against 1; the
.safetensors model (PyTorch) against .onnx: time from starting the process to /readyz 200, and its
resident memory once ready. Writes benchmarks/results/serve.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

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
    def __init__(self, model: Path, workers: int = 1, extra: tuple[str, ...] = ()):
        self.port = free_port()
        started = time.perf_counter()
        self.process = subprocess.Popen([FMNIST, "serve", str(model), "--port", str(self.port), "--workers",
                                         str(workers), "--quiet", "--max-files", "300", *extra],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"fmnist serve failed: {self.process.stderr.read().decode()}")
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

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


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


def machine() -> dict:
    info = Path("/proc/cpuinfo").read_text()
    field = lambda key: next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(key)), "")  # noqa: E731
    flags = field("flags").split()
    return {"cpu": field("model name"), "cores": os.cpu_count(), "python": platform.python_version(),
            "flags_of_note": [f for f in flags if f.startswith(("avx", "sse4", "fma", "amx"))],
            "load_average_before": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--safetensors", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None, help="default: results/serve.json "
                                                                 "(results/serve-batching.json with --batching)")
    parser.add_argument("--batching", action="store_true",
                        help="only micro-batching off against on (--batch-max 32, --batch-wait-ms 2 and 5) for "
                             "one 28x28 PNG per request at concurrency 1, 8 and 64")
    args = parser.parse_args()
    args.out = args.out or HERE / "results" / ("serve-batching.json" if args.batching else "serve.json")

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

    results = {"machine": machine(), "command": " ".join(sys.argv), "cases": []}

    def case(name: str, server: Server, body_and_kind, path: str, concurrency: int, images: int = 1):
        request = request_bytes(server.port, path, *body_and_kind)
        measured = load(server.port, request, concurrency, args.seconds)
        measured.update(case=name, images_per_s=measured["requests_per_s"] * images)
        results["cases"].append(measured)
        print(f"| {name} | {concurrency} | {measured['requests_per_s']:,.0f} | {measured['images_per_s']:,.0f} | "
              f"{measured['p50_ms']:.1f} | {measured['p99_ms']:.1f} | {measured['errors']} |", flush=True)

    print("| case | concurrency | requests/s | images/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
    png_request = multipart("one.png", small_png, "image/png")
    if args.batching:
        for label, extra in (("off", ()), ("--batch-max 32 --batch-wait-ms 2", ("--batch-max", "32", "--batch-wait-ms", "2")),
                             ("--batch-max 32 --batch-wait-ms 5", ("--batch-max", "32", "--batch-wait-ms", "5"))):
            server = Server(args.onnx, extra=extra)
            try:
                for concurrency in (1, 8, 64):
                    case(f"28x28 PNG, .onnx, batching {label}", server, png_request, "/predict", concurrency)
            finally:
                server.stop()
        results["machine"]["load_average_after"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        return
    server = Server(args.onnx)
    results["onnx"] = {"ready_s": server.ready_s, "rss_mib": server.rss_mib}
    try:
        for concurrency in (1, 8, 64):
            case("28x28 PNG, .onnx, 1 worker", server, png_request, "/predict", concurrency)
        case("400x500 JPEG photo, .onnx, 1 worker", server, multipart("photo.jpg", jpeg, "image/jpeg"), "/predict", 8)
        case("JSON 256 arrays, .onnx, 1 worker", server, (arrays, "application/json"), "/predict?top_k=1", 2, images=256)
    finally:
        results["onnx"]["exit_status"] = server.stop()
    server = Server(args.onnx, workers=2)
    results["onnx_2_workers"] = {"ready_s": server.ready_s, "rss_mib": server.rss_mib}
    try:
        for concurrency in (8, 64):
            case("28x28 PNG, .onnx, 2 workers", server, png_request, "/predict", concurrency)
    finally:
        results["onnx_2_workers"]["exit_status"] = server.stop()
    server = Server(args.safetensors)
    results["safetensors"] = {"ready_s": server.ready_s, "rss_mib": server.rss_mib}
    try:
        case("28x28 PNG, .safetensors, 1 worker", server, png_request, "/predict", 8)
    finally:
        results["safetensors"]["exit_status"] = server.stop()
    results["machine"]["load_average_after"] = os.getloadavg()
    for key in ("onnx", "onnx_2_workers", "safetensors"):
        print(f"\n{key}: ready in {results[key]['ready_s']:.2f} s, RSS {results[key]['rss_mib']:.0f} MiB, "
              f"exit status {results[key]['exit_status']}")
    print(f"\nload average before/after: {results['machine']['load_average_before']} / "
          f"{results['machine']['load_average_after']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
