"""Prediction speed and robustness: cold start, batch throughput, accuracy on photo-like images.

    .venv/bin/python benchmarks/predict.py [--model runs/baseline/model.safetensors] [--photos 2000]

1. Cold start: wall time of `fmnist predict MODEL one.png` as a fresh process (median of --runs),
   for the exported .onnx file (onnxruntime, torch never imported) and the .safetensors file.
2. Batch throughput: the 10,000 test images as decoded uint8 arrays through `fmnist.predict` (end
   to end: batches, softmax, top-3 records), both runtimes; median of 5 timed runs after a warm-up.
   For comparison, the same from files: 2,000 test images as PNG files in a folder (decoding and
   preparing included), onnxruntime.
3. Photo-like images (benchmarks/photos.py): accuracy of the same model on the arrays, on JPEG
   "photos" prepared by fmnist, and on the photos read the write-ups' way (grayscale, stretched to
   28x28, no inversion); and the time to decode and prepare one photo.

Results go to stdout as a Markdown table and to benchmarks/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fmnist  # noqa: E402
from fmnist import image_files, images  # noqa: E402
from fmnist.inference import load_predictor  # noqa: E402
from photos import naive_pixels, photo_bytes  # noqa: E402


def cold_start(model: Path, image: Path, runs: int) -> dict:
    command = [str(Path(sys.executable).parent / "fmnist"), "predict", str(model), str(image)]
    subprocess.run(command, check=True, capture_output=True)  # warm the page cache, not the process
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": runs}


def throughput(model: Path, pixels: np.ndarray, repeats: int = 5) -> dict:
    predictor = load_predictor(model, device="cpu")
    fmnist.predict(predictor, pixels[:2000])  # warm-up: allocations, kernels
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        records = fmnist.predict(predictor, pixels)
        rates.append(len(records) / (time.perf_counter() - started))
    return {"median_images_per_s": statistics.median(rates), "min_images_per_s": min(rates),
            "batch_size": predictor.batch_size, "images": len(pixels), "repeats": repeats}


def from_files(model: Path, pixels: np.ndarray, folder: Path, repeats: int = 3) -> dict:
    from PIL import Image

    folder.mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    predictor = load_predictor(model, device="cpu")
    fmnist.predict(predictor, folder)  # warm-up: the page cache
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        records = fmnist.predict(predictor, folder)
        rates.append(len(records) / (time.perf_counter() - started))
    return {"median_images_per_s": statistics.median(rates), "files": len(pixels), "repeats": repeats}


def photo_accuracy(model: Path, dataset, count: int) -> dict:
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(dataset.test), size=count, replace=False)
    labels = dataset.test.labels[chosen]
    photos = [photo_bytes(image, rng) for image in dataset.test.images[chosen]]
    predictor = load_predictor(model, device="cpu")

    def accuracy(inputs) -> float:
        return float(np.mean([r.index for r in fmnist.predict(predictor, inputs)] == labels))

    started = time.perf_counter()
    prepared = [images.load(p).pixels for p in photos]
    per_photo = (time.perf_counter() - started) / count
    sizes = [image_files.open_image(p).size for p in photos[:200]]
    return {
        "photos": count,
        "arrays": accuracy(dataset.test.images[chosen]),
        "fmnist": accuracy(np.stack(prepared)),
        "write_ups_load_img": accuracy(np.stack([naive_pixels(p) for p in photos])),
        "prepare_ms_per_photo": per_photo * 1000,
        "median_photo_size": [int(np.median([s[0] for s in sizes])), int(np.median([s[1] for s in sizes]))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("runs/baseline/model.safetensors"),
                        help="a .safetensors model file (make run writes runs/baseline/model.safetensors)")
    parser.add_argument("--photos", type=int, default=2000, help="photo-like images for the accuracy check")
    parser.add_argument("--runs", type=int, default=10, help="cold starts per runtime")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "predict.json")
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"{args.model}: no such model file (run `make run` first, or pass --model)")
    dataset = fmnist.load_dataset(download=False)
    with tempfile.TemporaryDirectory() as scratch:
        onnx = Path(scratch) / "model.onnx"
        fmnist.export_onnx(args.model, onnx, check_images=dataset.test.images, check_name="the test images")
        image = Path(scratch) / "one.png"
        from PIL import Image

        Image.fromarray(dataset.test.images[1]).save(image)
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_implementation()} "
                       f"{platform.python_version()}",
            "torch": __import__("torch").__version__,
            "onnxruntime": __import__("onnxruntime").__version__,
            "model": str(args.model),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "cold_start": {"onnx": cold_start(onnx, image, args.runs),
                           "safetensors": cold_start(args.model, image, args.runs)},
            "throughput": {"onnxruntime": throughput(onnx, dataset.test.images),
                           "torch": throughput(args.model, dataset.test.images),
                           "png_files_onnxruntime": from_files(onnx, dataset.test.images[:2000],
                                                               Path(scratch) / "pngs")},
            "photos": photo_accuracy(onnx, dataset, args.photos),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    cold, speed, photos = results["cold_start"], results["throughput"], results["photos"]
    print(f"machine: {results['machine']}; torch {results['torch']}, onnxruntime {results['onnxruntime']}")
    print("| measure | onnx (onnxruntime) | safetensors (PyTorch) |\n|---|---|---|")
    print(f"| cold start `fmnist predict MODEL one.png`, median of {args.runs} | {cold['onnx']['median_s']:.2f} s | "
          f"{cold['safetensors']['median_s']:.2f} s |")
    print(f"| 10,000 test images through `fmnist.predict`, median of 5 | "
          f"{speed['onnxruntime']['median_images_per_s']:,.0f} images/s | {speed['torch']['median_images_per_s']:,.0f} images/s |")
    print(f"| 2,000 test images as PNG files in a folder (decoding included), median of 3 | "
          f"{speed['png_files_onnxruntime']['median_images_per_s']:,.0f} images/s | |")
    print(f"\n{photos['photos']:,} photo-like test images (median {photos['median_photo_size'][0]}x"
          f"{photos['median_photo_size'][1]} JPEG): accuracy on the arrays {photos['arrays']:.2%}, "
          f"on the photos prepared by fmnist {photos['fmnist']:.2%}, read the write-ups' way "
          f"{photos['write_ups_load_img']:.2%}; decoding and preparing takes {photos['prepare_ms_per_photo']:.1f} ms a photo")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
