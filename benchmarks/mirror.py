"""Orientation: accuracy on photos and on mirrored photos, with and without mirror-averaged logits.

    .venv/bin/python benchmarks/mirror.py --model runs/baseline/model.safetensors [--model runs/flip/model.safetensors]
        [--photos 1000] [--seeds 0 1 2]

Every Fashion-MNIST shoe points left; a user's photo may show it pointing right. For each model and
each photo seed (the photo generator's rng, benchmarks/photos.py), --photos test images are drawn,
photographed as they are and as their mirror images (the same rng draws for both, so each pair
differs only in orientation), and prepared by fmnist. On each set, accuracy of:

    plain        the model's logits for the prepared image
    mean logits  the mean of the logits for the image and for its mirror image (left-right)
    mean probs   the mean of the softmax probabilities for the two
    surer view   the probabilities of whichever of the two views has the higher top probability

and the same three on the 10,000 test arrays, where `fmnist predict` never mirrors (they are the
model's input as they are) but the numbers say what mirroring would do to dataset-like images.
Finally, `fmnist.predict(..., mirror=...)` is checked to give what the chosen rule computes here.

Results go to benchmarks/results/mirror.json (every seed) and mirror.md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fmnist  # noqa: E402
from fmnist import images  # noqa: E402
from fmnist.inference import load_predictor, softmax  # noqa: E402
from photos import photo_bytes  # noqa: E402

WAYS = ("plain", "mean_logits", "mean_probs", "surer_view")
SHOES = (5, 7, 9)  # Sandal, Sneaker, Ankle boot
BAG = 8


def cpu() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return {"model": model.group(1) if model else platform.processor(), "cores": os.cpu_count(),
            "flags": flags.group(1).split() if flags else []}


def scores(predictor, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Per way, the (N, C) scores whose argmax is the prediction."""
    logits = predictor.logits(pixels)
    mirrored = predictor.logits(np.ascontiguousarray(pixels[:, :, ::-1]))
    plain, flipped = softmax(logits), softmax(mirrored)
    surer = np.where((plain.max(1) >= flipped.max(1))[:, None], plain, flipped)
    return {"plain": logits, "mean_logits": 0.5 * (logits + mirrored), "mean_probs": 0.5 * (plain + flipped),
            "surer_view": surer}


def accuracies(predictor, pixels: np.ndarray, labels: np.ndarray) -> dict:
    result = {}
    for way, score in scores(predictor, pixels).items():
        predicted = score.argmax(1)
        shoes = np.isin(labels, SHOES)
        result[way] = {"accuracy": float(np.mean(predicted == labels)),
                       "shoe_accuracy": float(np.mean(predicted[shoes] == labels[shoes])),
                       "shoes_called_bag": int(np.sum(predicted[shoes] == BAG)), "shoes": int(shoes.sum())}
    return result


def photo_set(dataset, count: int, seed: int) -> dict:
    """The photos of one seed, both orientations, prepared by fmnist (the same for every model)."""
    chosen = np.random.default_rng(seed).choice(len(dataset.test), size=count, replace=False)
    result = {"seed": seed, "labels": dataset.test.labels[chosen]}
    for name, mirrored in (("photos", False), ("mirrored_photos", True)):
        rng = np.random.default_rng([seed, 1])  # the same draws for both orientations
        photos = [photo_bytes(image, rng, mirrored=mirrored) for image in dataset.test.images[chosen]]
        prepared = [images.load(photo) for photo in photos]
        result[name] = (photos, np.stack([p.pixels for p in prepared]), sum(p.passthrough for p in prepared))
    return result


def photo_run(predictor, photo_set: dict) -> dict:
    labels = photo_set["labels"]
    run = {"seed": photo_set["seed"], "photos": len(labels)}
    for name in ("photos", "mirrored_photos"):
        _, pixels, passthrough = photo_set[name]
        run[f"{name}_passthrough"] = passthrough
        run[name] = accuracies(predictor, pixels, labels)
    # The API with mirror on must give what `mean logits` computes here; off, what `plain` does.
    photos, pixels, _ = photo_set["photos"]
    for mode, way in (("on", "mean_logits"), ("off", "plain")):
        records = fmnist.predict(predictor, photos[:100], mirror=mode)
        expected = scores(predictor, pixels[:100])[way].argmax(1)
        run[f"api_{mode}_agrees"] = [r.index for r in records] == expected.tolist()
    return run


def summarise(runs: list[dict], key: str, way: str, field: str = "accuracy") -> dict:
    values = [run[key][way][field] for run in runs]
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True, help="a model file (repeatable)")
    parser.add_argument("--photos", type=int, default=1000, help="test images photographed per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="photo generator seeds")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "mirror.json")
    args = parser.parse_args()
    dataset = fmnist.load_dataset(download=False)
    results = {"machine": {**cpu(), "python": platform.python_version()}, "torch": __import__("torch").__version__,
               "command": " ".join([Path(sys.executable).name, *sys.argv]), "models": {}}
    photo_sets = [photo_set(dataset, args.photos, seed) for seed in args.seeds]
    for model in args.model:
        predictor = load_predictor(model, device="cpu")
        config = predictor.model_file.config
        entry = {"architecture": predictor.model_file.architecture, "augment": config.get("augment"),
                 "epochs": config.get("epochs"), "test_metrics": predictor.model_file.metrics,
                 "test_arrays": accuracies(predictor, dataset.test.images, dataset.test.labels),
                 "runs": [photo_run(predictor, photos) for photos in photo_sets]}
        entry["summary"] = {key: {way: summarise(entry["runs"], key, way) for way in WAYS}
                            for key in ("photos", "mirrored_photos")}
        entry["summary_shoes"] = {key: {way: summarise(entry["runs"], key, way, "shoe_accuracy") for way in WAYS}
                                  for key in ("photos", "mirrored_photos")}
        results["models"][str(model)] = entry
        print(f"{model}: done", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results, args)
    args.out.with_suffix(".md").write_text(table)
    print(table, end="")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


def markdown(results: dict, args) -> str:
    def cell(stats: dict) -> str:
        return f"{stats['mean']:.2%} ± {stats['std']:.2%}"

    lines = [f"Machine: {results['machine']['model']}, {results['machine']['cores']} cores; torch {results['torch']}.",
             f"Command: `{results['command']}`", "",
             f"Photos: {args.photos:,} test images per seed, seeds {', '.join(map(str, args.seeds))}: mean ± std "
             "over the seeds. Test arrays: all 10,000, one run (deterministic).", "",
             "| model (training) | inputs | plain | mean logits (image + mirror) | mean probabilities | surer view |",
             "|---|---|---|---|---|---|"]
    for path, entry in results["models"].items():
        name = f"{entry['architecture'].get('name', 'spec')}, augment {entry['augment']}, {entry['epochs']} epochs"
        arrays = entry["test_arrays"]
        lines.append(f"| {name} | test arrays (never mirrored by predict) | "
                     + " | ".join(f"{arrays[way]['accuracy']:.2%}" for way in WAYS) + " |")
        for key, label in (("photos", "photos"), ("mirrored_photos", "mirrored photos")):
            lines.append(f"| {name} | {label} | " + " | ".join(cell(entry["summary"][key][way]) for way in WAYS) + " |")
        for key, label in (("photos", "photos, shoes only"), ("mirrored_photos", "mirrored photos, shoes only")):
            lines.append(f"| {name} | {label} | "
                         + " | ".join(cell(entry["summary_shoes"][key][way]) for way in WAYS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
