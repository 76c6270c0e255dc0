"""The `fast` recipe on this machine: time to 93 % test accuracy, and what each of its pieces is worth.

    .venv/bin/python benchmarks/fast_recipe.py --seeds 3 --ablation-seeds 2

Trains `fmnist train --recipe fast` (validating on the test set after every epoch, which is not
timed), then the same recipe with one piece taken away at a time. Reported per variant: training
seconds until the test accuracy first reaches 93.0 % (mean over the seeds that reach it, and how
many did), final test accuracy (mean ± std), seconds per epoch. Nothing is excluded as warm-up:
the first epoch counts. Results go to stdout as Markdown and to benchmarks/results/fast_recipe.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# variant name → the config values it changes (the rest is the recipe)
ABLATIONS = {
    "no flip TTA (one view at test time)": {"model_options": {"tta": False}},
    "no flip augmentation": {"augment": "none"},
    "flip + translation (±2 px) augmentation": {"augment": "flip+crop"},
    "no label smoothing": {"label_smoothing": 0.0},
    "fp32 instead of bf16 autocast": {"precision": "fp32"},
    "constant learning rate (no warm-up, no decay)": {"schedule": "constant"},
    "plain momentum instead of Nesterov": {"nesterov": False},
    "GELU instead of ReLU": {"model_options": {"activation": "gelu"}},
}


def run(changes: dict, seed: int, dataset, target: float) -> dict:
    from fmnist.engine.config import build_config
    from fmnist.engine.trainer import fit

    config = build_config(recipe="fast", seed=seed, device="cpu", checkpoint="none", val="test", **changes)
    with tempfile.TemporaryDirectory() as out:
        result = fit(config, Path(out) / "run", dataset=dataset)
    elapsed, reached, rows = 0.0, None, []
    for row in result.history:
        elapsed += row["seconds"]
        rows.append({"epoch": row["epoch"], "seconds": elapsed, "test_accuracy": row["val_accuracy"]})
        if reached is None and row["val_accuracy"] >= target:
            reached = elapsed
    return {"seed": seed, "time_to_target": reached, "final": rows[-1]["test_accuracy"], "total_seconds": elapsed,
            "seconds_per_epoch": elapsed / len(rows), "epochs": rows}


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} s"


def summarise(runs: list[dict]) -> dict:
    reached = [r["time_to_target"] for r in runs if r["time_to_target"] is not None]
    finals = [r["final"] for r in runs]
    return {
        "time_to_target_mean": statistics.mean(reached) if reached else None,
        "time_to_target_max": max(reached) if reached else None,
        "seeds_reaching_target": len(reached),
        "final_mean": statistics.mean(finals),
        "final_std": statistics.pstdev(finals),
        "seconds_per_epoch": statistics.mean(r["seconds_per_epoch"] for r in runs),
        "n": len(runs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the full recipe")
    parser.add_argument("--ablation-seeds", type=int, default=2, help="seeds for each ablation (0: none)")
    parser.add_argument("--target", type=float, default=0.93)
    parser.add_argument("--only", choices=sorted(ABLATIONS), action="append", help="run only these ablations")
    args = parser.parse_args()

    import torch

    import fmnist
    from fmnist.engine.recipes import recipe_values

    dataset = fmnist.load_dataset(download=False)
    variants = {"fast recipe": ({}, args.seeds)}
    for name, changes in ABLATIONS.items():
        if args.ablation_seeds and (not args.only or name in args.only):
            variants[name] = (changes, args.ablation_seeds)
    started = time.perf_counter()
    results = {}
    for name, (changes, seeds) in variants.items():
        runs = []
        for seed in range(1, seeds + 1):
            runs.append(run(changes, seed, dataset, args.target))
            print(f"  {name}, seed {seed}: {runs[-1]['final']:.4f} after {runs[-1]['total_seconds']:.0f} s; "
                  f"{args.target:.0%} at {_seconds(runs[-1]['time_to_target'])}", file=sys.stderr, flush=True)
        results[name] = summarise(runs)
    report = {
        "recipe": recipe_values("fast"), "target": args.target,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "wall_seconds": time.perf_counter() - started, "variants": results,
    }
    out = HERE / "results" / "fast_recipe.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"| variant | seconds to {args.target:.0%} (mean, max; seeds reaching) | final test accuracy | s/epoch |")
    print("|---|---|---|---|")
    for name, entry in results.items():
        reach = (f"{entry['time_to_target_mean']:.0f}, {entry['time_to_target_max']:.0f} "
                 f"({entry['seeds_reaching_target']}/{entry['n']})" if entry["time_to_target_mean"] is not None
                 else f"— (0/{entry['n']})")
        print(f"| {name} | {reach} | {entry['final_mean']:.2%} ± {entry['final_std']:.2%} | "
              f"{entry['seconds_per_epoch']:.1f} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
