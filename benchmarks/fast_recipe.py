"""The `fast` recipe on this machine: time to 93 % test accuracy, and what each of its pieces is worth.

    .venv/bin/python benchmarks/fast_recipe.py --seeds 3 --ablation-seeds 2
    .venv/bin/python benchmarks/fast_recipe.py --isa avx2 --seeds 3 --ablation-seeds 1 --keras-seeds 2   # AVX2-only

Trains `fmnist train --recipe fast` (validating on the test set after every epoch, which is not
timed), then the same recipe with one piece taken away at a time. Reported per variant: training
seconds until the test accuracy first reaches 93.0 % (mean over the seeds that reach it, and how
many did), final test accuracy (mean ± std), seconds per epoch. Nothing is excluded as warm-up:
the first epoch counts.

`--isa avx2` runs everything as on an AVX2-only CPU (machine.ISAS; the script starts itself again
with that environment), where `--precision auto` trains in fp32 and the recipe takes its fp32 values
(engine/recipes.py). `--keras-seeds N` (needs the bench extra) then runs the peer in the same script:
write-up 001's MiniVGGNet recipe in Keras (vs_keras.py's worker, same ISA), `--keras-epochs` epochs per
seed, and estimates the write-up's 25 epochs from them (epoch 1 as measured, the other 24 at the later
epochs' mean) against the recipe's time to 93 %. Results go to stdout as Markdown and to benchmarks/results/fast_recipe[-ISA-emulated].json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import ISA_VARIABLES, ISAS, isa_environment, machine, write_results  # benchmarks/machine.py, beside this script

HERE = Path(__file__).resolve().parent
WRITEUP_001_EPOCHS = 25  # MiniVGGNet's recipe as write-up 001 runs it

# variant name → the config values it changes (the rest is the recipe)
ABLATIONS = {
    "no flip TTA (one view at test time)": {"model_options": {"tta": False}},
    "no flip augmentation": {"augment": "none"},
    "flip + translation (±2 px) augmentation": {"augment": "flip+crop"},
    "no label smoothing": {"label_smoothing": 0.0},
    "fp32, the model `fast` (what bf16 machines train)": {"precision": "fp32", "model": "fast"},  # the recipe's own values
    "fp32 values of the recipe (model `fast-narrow`, lr 0.2)": {"precision": "fp32"},
    "lr 0.1 (the bf16 values' rate)": {"lr": 0.1},
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


def keras_peer(seeds: int, epochs: int, isa: str) -> dict:
    """Write-up 001's MiniVGGNet in Keras, `epochs` per seed, each seed a fresh process (vs_keras.py's worker)."""
    from vs_keras import fill_keras_cache, run_worker, summarise  # here: only --keras-seeds needs it (TensorFlow loads in its worker)

    runs = []
    with tempfile.TemporaryDirectory() as keras_home:
        fill_keras_cache(Path(keras_home))
        for seed in range(1, seeds + 1):
            runs.append(run_worker("keras", "minivgg", epochs, seed, Path(keras_home), quiet=False, isa=isa))
    per_epoch = summarise(runs, None)["seconds_per_epoch"]["values"]  # each seed's, epoch 1 left out
    # The write-up's 25 epochs, estimated per seed: its first epoch as measured (TensorFlow traces its graph
    # there), the other 24 at the mean of the later epochs measured.
    estimates = [rows[0]["seconds"] + (WRITEUP_001_EPOCHS - 1) * later for rows, later in zip(runs, per_epoch)]
    return {"seeds": seeds, "epochs": epochs, "seconds_per_epoch": per_epoch,
            "seconds_per_epoch_mean": statistics.mean(per_epoch), "estimated_recipe_seconds_per_seed": estimates,
            "estimated_recipe_seconds": statistics.mean(estimates),
            "test_accuracy": [rows[-1]["test_accuracy"] for rows in runs], "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the full recipe")
    parser.add_argument("--ablation-seeds", type=int, default=2, help="seeds for each ablation (0: none)")
    parser.add_argument("--target", type=float, default=0.93)
    parser.add_argument("--only", choices=sorted(ABLATIONS), action="append", help="run only these ablations")
    parser.add_argument("--isa", choices=sorted(ISAS), default="native",
                        help="the instruction set torch (and the Keras peer) may use (avx2: an AVX2-only CPU, emulated)")
    parser.add_argument("--keras-seeds", type=int, default=0, help="seeds of the Keras MiniVGGNet peer (0: none)")
    parser.add_argument("--keras-epochs", type=int, default=2, help="epochs per Keras seed (epoch 1 is not counted)")
    parser.add_argument("--first-seed", type=int, default=1, help="seeds run from this one up (another set of seeds)")
    parser.add_argument("--results", type=Path, default=None,
                        help="default: benchmarks/results/fast_recipe[-ISA-emulated].json")
    args = parser.parse_args()
    if args.keras_seeds and args.keras_epochs < 2:
        sys.exit("--keras-epochs must be at least 2 (epoch 1 is warm-up)")
    held = isa_environment(args.isa)
    if any(os.environ.get(key) != held.get(key) for key in ISA_VARIABLES):
        # torch reads these once, when it loads: only a new process can be held to another instruction set
        os.execve(sys.executable, [sys.executable, *sys.argv], held)

    # here, after the re-exec above (torch reads the ISA variables once, when it loads); fmnist before torch: its
    # OpenMP default reaches libgomp, as in the CLI
    import fmnist  # noqa: I001
    import torch
    from fmnist.engine.recipes import recipe_values, trains_in_fp32

    dataset = fmnist.load_dataset(download=False)
    fp32 = trains_in_fp32("auto", "cpu")
    values = recipe_values("fast", fp32=fp32)
    variants = {"fast recipe": ({}, args.seeds)}
    for name, changes in ABLATIONS.items():
        if all(values.get(key) == value for key, value in changes.items()):
            continue  # the recipe itself, here (in fp32: "fp32 values of the recipe")
        if args.ablation_seeds and (not args.only or name in args.only):
            variants[name] = (changes, args.ablation_seeds)
    started = time.perf_counter()
    results = {}
    for name, (changes, seeds) in variants.items():
        runs = []
        for seed in range(args.first_seed, args.first_seed + seeds):
            runs.append(run(changes, seed, dataset, args.target))
            print(f"  {name}, seed {seed}: {runs[-1]['final']:.4f} after {runs[-1]['total_seconds']:.0f} s; "
                  f"{args.target:.0%} at {_seconds(runs[-1]['time_to_target'])}", file=sys.stderr, flush=True)
        results[name] = summarise(runs)
    peer = keras_peer(args.keras_seeds, args.keras_epochs, args.isa) if args.keras_seeds else None
    report = {
        "recipe": values, "trains_in_fp32": fp32, "target": args.target, "isa": args.isa,
        "isa_environment": ISAS[args.isa], "machine": machine(), "torch": torch.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "wall_seconds": time.perf_counter() - started, "variants": results, "keras_minivgg": peer,
    }
    emulated = "" if args.isa == "native" else f"-{args.isa}-emulated"
    out = args.results or HERE / "results" / f"fast_recipe{emulated}.json"
    write_results(out, report)
    print(f"| variant | seconds to {args.target:.0%} (mean, max; seeds reaching) | final test accuracy | s/epoch |")
    print("|---|---|---|---|")
    for name, entry in results.items():
        reach = (f"{entry['time_to_target_mean']:.0f}, {entry['time_to_target_max']:.0f} "
                 f"({entry['seeds_reaching_target']}/{entry['n']})" if entry["time_to_target_mean"] is not None
                 else f"— (0/{entry['n']})")
        print(f"| {name} | {reach} | {entry['final_mean']:.2%} ± {entry['final_std']:.2%} | "
              f"{entry['seconds_per_epoch']:.1f} |")
    if peer is not None:
        recipe = results["fast recipe"]
        print(f"\nKeras MiniVGGNet (write-up 001), {peer['seeds']} seeds × {peer['epochs']} epochs: "
              f"{peer['seconds_per_epoch_mean']:.1f} s per epoch ({', '.join(f'{v:.1f}' for v in peer['seconds_per_epoch'])}; "
              f"epoch 1 not counted); its {WRITEUP_001_EPOCHS} epochs ≈ {peer['estimated_recipe_seconds']:.0f} s "
              f"(an estimate: epoch 1 as measured + {WRITEUP_001_EPOCHS - 1} × the later epochs' mean)")
        if recipe["time_to_target_max"] is not None and recipe["seeds_reaching_target"] == recipe["n"]:
            print(f"fast recipe to {args.target:.0%}: mean {recipe['time_to_target_mean']:.0f} s = 1/"
                  f"{peer['estimated_recipe_seconds'] / recipe['time_to_target_mean']:.1f} of it; slowest seed "
                  f"{recipe['time_to_target_max']:.0f} s = 1/{peer['estimated_recipe_seconds'] / recipe['time_to_target_max']:.1f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
