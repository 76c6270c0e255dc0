"""K-fold cross-validation, write-up 000's main job: fmnist's folds one after another, fmnist's folds trained
together as one stacked model, and the write-up's own loop in Keras, on one machine in one run.

    .venv/bin/pip install -e '.[bench]'        # tensorflow-cpu + keras, the peer (make bench installs it)
    .venv/bin/python benchmarks/crossval.py --repeats 1 --beside nothing                # ~1 h on 2 CPU cores
    .venv/bin/python benchmarks/crossval.py --recipe fast --limit 12000 --repeats 1 --beside nothing

--recipe baseline (write-up 000: its CNN, SGD 0.01 with momentum 0.9, batch 32, --epochs 10), --folds 5 over
the first --limit training images (default: all 60,000), these configurations:

- `fmnist cv --parallel-folds 1`: the folds one after another;
- `fmnist cv --parallel-folds FOLDS`: all folds at once, as one stacked model (engine/stacked.py);
- `fmnist cv` (`--parallel-folds auto`, the default): what a user gets; on a CPU it first times a few steps of
  the stack against one model and stacks only where that pays;
- Keras: write-up 000's evaluate_model() — KFold(FOLDS, shuffle=True, random_state=1), define_model() per
  fold, fit(epochs, batch 32, validation_data = the fold's held-out part), evaluate.

--recipe fast: fmnist's `--recipe fast` folds (its own epochs unless --epochs), fmnist only (the recipe is
fmnist's). Every configuration is a fresh process, started as a user types it; repeats interleave them
(repeat, then configuration, the order rotating) so that a drift of the machine's speed spreads over all.
Reported per configuration, mean ± std over repeats: the command's wall seconds (start-up, data, figures and
report included: what the user waits for) and the folds' own training seconds; the speed-up against the
sequential run; the mean fold accuracy (± std over the folds); what `auto` chose and why. Markdown on stdout;
every figure in benchmarks/results/crossval-RECIPE.json with the machine (its CPU flags, load) and --beside.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine, spread
from vs_keras import fill_keras_cache, writeup000_model

HERE = Path(__file__).resolve().parent
FMNIST = [sys.executable, "-m", "fmnist"]


# --------------------------------------------------------------------------- the Keras peer (its own process)


def keras_worker(folds: int, epochs: int, limit: int | None, seed: int) -> None:
    """Write-up 000's evaluate_model(trainX, trainY), its define_model() and its data preparation; prints one
    JSON line: each fold's accuracy and the loop's seconds."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    (train_x, train_y), _ = keras.datasets.fashion_mnist.load_data()
    train_x, train_y = train_x[:limit], train_y[:limit]
    train_x = train_x.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    train_y = keras.utils.to_categorical(train_y, 10)
    # sklearn's KFold(n_splits=folds, shuffle=True, random_state=1): one shuffle, then contiguous folds, the
    # first len % folds of them one image larger.
    order = np.arange(len(train_x))
    np.random.RandomState(1).shuffle(order)
    sizes = np.full(folds, len(order) // folds)
    sizes[: len(order) % folds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    scores = []
    started = time.perf_counter()
    for fold in range(folds):
        test = order[bounds[fold] : bounds[fold + 1]]
        train = np.concatenate([order[: bounds[fold]], order[bounds[fold + 1] :]])
        model = writeup000_model()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(train_x[train], train_y[train], epochs=epochs, batch_size=32,
                  validation_data=(train_x[test], train_y[test]), verbose=0)
        _, accuracy = model.evaluate(train_x[test], train_y[test], verbose=0)
        scores.append(float(accuracy))
    print(json.dumps({"scores": scores, "loop_seconds": time.perf_counter() - started}), flush=True)


# --------------------------------------------------------------------------- one configuration, one process


def run_fmnist(parallel: str, args, seed: int, scratch: Path) -> dict:
    out = scratch / f"cv-{parallel}-{seed}"
    recipe = (["--config", str(HERE.parent / "configs" / "writeup000-baseline.yaml")] if args.recipe == "baseline"
              else ["--recipe", "fast"])
    command = [*FMNIST, "cv", *recipe, "--folds", str(args.folds), "--seed", str(seed), "--device", "cpu",
               *(["--epochs", str(args.epochs)] if args.epochs else []),
               *(["--limit", str(args.limit)] if args.limit else []),
               *(["--parallel-folds", parallel] if parallel != "auto" else []), "--out", str(out), "--quiet"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=_environment())
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    entry = json.loads((out / "cv.json").read_text())["models"][0]
    return {"command": " ".join(command[2:]), "wall_seconds": wall, "loop_seconds": sum(entry["fold_seconds"]),
            "scores": entry["scores"], "parallel_folds": entry.get("parallel_folds"), "why": entry.get("stacking"),
            "epochs": len(entry["histories"][0])}


def run_keras(args, seed: int, keras_home: Path) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--folds", str(args.folds), "--epochs",
               str(args.epochs or 10), "--seed", str(seed), *(["--limit", str(args.limit)] if args.limit else [])]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**_environment(), "KERAS_HOME": str(keras_home), "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the Keras worker failed:\n{result.stderr[-3000:]}")
    row = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    return {"command": "write-up 000's evaluate_model() in Keras", "wall_seconds": wall,
            "loop_seconds": row["loop_seconds"], "scores": row["scores"], "epochs": args.epochs or 10}


def _environment() -> dict:
    """The user's environment, without the test suite's one-thread setting: each framework uses every core."""
    return {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}


# --------------------------------------------------------------------------- the comparison


def report(results: dict) -> str:
    configurations = results["configurations"]
    sequential = [run["wall_seconds"] for run in configurations.get("sequential", [])]
    lines = [f"{results['folds']}-fold cross-validation, recipe {results['recipe']}, {results['images']} training "
             f"images, {len(results['repeats'])} repeat(s) (mean ± std); machine: {results['machine']['cpu']}, "
             f"{results['machine']['cores']} cores, {' '.join(results['machine']['flags_of_note'])}; beside: "
             f"{results['beside']}", "",
             "| configuration | wall s (command) | folds' training s | × sequential | mean fold accuracy % | "
             "auto chose |", "|---|---|---|---|---|---|"]
    for name, runs in configurations.items():
        walls = [run["wall_seconds"] for run in runs]
        speedup = (statistics.mean(sequential) / statistics.mean(walls)) if sequential else float("nan")
        means = [100 * statistics.mean(run["scores"]) for run in runs]
        within = statistics.mean(100 * statistics.pstdev(run["scores"]) for run in runs)
        chose = "; ".join(sorted({f"{run['parallel_folds']} ({run['why']})" for run in runs})) if name == "auto" else ""
        lines.append(f"| {name} | {spread(walls)} | {spread([run['loop_seconds'] for run in runs])} | "
                     f"{speedup:.2f}× | {spread(means, 2)} (folds ± {within:.2f}) | {chose} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=("baseline", "fast"), default="baseline")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fold (default: 10, the fast recipe's own)")
    parser.add_argument("--limit", type=int, default=None, help="the first N training images (default: all)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats, each with its own seed (1, 2, ...)")
    parser.add_argument("--configurations", default="sequential,stacked,auto,keras",
                        help="which of sequential, stacked, auto, keras to run")
    parser.add_argument("--beside", default="nothing", help="what else ran on the machine (recorded)")
    parser.add_argument("--results", type=Path, default=None, help="default: benchmarks/results/crossval-RECIPE.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        keras_worker(args.folds, args.epochs or 10, args.limit, args.seed)
        return
    if args.recipe == "baseline" and args.epochs is None:
        args.epochs = 10
    chosen = [name.strip() for name in args.configurations.split(",") if name.strip()]
    known = ("sequential", "stacked", "auto", "keras")
    if not chosen or not set(chosen) <= set(known) or (args.recipe == "fast" and "keras" in chosen):
        parser.error(f"--configurations: some of {', '.join(known)} (keras only with --recipe baseline)")
    results = {"recipe": args.recipe, "folds": args.folds, "epochs": args.epochs, "images": args.limit or 60000,
               "repeats": list(range(1, args.repeats + 1)), "beside": args.beside, "machine": machine(),
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv),
               "configurations": {name: [] for name in chosen}}
    path = args.results or HERE / "results" / f"crossval-{args.recipe}.json"
    with tempfile.TemporaryDirectory(prefix="fmnist-crossval-") as scratch:
        scratch = Path(scratch)
        if "keras" in chosen:
            fill_keras_cache(scratch / "keras")
        for repeat in results["repeats"]:
            order = chosen[repeat - 1 :] + chosen[: repeat - 1]  # rotate: no configuration always goes first
            for name in order:
                load = os.getloadavg()
                parallel = {"sequential": "1", "stacked": str(args.folds), "auto": "auto"}.get(name)
                run = (run_keras(args, repeat, scratch / "keras") if name == "keras"
                       else run_fmnist(parallel, args, repeat, scratch))
                run.update(seed=repeat, load_average_before=load)
                results["configurations"][name].append(run)
                print(f"# repeat {repeat} {name}: {run['wall_seconds']:.1f} s, mean accuracy "
                      f"{100 * statistics.mean(run['scores']):.2f} %", file=sys.stderr, flush=True)
                partial = path.with_name(path.name + ".part")
                partial.write_text(json.dumps(results, indent=1) + "\n")
                partial.replace(path)  # after every run: hours of work survive an interruption
    print(report(results))


if __name__ == "__main__":
    main()
